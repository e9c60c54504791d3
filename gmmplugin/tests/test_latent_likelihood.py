"""Latent confidence: a motion along the beam is invisible (no confidence), a
motion across it is seen, and the predicted spread matches the scatter of
maximum-likelihood latents over noise draws. Weighted reconstructions: equal
weights change nothing, zero weights drop particles."""
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from gmmplugin.engine.latent_likelihood import (LatentLikelihood, local_prior,
                                                posterior_spread)
from gmmplugin.engine.ctf import compute_ctf
from gmmplugin.engine.fourier import band_mask, freq_grid_2d, image_ift
from gmmplugin.engine.projection import project

BOX, APIX, SHIFT = 32, 2.0, 6.0     # px, Å/px, Å of motion per latent unit


class MovingPart(torch.nn.Module):
    """A toy decoder: the first half of the Gaussians moves along x by
    SHIFT · z (one latent dimension)."""

    def __init__(self, params):
        super().__init__()
        self.register_buffer("neutral", torch.as_tensor(params, dtype=torch.float32))
        self.register_buffer("mask", torch.zeros(len(params)))
        self.mask[: len(params) // 2] = 1.0

    def forward(self, z):
        p = self.neutral.unsqueeze(0).repeat(len(z), 1, 1)
        p[..., 0] = p[..., 0] + SHIFT * z[:, :1] * self.mask
        return p


def _gmm(n=16, seed=0):
    rng = np.random.default_rng(seed)
    params = np.zeros((n, 5))
    params[:, :3] = rng.normal(0, 6.0, (n, 3))
    params[:, 3] = 1.0
    params[:, 4] = 3.0
    return params


ALONG_BEAM = np.array([[0.0, 0, -1], [0, 1, 0], [1, 0, 0]])   # x of the map -> beam


def _particles(n, rotation, seed=0):
    rng = np.random.default_rng(seed)
    ctf = np.column_stack([rng.uniform(8000, 12000, n)] * 2 + [np.zeros(n), np.full(n, 300.0),
                          np.full(n, 2.7), np.full(n, 0.1), np.zeros(n)])
    return SimpleNamespace(rotations=np.repeat(rotation[None], n, 0),
                           shifts=np.zeros((n, 2)), ctf=ctf)


def _images(decoder, particles, z, noise_sd, seed=0):
    ky, kx = freq_grid_2d(BOX, APIX)
    with torch.no_grad():
        ft = project(decoder(torch.as_tensor(z, dtype=torch.float32)),
                     torch.as_tensor(particles.rotations, dtype=torch.float32),
                     torch.as_tensor(particles.shifts, dtype=torch.float32), BOX, APIX)
        ft = ft * compute_ctf(ky, kx, torch.as_tensor(particles.ctf))
        clean = image_ift(ft, BOX).numpy()
    rng = np.random.default_rng(seed)
    return (clean + rng.normal(0, noise_sd, clean.shape)).astype(np.float32)


def _information(decoder, particles, images):
    rings, band = band_mask(BOX, APIX, 100.0, 2 * APIX)
    return LatentLikelihood(decoder, particles, images, BOX, APIX, rings, band)


def _signal_sd(decoder, particles, z):
    return float(_images(decoder, particles, z, 0.0).std())


def test_motion_along_the_beam_is_invisible():
    decoder = MovingPart(_gmm())
    n = 200
    z = np.random.default_rng(1).uniform(-1, 1, (n, 1)).astype(np.float32)
    seen, hidden = _particles(n, np.eye(3)), _particles(n, ALONG_BEAM)
    noise = 0.5 * _signal_sd(decoder, seen, z)
    conf = {}
    for name, parts in (("seen", seen), ("hidden", hidden)):
        images = _images(decoder, parts, z, noise, seed=2)
        _, conf[name] = posterior_spread(_information(decoder, parts, images).fisher(z), z)
    assert np.median(conf["seen"]) > 0.6
    assert np.median(conf["hidden"]) < 0.05


def test_spread_matches_the_scatter_of_maximum_likelihood_latents():
    """The predicted latent spread (the Cramér-Rao bound) against the scatter of
    the maximum-likelihood latents of one particle under 300 noise draws."""
    decoder = MovingPart(_gmm())
    n = 300
    parts = _particles(n, np.eye(3))
    parts.ctf[:] = parts.ctf[0]                       # one particle, many noise draws
    z_true = np.zeros((n, 1), np.float32)
    noise = 1.5 * _signal_sd(decoder, parts, z_true)   # where the bound is reached
    images = _images(decoder, parts, z_true, noise, seed=3)
    info = _information(decoder, parts, images)
    info.estimate_noise(z_true)
    # population prior as wide as the latents span, so the bound dominates
    population = np.random.default_rng(4).uniform(-3, 3, (n, 1))
    fisher = info.fisher(z_true)
    sd, _ = posterior_spread(fisher, population)
    crb = 1 / np.sqrt(fisher[0, 0, 0])
    # maximum likelihood on a grid, with each draw's amplitude fitted
    grid = np.linspace(-4 * crb, 4 * crb, 161, dtype=np.float32)
    data, ctf, rot, sh = info._batch(np.arange(n))
    with torch.no_grad():
        best_ll = torch.full((n,), -np.inf)
        best_z = torch.zeros(n)
        for g in grid:
            pred = info._predict(torch.full((n, 1), float(g)), ctf, rot, sh)
            a = info._scale(pred, data, info.weights)
            res = data - a[:, None] * pred
            ll = -((res.real ** 2 + res.imag ** 2) * info.weights).sum(1)
            better = ll > best_ll
            best_ll = torch.where(better, ll, best_ll)
            best_z = torch.where(better, torch.tensor(float(g)), best_z)
    scatter = float(best_z.std())
    assert 0.03 < crb < 0.3
    assert abs(scatter / crb - 1) < 0.2, (scatter, crb)
    assert abs(float(np.median(sd)) / crb - 1) < 0.1


def test_weighted_reconstruction(tmp_path):
    from gmmplugin.engine.reconstruct import reconstruct
    from gmmplugin.engine.simulate import SimulationSettings, simulate
    from gmmplugin.engine.starfile import read_star
    from gmmplugin.tests import data_path
    star = simulate(data_path("1hvr.pdb"), str(tmp_path / "sim"),
                    SimulationSettings(n_particles=120, box=24, apix=4.0, snr=0, seed=5))
    p = read_star(star)
    plain = reconstruct(p, seed=1).full
    equal = reconstruct(p, seed=1, weights=np.full(len(p), 0.3)).full
    assert np.allclose(plain, equal, atol=1e-5 * np.abs(plain).max())
    # zero weight on the second half = the first half alone (same half-set labels)
    rows = np.arange(len(p))
    w = (rows < 60).astype(float)
    half = reconstruct(p, rows, seed=1, weights=w).full
    alone = reconstruct(p, rows[:60], seed=1).full
    corr = np.corrcoef(half.ravel(), alone.ravel())[0, 1]
    assert corr > 0.99
    for bad in (np.full(len(p), -1.0), np.zeros(len(p)), np.ones(3)):
        try:
            reconstruct(p, seed=1, weights=bad)
        except ValueError as e:
            assert "weight" in str(e)
        else:
            raise AssertionError("bad weights accepted")


def test_refinement_closes_the_gap_and_keeps_latents_the_image_cannot_place():
    """Latents thrown off by 0.3 (the encoder's kind of error) come back to
    within about the Cramér-Rao bound of the truth; a particle whose view hides
    the motion keeps its latent."""
    decoder = MovingPart(_gmm())
    n = 240
    rng = np.random.default_rng(6)
    z_true = rng.uniform(-1, 1, (n, 1)).astype(np.float32)
    seen = _particles(n, np.eye(3), seed=7)
    parts = _particles(n, np.eye(3), seed=7)
    parts.rotations[n // 2:] = ALONG_BEAM                  # half the views hide it
    noise = 1.0 * _signal_sd(decoder, seen, z_true)
    images = _images(decoder, parts, z_true, noise, seed=8)
    start = (z_true + rng.normal(0, 0.3, z_true.shape)).astype(np.float32)
    like = _information(decoder, parts, images)
    # errors as large as these (0.3 on a range of 2) need a neighbourhood of most
    # of the 240 particles as the prior
    wide = lambda: local_prior(start, fraction=0.8)
    refined, gain, moved = like.refine(start, significance=0.05, prior=wide())
    full = like.fisher(z_true)
    crb = 1 / np.sqrt(full[: n // 2, 0, 0])
    share = np.arange(n)[::-1][:50]                     # a process's rows, any order
    np.testing.assert_allclose(like.fisher(z_true, rows=share), full[share], rtol=1e-5)
    err_before = np.abs(start - z_true)[: n // 2, 0]
    err_after = np.abs(refined - z_true)[: n // 2, 0]
    assert np.sqrt((err_after ** 2).mean()) < 0.5 * np.sqrt((err_before ** 2).mean())
    assert np.sqrt((err_after ** 2).mean()) < 2.0 * np.sqrt((crb ** 2).mean())
    assert moved[: n // 2].mean() > 0.5
    assert moved[n // 2:].mean() < 0.1                     # nothing to read: kept
    np.testing.assert_array_equal(refined[n // 2:][~moved[n // 2:]],
                                  start[n // 2:][~moved[n // 2:]])
    assert np.all(gain[moved] > 0)
    # without the test, every move that raises the posterior is kept: a latent its
    # image cannot place stays about where the encoder put it (its prior's centre)
    free, _, moved_all = like.refine(start, prior=wide())
    assert moved_all.all()
    hidden = slice(n // 2, n)
    assert np.median(np.abs(free[hidden] - start[hidden])) < 0.02
    err_free = np.abs(free - z_true)[: n // 2, 0]
    assert np.sqrt((err_free ** 2).mean()) <= 1.05 * np.sqrt((err_after ** 2).mean())


def test_confidence_counts_only_what_the_image_says_along_the_motion():
    """A population spread along x (the motion) and a little along y: an image
    that pins x down is confident, one that pins only y is not, though its
    overall posterior spread shrinks."""
    from gmmplugin.engine.latent_likelihood import motion_confidence
    rng = np.random.default_rng(0)
    z = np.column_stack([rng.normal(0, 1.0, 500), rng.normal(0, 0.3, 500)])
    along, across = np.diag([100.0, 0.0]), np.diag([0.0, 100.0])
    fisher = np.stack([along] * 250 + [across] * 250)
    motion = np.tile([1.0, 0.0], (500, 1))
    conf = motion_confidence(fisher, z, motion)
    assert np.all(conf[:250] > 0.98) and np.all(conf[250:] < 1e-6)
    _, overall = posterior_spread(fisher, z)
    assert np.all(overall[250:] > 0.02)          # the overall measure counts y as well


def test_the_prior_is_as_wide_for_a_large_set_as_for_a_small_one():
    """The neighbourhood is a share of the population, measured on a sample:
    the same population drawn 20 times more densely gets the same prior."""
    rng = np.random.default_rng(4)
    small = rng.normal(0, [1.0, 0.3], (2000, 2))
    large = rng.normal(0, [1.0, 0.3], (40000, 2))
    var = lambda z: np.median(np.linalg.inv(local_prior(z, sample=4000).precisions()
                                            .astype(np.float64))[:, 0, 0])
    assert var(large) == pytest.approx(var(small), rel=0.2)
    rows = np.arange(0, 40000, 7)
    part = local_prior(large, sample=4000, rows=rows)
    whole = local_prior(large, sample=4000)
    np.testing.assert_array_equal(part.precisions(rows), whole.precisions(rows))
    assert np.all(part.precisions([1]) == np.eye(2))        # not this process's share
    before = part.pool.copy()
    assert np.all(part.precisions(1) == np.eye(2))          # one row: the pool untouched
    np.testing.assert_array_equal(part.pool, before)
    # one covariance per measured neighbourhood and an index per particle: the
    # prior of a large set does not hold an L x L matrix for every particle
    assert len(whole.pool) <= 4000 and whole.index.dtype == np.int32


def test_the_prior_keeps_separate_populations_apart():
    """Two populations (two compositions), each long along y: a particle's
    prior is centred on its own latent and spreads as its own population does
    there, narrow across the gap to the other population, wide along y."""
    rng = np.random.default_rng(2)
    z = np.concatenate([rng.normal([-3, 0], [0.3, 1.0], (600, 2)),
                        rng.normal([3, 0], [0.3, 1.0], (600, 2))])
    prior = local_prior(z, fraction=0.15)
    np.testing.assert_allclose(prior.means, z, atol=1e-6)
    variance = np.linalg.inv(prior.precisions().astype(np.float64))
    # across: its own population's spread (0.09), far narrower than the gap
    # (a neighbourhood at a population's tip is wider across than along, and
    # is stretched across)
    assert np.median(variance[:, 0, 0]) < 0.15 and np.all(variance[:, 0, 0] < 0.3)
    assert np.median(variance[:, 1, 1]) > 0.5              # along y: wider
    part = prior.to("cpu").batch(np.array([0, 700]))
    g, h = part.gradient(torch.as_tensor(z[[0, 700]] + [[1.0, 0.0], [-1.0, 0.0]],
                                         dtype=torch.float32))
    assert g[0, 0] < 0 and g[1, 0] > 0                     # back towards its own latent
    assert torch.all(torch.linalg.eigvalsh(h) > 0)
