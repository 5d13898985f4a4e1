"""Classifier-free guidance at sampling time: which points are guided, and what it costs."""

import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Int

from jax_gen.config import SamplerConfig


def guided_calls(cfg: SamplerConfig, conditional: bool) -> int:
    """Network calls per model call: 2 under classifier-free guidance with a scale other than
    0 or 1 (the unconditional and the conditional prediction), else 1 (:class:`Guided`)."""
    return 2 if conditional and cfg.guidance_scale not in (0.0, 1.0) else 1


def check_labels(
    labels: Int[ArrayLike, " n"] | None, num_samples: int, guidance_scale: float
) -> Int[Array, " n"] | None:
    """The class labels of the samples as int32, checked against the guidance asked for.

    Raises:
        ValueError: a guidance scale other than 1 without labels, or labels that are not
            ``num_samples`` ints.
    """
    if labels is None:
        if guidance_scale != 1.0:
            raise ValueError(f"guidance_scale={guidance_scale!r} needs class labels")
        return None
    labels = jnp.asarray(labels)
    if labels.shape != (num_samples,) or not jnp.issubdtype(labels.dtype, jnp.integer):
        raise ValueError(f"labels must be {num_samples} ints, got {labels.dtype}{labels.shape}")
    return labels.astype(jnp.int32)
