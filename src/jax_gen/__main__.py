"""``python -m jax_gen``: the ``jax-gen`` command (``train``, ``generate``, ``animate``, ...)."""

from jax_gen.cli import main

if __name__ == "__main__":
    main()
