"""Jittable samplers of the training distributions: cat, moons, swiss roll, Gaussians, digits,
and users' own points files and silhouette images.

:func:`get_batch` draws a batch of i.i.d. points from the distribution a dataset config describes.
It looks the config's type up in one registry of :class:`Dataset` records, so a new dataset is a
config class, a sampler and one :func:`register` line::

    import dataclasses

    import jax
    import jax.numpy as jnp

    from jax_gen.data import Dataset, get_batch, register


    @dataclasses.dataclass(frozen=True)
    class RingConfig:
        radius: float = 2.0
        ambient_dim: int = 2  # optional: D > 2 embeds the ring in a plane of R^D


    def sample_ring(key, cfg, batch_size):
        angle = jax.random.uniform(key, (batch_size,), maxval=2 * jnp.pi)
        return cfg.radius * jnp.stack([jnp.cos(angle), jnp.sin(angle)], axis=1)


    register(RingConfig, Dataset(sample=sample_ring))
    points = get_batch(jax.random.key(0), RingConfig(), 512)  # (512, 2)

A record names what is known about the dataset, each part optional: ``labeled`` (points and
labels) instead of or beside ``sample``, ``class_frequencies``, ``native_dim`` (points that are
not 2-D), ``image_shape``, ``log_density``; leaving one out gives the behaviour of a dataset
without it (no labels, 2-D points, no known density). Samplers are pure functions of the key,
with the config and the batch size static, so ``jax.jit(get_batch, static_argnums=(1, 2))``
compiles one sampler per (config, batch size) and a training loop can draw batches inside
``lax.scan`` without a host round trip. Points are float32, shape (batch, D) with
D = :func:`data_dim` (cfg), whatever ``jax_enable_x64`` says.

**Labels.** The Gaussian mixture (4 classes: the component), the 1-D mixture (3 classes: the
component), the two moons (2 classes: the moon) and the digits (10 classes: the digit) are
labelled. :func:`get_labeled_batch` draws the points
together with their int32 labels in {0, ..., K - 1}, K = :func:`num_classes` (cfg), and
:func:`get_batch` returns exactly the same points for the same key (it is the labelled sampler
with the labels dropped), so the labels cost an unconditional run nothing and change none of
its draws. :func:`class_frequencies` gives the probability of each label. Cat, swiss roll and
users' points and images have no labels (``num_classes`` 0).

**Digits.** scikit-learn's bundled 8x8 handwritten digits: points of R^64 (an image's grey
levels, row-major), not 2-D data. :func:`is_planar` is False for them, :func:`data_dim` is 64,
and the plane functions below refuse them. :func:`image_shape` tells how to draw them.

**Users' data.** ``PointsConfig`` samples the rows of an N x D array read from a ``.npy`` or
``.csv`` file (:func:`load_points`), normalised like the cat; its dimension is the file's D, so
it is 2-D data (planar) for D = 2 and D-dimensional data (like the digits, but not images) for
D > 2. ``ImageConfig`` is the cat's sampler on any silhouette image. Both read their file when
first needed (at trace time; the arrays become constants of the compiled sampler), cached per
process; a missing, unreadable or malformed file raises ``FileNotFoundError`` or
``ValueError`` naming the file. A config without a file (``path=""``, the class default) is
not data yet: :func:`is_planar` is False for it and drawing from it raises ``ValueError``.

**Ambient dimension.** Every other dataset is 2-D. A sampler (built-in or registered) returns
the 2-D points u; :func:`get_batch` itself embeds them in a fixed random plane of R^D,

    x = u P^T,    P = projection(cfg), a (D, 2) matrix with orthonormal columns,

when the config has an ``ambient_dim`` attribute D > 2 (a registered config without one stays
2-D). The data then lie in a 2-D subspace of R^D (x P P^T = x): a low-dimensional manifold
in a high-dimensional space. For D = 2 the points are returned unchanged, bit for bit.
:func:`to_plane` maps points of R^D back to their coordinates u = x P in the plane, for plots and
2-D metrics, and :func:`from_plane` embeds plane coordinates; both are the identity for D = 2.
:func:`data_dim` is D, the size a model of the data must have.

**Modules.** ``registry`` (the record, :func:`register`, and the functions above that look it
up, with the plane), ``density`` (exact log-densities), ``builtin`` (moons, swiss roll,
Gaussian mixture, and the 1-D mixture: points of R^1, whose ``native_dim`` is 1),
``silhouettes`` (the cat and users' images), ``files`` (users' points files), ``digits``.
"""

# Each dataset module registers its configs when imported.
from jax_gen.data import builtin, digits, files, silhouettes  # noqa: F401
from jax_gen.data.builtin import gaussian_mixture_centres
from jax_gen.data.density import has_log_density, log_density, support_indicator
from jax_gen.data.digits import DIGITS_IMAGE_SHAPE
from jax_gen.data.files import load_points
from jax_gen.data.registry import (
    Dataset,
    LabeledSampler,
    Sampler,
    class_frequencies,
    data_dim,
    from_plane,
    get_batch,
    get_labeled_batch,
    image_shape,
    is_planar,
    lookup,
    num_classes,
    projection,
    register,
    to_plane,
)
from jax_gen.data.silhouettes import cat_image_path

__all__ = [
    "DIGITS_IMAGE_SHAPE",
    "Dataset",
    "LabeledSampler",
    "Sampler",
    "cat_image_path",
    "class_frequencies",
    "data_dim",
    "from_plane",
    "gaussian_mixture_centres",
    "get_batch",
    "get_labeled_batch",
    "has_log_density",
    "image_shape",
    "is_planar",
    "load_points",
    "log_density",
    "lookup",
    "num_classes",
    "projection",
    "register",
    "support_indicator",
    "to_plane",
]
