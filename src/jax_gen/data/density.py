"""Exact log-densities of the datasets whose density is known, and the support they imply."""

from collections.abc import Callable, Hashable

import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from jax_gen.data.registry import data_dim, is_planar, lookup


def log_density(cfg: Hashable, x: Float[ArrayLike, "n d"]) -> Float[Array, " n"]:
    """The exact log-density log p_data(x) of the dataset ``cfg`` describes, in nats per point.

    Known for the Gaussian mixtures (2-D and 1-D), the cat and users' images (whose sampler is
    exactly uniform on their dark pixels). A new dataset's density is its record's
    ``log_density``, a function ``(cfg, x)``, in the data's own dimension. Jittable with ``cfg``
    static.

    Args:
        cfg: a dataset config.
        x: points, shape (n, d), d = :func:`data_dim` (cfg).

    Returns:
        log p_data(x), shape (n,) (``-inf`` where the density is 0).

    Raises:
        NotImplementedError: the density is not known in closed form (moons, swiss roll, digits,
            points files, a registered dataset without a density), or ``cfg.ambient_dim`` > 2,
            where the data lie on a plane of R^D and have no density.
    """
    record = lookup(cfg)
    if record is None or record.log_density is None:
        raise NotImplementedError(
            f"the density of {type(cfg).__name__} is not known in closed form"
        )
    if is_planar(cfg) and data_dim(cfg) != 2:
        raise NotImplementedError(
            f"{type(cfg).__name__} with ambient_dim={data_dim(cfg)} lies on a plane: no density"
        )
    x = jnp.asarray(x)
    return record.log_density(cfg, x.astype(jnp.result_type(x, float)))


def has_log_density(cfg: Hashable) -> bool:
    """Whether :func:`log_density` knows the density of ``cfg`` (registered, and not 2-D data
    embedded in R^D)."""
    record = lookup(cfg)
    registered = record is not None and record.log_density is not None
    return registered and not (is_planar(cfg) and data_dim(cfg) != 2)


def support_indicator(cfg: Hashable) -> Callable[[Float[ArrayLike, "n d"]], np.ndarray] | None:
    """``inside(points) -> bool (n,)``: whether points lie on the data's support, for the
    silhouettes (the cat, users' images), whose exact log-density is -inf off the shape; None
    where the support is not known exactly."""
    record = lookup(cfg)
    if record is None or not record.support_from_density or not has_log_density(cfg):
        return None
    return lambda points: np.isfinite(np.asarray(log_density(cfg, points)))
