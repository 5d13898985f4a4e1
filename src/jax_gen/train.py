"""Training: one jitted step (loss, gradient, optax update, EMA), fused over many steps by scan.

No file I/O and no printing here. The loop hands control back to the host once per chunk of
``log_interval`` steps, which is where a caller may log, checkpoint or stop.

**Class-conditional training** (``TrainConfig.conditional``) draws labelled batches
(:func:`jax_gen.data.get_labeled_batch`), replaces each label by the null class K with
probability ``label_dropout`` (:func:`drop_labels`) and regresses model(t, z_t, label), so one
network learns the K conditional models and the unconditional one that classifier-free
guidance combines (Ho & Salimans, "Classifier-Free Diffusion Guidance", 2022). The model must
be built with ``num_classes=``:func:`model_num_classes` (dataset, train_cfg). Unconditional
training draws exactly the keys, batches and noise it did without this option.

**Devices.** The loop runs data parallel over a mesh of devices (:mod:`jax_gen.parallel`; all
devices by default): the state is replicated, each batch is split over the devices, and the
gradient is all-reduced by XLA. On one device this is the plain loop; on n devices the losses
and weights equal the one-device run's up to the order of float additions.
"""

import functools
from collections.abc import Callable, Iterator
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh
from jaxtyping import Array, ArrayLike, Bool, Float, Int, PRNGKeyArray

from jax_gen.config import DATASETS, DatasetConfig, OptimizerConfig, TrainConfig, name_of
from jax_gen.coupling import Pairs, draw_pairs
from jax_gen.data import get_batch, get_labeled_batch, num_classes
from jax_gen.parallel import check_batch_size, data_mesh, replicate, shard_batch
from jax_gen.strategies import Strategy

# The label-dropout key of a step is fold_in(step_key, _LABEL_DROPOUT_STREAM). A fold_in with a
# small number d equals split(step_key, n)[d] (JAX's partitionable threefry), which would reuse
# the batch or the loss key; no split in training comes near this one.
_LABEL_DROPOUT_STREAM = 0x6C616265
# A coupling draws the batch's source points with fold_in(loss_key, _COUPLING_STREAM).
_COUPLING_STREAM = 0x636F7570


class TrainState(eqx.Module):
    """Everything that changes during training (all arrays, so it can be a scan carry)."""

    model: eqx.Module
    ema_model: eqx.Module
    opt_state: optax.OptState
    step: Int[Array, ""]


class Chunk(NamedTuple):
    """What one fused chunk of training returns to the host."""

    state: TrainState
    losses: Float[Array, " steps"]


@functools.cache
def make_optimizer(cfg: OptimizerConfig, train_steps: int) -> optax.GradientTransformation:
    """Adam (AdamW when ``weight_decay`` > 0) with global-norm clipping and a warmup-then-cosine
    learning rate.

    The rate rises linearly from 0 to ``learning_rate`` over ``warmup_steps`` then follows a
    cosine down to ``final_lr_fraction * learning_rate`` at ``train_steps``.

    The same arguments give the same object: the compiled chunk (:func:`train_chunk`) is keyed
    on the optimizer's functions, so two runs of one config share their compiled code.
    """
    warmup = min(cfg.warmup_steps, max(train_steps - 1, 0))
    schedule = optax.warmup_cosine_decay_schedule(
        init_value=0.0,
        peak_value=cfg.learning_rate,
        warmup_steps=warmup,
        decay_steps=max(train_steps, warmup + 1),
        end_value=cfg.learning_rate * cfg.final_lr_fraction,
    )
    adam = (
        optax.adamw(schedule, weight_decay=cfg.weight_decay)
        if cfg.weight_decay > 0
        else optax.adam(schedule)
    )
    return optax.chain(optax.clip_by_global_norm(cfg.max_grad_norm), adam)


def _dataset_name(dataset: DatasetConfig) -> str:
    try:
        return name_of(dataset)
    except ValueError:
        return type(dataset).__name__


def check_conditioning(dataset: DatasetConfig, train_cfg: TrainConfig) -> None:
    """Raises ``ValueError`` if ``train_cfg.conditional`` asks for labels the dataset lacks.

    ``TrainConfig`` alone cannot tell (it does not know the dataset): call this wherever both
    configs are known, before tracing. :func:`train` and :func:`train_chunks` do.
    """
    if train_cfg.conditional and num_classes(dataset) == 0:
        labelled = [name for name, cls in DATASETS.items() if num_classes(cls()) > 0]
        raise ValueError(
            f"conditional=True needs a labelled dataset, but dataset {_dataset_name(dataset)} "
            f"has no labels (labelled datasets: {', '.join(labelled)})"
        )


