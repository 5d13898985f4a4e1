"""Jittable samplers of the training distributions: cat, moons, swiss roll, Gaussians, digits,
and users' own points files and silhouette images.

:func:`get_batch` draws a batch of i.i.d. points from the distribution a dataset config describes.
It dispatches on the config's type, so a new dataset needs only a config class and a registered
sampler::

    @get_batch.register(MyConfig)
    def _(key, cfg, batch_size):
        ...

(register with the explicit class: dispatch is on the second argument, which ``register``'s
annotation inference cannot see). Samplers are pure functions of the key, with the config and
the batch size static, so ``jax.jit(get_batch, static_argnums=(1, 2))`` compiles one sampler
per (config, batch size) and a training loop can draw batches inside ``lax.scan`` without a host
round trip. Points are float32, shape (batch, D) with D = :func:`data_dim` (cfg), whatever
``jax_enable_x64`` says.

**Labels.** The Gaussian mixture (4 classes: the component), the two moons (2 classes: the moon)
and the digits (10 classes: the digit) are labelled. :func:`get_labeled_batch` draws the points
together with their int32 labels in {0, ..., K - 1}, K = :func:`num_classes` (cfg), and
:func:`get_batch` returns exactly the same points for the same key (it is the labelled sampler
with the labels dropped), so the labels cost an unconditional run nothing and change none of
its draws. :func:`class_frequencies` gives the probability of each label. Cat, swiss roll and
users' points and images have no labels (``num_classes`` 0). A labelled dataset registers its
sampler, which returns (points, labels), with ``get_labeled_batch.register``, its label
probabilities with ``class_frequencies.register``, and a ``get_batch`` that drops the labels.

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
"""

import csv
import functools
import math
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float, Int, PRNGKeyArray
from PIL import Image, UnidentifiedImageError

from jax_gen.config import (
    DATASETS,
    POINTS_SUFFIXES,
    CatConfig,
    DigitsConfig,
    GaussianMixtureConfig,
    ImageConfig,
    MoonConfig,
    PointsConfig,
    SwissRollConfig,
    name_of,
)

_DTYPE = jnp.float32


def cat_image_path(cfg: CatConfig) -> Path:
    """The silhouette image a cat config reads.

    Args:
        cfg: the cat dataset config.

    Returns:
        ``cfg.image_path`` if set, else the cat shipped inside the package as package data,
        ``jax_gen/assets/cat.png`` (drawn by ``scripts/make_cat.py``), wherever the package is
        installed.
    """
    from importlib import resources

    if cfg.image_path:
        return Path(cfg.image_path).expanduser()
    packaged = resources.files("jax_gen") / "assets" / "cat.png"
    # Installed or editable, the package is a folder, so this is a real file, which the pixel
    # reader needs (its resolved path is the cache key). From a zip archive it would name a
    # member of the archive, and the reader's "image not found" error shows which.
    return Path(str(packaged))


_USER_DATA = (PointsConfig, ImageConfig)
_USER_FILE_KINDS = {PointsConfig: "a .npy or .csv file of N x D points", ImageConfig: "an image"}


def _lacks_file(cfg: Any) -> bool:
    """Whether ``cfg`` is a users'-data config whose file was not given (``path=""``)."""
    return isinstance(cfg, _USER_DATA) and not cfg.path


def _user_file(cfg: PointsConfig | ImageConfig) -> str:
    """The resolved path of a points or image config's file, as a string (a cache key).

    Raises:
        ValueError: ``cfg.path`` is empty (the class default), so there is no data.
    """
    if not cfg.path:
        raise ValueError(
            f"dataset {_dataset_name(cfg)} needs a file: pass --dataset.path FILE "
            f"({_USER_FILE_KINDS[type(cfg)]})"
        )
    return str(Path(cfg.path).expanduser().resolve())


def _dataset_name(cfg: Any) -> str:
    """The registry name of a built-in dataset config (``"cat"``), else its class name."""
    try:
        return name_of(cfg)
    except ValueError:
        return type(cfg).__name__


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


