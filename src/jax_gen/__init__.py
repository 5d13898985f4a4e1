"""Diffusion and flow matching from first principles, in JAX, on low-dimensional data.

The library lives in the submodules (``jax_gen.config``, ``jax_gen.data``, ``jax_gen.models``,
``jax_gen.strategies``, ...), and importing the package itself loads none of them. The command
line is ``jax-gen`` or, the same program, ``python -m jax_gen``.

Attributes:
    __version__: the installed distribution's version, read from its metadata
        (``importlib.metadata``); ``"0+unknown"`` for a source tree put on the path without
        being installed.
"""

__all__ = ["__version__"]


def __getattr__(name: str) -> str:
    # Read on first use: importing importlib.metadata costs tens of milliseconds, more than
    # the rest of ``import jax_gen``.
    if name == "__version__":
        from importlib.metadata import PackageNotFoundError, version

        try:
            return version("jax_gen")
        except PackageNotFoundError:
            return "0+unknown"
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
