"""The dataset registry: one :class:`Dataset` record per config type, and the functions every
dataset answers through it (:func:`get_batch`, labels, dimensions, planes, densities).

A record holds what is known about one kind of dataset, each part optional with a fallback:
how to draw points (or labelled points), the label probabilities, a dimension other than 2, an
image shape, the exact log-density. :func:`register` files it under the config class, once;
every function here looks the config's class up (and its base classes, so a subclass of a
registered config draws like its parent unless it is registered itself).
"""

import dataclasses
import functools
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Any, final

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float, Int, PRNGKeyArray

from jax_gen.config import DATASETS, name_of

_DTYPE = jnp.float32

Sampler = Callable[[PRNGKeyArray, Any, int], Float[Array, "batch n"]]
"""``sample(key, cfg, batch_size)``: points of shape (batch_size, n)."""
LabeledSampler = Callable[
    [PRNGKeyArray, Any, int], tuple[Float[Array, "batch n"], Int[Array, " batch"]]
]
"""``labeled(key, cfg, batch_size)``: points of shape (batch_size, n) and int32 labels."""


@final
@dataclasses.dataclass(frozen=True)
class Dataset:
    """Everything the library knows about one kind of dataset config; see :func:`register`.

    Every function of ``cfg`` here receives the config instance. Only a sampler is required.
    """

    sample: Sampler | None = None
    """Draws 2-D points (or ``native_dim`` (cfg)-D ones), pure in the key, ``cfg`` and
    ``batch_size`` static. Default: the points of ``labeled``."""
    labeled: LabeledSampler | None = None
    """Draws points and their int32 labels in {0, ..., K - 1} (a labelled dataset). ``sample``
    must draw the same points for the same key; leaving it out guarantees that."""
    class_frequencies: Callable[[Any], ArrayLike] | None = None
    """The probability of each label, a 1-D array summing to 1 (its length is K)."""
    native_dim: Callable[[Any], int | None] | None = None
    """The dimension of points that are not 2-D data (None for 2-D); such data are never
    embedded. Default: the data are 2-D, embedded in R^D when ``cfg.ambient_dim`` = D > 2."""
    image_shape: Callable[[Any], tuple[int, int] | None] | None = None
    """(height, width) if each point is an image's pixels, row-major. Default: not images."""
    log_density: Callable[[Any, Float[Array, "n 2"]], Float[Array, " n"]] | None = None
    """The exact log-density of the data, ``log_density(cfg, x)`` for float points of shape
    (n, d) (2-D data before any embedding, or the ``native_dim``), jittable with ``cfg``
    static. Default: not known in closed form."""
    support_from_density: bool = False
    """Whether ``log_density`` is finite exactly on the data's support (a uniform density on a
    shape), so it tells whether points lie on it (:func:`support_indicator`)."""
    file_kind: str | None = None
    """For data read from a user's file named by ``cfg.path``: what that file is, for the
    message when it is missing (``"an image"``). Such a config with ``path=""`` is no data."""

    def __post_init__(self) -> None:
        if self.sample is None and self.labeled is None:
            raise ValueError("a Dataset needs a sampler: pass sample or labeled")


_REGISTRY: dict[type, Dataset] = {}


def register(config_class: type, dataset: Dataset) -> None:
    """Makes ``dataset`` the record of every config of type ``config_class``.

    Registering a class again replaces its record.

    Args:
        config_class: a hashable (frozen dataclass) config type.
        dataset: what the library knows about such datasets.
    """
    if not isinstance(config_class, type):
        raise TypeError(f"register a config class, not {config_class!r}")
    if not isinstance(dataset, Dataset):
        raise TypeError(f"register a Dataset record, not {dataset!r}")
    _REGISTRY[config_class] = dataset


def lookup(cfg: Hashable) -> Dataset | None:
    """The record registered for ``type(cfg)`` or its nearest base class; None if there is none."""
    for cls in type(cfg).__mro__:
        if cls in _REGISTRY:
            return _REGISTRY[cls]
    return None


def _dataset_name(cfg: Any) -> str:
    """The registry name of a built-in dataset config (``"cat"``), else its class name."""
    try:
        return name_of(cfg)
    except ValueError:
        return type(cfg).__name__


def _lacks_file(cfg: Any) -> bool:
    """Whether ``cfg`` is a users'-data config whose file was not given (``path=""``)."""
    record = lookup(cfg)
    return record is not None and record.file_kind is not None and not cfg.path


