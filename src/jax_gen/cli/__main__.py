"""``python -m jax_gen.cli``: the ``jax-gen`` command."""

from jax_gen.cli import main

if __name__ == "__main__":
    main()
