"""Running a config: :func:`fit` trains it and hands back the whole state; the keys of a run.

``fit`` is the one training loop of the library: the command line's ``train`` and
``train --resume``, the benchmarks and the tutorials call it. It reads top to bottom::

    keys    = run_keys(seed)                       # named streams: init, train, sample, ...
    state   = init_state(config)                   # step 0, or the state to continue from
    pairs   = training_pairs(config, keys)         # reflow only: the teacher's pairs, once
    for chunk in train_chunks(...):                # log_interval steps fused in one compiled scan
        check the chunk is finite, keep it, maybe save a checkpoint, call on_chunk
    save the final checkpoint; return the state

The same config and seed give the same bits, whichever tool runs them and however the run is
split into chunks or resumed.
"""

import dataclasses
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh
from jaxtyping import Float, PRNGKeyArray

from jax_gen import checkpoint
from jax_gen.config import (
    DatasetConfig,
    ExperimentConfig,
    FlowMatchingStrategyConfig,
    SamplerConfig,
    name_of,
    source_of,
    time_frequency,
    time_inputs,
)
from jax_gen.coupling import Pairs
from jax_gen.data import data_dim as dataset_dim
from jax_gen.data import get_batch
from jax_gen.models import create_model
from jax_gen.sampling import sample
from jax_gen.strategies import Strategy, create_strategy, measure_on_data
from jax_gen.strategies.flow_matching import check_source as check_source_dim
from jax_gen.train import (
    TrainState,
    init_train_state,
    is_finite,
    make_optimizer,
    model_num_classes,
    train_chunks,
)

# ----------------------------------------------------------------------------------------------
# Keys
# ----------------------------------------------------------------------------------------------


def key_stream(key: PRNGKeyArray, name: str) -> PRNGKeyArray:
    """The key of the named stream ``name`` under ``key``: ``fold_in(key, crc32(name))``.

    ``split(key, n)[i]`` equals ``fold_in(key, i)`` (JAX's partitionable threefry), so keys
    derived by splitting with small indices collide across uses: the evaluation's fresh data
    once were, bit for bit, the first training batch. A stream named by its CRC-32 (a number in
    the billions) shares no key with a split of the same parent, nor with another name.
    """
    return jax.random.fold_in(key, zlib.crc32(name.encode()))


class RunKeys(NamedTuple):
    """The independent keys of one run, all from its seed, one named stream each."""

    init: PRNGKeyArray
    """Initialises the network."""
    train: PRNGKeyArray
    """Every data and noise draw of training (step s uses ``fold_in(train, s)``)."""
    sample: PRNGKeyArray
    """Samples drawn after training."""
    evaluate: PRNGKeyArray
    """Fresh data and the metrics' own draws after training."""


def run_keys(seed: int = 0, *, key: PRNGKeyArray | None = None) -> RunKeys:
    """The keys of a run with this seed: one convention, so runs agree wherever they start.

    ``init`` and ``train`` are the first two keys of ``split(key(seed), 3)``; ``sample`` and
    ``evaluate`` are the named streams of :func:`key_stream`.

    Args:
        seed: the run's seed (``TrainConfig.seed``).
        key: a root key to use instead of ``key(seed)``.
    """
    root = jax.random.key(seed) if key is None else key
    init, train, _ = jax.random.split(root, 3)
    return RunKeys(init, train, key_stream(root, "sample"), key_stream(root, "evaluate"))


# ----------------------------------------------------------------------------------------------
# Reflow: the teacher's pairs
# ----------------------------------------------------------------------------------------------


class Teacher(NamedTuple):
    """A reflow teacher, loaded from its checkpoint."""

    strategy: Strategy
    """The teacher's strategy, as its checkpoint's config builds it."""
    model: eqx.Module
    """Its EMA model: the one ``generate`` samples by default."""
    data_dim: int
    """Dimension of its points."""


REFLOW_CHUNK = 10_000
"""Pairs made per compiled call of the teacher's sampler: bounds the memory of the trajectory
the call returns ((steps + 1) x REFLOW_CHUNK x D floats)."""


def is_reflow(config: ExperimentConfig) -> bool:
    """Whether ``config`` trains a flow by reflow (on its teacher's pairs)."""
    strategy = config.strategy
    return isinstance(strategy, FlowMatchingStrategyConfig) and strategy.coupling == "reflow"


