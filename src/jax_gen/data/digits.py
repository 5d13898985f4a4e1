"""scikit-learn's bundled 8x8 handwritten digits: 64-D points with labels 0-9."""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int, PRNGKeyArray

from jax_gen.config import DigitsConfig
from jax_gen.data.registry import Dataset, register

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


def _digits_dim(cfg: DigitsConfig) -> int:
    return math.prod(DIGITS_IMAGE_SHAPE)


def _digits_image_shape(cfg: DigitsConfig) -> tuple[int, int]:
    return DIGITS_IMAGE_SHAPE


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


def _digits_frequencies(cfg: DigitsConfig) -> np.ndarray:
    _, labels = _digits()
    return np.bincount(labels, minlength=10) / labels.size


register(
    DigitsConfig,
    Dataset(
        labeled=_sample_digits,
        class_frequencies=_digits_frequencies,
        native_dim=_digits_dim,
        image_shape=_digits_image_shape,
    ),
)
