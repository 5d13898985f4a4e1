"""The jax_gen command line: `train`, `generate`, `animate` (same as the `jax-gen` command)."""

from jax_gen.cli import main

if __name__ == "__main__":
    main()