def _dispatch_on_config(func=None, *, labeled: bool = False):
    """``functools.singledispatch`` on the second argument (the config) instead of the first.

    The public signature keeps the key first, as everywhere in the library, so the dispatcher is
    consulted by hand, as ``functools.singledispatchmethod`` does for methods. The wrapper checks
    the batch size and embeds the sampler's points (the first of its two outputs if
    ``labeled``) with :func:`_embed`.
    """
    if func is None:
        return functools.partial(_dispatch_on_config, labeled=labeled)
    dispatcher = functools.singledispatch(func)

    @functools.wraps(func)
    def wrapper(key, cfg, batch_size):
        if not (isinstance(batch_size, int) and batch_size > 0):
            raise ValueError(f"batch_size={batch_size!r} must be a positive int")
        dim = data_dim(cfg)  # validates a registered config's ambient_dim before sampling
        out = dispatcher.dispatch(type(cfg))(key, cfg, batch_size)
        if labeled:
            points, labels = out
            return _embed(points, cfg, dim), labels
        return _embed(out, cfg, dim)

    wrapper.register = dispatcher.register
    wrapper.dispatch = dispatcher.dispatch
    wrapper.registry = dispatcher.registry
    return wrapper


@_dispatch_on_config
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
            ``GaussianMixtureConfig``, ``DigitsConfig``, or any type registered with
            ``get_batch.register``). Static under ``jit``; configs are frozen, hence hashable.
        batch_size: number of points, a positive Python int (static under ``jit``).

    Returns:
        float32 points of shape (batch_size, :func:`data_dim` (cfg)).

    Raises:
        TypeError: no sampler is registered for ``type(cfg)``.
        ValueError: ``batch_size`` is not a positive int, ``cfg.ambient_dim`` is not an int
            >= 2, or the sampler of a config with ``ambient_dim`` > 2 returned points that are
            not 2-D.
    """
    raise TypeError(f"no sampler registered for dataset config {type(cfg).__name__}")


# ----------------------------------------------------------------------------------------------
# Labels
# ----------------------------------------------------------------------------------------------


@_dispatch_on_config(labeled=True)
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
    labelled = [name for name, cls in DATASETS.items() if num_classes(cls()) > 0]
    raise ValueError(
        f"dataset {_dataset_name(cfg)} has no labels (labelled datasets: {', '.join(labelled)})"
    )


def _no_class_frequencies(cfg: Hashable) -> None:
    return None


_class_frequencies_dispatcher = functools.singledispatch(_no_class_frequencies)


def class_frequencies(cfg: Hashable) -> np.ndarray:
    """The probability of each label under :func:`get_labeled_batch`.

    The mixture's weights (1/4 each), 1/2 and 1/2 for the moons, and for the digits the
    empirical frequencies of the 1797 images, which are drawn uniformly. A labelled dataset
    registers its own with ``class_frequencies.register(MyConfig)`` (a function of the config
    returning a 1-D array that sums to 1).

    Args:
        cfg: a labelled dataset config.

    Returns:
        A new float64 array of shape (num_classes,) summing to 1.

    Raises:
        ValueError: the dataset has no labels.
    """
    frequencies = _class_frequencies_dispatcher.dispatch(type(cfg))(cfg)
    if frequencies is None:
        raise ValueError(f"dataset {_dataset_name(cfg)} has no labels, hence no class frequencies")
    return np.array(frequencies, dtype=np.float64)


class_frequencies.register = _class_frequencies_dispatcher.register
class_frequencies.registry = _class_frequencies_dispatcher.registry


def num_classes(cfg: Hashable) -> int:
    """The number K of labels of a dataset: 4 (mixture), 2 (moons), 10 (digits), 0 if unlabelled.

    A conditional model of the dataset has K classes plus the null class K.
    """
    frequencies = _class_frequencies_dispatcher.dispatch(type(cfg))(cfg)
    return 0 if frequencies is None else len(frequencies)


# ----------------------------------------------------------------------------------------------
# Ambient dimension: the plane of R^D the 2-D data lives in
# ----------------------------------------------------------------------------------------------


@functools.singledispatch
def _native_dim(cfg: Any) -> int | None:
    """The dimension of a dataset whose points are not 2-D; None for the 2-D (planar) ones."""
    return None


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


@functools.singledispatch
def image_shape(cfg: Any) -> tuple[int, int] | None:
    """(height, width) if each point of the dataset is an image's pixels, row-major; else None.

    The digits' (8, 8): such data are drawn as image grids. Any other data (2-D, or a points
    file's D columns) are drawn as points, in their plane or by their first two coordinates.
    """
    return None


def _require_plane(cfg: Any) -> None:
    if _lacks_file(cfg):
        _user_file(cfg)  # raises: pass --dataset.path
    if not is_planar(cfg):
        how = "draw it as images" if image_shape(cfg) else "plot its first two coordinates"
        raise ValueError(
            f"dataset {_dataset_name(cfg)} is {_native_dim(cfg)}-D data, not 2-D points in a "
            f"plane: it has no projection, to_plane or from_plane ({how})"
        )


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


# ----------------------------------------------------------------------------------------------
# Silhouettes: the cat, and users' images
# ----------------------------------------------------------------------------------------------


def _silhouette_path(cfg: CatConfig | ImageConfig) -> str:
    """The resolved image a cat or image config reads (the cache key of its pixels)."""
    if isinstance(cfg, CatConfig):
        return str(cat_image_path(cfg).resolve())
    return _user_file(cfg)


@functools.lru_cache(maxsize=8)
def _dark_pixel_centres(path: str, threshold: int) -> tuple[np.ndarray, float]:
    """Centres of the pixels darker than ``threshold``, and half a pixel's width, normalised.

    Column j, row i of an H x W image (L = max(H, W)) maps to

        x = (2 j + 1 - W) / L,    y = (H - 2 i - 1) / L,

    so the image's pixel edges span [-1, 1] along its longer side, the aspect ratio is kept, the
    image is centred at the origin and row 0 is at the top (+y). A pixel is 2 / L wide.

    Cached on (resolved path, threshold): the image is read once per process, so edits to the file
    after the first read are not seen.
    """
    if not Path(path).exists():
        raise FileNotFoundError(f"image not found: {path}")
    if Path(path).is_dir():
        raise ValueError(f"image {path} is a directory, not a file")
    try:
        with Image.open(path) as image:
            image.load()
            if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
                # A transparent background usually has black RGB underneath; read it as white.
                rgba = image.convert("RGBA")
                image = Image.new("RGBA", rgba.size, "white")
                image.alpha_composite(rgba)
            grey = np.asarray(image.convert("L"))
    except (UnidentifiedImageError, OSError) as err:
        message = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ValueError(f"cannot read image {path}: {message}") from err

    rows, cols = np.nonzero(grey < threshold)
    if rows.size == 0:
        raise ValueError(
            f"image {path} has no pixel darker than threshold={threshold} (grey levels 0 black "
            "to 255 white): the silhouette must be dark on a light or transparent background"
        )
    height, width = grey.shape
    longer = max(height, width)
    centres = np.stack([(2 * cols + 1 - width) / longer, (height - 2 * rows - 1) / longer], axis=1)
    centres = centres.astype(np.float32)
    centres.flags.writeable = False  # shared by every caller through the cache
    return centres, 1.0 / longer


@get_batch.register(CatConfig)
@get_batch.register(ImageConfig)
def _sample_silhouette(
    key: PRNGKeyArray, cfg: CatConfig | ImageConfig, batch_size: int
) -> Float[Array, "batch 2"]:
    """Uniform on the silhouette: a uniformly chosen dark pixel plus uniform jitter inside it.

    Every dark pixel is equally likely and the jitter is uniform on the pixel's square, so the
    density is exactly constant on the union of dark pixels (the silhouette at pixel resolution)
    and zero elsewhere. Points are the normalised pixel coordinates of
    :func:`_dark_pixel_centres` times ``cfg.scale``. The cat and a user's image share this
    sampler: the same file, threshold and scale give the same points, bit for bit.
    """
    path = _silhouette_path(cfg)
    # Host work happens here, at trace time; the pool becomes a constant of the compiled sampler.
    centres, half_pixel = _dark_pixel_centres(path, cfg.threshold)
    pool = jnp.asarray(centres, dtype=_DTYPE)

    key_pixel, key_jitter = jax.random.split(key)
    index = jax.random.randint(key_pixel, (batch_size,), 0, pool.shape[0])
    jitter = jax.random.uniform(
        key_jitter, (batch_size, 2), dtype=_DTYPE, minval=-half_pixel, maxval=half_pixel
    )
    return (pool[index] + jitter) * jnp.asarray(cfg.scale, _DTYPE)


# ----------------------------------------------------------------------------------------------
# Two moons
# ----------------------------------------------------------------------------------------------

_MOON_CENTRE = (0.5, 0.25)


@get_labeled_batch.register(MoonConfig)
def _sample_moons(
    key: PRNGKeyArray, cfg: MoonConfig, batch_size: int
) -> tuple[Float[Array, "batch 2"], Int[Array, " batch"]]:
    """scikit-learn's two moons, centred at the origin, times ``cfg.scale``, and their labels.

    ``sklearn.datasets.make_moons(noise=sigma)`` puts points on the outer moon
    (cos t, sin t) and the inner moon (1 - cos t, 0.5 - sin t), t in [0, pi], and adds
    N(0, sigma^2) to each coordinate. The inner moon is the outer one rotated by 180 degrees
    about c = (0.5, 0.25): (1 - cos t, 0.5 - sin t) = 2 c - (cos t, sin t). So the mixture of the
    two (with equal weights) is symmetric about c and its mean is exactly c. Here

        x = scale * (s * ((cos t, sin t) - c) + sigma * eps),
        s = +-1 with probability 1/2 each,  t ~ U[0, pi],  eps ~ N(0, I).

    Each point picks its moon by an independent fair coin (s), so points are i.i.d. draws of the
    mixture; make_moons instead splits the batch exactly in half and spaces t evenly, which has
    the same per-point distribution but correlated points. The noise is symmetric, so flipping
    its sign with s changes nothing. The label is the moon, as in make_moons: 0 for the outer
    one (s = +1), 1 for the inner one (s = -1).
    """
    key_moon, key_angle, key_noise = jax.random.split(key, 3)
    sign = jax.random.rademacher(key_moon, (batch_size, 1), dtype=_DTYPE)
    t = jax.random.uniform(key_angle, (batch_size,), dtype=_DTYPE, maxval=math.pi)
    outer = jnp.stack([jnp.cos(t), jnp.sin(t)], axis=1)
    centred = sign * (outer - jnp.asarray(_MOON_CENTRE, _DTYPE))
    noise = cfg.noise * jax.random.normal(key_noise, (batch_size, 2), dtype=_DTYPE)
    labels = (sign[:, 0] < 0).astype(jnp.int32)
    return (centred + noise) * jnp.asarray(cfg.scale, _DTYPE), labels


@get_batch.register(MoonConfig)
def _sample_moon_points(
    key: PRNGKeyArray, cfg: MoonConfig, batch_size: int
) -> Float[Array, "batch 2"]:
    return _sample_moons(key, cfg, batch_size)[0]


@class_frequencies.register(MoonConfig)
def _moon_frequencies(cfg: MoonConfig) -> np.ndarray:
    return np.array([0.5, 0.5])


# ----------------------------------------------------------------------------------------------
# Swiss roll
# ----------------------------------------------------------------------------------------------

_ROLL_MEAN = (2.0, 2.0 / (3.0 * math.pi))
_ROLL_MAX_RADIUS = 4.5 * math.pi


@get_batch.register(SwissRollConfig)
def _sample_swiss_roll(
    key: PRNGKeyArray, cfg: SwissRollConfig, batch_size: int
) -> Float[Array, "batch 2"]:
    """The 2-D swiss roll (columns 0 and 2 of scikit-learn's), centred, radius scaled to ``scale``.

    ``sklearn.datasets.make_swiss_roll(noise=sigma)`` draws s = 1.5 pi (1 + 2 u), u ~ U(0, 1),
    i.e. s uniform on [a, b] = [1.5 pi, 4.5 pi], and its columns 0 and 2 are
    (s cos s, s sin s) + N(0, sigma^2 I). The exact mean, from the antiderivatives
    int s cos s ds = s sin s + cos s and int s sin s ds = sin s - s cos s
    (sin a = -1, sin b = 1, cos a = cos b = 0, b - a = 3 pi):

        E[s cos s] = [s sin s + cos s]_a^b / (3 pi) = (4.5 pi + 1.5 pi) / (3 pi) = 2,
        E[s sin s] = [sin s - s cos s]_a^b / (3 pi) = (1 - (-1)) / (3 pi) = 2 / (3 pi).

    The point is then x = scale * ((s cos s, s sin s) + sigma eps - (2, 2 / (3 pi))) / (4.5 pi),
    4.5 pi being the largest radius of the noiseless spiral.
    """
    key_position, key_noise = jax.random.split(key)
    u = jax.random.uniform(key_position, (batch_size,), dtype=_DTYPE)
    s = 1.5 * math.pi * (1 + 2 * u)
    spiral = jnp.stack([s * jnp.cos(s), s * jnp.sin(s)], axis=1)
    noise = cfg.noise * jax.random.normal(key_noise, (batch_size, 2), dtype=_DTYPE)
    centred = spiral + noise - jnp.asarray(_ROLL_MEAN, _DTYPE)
    return centred * jnp.asarray(cfg.scale / _ROLL_MAX_RADIUS, _DTYPE)


# ----------------------------------------------------------------------------------------------
# Gaussian mixture
# ----------------------------------------------------------------------------------------------


# Component k is centred at scale * _MIXTURE_SIGNS[k]: k = 2 [s_1 < 0] + [s_2 < 0].
_MIXTURE_SIGNS = ((1.0, 1.0), (1.0, -1.0), (-1.0, 1.0), (-1.0, -1.0))


def gaussian_mixture_centres(cfg: GaussianMixtureConfig) -> np.ndarray:
    """The centres of the mixture's components, row k that of label k, in the plane.

    Args:
        cfg: the mixture's config.

    Returns:
        A new float64 array of shape (4, 2): scale (1, 1), (1, -1), (-1, 1), (-1, -1), in 2-D
        plane coordinates (:func:`from_plane` embeds them when ``ambient_dim`` > 2).
    """
    return cfg.scale * np.array(_MIXTURE_SIGNS)


@get_labeled_batch.register(GaussianMixtureConfig)
def _sample_gaussian_mixture(
    key: PRNGKeyArray, cfg: GaussianMixtureConfig, batch_size: int
) -> tuple[Float[Array, "batch 2"], Int[Array, " batch"]]:
    """Four equally likely Gaussians N((+-scale, +-scale), std^2 I), and the component drawn.

    The four centres are the four sign patterns of (scale, scale), so drawing the two signs as
    independent fair coins picks each component with probability 1/4:

        x = scale * (s_1, s_2) + std * eps,   s_i = +-1 each with probability 1/2,  eps ~ N(0, I),

    and the label is the component, k = 2 [s_1 < 0] + [s_2 < 0] (see
    :func:`gaussian_mixture_centres`).
    """
    key_component, key_noise = jax.random.split(key)
    signs = jax.random.rademacher(key_component, (batch_size, 2), dtype=_DTYPE)
    noise = jax.random.normal(key_noise, (batch_size, 2), dtype=_DTYPE)
    negative = (signs < 0).astype(jnp.int32)
    labels = 2 * negative[:, 0] + negative[:, 1]
    return cfg.scale * signs + cfg.std * noise, labels


@get_batch.register(GaussianMixtureConfig)
def _sample_gaussian_mixture_points(
    key: PRNGKeyArray, cfg: GaussianMixtureConfig, batch_size: int
) -> Float[Array, "batch 2"]:
    return _sample_gaussian_mixture(key, cfg, batch_size)[0]


@class_frequencies.register(GaussianMixtureConfig)
def _gaussian_mixture_frequencies(cfg: GaussianMixtureConfig) -> np.ndarray:
    return np.full(len(_MIXTURE_SIGNS), 1.0 / len(_MIXTURE_SIGNS))


# ----------------------------------------------------------------------------------------------
# Digits
# ----------------------------------------------------------------------------------------------

DIGITS_IMAGE_SHAPE = (8, 8)
"""Height and width of a digit: a point of R^64 is ``x.reshape(DIGITS_IMAGE_SHAPE)``."""


@functools.lru_cache(maxsize=1)
def _digits() -> tuple[np.ndarray, np.ndarray]:
    """The 1797 digits as (float32 images (1797, 64) in [-1, 1], int32 labels (1797,)).

    Grey levels g in {0, ..., 16} map to g / 8 - 1, exactly (both are float32-representable), so
    blank pixels are -1 and full ones 1. Read once per process from the copy bundled with
    scikit-learn.
    """
    # Imported here: scikit-learn takes a second to import, and only the digits need it.
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = (digits.data / 8.0 - 1.0).astype(np.float32)
    labels = digits.target.astype(np.int32)
    images.flags.writeable = False  # shared by every caller through the cache
    labels.flags.writeable = False
    return images, labels


@_native_dim.register(DigitsConfig)
def _digits_dim(cfg: DigitsConfig) -> int:
    return math.prod(DIGITS_IMAGE_SHAPE)


@image_shape.register(DigitsConfig)
def _digits_image_shape(cfg: DigitsConfig) -> tuple[int, int]:
    return DIGITS_IMAGE_SHAPE


@get_labeled_batch.register(DigitsConfig)
def _sample_digits(
    key: PRNGKeyArray, cfg: DigitsConfig, batch_size: int
) -> tuple[Float[Array, "batch 64"], Int[Array, " batch"]]:
    """Images drawn uniformly with replacement from the 1797 digits, with their labels.

    The empirical distribution of the data set: each image has probability 1 / 1797.
    """
    images, labels = _digits()
    # Host work happens here, at trace time; the arrays become constants of the compiled sampler.
    index = jax.random.randint(key, (batch_size,), 0, images.shape[0])
    return jnp.asarray(images)[index], jnp.asarray(labels)[index]


@get_batch.register(DigitsConfig)
def _sample_digit_points(
    key: PRNGKeyArray, cfg: DigitsConfig, batch_size: int
) -> Float[Array, "batch 64"]:
    return _sample_digits(key, cfg, batch_size)[0]


@class_frequencies.register(DigitsConfig)
def _digits_frequencies(cfg: DigitsConfig) -> np.ndarray:
    _, labels = _digits()
    return np.bincount(labels, minlength=10) / labels.size


# ----------------------------------------------------------------------------------------------
# Users' points: the rows of an N x D array in a .npy or .csv file
# ----------------------------------------------------------------------------------------------


def _read_csv(path: str) -> tuple[np.ndarray, list[int]]:
    """The numbers of a comma-separated file, and the line number of each row.

    Blank lines are skipped; the first non-blank line may be a header (it is skipped when any
    of its cells is not a number). Every other line must hold the same number of numbers.
    """
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:  # -sig: Excel's byte-order mark
            reader = csv.reader(f)
            lines = [(reader.line_num, row) for row in reader if any(c.strip() for c in row)]
    except UnicodeDecodeError as err:
        raise ValueError(f"cannot read points file {path}: it is not UTF-8 text") from err
    except csv.Error as err:
        raise ValueError(f"cannot read points file {path}: {err}") from err
    if lines and not all(_is_number(cell) for cell in lines[0][1]):
        lines = lines[1:]  # a header line
    if not lines:
        raise ValueError(f"points file {path} holds no points (no numeric lines)")
    first_line, first = lines[0]
    values = np.empty((len(lines), len(first)), dtype=np.float64)
    for i, (line, row) in enumerate(lines):
        if len(row) != len(first):
            raise ValueError(
                f"points file {path} is ragged: line {line} has {len(row)} value(s), line "
                f"{first_line} has {len(first)}"
            )
        try:
            values[i] = [float(cell) for cell in row]
        except ValueError:
            bad = next(cell for cell in row if not _is_number(cell))
            raise ValueError(
                f"points file {path}, line {line}: {bad!r} is not a number (expected "
                "comma-separated numbers)"
            ) from None
    return values, [line for line, _ in lines]


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


@functools.lru_cache(maxsize=8)
def _read_points(path: str) -> np.ndarray:
    """The raw float64 (N, D) array of a points file, checked: N >= 1, D >= 2, all finite.

    Cached on the resolved path: the file is read once per process, so edits to it after the
    first read are not seen.
    """
    file = Path(path)
    if not file.exists():
        raise FileNotFoundError(f"points file not found: {path}")
    if file.is_dir():
        raise ValueError(f"points file {path} is a directory, not a file")
    suffix = file.suffix.lower()
    if suffix not in POINTS_SUFFIXES:
        raise ValueError(
            f"points file {path}: unsupported type {suffix or '(no extension)'!r}; "
            f"use {' or '.join(POINTS_SUFFIXES)}"
        )
    if file.stat().st_size == 0:
        raise ValueError(f"points file {path} is empty")
    rows = None
    if suffix == ".csv":
        values, rows = _read_csv(path)
    else:
        try:
            values = np.load(path, allow_pickle=False)
        except (ValueError, OSError, EOFError) as err:
            message = str(err).splitlines()[0] if str(err) else type(err).__name__
            raise ValueError(f"cannot read points file {path} as a .npy array: {message}") from err
        if not isinstance(values, np.ndarray):
            raise ValueError(f"points file {path} is not a .npy array")
        if values.dtype.kind not in "biuf":
            raise ValueError(f"points file {path} holds {values.dtype} values, not real numbers")
    if values.ndim != 2:
        raise ValueError(
            f"points file {path} holds an array of shape {values.shape}; expected N x D "
            "(one point per row, D >= 2 columns)"
        )
    if values.shape[0] == 0:
        raise ValueError(f"points file {path} holds no points (shape {values.shape})")
    if values.shape[1] < 2:
        raise ValueError(
            f"points file {path} has {values.shape[1]} column(s) (shape {values.shape}); "
            "points need D >= 2 coordinates"
        )
    values = values.astype(np.float64)
    bad = ~np.isfinite(values)
    if bad.any():
        row = int(np.argmax(bad.any(axis=1)))
        where = f"line {rows[row]}" if rows is not None else f"row {row} (counting from 0)"
        raise ValueError(
            f"points file {path} has {int(bad.sum())} NaN or infinite value(s), the first "
            f"on {where}"
        )
    values.flags.writeable = False  # shared by every caller through the cache
    return values


@functools.lru_cache(maxsize=8)
def _normalised_points(path: str, scale: float) -> np.ndarray:
    """The points of :func:`load_points`, computed in float64 and rounded once to float32."""
    values = _read_points(path)
    low, high = values.min(axis=0), values.max(axis=0)
    half_extent = float(np.max(high - low)) / 2
    if not half_extent > 0:
        raise ValueError(
            f"points file {path}: all {values.shape[0]} points are the same point, so there is "
            "no extent to normalise"
        )
    points = ((values - (low + high) / 2) / half_extent * scale).astype(np.float32)
    points.flags.writeable = False  # shared by every caller through the cache
    return points


def load_points(cfg: PointsConfig) -> np.ndarray:
    """The normalised points of a points file: the support of the dataset's distribution.

    With lo and hi the per-coordinate minimum and maximum over the N rows,

        x = scale * (row - (lo + hi) / 2) / h,    h = max_j (hi_j - lo_j) / 2,

    so the bounding box is centred at the origin, its longer side spans [-scale, scale] and the
    aspect ratio is kept (one factor for every coordinate), as for the cat image.

    Args:
        cfg: a points config; its ``path`` names a ``.npy`` file holding an (N, D) numeric
            array or a ``.csv`` file of N lines of D comma-separated numbers (one non-numeric
            header line allowed), N >= 1, D >= 2.

    Returns:
        A new float32 array of shape (N, D).

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: no path was given, or the file is empty, unreadable, of another type, not
            N x D with D >= 2 (or a ragged CSV), holds NaN or infinities, or holds one point
            only (repeated or not).
    """
    return _normalised_points(_user_file(cfg), float(cfg.scale)).copy()


@_native_dim.register(PointsConfig)
def _points_dim(cfg: PointsConfig) -> int | None:
    dim = _read_points(_user_file(cfg)).shape[1]
    return None if dim == 2 else dim  # 2-D files are planar data, like the moons


@get_batch.register(PointsConfig)
def _sample_points(
    key: PRNGKeyArray, cfg: PointsConfig, batch_size: int
) -> Float[Array, "batch dim"]:
    """Rows of :func:`load_points` drawn uniformly with replacement: the empirical distribution.

    Each of the N points has probability 1 / N, as for the digits.
    """
    # Host work happens here, at trace time; the points become a constant of the sampler.
    points = _normalised_points(_user_file(cfg), float(cfg.scale))
    index = jax.random.randint(key, (batch_size,), 0, points.shape[0])
    return jnp.asarray(points)[index]


# ----------------------------------------------------------------------------------------------
# Exact log-densities, where they are known
# ----------------------------------------------------------------------------------------------


def _unknown_log_density(cfg: Hashable, x: Float[Array, "n 2"]) -> Float[Array, " n"]:
    raise NotImplementedError(f"the density of {type(cfg).__name__} is not known in closed form")


_log_density_dispatcher = functools.singledispatch(_unknown_log_density)


def log_density(cfg: Hashable, x: Float[ArrayLike, "n d"]) -> Float[Array, " n"]:
    """The exact log-density log p_data(x) of the dataset ``cfg`` describes, in nats per point.

    Known for the Gaussian mixture, the cat and users' images (whose sampler is exactly uniform
    on their dark pixels), in two dimensions. A new dataset's density is registered like its
    sampler, with the config first::

        @log_density.register(MyConfig)
        def _(cfg, x):
            ...

    Jittable with ``cfg`` static.

    Args:
        cfg: a dataset config.
        x: points, shape (n, 2).

    Returns:
        log p_data(x), shape (n,) (``-inf`` where the density is 0).

    Raises:
        NotImplementedError: the density is not known in closed form (moons, swiss roll, digits,
            a registered dataset without a density), or ``cfg.ambient_dim`` > 2, where the data
            lie on a plane of R^D and have no density.
    """
    if not is_planar(cfg):
        raise NotImplementedError(f"the density of {type(cfg).__name__} is not known")
    if data_dim(cfg) != 2:
        raise NotImplementedError(
            f"{type(cfg).__name__} with ambient_dim={data_dim(cfg)} lies on a plane: no density"
        )
    x = jnp.asarray(x)
    return _log_density_dispatcher.dispatch(type(cfg))(cfg, x.astype(jnp.result_type(x, float)))


log_density.register = _log_density_dispatcher.register
log_density.registry = _log_density_dispatcher.registry


def support_indicator(cfg: Hashable) -> Callable[[Float[ArrayLike, "n d"]], np.ndarray] | None:
    """``inside(points) -> bool (n,)``: whether points lie on the data's support, for the
    silhouettes (the cat, users' images), whose exact log-density is -inf off the shape; None
    where the support is not known exactly."""
    if not isinstance(cfg, CatConfig | ImageConfig) or not has_log_density(cfg):
        return None
    return lambda points: np.isfinite(np.asarray(log_density(cfg, points)))


def has_log_density(cfg: Hashable) -> bool:
    """Whether :func:`log_density` knows the density of ``cfg`` (2-D and registered)."""
    registered = _log_density_dispatcher.dispatch(type(cfg)) is not _unknown_log_density
    return registered and is_planar(cfg) and data_dim(cfg) == 2


@log_density.register(GaussianMixtureConfig)
def _log_density_gaussian_mixture(
    cfg: GaussianMixtureConfig, x: Float[Array, "n 2"]
) -> Float[Array, " n"]:
    """log p(x) = log sum_j (1/4) N(x; scale (s_1, s_2)_j, std^2 I), over the four sign patterns.

    Evaluated as logsumexp_j(-|x - m_j|^2 / (2 std^2)) - log 4 - log(2 pi std^2).
    """
    signs = jnp.asarray(_MIXTURE_SIGNS, x.dtype)
    squared = jnp.sum((x[:, None, :] - cfg.scale * signs) ** 2, axis=-1)
    log_normaliser = math.log(4.0) + math.log(2 * math.pi * cfg.std**2)
    return jax.scipy.special.logsumexp(-squared / (2 * cfg.std**2), axis=1) - log_normaliser


@functools.lru_cache(maxsize=8)
def _dark_pixel_grid(path: str, threshold: int) -> tuple[np.ndarray, np.ndarray, float]:
    """The dark pixels as a boolean grid: (mask, centre of cell (0, 0), pixel width), normalised.

    Rebuilt from :func:`_dark_pixel_centres`, so it describes exactly the pixels the sampler
    draws from: cell (a, b) is the pixel centred at origin + width (a, b).
    """
    centres, half_pixel = _dark_pixel_centres(path, threshold)
    width = 2 * half_pixel
    origin = centres.min(axis=0).astype(np.float64)
    cells = np.rint((centres - origin) / width).astype(np.int64)
    mask = np.zeros(tuple(cells.max(axis=0) + 1), dtype=bool)
    mask[cells[:, 0], cells[:, 1]] = True
    mask.flags.writeable = False
    return mask, origin, width


@log_density.register(CatConfig)
@log_density.register(ImageConfig)
def _log_density_silhouette(
    cfg: CatConfig | ImageConfig, x: Float[Array, "n 2"]
) -> Float[Array, " n"]:
    """log(1 / area) on the union of dark pixels, -inf elsewhere.

    The sampler draws a dark pixel uniformly and a uniform point inside it, so with m dark
    pixels of side w = scale * 2 / L the density is 1 / (m w^2) on them and 0 elsewhere. Points
    on a pixel's edge (a set of measure zero) are assigned to one of the two pixels.
    """
    mask, origin, width = _dark_pixel_grid(_silhouette_path(cfg), cfg.threshold)
    side = width * cfg.scale
    log_inside = -math.log(int(mask.sum()) * side**2)
    cell = jnp.floor((x / cfg.scale - jnp.asarray(origin, x.dtype)) / width + 0.5).astype(jnp.int32)
    in_grid = jnp.all((cell >= 0) & (cell < jnp.asarray(mask.shape)), axis=1)
    clipped = jnp.clip(cell, 0, jnp.asarray(mask.shape) - 1)
    dark = jnp.asarray(mask)[clipped[:, 0], clipped[:, 1]] & in_grid
    return jnp.where(dark, jnp.asarray(log_inside, x.dtype), -jnp.inf)


__all__ = [
    "DIGITS_IMAGE_SHAPE",
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
    "num_classes",
    "projection",
    "to_plane",
]
