"""Large sets in bounded memory: row files, stacks read by explicit reads, the
streaming .star reader and writer, the automatic batch size, and features
written without a float32 copy."""
import os

import mrcfile
import numpy as np
import pytest

from gmmplugin.engine.particles import Particles
from gmmplugin.engine.rowfile import RowFile
from gmmplugin.engine.settings import (AUTOMATIC_BATCH_MAX, BATCH_MEMORY_SHARE,
                                       automatic_batch_size, training_bytes_per_particle)
from gmmplugin.engine.starfile import read_star, write_star


def test_row_file_reads_and_writes_rows_in_any_order(tmp_path):
    path = str(tmp_path / "rows.npy")
    values = np.random.default_rng(0).normal(size=(50, 3, 4)).astype(np.float16)
    f = RowFile.create(path, np.float16, values.shape)
    assert not f[:].any()                                   # a new file holds zeros
    order = np.random.default_rng(1).permutation(50)
    for start in range(0, 50, 7):                           # scattered writes
        f[order[start:start + 7]] = values[order[start:start + 7]]
    f.close()
    assert np.array_equal(np.load(path), values)            # an ordinary .npy file
    r = RowFile(path)
    rows = np.array([9, 3, 4, 5, 49, 0, 3])                 # runs, repeats, any order
    assert np.array_equal(r[rows], values[rows])
    assert np.array_equal(r[7], values[7]) and np.array_equal(r[-1], values[-1])
    assert np.array_equal(r[10:20:3], values[10:20:3])
    assert np.array_equal(np.asarray(r, dtype=np.float32), values.astype(np.float32))
    assert len(r) == 50 and r.size == values.size and r.shape == values.shape
    with pytest.raises(ValueError, match="read-only"):
        r[0] = 0
    with pytest.raises(IndexError):
        r[np.array([50])]


def test_row_file_reads_what_numpy_wrote(tmp_path):
    path = str(tmp_path / "saved.npy")
    values = np.arange(24, dtype=np.float32).reshape(6, 2, 2)
    np.save(path, values)
    assert np.array_equal(RowFile(path)[[5, 1]], values[[5, 1]])


def _stack(path, data):
    with mrcfile.new(path, data=data, overwrite=True) as m:
        m.voxel_size = 2.0


def _particles(stacks, frames_per_stack, box):
    n = len(stacks) * frames_per_stack
    rng = np.random.default_rng(2)
    return Particles(ids=np.arange(1, n + 1), stacks=stacks,
                     stack_idx=np.repeat(np.arange(len(stacks)), frames_per_stack).astype(
                         np.int32),
                     frame=np.tile(np.arange(frames_per_stack), len(stacks)),
                     rotations=np.tile(np.eye(3), (n, 1, 1)),
                     shifts=rng.normal(size=(n, 2)),
                     ctf=np.column_stack([np.full((n, 2), 1e4), np.zeros(n),
                                          np.full(n, 300.0), np.full(n, 2.7),
                                          np.full(n, 0.1), np.zeros(n)]),
                     apix=2.0, box=box)


def test_half_precision_stacks_and_many_stacks(tmp_path):
    """Mode 12 stacks read as float32; more stacks than a process may hold open
    files would not matter (no file stays open between reads)."""
    box, per = 8, 3
    rng = np.random.default_rng(3)
    data = [rng.normal(size=(per, box, box)).astype(np.float16) for _ in range(4)]
    stacks = []
    for i, d in enumerate(data):
        stacks.append(str(tmp_path / ("s%d.mrcs" % i)))
        _stack(stacks[-1], d)
    p = _particles(stacks, per, box)
    rows = np.array([11, 0, 4, 3, 5, 10])
    expect = np.concatenate(data).astype(np.float32)[rows]
    assert np.array_equal(p.images(rows), expect)
    assert p.images(rows).dtype == np.float32


def test_stack_errors_are_readable(tmp_path):
    box = 8
    path = str(tmp_path / "s.mrcs")
    _stack(path, np.zeros((2, box, box), np.float32))
    p = _particles([path], 2, box)
    p.frame[1] = 5
    with pytest.raises(ValueError, match="has 2 images; image 6 requested"):
        p.images(np.array([1]))
    with open(path, "r+b") as f:                           # cut the last image short
        f.truncate(1024 + box * box * 4 + 10)
    with pytest.raises(ValueError, match="shorter"):
        _particles([path], 2, box).images(np.array([0]))
    with pytest.raises(ValueError, match="16x16 images, expected"):
        _stack(path, np.zeros((2, 16, 16), np.float32))
        _particles([path], 2, box).images(np.array([0]))


