"""Classifier-free guidance: the guided model, which points are guided, and what it costs."""

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float, Int

from jax_gen.config import SamplerConfig


class Guided(eqx.Module):
    """Classifier-free guidance of a class-conditional model, as a model ``f(t, x)``:

        f(t, x) = m(t, x, null) + w [m(t, x, y) - m(t, x, null)],

    so w = 0 is exactly the unconditional network and w = 1 exactly the conditional one (one
    network call each), and w > 1 pushes the prediction further towards class y (two calls).
    The rule is linear in the network's output, and every conversion between x, eps, v and the
    score is affine in that output at a fixed (t, z), so guiding the prediction guides all of
    them by the same rule, whatever the parameterization: for eps-prediction it is the guided
    score of Ho & Salimans, whose (1 + w') eps_y - w' eps_null is w = 1 + w'.

    Reference: Ho & Salimans, "Classifier-Free Diffusion Guidance" (2022), eq. 6.
    """

    model: eqx.Module
    label: Int[Array, ""]
    scale: float = eqx.field(static=True)

    def __init__(self, model: eqx.Module, label: Int[ArrayLike, ""], scale: float = 1.0):
        self.model = model
        self.label = jnp.asarray(label, jnp.int32)
        self.scale = float(scale)

    def __call__(self, t: Float[ArrayLike, ""], x: Float[Array, " dim"]) -> Float[Array, " dim"]:
        if self.scale == 1.0:
            return self.model(t, x, label=self.label)
        unconditional = self.model(t, x, label=None)
        if self.scale == 0.0:
            return unconditional
        conditional = self.model(t, x, label=self.label)
        return unconditional + self.scale * (conditional - unconditional)


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
