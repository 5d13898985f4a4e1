"""Data-parallel training: on 4 (fake CPU) devices it matches the one-device run.

XLA fixes the number of host devices when JAX starts, so the 4-device runs happen in a child
process started with ``XLA_FLAGS=--xla_force_host_platform_device_count=4``.
"""

import json
import os
import socket
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest

from jax_gen import checkpoint, cli, parallel

WORKER = textwrap.dedent(
    """
    import json

    import equinox as eqx
    import jax
    import numpy as np

    from jax_gen import train as train_module
    from jax_gen.config import (
        DDPMStrategyConfig, FlowMatchingStrategyConfig, MLPConfig, MoonConfig, OptimizerConfig,
        TrainConfig,
    )
    from jax_gen.models import create_model
    from jax_gen.parallel import data_mesh
    from jax_gen.strategies import create_strategy

    # Record, when each step is compiled, how the batch handed to the loss is laid out.
    layouts = []
    original = train_module.shard_batch

    def spy(x, mesh):
        out = original(x, mesh)
        if x is not None:
            devices = mesh.devices.size
            jax.debug.inspect_array_sharding(
                out, callback=lambda s: layouts.append([devices, list(s.shard_shape(x.shape))])
            )
        return out

    train_module.shard_batch = spy

    def run(strategy_cfg, conditional, mesh, switch_to=None):
        strategy = create_strategy(strategy_cfg)
        model = create_model(
            MLPConfig(hidden_dim=32, depth=2), jax.random.key(0), 2, 2 if conditional else 0
        )
        train_cfg = TrainConfig(
            batch_size=64, train_steps=30, log_interval=10, conditional=conditional
        )
        optimizer = train_module.make_optimizer(OptimizerConfig(), train_cfg.train_steps)
        state = train_module.init_train_state(model, optimizer)
        losses = []
        for chunk in train_module.train_chunks(
            state, jax.random.key(1), strategy=strategy, optimizer=optimizer,
            dataset=MoonConfig(), train_cfg=train_cfg, mesh=mesh,
        ):
            state = chunk.state
            losses += np.asarray(chunk.losses).tolist()
            if switch_to is not None:  # resume the rest of the run on other devices
                break
        if switch_to is not None:
            for chunk in train_module.train_chunks(
                state, jax.random.key(1), strategy=strategy, optimizer=optimizer,
                dataset=MoonConfig(), train_cfg=train_cfg, mesh=switch_to,
            ):
                state = chunk.state
                losses += np.asarray(chunk.losses).tolist()
        leaves = jax.tree.leaves(eqx.filter(state.ema_model, eqx.is_array))
        replicated = all(
            leaf.sharding.is_fully_replicated and len(leaf.sharding.device_set) == mesh.size
            for leaf in jax.tree.leaves(eqx.filter(state, eqx.is_array))
        ) if switch_to is None else None
        return {
            "losses": losses,
            "params": np.concatenate([np.ravel(leaf) for leaf in leaves]).tolist(),
            "replicated": replicated,
        }

    one, four = data_mesh(1), data_mesh(4)
    runs = {}
    for name, strategy_cfg, conditional in [
        ("ddpm", DDPMStrategyConfig(), False),
        ("flow-matching-conditional", FlowMatchingStrategyConfig(), True),
        ("flow-matching-ot", FlowMatchingStrategyConfig(coupling="ot"), False),
    ]:
        runs[name] = {
            "one": run(strategy_cfg, conditional, one),
            "four": run(strategy_cfg, conditional, four),
        }
    runs["resumed"] = run(DDPMStrategyConfig(), False, four, switch_to=data_mesh(2))
    try:
        data_mesh(5)
        too_many = None
    except ValueError as err:
        too_many = str(err)
    jax.process_count = lambda: 2  # as if a second host took part
    try:
        data_mesh(2)
        several_processes = None
    except ValueError as err:
        several_processes = str(err)
    print(json.dumps({
        "devices": len(jax.devices()), "runs": runs, "layouts": layouts, "too_many": too_many,
        "several_processes": several_processes,
    }))
    """
)


def four_device_env(devices: int = 4) -> dict[str, str]:
    """This process's environment, with XLA asked for ``devices`` CPU devices."""
    env = dict(os.environ)
    flags = f"--xla_force_host_platform_device_count={devices}"
    env["XLA_FLAGS"] = f"{env.get('XLA_FLAGS', '')} {flags}".strip()
    env["JAX_PLATFORMS"] = "cpu"
    return env