def test_star_written_and_read_in_chunks(tmp_path, monkeypatch):
    """A set longer than a chunk of rows (made small here) comes back whole, with
    its stacks, frames, poses and CTFs."""
    import gmmplugin.engine.starfile as starfile
    monkeypatch.setattr(starfile, "WRITE_CHUNK", 7)
    box, per = 8, 5
    stacks = []
    for i in range(4):
        stacks.append(str(tmp_path / "stacks" / ("s%d.mrcs" % i)))
        (tmp_path / "stacks").mkdir(exist_ok=True)
        _stack(stacks[-1], np.zeros((per, box, box), np.float32))
    p = _particles(stacks, per, box)
    from gmmplugin.engine.geometry import random_rotations
    p.rotations = random_rotations(len(p), np.random.default_rng(4))
    p.ctf[:, 0] += np.arange(len(p))
    write_star(str(tmp_path / "p.star"), p)
    q = read_star(str(tmp_path / "p.star"))
    assert q.stacks == stacks
    assert np.array_equal(q.stack_idx, p.stack_idx) and np.array_equal(q.frame, p.frame)
    assert np.allclose(q.rotations, p.rotations, atol=1e-5)
    assert np.allclose(q.shifts, p.shifts, atol=1e-5) and np.allclose(q.ctf, p.ctf, atol=1e-5)


def test_automatic_batch_fits_the_memory():
    per = training_bytes_per_particle(64, 2000, 4)
    assert per == training_bytes_per_particle(64, 1000, 4) * 2 - 64 * 64 * 64   # per Gaussian
    # plenty of memory: the tuned batch
    batch, why = automatic_batch_size(64, 2000, 4, 1000 * per * AUTOMATIC_BATCH_MAX)
    assert batch == AUTOMATIC_BATCH_MAX and "largest" in why
    # room for 10 particles in the memory share
    batch, why = automatic_batch_size(64, 2000, 4, 10.5 * per / BATCH_MEMORY_SHARE)
    assert batch == 10 and "fits" in why
    # not even one: one per process, with a warning
    batch, why = automatic_batch_size(64, 2000, 4, per, processes=2)
    assert batch == 2 and "WARNING" in why
    # unknown memory: the tuned batch
    assert automatic_batch_size(64, 2000, 4, 0)[0] == AUTOMATIC_BATCH_MAX


def test_automatic_batch_is_shared_among_processes():
    per = training_bytes_per_particle(32, 500, 4)
    batch, _ = automatic_batch_size(32, 500, 4, 7.5 * per / BATCH_MEMORY_SHARE, processes=4)
    assert batch == 28                       # 7 per process
    # the epoch's last batch must give each process a part: 61 % 28 = 5 >= 4, but
    # with 58 training particles 58 % 28 = 2 < 4, so the batch shrinks
    assert automatic_batch_size(32, 500, 4, 7.5 * per / BATCH_MEMORY_SHARE, processes=4,
                                particles=61)[0] == 28
    batch = automatic_batch_size(32, 500, 4, 7.5 * per / BATCH_MEMORY_SHARE, processes=4,
                                 particles=58)[0]
    assert batch % 4 == 0 and not 0 < 58 % batch < 4
    assert automatic_batch_size(32, 500, 4, 1e12, particles=20)[0] == 20   # no larger than


def test_available_memory_is_known_on_this_machine():
    from gmmplugin.engine.device import available_memory_bytes, total_memory_bytes
    free = available_memory_bytes("cpu")
    assert 0 < free <= total_memory_bytes("cpu")


def test_features_are_the_gradients_over_their_rms_in_half_precision(tmp_path):
    """The features are written in half precision in units of a provisional scale
    and rescaled in place (no float32 copy on disk): they must still be each
    particle's gradient over the RMS of all of them."""
    from gmmplugin.engine.gmm import Gmm
    from gmmplugin.engine.settings import TrainConfig
    from gmmplugin.engine.simulate import SimulationSettings, simulate
    from gmmplugin.engine.train import Trainer
    from gmmplugin.tests import data_path
    star = simulate(data_path("5a7u.pdb"), str(tmp_path / "sim"),
                    SimulationSettings(n_particles=70, box=32, apix=1.5, snr=1.0, seed=3))
    rng = np.random.default_rng(0)
    gmm = Gmm(np.column_stack([rng.normal(0, 8, (30, 3)), np.ones(30), np.full(30, 3.0)]),
              apix=1.5, box=32, resolution=6.0)
    trainer = Trainer(read_star(star), gmm, TrainConfig(latent_dim=2, max_res=6.0,
                                                        batch_size=16),
                      str(tmp_path / "work"), log=lambda m: None)
    images = trainer.prepare_images()
    feats = trainer.prepare_features(images)
    assert not any(name.endswith(".raw.npy") for name in os.listdir(tmp_path / "work"))
    g, _ = trainer._neutral_gradients(images, np.arange(70))
    rms = np.sqrt(np.mean(g.astype(np.float64) ** 2))
    assert trainer.feature_scale == pytest.approx(rms, rel=1e-5)
    stored = np.asarray(feats[np.arange(70)], dtype=np.float32)
    assert feats[0].dtype == np.float16
    np.testing.assert_allclose(stored, g / rms, rtol=2e-3, atol=2e-3 * np.abs(g / rms).max())