def model_num_classes(dataset: DatasetConfig, train_cfg: TrainConfig) -> int:
    """The ``num_classes`` to build the model with: the dataset's K if conditional, else 0.

    What rebuilds a model from a stored config (a checkpoint's skeleton) passes this to
    :func:`jax_gen.models.create_model`, so K never needs storing.

    Raises:
        ValueError: ``train_cfg.conditional`` on an unlabelled dataset.
    """
    check_conditioning(dataset, train_cfg)
    return num_classes(dataset) if train_cfg.conditional else 0


def drop_labels(
    key: PRNGKeyArray, labels: Int[Array, " n"], null_class: int, rate: float
) -> Int[Array, " n"]:
    """Replaces each label by ``null_class`` independently with probability ``rate``.

    label' = null_class if b else label,  b ~ Bernoulli(rate), one draw per label.
    """
    drop = jax.random.bernoulli(key, rate, labels.shape)
    return jnp.where(drop, jnp.asarray(null_class, labels.dtype), labels)


def init_train_state(model: eqx.Module, optimizer: optax.GradientTransformation) -> TrainState:
    """The state at step 0: the EMA starts at the initial weights."""
    return TrainState(
        model=model,
        ema_model=model,
        opt_state=optimizer.init(eqx.filter(model, eqx.is_inexact_array)),
        step=jnp.zeros((), jnp.int32),
    )


def batch_loss(
    model: eqx.Module,
    strategy: Strategy,
    batch: Float[Array, "n d"],
    key: PRNGKeyArray,
    labels: Int[Array, " n"] | None = None,
    eps: Float[Array, "n d"] | None = None,
) -> Float[Array, ""]:
    """Mean of ``strategy.loss_fn`` over a batch, one independent key per point.

    With ``labels`` (one per point, the null class allowed) the loss is the class-conditional
    one; the per-point keys are the same with or without labels.

    Each point's source partner ``eps`` comes from one of three places: given with the batch
    (rows of a pair table, :class:`~jax_gen.coupling.Pairs`: reflow); else from the strategy's
    ``couple``, which pairs the batch with source points drawn with a key of its own (flow
    matching's optimal transport); else (``couple`` returns None: independent pairing) each
    ``loss_fn`` draws its own noise.
    """
    keys = jax.random.split(key, batch.shape[0])
    if eps is None:
        eps = strategy.couple(jax.random.fold_in(key, _COUPLING_STREAM), batch)
    # in_axes 0 over None (no labels, no coupling) maps nothing: loss_fn gets None.
    losses = jax.vmap(strategy.loss_fn, in_axes=(None, 0, 0, 0, 0))(model, batch, keys, labels, eps)
    return jnp.mean(losses)


@eqx.filter_jit
def _all_finite(arrays) -> Bool[Array, ""]:
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(a)) for a in jax.tree.leaves(arrays)]))


def is_finite(tree) -> bool:
    """Whether every floating-point array of ``tree`` (a model, a :class:`TrainState`) is finite.

    One compiled reduction of which only a boolean reaches the host, cheap enough to run after
    every chunk: a step can make the weights non-finite while every loss of its chunk, computed
    before that step's update, is still finite.
    """
    arrays = eqx.filter(tree, eqx.is_inexact_array)
    return not jax.tree.leaves(arrays) or bool(_all_finite(arrays))


def ema_update(ema_model: eqx.Module, model: eqx.Module, decay: Float[Array, ""]) -> eqx.Module:
    """ema <- decay * ema + (1 - decay) * model, on the floating-point arrays only."""
    ema_params, static = eqx.partition(ema_model, eqx.is_inexact_array)
    params = eqx.filter(model, eqx.is_inexact_array)
    mixed = jax.tree.map(lambda e, p: decay * e + (1 - decay) * p, ema_params, params)
    return eqx.combine(mixed, static)


