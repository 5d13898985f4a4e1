import socket
import subprocess
import sys

import numpy as np
import pytest
from helpers import only_file, ring_trajectory

from jax_gen.recording import RerunLogger, read_recording


def test_module_never_imports_jax():
    code = "import sys, jax_gen.recording; assert 'jax' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_rerun_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    losses = rng.random(250).astype(np.float32)
    samples = rng.normal(size=(30, 2))
    trajectory = ring_trajectory(num_states=7, n=12)
    path = tmp_path / "run.rrd"
    with RerunLogger("jax_gen_test", recording_path=path) as logger:
        assert logger.warning is None
        logger.log_losses(0, losses[:100])
        logger.log_losses(100, losses[100:])
        logger.log_points("train/samples", 100, samples)
        logger.log_trajectory(trajectory)
        assert not path.exists()  # published on close, not before
    only_file(tmp_path, "run.rrd")

    recording = read_recording(path)
    assert recording["entities"] == ["generate/trajectory", "train/loss", "train/samples"]
    np.testing.assert_array_equal(recording["loss_steps"], np.arange(1, 251))
    np.testing.assert_array_equal(recording["losses"], losses.astype(np.float64))
    snapshot = recording["points"]["train/samples"]["step"]
    assert list(snapshot) == [100]
    np.testing.assert_array_equal(snapshot[100], samples.astype(np.float32))
    states = recording["points"]["generate/trajectory"]["sampling_step"]
    assert sorted(states) == list(range(7))
    for i, state in states.items():
        np.testing.assert_array_equal(state, trajectory[i].astype(np.float32))


def test_rerun_loggers_are_independent(tmp_path):
    a = RerunLogger("jax_gen_a", recording_path=tmp_path / "a.rrd")
    b = RerunLogger("jax_gen_b", recording_path=tmp_path / "b.rrd")
    a.log_losses(0, np.array([1.0, 2.0]))
    b.log_losses(10, np.array([3.0]))
    a.close()
    b.close()
    a.close()  # idempotent
    np.testing.assert_array_equal(read_recording(tmp_path / "a.rrd")["losses"], [1.0, 2.0])
    np.testing.assert_array_equal(read_recording(tmp_path / "b.rrd")["loss_steps"], [11])


def test_rerun_exception_keeps_previous_recording(tmp_path):
    path = tmp_path / "run.rrd"
    path.write_bytes(b"previous recording")
    with pytest.raises(RuntimeError, match="boom"):
        with RerunLogger("jax_gen_test", recording_path=path) as logger:
            logger.log_losses(0, np.ones(5))
            raise RuntimeError("boom")
    assert path.read_bytes() == b"previous recording"
    only_file(tmp_path, "run.rrd")


def test_rerun_spawn_without_display_falls_back_to_saving(tmp_path, monkeypatch):
    for name in ("DISPLAY", "WAYLAND_DISPLAY", "WAYLAND_SOCKET"):
        monkeypatch.delenv(name, raising=False)
    path = tmp_path / "run.rrd"
    with RerunLogger("jax_gen_test", recording_path=path, spawn=True) as logger:
        logger.log_losses(0, np.array([0.5, 0.25]))
    if sys.platform.startswith("linux"):
        assert "no display" in logger.warning and str(path) in logger.warning
    np.testing.assert_array_equal(read_recording(path)["losses"], [0.5, 0.25])


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("failure", ["no executable", "not listening"])
def test_rerun_spawn_failure_falls_back_to_saving(tmp_path, monkeypatch, failure):
    import rerun as rr

    monkeypatch.setenv("DISPLAY", ":99")  # get past the display check to the spawn itself
    monkeypatch.setattr("jax_gen.recording.VIEWER_PORT", free_port())

    def fake_spawn(**kwargs):
        if failure == "no executable":
            raise RuntimeError("Failed to find Rerun Viewer executable in PATH.\n\n more")
        # otherwise: returns as rerun does when the viewer died before binding its port

    monkeypatch.setattr(rr, "spawn", fake_spawn)
    path = tmp_path / "run.rrd"
    with RerunLogger("jax_gen_test", recording_path=path, spawn=True) as logger:
        logger.log_points("train/samples", 3, np.zeros((2, 2)))
    expected = "Failed to find Rerun Viewer" if failure == "no executable" else "did not start"
    assert expected in logger.warning and str(path) in logger.warning
    assert read_recording(path)["entities"] == ["train/samples"]


def test_rerun_without_any_sink_records_nothing(tmp_path):
    logger = RerunLogger("jax_gen_test")
    assert "nothing is recorded" in logger.warning
    logger.log_losses(0, np.ones(3))
    logger.log_trajectory(ring_trajectory(num_states=3))
    logger.close()
    assert not any(tmp_path.iterdir())


def test_read_recording_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="no recording"):
        read_recording(tmp_path / "absent.rrd")