def _user_file(cfg: Any) -> str:
    """The resolved path of a users'-data config's file, as a string (a cache key).

    Raises:
        ValueError: ``cfg.path`` is empty (the class default), so there is no data.
    """
    if not cfg.path:
        raise ValueError(
            f"dataset {_dataset_name(cfg)} needs a file: pass --dataset.path FILE "
            f"({lookup(cfg).file_kind})"
        )
    return str(Path(cfg.path).expanduser().resolve())


# ----------------------------------------------------------------------------------------------
# Drawing points
# ----------------------------------------------------------------------------------------------


def _checked_dim(cfg: Any, batch_size: int) -> int:
    """Checks the batch size, then returns :func:`data_dim` (which validates ``ambient_dim``)."""
    if not (isinstance(batch_size, int) and batch_size > 0):
        raise ValueError(f"batch_size={batch_size!r} must be a positive int")
    return data_dim(cfg)


def _embed(points: Float[Array, "batch n"], cfg: Any, dim: int) -> Float[Array, "batch dim"]:
    """A sampler's points as :func:`get_batch` returns them: embedded in R^D if 2-D and D > 2."""
    if not is_planar(cfg):
        if points.shape[-1] != dim:
            raise ValueError(
                f"the sampler of {type(cfg).__name__} returned points of shape {points.shape}; "
                f"its data_dim is {dim}"
            )
        return points
    if dim == 2:
        return points
    if points.shape[-1] != 2:
        raise ValueError(
            f"the sampler of {type(cfg).__name__} returned points of shape {points.shape}; "
            f"with ambient_dim={dim} it must return 2-D points, which get_batch embeds"
        )
    return from_plane(points, cfg)


# Compiled once per (config, batch size): called eagerly, a sampler's dozen operations would
# each compile on their own, for every new batch size.
@functools.partial(jax.jit, static_argnums=(1, 2))
def get_batch(key: PRNGKeyArray, cfg: Hashable, batch_size: int) -> Float[Array, "batch dim"]:
    """Draws ``batch_size`` i.i.d. points from the dataset ``cfg`` describes.

    The registered sampler draws 2-D points u; for ``cfg.ambient_dim`` = D > 2 they are embedded
    as x = u P^T with P = :func:`projection` (cfg), so they lie in a fixed 2-D plane of R^D and
    ``to_plane(x, cfg)`` gives back u. For D = 2 (or a config without ``ambient_dim``) the
    sampler's points are returned unchanged. Digits are drawn in R^64 directly. For a labelled
    dataset the points are those of :func:`get_labeled_batch` with the same key.

    Args:
        key: the only source of randomness.
        cfg: a dataset config (``CatConfig``, ``MoonConfig``, ``SwissRollConfig``,
            ``GaussianMixtureConfig``, ``DigitsConfig``, ``PointsConfig``, ``ImageConfig``, or
            any type registered with :func:`register`). Static under ``jit``; configs are
            frozen, hence hashable.
        batch_size: number of points, a positive Python int (static under ``jit``).

    Returns:
        float32 points of shape (batch_size, :func:`data_dim` (cfg)).

    Raises:
        TypeError: no dataset is registered for ``type(cfg)``.
        ValueError: ``batch_size`` is not a positive int, ``cfg.ambient_dim`` is not an int
            >= 2, or the sampler of a config with ``ambient_dim`` > 2 returned points that are
            not 2-D.
    """
    dim = _checked_dim(cfg, batch_size)
    record = lookup(cfg)
    if record is None:
        raise TypeError(f"no sampler registered for dataset config {type(cfg).__name__}")
    if record.sample is not None:
        points = record.sample(key, cfg, batch_size)
    else:
        points = record.labeled(key, cfg, batch_size)[0]
    return _embed(points, cfg, dim)


