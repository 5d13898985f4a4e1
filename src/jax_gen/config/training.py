"""Configs of training: the optimiser and the training loop."""

from dataclasses import dataclass

from jax_gen.config.base import (
    Validated,
    _check_non_negative,
    _check_positive,
    _check_unit_interval,
)


@dataclass(frozen=True)
class OptimizerConfig(Validated):
    """Adam (AdamW with ``weight_decay``) with linear warmup, cosine decay and global-norm
    gradient clipping."""

    learning_rate: float = 4e-3
    """Peak learning rate, reached at the end of warmup."""
    warmup_steps: int = 200
    """Steps of linear warmup from 0 to the peak learning rate."""
    final_lr_fraction: float = 0.05
    """Learning rate at the last step, as a fraction of the peak (cosine decay)."""
    max_grad_norm: float = 1.0
    """Gradients are rescaled so their global norm is at most this."""
    weight_decay: float = 0.0
    """Decoupled weight decay (AdamW): each step also shrinks every weight by
    learning rate x weight_decay of itself. 0 is plain Adam."""

    def validate(self) -> None:
        _check_positive(self, "learning_rate", "max_grad_norm")
        _check_non_negative(self, "warmup_steps", "weight_decay")
        _check_unit_interval(self, "final_lr_fraction", closed_right=True)


@dataclass(frozen=True)
class TrainConfig(Validated):
    """The training loop."""

    batch_size: int = 1024
    """Points per optimisation step."""
    train_steps: int = 5000
    """Number of optimisation steps."""
    log_interval: int = 250
    """Steps fused into one compiled call; losses reach the host once per interval."""
    seed: int = 0
    """Seed of every random draw (initialisation, data, noise)."""
    ema_decay: float = 0.999
    """Decay of the exponential moving average of the weights (0 disables it)."""
    conditional: bool = False
    """Train a class-conditional model on the dataset's labels."""
    label_dropout: float = 0.1
    """Probability a training label is replaced by the null class, so the one network also
    learns the unconditional model classifier-free guidance needs."""

    def validate(self) -> None:
        _check_positive(self, "batch_size", "train_steps", "log_interval")
        _check_unit_interval(self, "ema_decay")
        _check_unit_interval(self, "label_dropout", closed_right=True)
