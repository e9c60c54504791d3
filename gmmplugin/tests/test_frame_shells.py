"""Frame maps whose neighbourhood widens shell by shell (engine/frame_shells.py),
and the nested reconstructions they are composed of."""
import mrcfile
import numpy as np
import pytest

from gmmplugin.engine import frame_shells as fs
from gmmplugin.engine.fourier import fsc
from gmmplugin.engine.reconstruct import nested_reconstructions, reconstruct
from gmmplugin.engine.simulate import Heterogeneity, SimulationSettings, simulate
from gmmplugin.engine.starfile import read_star
from gmmplugin.tests import data_path


@pytest.fixture(scope="module")
def still(tmp_path_factory):
    """600 noisy particles of one state (box 32) and its true map."""
    out = str(tmp_path_factory.mktemp("still"))
    star = simulate(data_path("1hvr.pdb"), out,
                    SimulationSettings(n_particles=600, box=32, apix=3.0, snr=0.05, seed=4),
                    Heterogeneity())
    return read_star(star), mrcfile.read(out + "/maps/consensus.mrc").astype(np.float64)


def test_nested_reconstructions_are_the_maps_of_each_prefix(still):
    particles, _ = still
    rows = np.random.default_rng(0).permutation(len(particles))[:300]
    nested = nested_reconstructions(particles, rows, [100, 180, 300], pad=1)
    for rec, n in zip(nested, (100, 180, 300)):
        alone = reconstruct(particles, rows[:n], pad=1).full
        assert np.abs(rec.full - alone).max() <= 1e-5 * np.abs(alone).max(), n
    # the first neighbourhood's half sets are reconstruct's own: the same FSC
    assert np.allclose(nested[0].fsc, reconstruct(particles, rows[:100], pad=1).fsc,
                       atol=1e-6)
    assert nested[-1].resolution < nested[0].resolution       # more particles, finer
    with pytest.raises(ValueError, match="increase"):
        nested_reconstructions(particles, rows, [100, 100])


def test_composed_map_takes_each_shell_from_its_chosen_map():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(2, 24, 24, 24))
    pick = np.array([0] * 5 + [1] * 8)
    both = fs.compose_shells([a, b], pick)
    assert np.allclose(fsc(both, a)[:5], 1.0) and np.allclose(fsc(both, b)[5:], 1.0)
    assert fsc(both, a)[8] < 0.5


def test_noise_limited_shells_take_the_widest_neighbourhood_bias_limited_their_own():
    n, box = 100, 24
    g = np.random.default_rng(2).normal(size=(box,) * 3)
    sizes = fs.neighbourhood_sizes(n, 3 * n)
    # states on one side of the frame: a wider neighbourhood drifts off it
    offsets = np.linspace(0, 1, 3 * n)[:, None]
    means, spreads = fs.state_moments(offsets, np.full(3 * n, 0.01), np.ones((3 * n, 1)),
                                      sizes)
    assert np.all(np.diff(means[:, 0]) > 0) and np.all(np.diff(spreads[:, 0]) > 0)
    noisy = np.full(box // 2 + 1, 0.05)             # half-map FSC: noise everywhere
    still = fs.bias_maps(lambda p: g, np.zeros(1), np.eye(1), [0.1], means, spreads)
    pick = fs.choose_widths(*still, sizes, noisy)
    assert np.all(np.diff(pick) >= 0)               # never shrinks outwards
    assert pick[0] == 0                             # too few coefficients to gain
    assert np.all(pick[4:] == len(sizes) - 1)       # no change: the widest
    # the map changes along the latent and the noise is low: its own particles
    moving = fs.bias_maps(lambda p: g * (1 + 5 * p[0]), np.zeros(1), np.eye(1), [0.1],
                          means, spreads)
    assert np.allclose(moving[1][1], 5 * means[1, 0] * g)     # first order, exact
    assert np.all(fs.choose_widths(*moving, sizes, np.full(box // 2 + 1, 0.999)) == 0)


def test_posterior_variance_is_read_along_each_particles_own_motion():
    rng = np.random.default_rng(6)
    z = rng.normal(size=(4000, 2)) * [2.0, 0.5]        # the population spreads along x
    along_x, along_y = np.tile([1.0, 0.0], (4000, 1)), np.tile([0.0, 1.0], (4000, 1))
    c = np.full(4000, 0.75)
    # (1 - c) of the population's variance along the direction measured
    assert np.allclose(fs.posterior_variance(c, z, along_x), 0.25 * z[:, 0].var(), rtol=0.05)
    assert np.allclose(fs.posterior_variance(c, z, along_y), 0.25 * z[:, 1].var(), rtol=0.05)
    # a particle whose confidence came without a direction: the mean precision
    v = fs.posterior_variance(c[:2], z, np.zeros((2, 2)))
    assert np.all(np.isfinite(v)) and np.all(v > 0)


def test_a_widening_frame_of_one_state_beats_its_own_particles_at_every_shell(still):
    """The decoder says the map does not change: from the shells with enough
    coefficients on, the frame takes three times its particles, and its FSC with
    the true map is at least the frame's own one at every shell."""
    particles, truth = still
    rng = np.random.default_rng(3)
    z = rng.uniform(0, 1, (len(particles), 1))
    members = np.argsort(np.abs(z[:, 0] - 0.5))[:150]
    own = reconstruct(particles, np.sort(members), pad=1)

    def nested(rows, sizes):
        return nested_reconstructions(particles, rows, sizes, pad=1)
    def frame(render):
        return fs.widening_frame(z, np.array([0.5]), members, np.arange(len(z)),
                                 np.full(len(z), 0.5), np.ones((len(z), 1)), render, nested)
    rec, counts = frame(lambda p: truth)
    assert counts[0] == 150 and counts[-1] == 450 and np.all(np.diff(counts) >= 0)
    # a change linear along the latent averages out around the frame: widening too
    _, linear = frame(lambda p: truth * (1 + 200 * p[0]))
    assert linear[-1] == 450
    gain = fsc(rec.full, truth)[1:] - fsc(own.full, truth)[1:]
    assert gain.min() >= -1e-5 and gain.mean() > 0.02, (gain.min(), gain.mean())
    # where the map bends fast along the latent (a change that a neighbourhood
    # around the frame does not average out), the frame keeps its own particles
    # at every shell they resolve; beyond, only noise is left to average down
    rec2, counts2 = frame(lambda p: truth * (1 + 200 * (p[0] - 0.5) ** 2))
    resolved = own.fsc >= 0.143
    assert resolved[:8].all() and np.all(counts2[resolved] == 150), counts2
    same = fsc(rec2.full, own.full)
    assert np.all(same[resolved] > 1 - 1e-6)
    assert np.allclose(rec2.fsc[resolved], own.fsc[resolved], atol=1e-5)   # halves too