@functools.partial(jax.jit, static_argnums=(1, 2))
def get_labeled_batch(
    key: PRNGKeyArray, cfg: Hashable, batch_size: int
) -> tuple[Float[Array, "batch dim"], Int[Array, " batch"]]:
    """Draws ``batch_size`` i.i.d. (point, label) pairs from a labelled dataset.

    The points are exactly those :func:`get_batch` draws with the same key (embedded in R^D the
    same way); each label is the class the point was drawn from:

    - Gaussian mixture: the component, k = 2 [s_1 < 0] + [s_2 < 0] for the centre
      scale (s_1, s_2), i.e. the rows of :func:`gaussian_mixture_centres` in order;
    - two moons: 0 for the outer (upper) moon, 1 for the inner (lower) one, as scikit-learn's
      ``make_moons`` labels them;
    - digits: the digit 0-9 the image shows.

    Jittable with ``cfg`` and ``batch_size`` static, like :func:`get_batch`.

    Args:
        key: the only source of randomness.
        cfg: a labelled dataset config (static under ``jit``).
        batch_size: number of points, a positive Python int (static under ``jit``).

    Returns:
        float32 points of shape (batch_size, :func:`data_dim` (cfg)) and int32 labels of shape
        (batch_size,) in {0, ..., :func:`num_classes` (cfg) - 1}.

    Raises:
        ValueError: the dataset has no labels (cat, swiss roll), or ``batch_size`` /
            ``ambient_dim`` is invalid as for :func:`get_batch`.
    """
    dim = _checked_dim(cfg, batch_size)
    record = lookup(cfg)
    if record is None or record.labeled is None:
        labelled = [name for name, cls in DATASETS.items() if num_classes(cls()) > 0]
        raise ValueError(
            f"dataset {_dataset_name(cfg)} has no labels (labelled datasets: {', '.join(labelled)})"
        )
    points, labels = record.labeled(key, cfg, batch_size)
    return _embed(points, cfg, dim), labels


# ----------------------------------------------------------------------------------------------
# Labels, dimensions, images
# ----------------------------------------------------------------------------------------------


def _frequencies(cfg: Hashable) -> ArrayLike | None:
    record = lookup(cfg)
    if record is None or record.class_frequencies is None:
        return None
    return record.class_frequencies(cfg)


def class_frequencies(cfg: Hashable) -> np.ndarray:
    """The probability of each label under :func:`get_labeled_batch`.

    The mixture's weights (1/4 each), 1/2 and 1/2 for the moons, and for the digits the
    empirical frequencies of the 1797 images, which are drawn uniformly. A labelled dataset
    gives its own as its record's ``class_frequencies`` (a function of the config returning a
    1-D array that sums to 1).

    Args:
        cfg: a labelled dataset config.

    Returns:
        A new float64 array of shape (num_classes,) summing to 1.

    Raises:
        ValueError: the dataset has no labels.
    """
    frequencies = _frequencies(cfg)
    if frequencies is None:
        raise ValueError(f"dataset {_dataset_name(cfg)} has no labels, hence no class frequencies")
    return np.array(frequencies, dtype=np.float64)


def num_classes(cfg: Hashable) -> int:
    """The number K of labels of a dataset: 4 (mixture), 2 (moons), 10 (digits), 0 if unlabelled.

    A conditional model of the dataset has K classes plus the null class K.
    """
    frequencies = _frequencies(cfg)
    return 0 if frequencies is None else len(frequencies)


def _native_dim(cfg: Any) -> int | None:
    """The dimension of a dataset whose points are not 2-D; None for the 2-D (planar) ones."""
    record = lookup(cfg)
    if record is None or record.native_dim is None:
        return None
    return record.native_dim(cfg)


def is_planar(cfg: Any) -> bool:
    """Whether the dataset is 2-D data (embedded in a plane of R^D when ``ambient_dim`` > 2).

    True for every dataset but the digits, whose points are 64-D images, and a points file
    with D > 2 columns: for those :func:`projection`, :func:`to_plane` and :func:`from_plane` do
    not apply. A points or image config without a file (``path=""``) describes no data yet, so
    it is False for them too (without raising: code that lists the registered datasets with
    their default configs keeps working).

    Raises:
        FileNotFoundError, ValueError: a points config's file cannot be read (its D decides).
    """
    return not _lacks_file(cfg) and _native_dim(cfg) is None


def image_shape(cfg: Any) -> tuple[int, int] | None:
    """(height, width) if each point of the dataset is an image's pixels, row-major; else None.

    The digits' (8, 8): such data are drawn as image grids. Any other data (2-D, or a points
    file's D columns) are drawn as points, in their plane or by their first two coordinates.
    """
    record = lookup(cfg)
    if record is None or record.image_shape is None:
        return None
    return record.image_shape(cfg)