def train_step(
    state: TrainState,
    key: PRNGKeyArray,
    *,
    strategy: Strategy,
    optimizer: optax.GradientTransformation,
    dataset: DatasetConfig,
    batch_size: int,
    ema_decay: float,
    conditional: bool = False,
    label_dropout: float = 0.1,
    mesh: Mesh | None = None,
    total_steps: Int[ArrayLike, ""] = 0,
    pairs: Pairs | None = None,
) -> tuple[TrainState, Float[Array, ""]]:
    """One optimisation step with the batch drawn on device. Returns the new state and loss.

    The EMA decay warms up as min(ema_decay, (1 + step) / (10 + step)), so short runs are not
    dominated by the initial weights.

    If ``conditional``, the batch comes with its labels (the same points, from the same key),
    each label is dropped to the null class with probability ``label_dropout`` using a key of
    its own, and the loss is conditioned on them; the batch and loss keys are those of the
    unconditional step.

    With a ``mesh`` the batch (and its labels) is split over its devices
    (:func:`jax_gen.parallel.shard_batch`); the state should be replicated on them.

    The loss is that of ``strategy.at_step(step, total_steps)``: the strategy as it trains at
    this step of a run of ``total_steps`` (itself unless it follows a curriculum; 0 means the
    length is unknown).

    With ``pairs`` the batch is ``batch_size`` rows of the table drawn with the batch key
    (:func:`~jax_gen.coupling.draw_pairs`), each x with its own source partner, instead of the
    dataset's points (unconditional only).
    """
    strategy = strategy.at_step(state.step, jnp.asarray(total_steps, jnp.int32))
    batch_key, loss_key = jax.random.split(key)
    eps = None
    if pairs is not None:
        batch, eps = draw_pairs(batch_key, pairs, batch_size)
        labels = None
    elif conditional:
        batch, labels = get_labeled_batch(batch_key, dataset, batch_size)
        dropout_key = jax.random.fold_in(key, _LABEL_DROPOUT_STREAM)
        labels = drop_labels(dropout_key, labels, num_classes(dataset), label_dropout)
    else:
        batch, labels = get_batch(batch_key, dataset, batch_size), None
    batch, labels, eps = shard_batch(batch, mesh), shard_batch(labels, mesh), shard_batch(eps, mesh)
    # A table's partners are bound to the loss; without one it is called as it always was.
    loss_fn = batch_loss if eps is None else functools.partial(batch_loss, eps=eps)
    loss, grads = eqx.filter_value_and_grad(loss_fn)(state.model, strategy, batch, loss_key, labels)
    updates, opt_state = optimizer.update(
        grads, state.opt_state, eqx.filter(state.model, eqx.is_inexact_array)
    )
    model = eqx.apply_updates(state.model, updates)
    step = state.step + 1
    decay = jnp.minimum(ema_decay, (1.0 + step) / (10.0 + step))
    ema_model = ema_update(state.ema_model, model, decay)
    return TrainState(model, ema_model, opt_state, step), loss


@eqx.filter_jit
def train_chunk(
    state: TrainState,
    key: PRNGKeyArray,
    num_steps: int,
    strategy: Strategy,
    optimizer: optax.GradientTransformation,
    dataset: DatasetConfig,
    batch_size: int,
    ema_decay: float,
    conditional: bool = False,
    label_dropout: float = 0.1,
    mesh: Mesh | None = None,
    total_steps: Int[ArrayLike, ""] = 0,
    pairs: Pairs | None = None,
) -> Chunk:
    """``num_steps`` training steps fused into one compiled ``lax.scan``.

    The key of step s is ``fold_in(key, s)``, so a run split into chunks of any size (or
    resumed from a saved state) draws exactly the same data and noise as one long run.
    ``conditional``, ``label_dropout``, ``mesh``, ``total_steps`` and ``pairs`` are those of
    :func:`train_step` (pass ``total_steps`` as an array: a Python int is compiled in; the
    table of ``pairs`` is an argument of the compiled call, not a constant in it).
    """
    dynamic, static = eqx.partition(state, eqx.is_array)

    def body(carry, _):
        current = eqx.combine(carry, static)
        new_state, loss = train_step(
            current,
            jax.random.fold_in(key, current.step),
            strategy=strategy,
            optimizer=optimizer,
            dataset=dataset,
            batch_size=batch_size,
            ema_decay=ema_decay,
            conditional=conditional,
            label_dropout=label_dropout,
            mesh=mesh,
            total_steps=total_steps,
            pairs=pairs,
        )
        return eqx.filter(new_state, eqx.is_array), loss

    dynamic, losses = jax.lax.scan(body, dynamic, length=num_steps)
    return Chunk(eqx.combine(dynamic, static), losses)