def load_teacher(config: ExperimentConfig) -> Teacher | None:
    """The teacher of a reflow config, loaded and checked; None for any other config.

    Raises:
        ValueError: (one line) the teacher's checkpoint is missing or unreadable, its points
            have another dimension than the dataset's, it has no velocity (a consistency
            model's jumps are no ODE), or its source is not the student's N(0, I) (score
            matching's N(m, sigma_max^2 I)); or the student is to train class-conditionally.
    """
    if not is_reflow(config):
        return None
    path = config.strategy.teacher_path
    try:
        saved = checkpoint.load(path)
    except checkpoint.CheckpointError as err:
        raise ValueError(f"reflow teacher: {err}") from err
    data_dim = dataset_dim(config.dataset)
    if saved.data_dim != data_dim:
        raise ValueError(
            f"reflow teacher {path} draws {saved.data_dim}-dimensional points but dataset "
            f"{name_of(config.dataset)} has {data_dim} dimensions"
        )
    teacher = create_strategy(saved.config.strategy)
    student = create_strategy(config.strategy)
    kind = name_of(saved.config.strategy)
    if not teacher.has_velocity():
        raise ValueError(
            f"reflow teacher {path} ({kind}) has no velocity to integrate; use a flow matching "
            "or DDPM checkpoint"
        )
    # The pairs' eps are the teacher's source draws: the flow samples from its own source.
    if teacher.source_name() != student.source_name():
        raise ValueError(
            f"reflow teacher {path} ({kind}) starts from {teacher.source_name()}, the flow from "
            f"{student.source_name()}; use a flow matching or DDPM checkpoint with its source"
        )
    if config.train.conditional:
        raise ValueError("reflow trains unconditionally on its teacher's pairs: conditional=True")
    return Teacher(teacher, saved.state.ema_model, saved.data_dim)


