"""Silhouettes: points uniform on the dark pixels of an image, the cat's or a user's, with their
exact log-density."""

import functools
import math
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray
from PIL import Image, UnidentifiedImageError

from jax_gen.config import CatConfig, ImageConfig
from jax_gen.data.registry import _DTYPE, Dataset, _user_file, register


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


register(
    CatConfig,
    Dataset(
        sample=_sample_silhouette,
        log_density=_log_density_silhouette,
        support_from_density=True,
    ),
)
register(
    ImageConfig,
    Dataset(
        sample=_sample_silhouette,
        log_density=_log_density_silhouette,
        support_from_density=True,
        file_kind="an image",
    ),
)