def train_chunks(
    state: TrainState,
    key: PRNGKeyArray,
    *,
    strategy: Strategy,
    optimizer: optax.GradientTransformation,
    dataset: DatasetConfig,
    train_cfg: TrainConfig,
    mesh: Mesh | None = None,
    pairs: Pairs | None = None,
) -> Iterator[Chunk]:
    """Trains from ``state.step`` to ``train_cfg.train_steps``, yielding after every chunk.

    Chunks are ``log_interval`` steps long (the last may be shorter). Nothing is synchronised
    with the host inside a chunk; the caller decides what to read from each yielded chunk.
    ``train_cfg.conditional`` trains on labels (the model must have been built with
    ``num_classes=model_num_classes(dataset, train_cfg)``).

    The state is replicated on the devices of ``mesh`` (default: all devices,
    :func:`jax_gen.parallel.data_mesh`) and every batch is split over them.

    With ``pairs`` (a table of (x, eps) rows, reflow's) every batch is drawn from the table
    instead of the dataset (:func:`train_step`); the table is replicated on the devices.

    Raises:
        ValueError: ``train_cfg.conditional`` on an unlabelled dataset, or with ``pairs``; or a
            batch size that does not divide evenly over the devices.
    """
    check_conditioning(dataset, train_cfg)
    if pairs is not None and train_cfg.conditional:
        raise ValueError("training on a table of pairs (reflow) is unconditional: conditional=True")
    mesh = data_mesh() if mesh is None else mesh
    check_batch_size(train_cfg.batch_size, mesh)
    state = replicate(state, mesh)
    pairs = None if pairs is None else replicate(pairs, mesh)
    step = int(state.step)
    while step < train_cfg.train_steps:
        num_steps = min(train_cfg.log_interval, train_cfg.train_steps - step)
        chunk = train_chunk(
            state,
            key,
            num_steps,
            strategy,
            optimizer,
            dataset,
            train_cfg.batch_size,
            train_cfg.ema_decay,
            train_cfg.conditional,
            train_cfg.label_dropout,
            mesh,
            jnp.asarray(train_cfg.train_steps, jnp.int32),
            pairs,
        )
        state = chunk.state
        step += num_steps
        yield chunk


def train(
    strategy: Strategy,
    model: eqx.Module,
    dataset: DatasetConfig,
    train_cfg: TrainConfig,
    optimizer_cfg: OptimizerConfig,
    key: PRNGKeyArray,
    on_chunk: Callable[[Chunk], None] | None = None,
    mesh: Mesh | None = None,
    pairs: Pairs | None = None,
) -> tuple[eqx.Module, eqx.Module, Float[Array, " steps"]]:
    """Trains ``model`` from scratch and returns the models alone.

    A convenience for a strategy and network built by hand. :func:`jax_gen.engine.fit` trains
    a config the same way and returns the whole state (optimizer state, step), saves
    checkpoints, stops on divergence and resumes.

    Args:
        strategy: what to learn (its ``loss_fn`` is averaged over each batch).
        model: the initial network; class-conditional (built with
            ``num_classes=model_num_classes(dataset, train_cfg)``) if ``train_cfg.conditional``.
        dataset: where batches come from (sampled on device inside the compiled loop).
        train_cfg: batch size, number of steps, chunk length, EMA decay, conditioning.
        optimizer_cfg: learning rate schedule and clipping.
        key: the key of every data and noise draw of training.
        on_chunk: called with each chunk's state and losses (e.g. to log progress).
        mesh: the devices to split each batch over (default: all of them).
        pairs: a table of (x, eps) rows to draw every batch from instead of the dataset
            (reflow's, :func:`jax_gen.engine.reflow_pairs`).

    Returns:
        The trained model, its EMA and the loss of every step, shape (train_steps,).

    Raises:
        ValueError: ``train_cfg.conditional`` on an unlabelled dataset (or with ``pairs``), or
            a batch size that does not divide evenly over the devices.
    """
    check_conditioning(dataset, train_cfg)
    optimizer = make_optimizer(optimizer_cfg, train_cfg.train_steps)
    state = init_train_state(model, optimizer)
    losses = []
    for chunk in train_chunks(
        state,
        key,
        strategy=strategy,
        optimizer=optimizer,
        dataset=dataset,
        train_cfg=train_cfg,
        mesh=mesh,
        pairs=pairs,
    ):
        state = chunk.state
        losses.append(chunk.losses)
        if on_chunk is not None:
            on_chunk(chunk)
    return state.model, state.ema_model, jnp.concatenate(losses)