def reflow_pairs(
    teacher: Strategy,
    model: eqx.Module,
    key: PRNGKeyArray,
    num_pairs: int,
    data_dim: int,
    sampler: SamplerConfig,
) -> Pairs:
    """Reflow's pairs: source points eps ~ N(0, I) and the end points x of the teacher's ODE
    started at them, x = eps + integral_0^1 v(t, z_t) dt, integrated by ``sampler``.

    The pairs are made in chunks of n = min(``num_pairs``, :data:`REFLOW_CHUNK`): chunk c is
    exactly the teacher's ``sample(teacher, model, fold_in(key, c), n, data_dim, sampler)``,
    its source frame as eps and its samples as x, and the table is the first ``num_pairs``
    rows of the chunks in order. So eps's marginal is the source's and x's is what the teacher
    samples with this sampler, and each x is the ODE's end point of its own eps.

    Args:
        teacher: the teacher's strategy (with a velocity).
        model: its network (the EMA model).
        key: the key of every source draw.
        num_pairs: M, the table's length.
        data_dim: D.
        sampler: a deterministic (ODE) sampler and its steps.

    Returns:
        The table, x and eps of shape (M, D).
    """
    size = min(num_pairs, REFLOW_CHUNK)
    xs, sources = [], []
    for c in range(-(-num_pairs // size)):
        chunk_key = jax.random.fold_in(key, c)
        result = sample(teacher, model, chunk_key, size, data_dim, sampler, keep_trajectory=True)
        xs.append(result.samples)
        sources.append(result.trajectory[0])
    return Pairs(jnp.concatenate(xs)[:num_pairs], jnp.concatenate(sources)[:num_pairs])


def training_pairs(config: ExperimentConfig, keys: RunKeys) -> Pairs | None:
    """The table a reflow config trains on (None for any other config).

    The teacher (:func:`load_teacher`) integrates its velocity with the config's
    ``teacher_sampler`` over ``teacher_steps`` steps (default: its own number of transport
    steps) from ``reflow_pairs`` source points (:func:`reflow_pairs`) drawn with the
    ``"reflow"`` stream of the run's ``train`` key (:func:`key_stream`; the steps' keys
    ``fold_in(train, step)`` stay far below the stream's number). The table is made once,
    before the first step, and again, bit for bit, when the run is resumed: a resumed reflow
    needs its teacher.
    """
    teacher = load_teacher(config)
    if teacher is None:
        return None
    cfg = config.strategy
    sampler = SamplerConfig(sampler=cfg.teacher_sampler, num_sampling_steps=cfg.teacher_steps)
    return reflow_pairs(
        teacher.strategy,
        teacher.model,
        key_stream(keys.train, "reflow"),
        cfg.reflow_pairs,
        teacher.data_dim,
        sampler,
    )


# ----------------------------------------------------------------------------------------------
# The state of a run
# ----------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class FitState:
    """The complete state of a run: what a checkpoint stores and what :func:`fit` continues.

    The fields are those of :class:`jax_gen.checkpoint.Checkpoint`, so a loaded checkpoint can
    be passed wherever a ``FitState`` is read.
    """

    config: ExperimentConfig
    """What was trained (a checkpoint stores it; the model is rebuilt from it)."""
    state: TrainState
    """Model, EMA model, optimizer state and step: the arrays training changes."""
    losses: Float[np.ndarray, " step"]
    """Loss of every step trained so far, on the host, float32."""
    data_dim: int
    """Dimension D of the data points."""

    @property
    def model(self) -> eqx.Module:
        return self.state.model

    @property
    def ema_model(self) -> eqx.Module:
        return self.state.ema_model

    @property
    def opt_state(self) -> optax.OptState:
        return self.state.opt_state

    @property
    def step(self) -> int:
        return int(self.state.step)

    def save(self, path: Path) -> None:
        """Writes the checkpoint atomically (:func:`jax_gen.checkpoint.save`).

        In a run over several hosts only process 0 writes; the others write nothing.
        """
        if jax.process_index() == 0:
            checkpoint.save(path, self.config, self.state, self.losses, self.data_dim)


class Progress(NamedTuple):
    """What :func:`fit` hands to ``on_chunk`` after every chunk of training."""

    state: TrainState
    """The state after the chunk."""
    losses: Float[np.ndarray, " steps"]
    """The chunk's loss per step, on the host."""
    step: int
    """Steps trained after the chunk (``previous step + len(losses)``)."""
    strategy: Strategy
    """The strategy being trained (to sample the model mid-run)."""


class TrainingDiverged(ValueError):
    """A chunk's losses or weights were not all finite. Nothing non-finite was kept or saved.

    Attributes:
        state: the state before the chunk (the last finite one).
    """

    def __init__(self, message: str, state: FitState):
        super().__init__(message)
        self.state = state


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during :func:`fit`.

    Attributes:
        state: the state after the last whole chunk (a checkpoint of it can be resumed).
    """

    def __init__(self, state: FitState):
        super().__init__(f"interrupted at step {state.step}")
        self.state = state


def check_dataset(dataset: DatasetConfig) -> None:
    """Draws one batch eagerly, so a missing or bad image or points file fails now, with its
    own message, rather than inside a compiled loop."""
    get_batch(jax.random.key(0), dataset, 1)


def check_source(config: ExperimentConfig) -> None:
    """Raises ``ValueError`` (one line) if the strategy starts from a dataset that cannot start a
    path to ``config.dataset``: a missing or bad file, or points of another dimension."""
    source = source_of(config.strategy)
    if source is None:
        return
    if getattr(source, "path", None) == "":  # a users'-data config without its file
        raise ValueError(f"source {name_of(source)} needs a file: pass --source.path FILE")
    check_dataset(source)
    check_source_dim(source, dataset_dim(config.dataset))


MEASURE_POINTS = 10_000
"""Data points a strategy's data statistics (score matching's source mean) are measured on."""


def measured_config(
    config: ExperimentConfig, *, seed: int | None = None, key: PRNGKeyArray | None = None
) -> ExperimentConfig:
    """``config`` with what its strategy measures on the data filled in: the config a run
    trains and its checkpoint stores.

    The statistics (:func:`jax_gen.strategies.measure_on_data`: score matching's source mean)
    are measured on ``MEASURE_POINTS`` fresh points of the ``init`` key's ``"measure"``
    stream; a model that leaves its time embedding's top frequency unset gets the strategy's
    (:func:`jax_gen.config.time_frequency`: MeanFlow's 3). A config measured already, or of a
    strategy that measures nothing, comes back equal.

    Args:
        config: what to train.
        seed: the run's seed (default: ``config.train.seed``).
        key: a root key to use instead of the seed's (see :func:`run_keys`).
    """
    keys = run_keys(config.train.seed if seed is None else seed, key=key)
    points = get_batch(key_stream(keys.init, "measure"), config.dataset, MEASURE_POINTS)
    strategy = measure_on_data(config.strategy, np.asarray(points))
    model = config.model
    if model.time_max_frequency is None and time_frequency(strategy) is not None:
        model = dataclasses.replace(model, time_max_frequency=time_frequency(strategy))
    return dataclasses.replace(config, strategy=strategy, model=model)


def init_state(
    config: ExperimentConfig, *, seed: int | None = None, key: PRNGKeyArray | None = None
) -> FitState:
    """The state at step 0: the network initialised with the run's ``init`` key, its EMA equal
    to it, the optimizer's state fresh, and the config measured (:func:`measured_config`), so
    the checkpoint stores what the strategy measured on the data.

    Args:
        config: what to train.
        seed: the run's seed (default: ``config.train.seed``).
        key: a root key to use instead of the seed's (see :func:`run_keys`).
    """
    keys = run_keys(config.train.seed if seed is None else seed, key=key)
    data_dim = dataset_dim(config.dataset)
    config = measured_config(config, seed=seed, key=key)
    num_classes = model_num_classes(config.dataset, config.train)
    model = create_model(
        config.model, keys.init, data_dim, num_classes, time_inputs(config.strategy)
    )
    optimizer = make_optimizer(config.optimizer, config.train.train_steps)
    return FitState(config, init_train_state(model, optimizer), np.zeros(0, np.float32), data_dim)


def _stored_step(path: Path | None) -> int | None:
    """The step of the checkpoint at ``path``, or None if there is none readable."""
    if path is None:
        return None
    try:
        return int(checkpoint.read_header(path)["step"])
    except (checkpoint.CheckpointError, KeyError, TypeError, ValueError):
        return None


def _divergence(losses: np.ndarray, state: TrainState, previous_step: int) -> str | None:
    """Where a chunk stopped being finite (None if it did not): its first non-finite loss, or
    its weights (a step can make them non-finite while every loss of the chunk, computed before
    that step's update, is still finite)."""
    bad = np.flatnonzero(~np.isfinite(losses))
    if bad.size:
        return f"loss {losses[bad[0]]} at step {previous_step + 1 + bad[0]}"
    if not is_finite(state):
        return f"non-finite weights after step {previous_step + losses.size}"
    return None


# ----------------------------------------------------------------------------------------------
# fit
# ----------------------------------------------------------------------------------------------


def fit(
    config: ExperimentConfig,
    *,
    seed: int | None = None,
    key: PRNGKeyArray | None = None,
    state: FitState | None = None,
    strategy: Strategy | None = None,
    mesh: Mesh | None = None,
    on_chunk: Callable[[Progress], None] | None = None,
    checkpoint_path: Path | None = None,
    checkpoint_every: int = 0,
    check_finite: bool = True,
) -> FitState:
    """Trains ``config`` from step 0, or from ``state``, to ``config.train.train_steps``.

    Training runs in chunks of ``config.train.log_interval`` steps, each one compiled call
    (:func:`jax_gen.train.train_chunks`); the host sees the losses once per chunk. Step s draws
    its data and noise with ``fold_in(run_keys(seed).train, s)``, so a resumed run, or one cut
    into other chunks, gives the same bits as one uninterrupted run.

    A reflow config (flow matching with ``coupling="reflow"``) trains on its teacher's pairs
    instead of the dataset: the table is made before the first step (:func:`training_pairs`).

    Args:
        config: what to train: strategy, model, dataset, optimizer, training.
        seed: the run's seed (default: ``config.train.seed``; another value is written into the
            returned config, so its checkpoint records the seed that made it).
        key: a root key to use instead of ``key(seed)`` (the config's seed then does not
            describe the run).
        state: the state to continue from (a :class:`FitState`, or a loaded
            :class:`~jax_gen.checkpoint.Checkpoint`); its config must be ``config``, measured
            (:func:`measured_config`; a checkpoint's and :func:`init_state`'s are).
        strategy: the strategy to train (default: ``create_strategy(config.strategy)``), for
            one the config cannot describe; a checkpoint still stores ``config``.
        mesh: the devices to split each batch over (default: all of them); the result is the
            same on one device or several, up to the order of float additions.
        on_chunk: called after every chunk with its :class:`Progress` (to log, plot, stop).
        checkpoint_path: where to save the state: at the end and every ``checkpoint_every``
            steps, atomically, never a non-finite state.
        checkpoint_every: also save every this many steps (0: at the end only).
        check_finite: raise :class:`TrainingDiverged` at the first chunk whose losses or
            weights are not finite (False: train on, for a benchmark that reports NaN).

    Returns:
        The complete state after the last step: config (measured, :func:`measured_config`),
        model, EMA model, optimizer state, step, every step's loss and the data's dimension.

    Raises:
        TrainingDiverged: a chunk was not finite (``check_finite``); the state before it is
            attached, and the checkpoint at ``checkpoint_path`` is the last one saved.
        Interrupted: Ctrl-C; the state after the last whole chunk is attached (nothing is
            saved: the caller decides).
        ValueError: an invalid argument, a conditional config on an unlabelled dataset, a
            batch size that does not divide evenly over the devices, or a reflow teacher that
            cannot teach (:func:`load_teacher`).
    """
    if seed is not None and key is not None:
        raise ValueError("give fit a seed or a key, not both")
    if checkpoint_every < 0:
        raise ValueError(f"{checkpoint_every=} must be >= 0")
    if seed is not None and seed != config.train.seed:
        config = dataclasses.replace(config, train=dataclasses.replace(config.train, seed=seed))
    train_cfg = config.train
    check_dataset(config.dataset)
    check_source(config)
    keys = run_keys(train_cfg.seed, key=key)
    if state is None:
        current = init_state(config, key=key)
        config = current.config  # with what the strategy measured on the data
        saved_step = None
    else:
        if state.config != config and state.config != measured_config(config, key=key):
            raise ValueError("the state to continue was trained with another config")
        config = state.config
        losses = np.asarray(state.losses, np.float32)
        current = FitState(config, state.state, losses, state.data_dim)
        saved_step = _stored_step(checkpoint_path)
    strategy = create_strategy(config.strategy) if strategy is None else strategy
    optimizer = make_optimizer(config.optimizer, train_cfg.train_steps)
    pairs = training_pairs(config, keys)

    train_state, step, losses = current.state, current.step, [current.losses]

    def snapshot() -> FitState:
        return FitState(config, train_state, np.concatenate(losses), current.data_dim)

    def save() -> None:
        nonlocal saved_step
        snapshot().save(checkpoint_path)
        saved_step = step

    try:
        for chunk in train_chunks(
            train_state,
            keys.train,
            strategy=strategy,
            optimizer=optimizer,
            dataset=config.dataset,
            train_cfg=train_cfg,
            mesh=mesh,
            pairs=pairs,
        ):
            chunk_losses = np.asarray(chunk.losses)  # the one host sync per chunk
            where = _divergence(chunk_losses, chunk.state, step) if check_finite else None
            if where is not None:
                kept = "nothing was written"
                if checkpoint_path is not None and saved_step is not None:
                    kept = f"{checkpoint_path} keeps step {saved_step}"
                raise TrainingDiverged(
                    f"training diverged ({where}); try a smaller --optimizer.learning-rate than "
                    f"{config.optimizer.learning_rate:g} (or a smaller "
                    f"--optimizer.max-grad-norm); {kept}",
                    snapshot(),
                )
            previous_step = step
            train_state, step = chunk.state, step + chunk_losses.size
            losses.append(chunk_losses)
            every = checkpoint_every
            crossed = every and step // every > previous_step // every
            if checkpoint_path is not None and crossed and step < train_cfg.train_steps:
                save()
            if on_chunk is not None:
                on_chunk(Progress(train_state, chunk_losses, step, strategy))
    except KeyboardInterrupt as err:
        raise Interrupted(snapshot()) from err
    if checkpoint_path is not None:
        save()
    return snapshot()


def warm_up(state: FitState, *, mesh: Mesh | None = None) -> None:
    """Compiles every chunk ``fit(state.config, state=state, mesh=mesh)`` will run, and its
    finiteness check, so that timing that fit measures training alone. Trains throwaway chunks
    from ``state``; nothing is kept. A reflow config's pairs are made here as well as in fit."""
    config, train_cfg = state.config, state.config.train
    strategy = create_strategy(config.strategy)
    pairs = training_pairs(config, run_keys(train_cfg.seed))
    optimizer = make_optimizer(config.optimizer, train_cfg.train_steps)
    starts = range(state.step, train_cfg.train_steps, train_cfg.log_interval)
    lengths = sorted({min(train_cfg.log_interval, train_cfg.train_steps - s) for s in starts})
    for length in lengths:
        one_chunk = dataclasses.replace(
            train_cfg, train_steps=state.step + length, log_interval=length
        )
        for chunk in train_chunks(
            state.state,
            run_keys(train_cfg.seed).train,
            strategy=strategy,
            optimizer=optimizer,
            dataset=config.dataset,
            train_cfg=one_chunk,
            mesh=mesh,
            pairs=pairs,
        ):
            jax.block_until_ready(chunk)
            is_finite(chunk.state)