@pytest.fixture(scope="module")
def worker():
    result = subprocess.run(
        [sys.executable, "-c", WORKER],
        env=four_device_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("name", ["ddpm", "flow-matching-conditional", "flow-matching-ot"])
def test_four_devices_match_one_device(worker, name):
    assert worker["devices"] == 4
    one, four = worker["runs"][name]["one"], worker["runs"][name]["four"]
    assert len(one["losses"]) == len(four["losses"]) == 30
    # The same data, noise and update; only the order of float additions differs.
    np.testing.assert_allclose(four["losses"], one["losses"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(four["params"], one["params"], rtol=1e-4, atol=1e-5)
    assert one["replicated"] and four["replicated"]


def test_the_batch_really_is_split_over_the_devices(worker):
    layouts = {tuple(shape) for devices, shape in worker["layouts"] if devices == 4}
    # 64 points on 4 devices: 16 rows each (points, then the labels of the conditional run).
    assert layouts == {(16, 2), (16,)}
    assert {tuple(shape) for devices, shape in worker["layouts"] if devices == 1} == {
        (64, 2),
        (64,),
    }


def test_a_run_resumed_on_other_devices_continues_exactly(worker):
    resumed, straight = worker["runs"]["resumed"], worker["runs"]["ddpm"]["one"]
    np.testing.assert_allclose(resumed["losses"], straight["losses"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(resumed["params"], straight["params"], rtol=1e-4, atol=1e-5)


def test_asking_for_more_devices_than_exist_is_an_error(worker):
    assert worker["too_many"] == (
        "--num-devices=5 must be between 1 and the 4 CPU device(s) available"
    )


def test_batch_size_must_divide_over_the_devices():
    mesh = parallel.data_mesh(1)
    parallel.check_batch_size(7, mesh)  # anything divides over one device
    fake = type("FakeMesh", (), {"shape": {parallel.AXIS: 4}})()
    parallel.check_batch_size(64, fake)
    with pytest.raises(ValueError, match=r"batch_size=66 must be divisible by the 4 devices"):
        parallel.check_batch_size(66, fake)


def test_one_device_mesh_is_the_default_here():
    assert parallel.num_devices(parallel.data_mesh()) == len(jax.devices())


def test_cli_trains_on_four_devices_and_rejects_an_uneven_batch(tmp_path):
    base = [sys.executable, "-m", "jax_gen.cli", "train", "dataset:moon", "--train-steps", "10"]
    base += ["--log-interval", "10", "--num-samples", "64", "--model.hidden-dim", "16"]
    model_path = tmp_path / "m.eqx"
    ok = subprocess.run(
        [*base, "--batch-size", "32", "--model-path", str(model_path)],
        env=four_device_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert "on 4 devices" in ok.stderr + ok.stdout
    assert model_path.exists()

    bad_path = tmp_path / "bad.eqx"
    bad = subprocess.run(
        [*base, "--batch-size", "30", "--num-devices", "4", "--model-path", str(bad_path)],
        env=four_device_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines() == [
        "error: batch_size=30 must be divisible by the 4 devices it is split over "
        "(try --batch-size 28 or --num-devices)"
    ]
    assert not bad_path.exists()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def test_two_processes_train_one_model_like_one_process(tmp_path):
    """--distributed on localhost: 2 processes x 2 devices give the one-device losses."""
    args = ["dataset:moon", "--train-steps", "20", "--log-interval", "10", "--batch-size", "32"]
    args += ["--num-samples", "64", "--model.hidden-dim", "16"]
    address = f"localhost:{free_port()}"
    env = four_device_env(devices=2)
    shared = tmp_path / "shared.eqx"
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "jax_gen.cli", "train", *args, "--model-path", str(shared)]
            + ["--distributed", "--coordinator-address", address, "--num-processes", "2"]
            + ["--process-id", str(i)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    outputs = [p.communicate(timeout=300) for p in processes]
    assert [p.returncode for p in processes] == [0, 0], outputs[0][1][-2000:]
    assert "on 4 devices" in outputs[0][0] + outputs[0][1]
    assert "training" not in outputs[1][1] + outputs[1][0]  # process 1 reports nothing

    single = tmp_path / "single.eqx"
    cli.main(["train", *args, "--model-path", str(single)])
    np.testing.assert_allclose(
        checkpoint.load(shared).losses, checkpoint.load(single).losses, rtol=1e-5, atol=1e-6
    )


def test_distributed_options_need_distributed():
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["train", "--num-processes", "2"])
    assert exit_info.value.code == 2


def test_a_run_over_several_processes_uses_every_device(worker):
    assert worker["several_processes"] == (
        "--num-devices=2: a run over 2 processes uses all 4 devices (leave --num-devices out)"
    )