def data_dim(cfg: Any) -> int:
    """The dimension D of the points ``get_batch`` draws for ``cfg``.

    ``cfg.ambient_dim`` for 2-D data (a config without an ``ambient_dim`` attribute, such as a
    user's registered dataset, is 2-D), 64 for the digits.

    Raises:
        ValueError: ``cfg.ambient_dim`` is not an int >= 2 (the built-in configs already refuse
            such values when created).
    """
    native = _native_dim(cfg)
    if native is not None:
        return native
    dim = getattr(cfg, "ambient_dim", 2)
    if not (isinstance(dim, int) and dim >= 2):
        raise ValueError(f"ambient_dim={dim!r} must be an integer >= 2")
    return dim


# ----------------------------------------------------------------------------------------------
# Ambient dimension: the plane of R^D the 2-D data lives in
# ----------------------------------------------------------------------------------------------


def _require_plane(cfg: Any) -> None:
    if _lacks_file(cfg):
        _user_file(cfg)  # raises: pass --dataset.path
    if not is_planar(cfg):
        how = "draw it as images" if image_shape(cfg) else "plot its first two coordinates"
        raise ValueError(
            f"dataset {_dataset_name(cfg)} is {_native_dim(cfg)}-D data, not 2-D points in a "
            f"plane: it has no projection, to_plane or from_plane ({how})"
        )


@functools.lru_cache(maxsize=32)
def _orthonormal_plane(dim: int) -> np.ndarray:
    """The (dim, 2) plane of :func:`projection`, computed once per dimension."""
    if dim == 2:
        basis = np.eye(2)
    else:
        gaussian = np.random.default_rng(dim).standard_normal((dim, 2))
        basis, upper = np.linalg.qr(gaussian)
        # QR is unique up to the signs of the columns; fixing diag(R) > 0 makes it a function of
        # the Gaussian matrix alone (the Gram-Schmidt basis), whatever LAPACK returns.
        basis = basis * np.sign(np.diag(upper))
    basis = basis.astype(np.float32)
    basis.flags.writeable = False  # shared by every caller through the cache
    return basis


def projection(cfg: Any) -> np.ndarray:
    """The fixed (D, 2) matrix P with orthonormal columns that spans the data's plane in R^D.

    P is the Q factor (with R's diagonal made positive, so it is unique) of a (D, 2) standard
    Gaussian matrix drawn with ``numpy.random.default_rng(D)``: the same D always gives the same
    plane, on every machine, independent of any JAX key, and the plane is uniformly distributed
    over the 2-D subspaces of R^D. For D = 2, P is the identity, so embedding changes nothing.

    Args:
        cfg: a dataset config; D is :func:`data_dim` (cfg).

    Returns:
        A new float32 array of shape (D, 2) with P^T P = I (to float32 rounding).

    Raises:
        ValueError: the dataset is not 2-D data (digits).
    """
    _require_plane(cfg)
    return _orthonormal_plane(data_dim(cfg)).copy()


def from_plane(points: Float[ArrayLike, "n 2"], cfg: Any) -> Float[Array, "n dim"]:
    """Embeds 2-D plane coordinates u in R^D: x = u P^T. The identity for D = 2.

    Args:
        points: coordinates in the plane, shape (n, 2) (any leading batch shape).
        cfg: a dataset config; D is :func:`data_dim` (cfg).

    Returns:
        Points of shape (n, D), in the dtype of ``points``.

    Raises:
        ValueError: the dataset is not 2-D data (digits).
    """
    _require_plane(cfg)
    points = jnp.asarray(points)
    if data_dim(cfg) == 2:
        return points
    return points @ jnp.asarray(_orthonormal_plane(data_dim(cfg)).T, points.dtype)


def to_plane(points: Float[ArrayLike, "n dim"], cfg: Any) -> Float[Array, "n 2"]:
    """Coordinates u = x P of points of R^D in the data's plane. The identity for D = 2.

    For points on the plane (x = u P^T, as ``get_batch`` draws them) this recovers u exactly up
    to float32 rounding, because P^T P = I. For any other point it is the orthogonal projection
    onto the plane, and x - ``from_plane(to_plane(x))`` is the component off the plane.

    Args:
        points: points of R^D, shape (n, D) (any leading batch shape).
        cfg: a dataset config; D is :func:`data_dim` (cfg).

    Returns:
        Plane coordinates of shape (n, 2), in the dtype of ``points``.

    Raises:
        ValueError: the dataset is not 2-D data (digits).
    """
    _require_plane(cfg)
    points = jnp.asarray(points)
    if data_dim(cfg) == 2:
        return points
    return points @ jnp.asarray(_orthonormal_plane(data_dim(cfg)), points.dtype)
