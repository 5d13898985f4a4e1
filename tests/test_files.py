"""Writing files: whole or not at all."""

import numpy as np
import pytest

from jax_gen.files import points_writer


@pytest.mark.parametrize("suffix", [".npy", ".csv"])
def test_points_written_in_pieces_read_back_whole(tmp_path, suffix):
    points = np.random.default_rng(0).normal(size=(10, 3)).astype(np.float32)
    path = tmp_path / f"points{suffix}"
    with points_writer(path, 10, 3) as write:
        for piece in (points[:4], points[4:9], points[9:]):
            write(piece)
    if suffix == ".npy":
        read = np.load(path)
        assert read.dtype == np.float32
        np.testing.assert_array_equal(read, points)
    else:
        assert path.read_text().splitlines()[0] == "x0,x1,x2"
        np.testing.assert_allclose(np.loadtxt(path, delimiter=",", skiprows=1), points)
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


def test_a_planar_csv_has_an_x_y_header(tmp_path):
    with points_writer(tmp_path / "p.csv", 2, 2) as write:
        write(np.zeros((2, 2)))
    assert (tmp_path / "p.csv").read_text().splitlines()[0] == "x,y"


@pytest.mark.parametrize("suffix", [".npy", ".csv"])
def test_a_failed_or_short_write_leaves_the_old_file(tmp_path, suffix):
    path = tmp_path / f"points{suffix}"
    path.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="sampler failed"):
        with points_writer(path, 10, 2) as write:
            write(np.zeros((4, 2)))
            raise RuntimeError("sampler failed")
    with pytest.raises(ValueError, match="wrote 4 of 10 points"):
        with points_writer(path, 10, 2) as write:
            write(np.zeros((4, 2)))
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == [path.name]
    with pytest.raises(ValueError, match=r"\.npy or \.csv"):
        with points_writer(tmp_path / "points.txt", 1, 2):
            pass
