"""Pose refinement recovers perturbed poses and leaves correct ones alone
(noise-free projections of a GMM, so the optimum is the true pose)."""
import numpy as np
import torch

from gmmplugin.engine.ctf import compute_ctf
from gmmplugin.engine.particles import Particles
from gmmplugin.engine.fourier import freq_grid_2d, image_ift
from gmmplugin.engine.geometry import axis_angle_matrix, random_rotations
from gmmplugin.engine.projection import project
from gmmplugin.engine.geometry import rotation_angle_deg
from gmmplugin.engine.refine_poses import refine_poses


def _dataset(tmp_path, n=24, box=48, apix=2.0):
    import mrcfile
    rng = np.random.default_rng(0)
    g = np.zeros((150, 5))
    g[:, :3] = rng.normal(0, 12, (150, 3))
    g[:, 3], g[:, 4] = 1.0, 3.0
    R = random_rotations(n, rng)
    sh = rng.normal(0, 2, (n, 2))
    ctf = np.column_stack([np.full(n, 12000.0), np.full(n, 11000.0), np.zeros(n),
                           np.full(n, 300.0), np.full(n, 2.7), np.full(n, 0.1), np.zeros(n)])
    ky, kx = freq_grid_2d(box, apix)
    ft = project(torch.tensor(g, dtype=torch.float32), torch.tensor(R, dtype=torch.float32),
                 torch.tensor(sh, dtype=torch.float32), box, apix)
    img = image_ift(ft * compute_ctf(ky, kx, torch.tensor(ctf)), box).numpy()
    path = str(tmp_path / "s.mrcs")
    with mrcfile.new(path) as m:
        m.set_data(img.astype(np.float32))
    p = Particles(np.arange(1, n + 1), [path], np.zeros(n, np.int32), np.arange(n), R, sh,
                  ctf, apix, box)
    return p, torch.tensor(g, dtype=torch.float32)


def _rotated(p, rms_deg, rng):
    """A copy of the particles with each pose turned by a random rotation of
    ``rms_deg`` rms (axis-angle vector with rms_deg/√3 per component)."""
    out = p.subset(np.arange(len(p)))
    w = rng.normal(size=(len(p), 3)) * rms_deg / np.sqrt(3)
    out.rotations = np.einsum("nij,njk->nik",
                              np.stack([axis_angle_matrix(v, np.linalg.norm(v)) for v in w]),
                              p.rotations)
    return out


def test_refinement_recovers_perturbed_poses_and_does_not_drift(tmp_path):
    p, g = _dataset(tmp_path)
    rng = np.random.default_rng(1)
    true_R, true_s = p.rotations.copy(), p.shifts.copy()
    pert = _rotated(p, 4.0, rng)
    pert.shifts = true_s + rng.normal(0, 1.5, true_s.shape)
    before = np.median(rotation_angle_deg(true_R, pert.rotations))
    R, s, f, gain, moved, _ = refine_poses(pert, lambda rows: g, max_res=4.0, iterations=60,
                                           max_angle=10, max_shift=5, log=None)
    after = np.median(rotation_angle_deg(true_R, R))
    assert before > 2.0 and after < 1.0, (before, after)
    assert np.median(np.linalg.norm(s - true_s, axis=1)) < 0.5 * p.apix
    R2, s2, *_ = refine_poses(p, lambda rows: g, max_res=4.0, iterations=30, log=None)
    assert np.median(rotation_angle_deg(true_R, R2)) < 0.5
    # bounds hold
    R3, s3, *_ = refine_poses(pert, lambda rows: g, max_res=4.0, iterations=30,
                                max_angle=1.0, max_shift=0.2, log=None)
    assert rotation_angle_deg(pert.rotations, R3).max() <= 1.0 + 1e-3
    assert np.linalg.norm(s3 - pert.shifts, axis=1).max() <= 0.2 + 1e-4


def test_batches_do_not_interact(tmp_path):
    """The noise whitening is estimated once for the whole set, so a particle's
    result does not depend on the batch it is refined in."""
    p, g = _dataset(tmp_path, n=24)
    pert = _rotated(p, 3.0, np.random.default_rng(2))
    a = refine_poses(pert, lambda rows: g, max_res=4.0, iterations=20, batch_size=24, log=None)
    b = refine_poses(pert, lambda rows: g, max_res=4.0, iterations=20, batch_size=5, log=None)
    assert rotation_angle_deg(a[0], b[0]).max() < 1e-2
    assert np.abs(a[1] - b[1]).max() < 1e-3


def test_input_pose_is_kept_unless_the_refined_one_is_significantly_better(tmp_path):
    """With noise the likelihood is flat over a degree or so (here ~1.4°): a
    correct input pose must stay where it is (the likelihood-ratio test), while
    5° errors are still corrected; with the test off (significance 0) correct
    poses wander over the flat region."""
    p, g = _dataset(tmp_path, n=48, box=32, apix=3.0)
    clean = p.images(np.arange(len(p)))
    noise = np.random.default_rng(5).normal(0, 1, clean.shape) * clean.std() / np.sqrt(1.0)
    path = str(tmp_path / "noisy.mrcs")
    import mrcfile
    with mrcfile.new(path) as m:
        m.set_data((clean + noise).astype(np.float32))
    p = Particles(p.ids, [path], p.stack_idx, p.frame, p.rotations, p.shifts, p.ctf,
                  p.apix, p.box)
    pert = _rotated(p, 6.0, np.random.default_rng(4))
    kw = dict(max_res=6.0, iterations=40, log=None)
    loose = refine_poses(p, lambda rows: g, significance=0.0, **kw)
    strict = refine_poses(p, lambda rows: g, significance=0.01, **kw)
    wander = rotation_angle_deg(p.rotations, loose.rotations)
    stay = rotation_angle_deg(p.rotations, strict.rotations)
    assert np.median(wander) > 0.7, np.median(wander)
    assert strict.moved.mean() < 0.1 and np.median(stay) == 0.0, (strict.moved.mean(),
                                                                  np.median(stay))
    # the test keeps exactly the particles whose gain clears the χ²₅ 1 % quantile
    assert np.array_equal(strict.moved, strict.gain > 0.5 * 15.086)
    fixed = refine_poses(pert, lambda rows: g, **kw)
    before = np.median(rotation_angle_deg(p.rotations, pert.rotations))
    after = np.median(rotation_angle_deg(p.rotations, fixed.rotations))
    assert fixed.moved.mean() > 0.5 and after < 0.5 * before, (fixed.moved.mean(), before, after)
