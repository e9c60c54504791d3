"""The population landscape: two states populated 70/30 with a continuous
motion between them give two minima at the states and their populations."""
import numpy as np

from gmmplugin.engine.landscape import population_landscape


def _two_states_and_a_path(n=6000, seed=0):
    rng = np.random.default_rng(seed)
    u = rng.uniform(size=n)
    a = rng.normal([-2.0, 0.0], 0.45, (n, 2))
    b = rng.normal([2.0, 0.0], 0.45, (n, 2))
    path = np.column_stack([rng.uniform(-2, 2, n), rng.normal(0, 0.3, n)])
    which = np.where(u < 0.63, 0, np.where(u < 0.9, 1, 2))      # 63 % A, 27 % B, 10 % path
    z = np.where(which[:, None] == 0, a, np.where(which[:, None] == 1, b, path))
    return z, which


def test_minima_at_the_states_and_their_populations():
    z, which = _two_states_and_a_path()
    land = population_landscape(z)
    assert len(land.minima) == 2
    order = np.argsort(land.minima[:, 0])
    assert np.allclose(land.minima[order], [[-2, 0], [2, 0]], atol=0.35)
    # the truth: the states' particles and each half of the path
    truth_a = np.mean((which == 0) | ((which == 2) & (z[:, 0] < 0)))
    assert abs(land.populations[order[0]] - truth_a) < 0.1
    assert land.populations.sum() > 0.97           # a few isolated particles: no basin
    assert np.nanmin(land.energy) == 0 and np.isnan(land.energy).any()
    assert set(np.unique(land.basin)) <= {-1, 0, 1}


def test_one_population_is_one_basin():
    z = np.random.default_rng(1).normal(0, 1, (4000, 2))
    land = population_landscape(z)
    assert len(land.minima) == 1 and land.populations[0] > 0.95
