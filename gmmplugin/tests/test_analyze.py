"""Latent-space analysis on synthetic latents: classes, k, trajectories, outliers."""
import numpy as np
from sklearn.metrics import adjusted_rand_score

from gmmplugin.engine.analyze import choose_k, classify, find_outliers, trajectories


def _two_states(n=1000, seed=0):
    rng = np.random.default_rng(seed)
    state = rng.integers(0, 2, n)
    z = rng.normal(0, 0.3, (n, 4))
    z[:, 0] += 2.0 * state
    return z, state


def test_classes_and_automatic_k():
    z, state = _two_states()
    one = np.random.default_rng(1).normal(size=(1000, 4))
    for method in ("gmm", "kmeans"):
        assert choose_k(z, method=method) == 2
        labels, centres = classify(z, 2, method=method)
        assert adjusted_rand_score(state, labels) > 0.98
        assert np.bincount(labels)[0] >= np.bincount(labels)[1]   # ordered by size
        assert abs(abs(centres[0, 0] - centres[1, 0]) - 2.0) < 0.1
        assert choose_k(one, method=method) == 1                  # no discrete states


def _states_that_also_move(n=3000, seed=0):
    """Two compositions, each moving continuously along the same long axis."""
    rng = np.random.default_rng(seed)
    state = rng.integers(0, 2, n)
    z = np.column_stack([rng.normal(0, 1.5, n), 1.2 * state + rng.normal(0, 0.25, n),
                         rng.normal(0, 0.3, n), rng.normal(0, 0.3, n)])
    return z, state


def test_a_state_spread_along_a_motion_is_one_class():
    """A free state and a bound state spread evenly along a swing (the demo's
    kind): BIC splits the swing into several Gaussians, which merge back because
    the density between them has no valley; a k given by the user is kept."""
    rng = np.random.default_rng(4)
    state = rng.integers(0, 2, 3000)
    z = rng.normal(0, 0.25, (3000, 4))
    z[state == 1, 0] += rng.uniform(-2, 2, (state == 1).sum())
    z[state == 1, 1] += 2.0
    k = choose_k(z, method="gmm")
    assert k > 2                                              # the swing takes several
    labels, _ = classify(z, k, method="gmm", merge=True)
    assert labels.max() + 1 == 2 and adjusted_rand_score(state, labels) > 0.95
    kept, _ = classify(z, 3, method="gmm")
    assert kept.max() + 1 == 3


def test_gaussian_mixture_keeps_elongated_states_whole():
    """k-means cuts the elongated populations along the motion; the Gaussian
    mixture (and its BIC) finds the two compositions."""
    z, state = _states_that_also_move()
    kmeans, _ = classify(z, 2, method="kmeans")
    assert adjusted_rand_score(state, kmeans) < 0.1
    assert choose_k(z, method="gmm") == 2
    labels, _ = classify(z, 2, method="gmm")
    assert adjusted_rand_score(state, labels) > 0.9


def test_trajectory_frames_follow_the_main_axis():
    rng = np.random.default_rng(2)
    t = rng.uniform(0, 1, 2000)
    z = np.column_stack([3 * t, rng.normal(0, 0.2, 2000), rng.normal(0, 0.2, 2000)])
    (traj,), _ = trajectories(z, n_pcs=1, n_frames=5, per_frame=100)
    means = [t[m].mean() for m in traj.members]
    assert len(traj.points) == 5 and all(len(m) == 100 for m in traj.members)
    assert np.all(np.diff(means) > 0) or np.all(np.diff(means) < 0)
    assert abs(means[0] - means[-1]) > 0.8
    (auto,), _ = trajectories(z, n_pcs=1, n_frames=5)      # the set shared among them
    assert all(len(m) == 400 for m in auto.members)


def test_outliers_by_threshold_and_by_fraction():
    rng = np.random.default_rng(3)
    z, _ = _two_states(1000)
    frc = rng.normal(0.4, 0.03, 1000)
    junk = np.zeros(1000, bool)
    junk[:100] = True
    frc[:50] = rng.normal(0.0, 0.02, 50)                  # noise images: no signal
    z[50:100] = rng.normal(0, 4.0, (50, 4))               # atypical latents
    frc[50:100] = rng.normal(0.25, 0.05, 50)              # another protein: poor fit
    flag, score = find_outliers(z, frc)                   # default: robust z > 3.5
    assert flag[junk].mean() >= 0.9 and flag[~junk].mean() <= 0.02
    flag, _ = find_outliers(z, frc, fraction=0.1)
    assert flag.sum() == 100 and flag[junk].mean() >= 0.9
    assert not find_outliers(z, frc, threshold=0)[0].any()


def _two_bands(n=4000, seed=5):
    """Two compositions moving alike: two long parallel bands close together
    (the moving_partial benchmark's kind), with noise in two more dimensions."""
    rng = np.random.default_rng(seed)
    state = rng.integers(0, 2, n)
    z = np.column_stack([rng.uniform(-2, 2, n), 0.7 * state + rng.normal(0, 0.12, n),
                         rng.normal(0, 0.2, n), rng.normal(0, 0.05, n)])
    return z, state


def test_density_valleys_split_states_that_move_and_keep_a_motion_whole():
    z, state = _two_bands()
    labels, _ = classify(z, 2)                                   # the default: valleys
    assert adjusted_rand_score(state, labels) > 0.95
    assert choose_k(z) == 2
    auto, _ = classify(z, choose_k(z), merge=True)
    assert adjusted_rand_score(state, auto) > 0.95
    one = z[state == 0]                                          # a motion alone
    assert choose_k(one) == 1
    moving, state2 = _states_that_also_move()
    assert adjusted_rand_score(state2, classify(moving, 2)[0]) > 0.9


def test_a_lobe_joined_to_its_population_is_not_a_class():
    """The neighbour-graph test behind the automatic k: two populations apart
    have almost no nearest neighbours across their cut; a cut through one
    population (here a band with a denser lobe at one end, joined to it all
    along) has many."""
    from gmmplugin.engine.analyze import (SEPARATE_CROSSING, _neighbours,
                                          crossing_fraction, split_by_valleys)
    rng = np.random.default_rng(4)
    a = rng.normal(0, 1, (600, 4))
    b = rng.normal(0, 1, (600, 4)) + [6, 0, 0, 0]
    x = np.vstack([a, b])
    side = np.repeat([0, 1], 600)
    assert crossing_fraction(_neighbours(x), side) < 0.01
    band = np.column_stack([rng.uniform(0, 10, 900), rng.normal(0, 0.6, (900, 3))])
    lobe = np.column_stack([rng.normal(10.5, 0.5, 300), rng.normal(0, 0.6, (300, 3))])
    y = np.vstack([band, lobe])
    cut = (y[:, 0] > 9.0).astype(np.int64)
    assert crossing_fraction(_neighbours(y), cut) > SEPARATE_CROSSING
    assert split_by_valleys(y, 0).max() == 0                 # one class
    labels = split_by_valleys(x, 0)
    assert adjusted_rand_score(side, labels) > 0.99          # two classes


def test_outliers_are_read_from_the_encoder_latents_of_refined_ones(tmp_path):
    """Training's latent refinements pull junk towards the population; analyze
    scores outliers at the encoder's latents, which still lie apart."""
    from gmmplugin.engine.commands.analyze import _encoder_latents
    rng = np.random.default_rng(8)
    z_encoder, _ = _two_states(1000)
    z_encoder[:50] = rng.normal(0, 6.0, (50, 4))          # junk: atypical latents
    refined = z_encoder.copy()
    refined[:50] = rng.normal(0, 0.3, (50, 4))             # pulled into the population
    np.savez(tmp_path / "latents.npz", ids=np.arange(1000), z=refined,
             z_before_likelihood=z_encoder)
    lat = np.load(tmp_path / "latents.npz")
    flag, _ = find_outliers(_encoder_latents(refined, lat))
    assert flag[:50].mean() >= 0.9 and flag[50:].mean() <= 0.02
    assert find_outliers(refined)[0][:50].mean() < 0.2     # the refined ones hide them
    np.savez(tmp_path / "plain.npz", ids=np.arange(1000), z=refined)
    assert _encoder_latents(refined, np.load(tmp_path / "plain.npz")) is refined


def test_with_k_given_a_cut_between_populations_beats_a_deeper_one_through_a_lobe(
        monkeypatch):
    """k given: among the valleys found, the deepest one whose pieces are
    separate on the neighbour graph is cut, not a deeper one through a single
    population (a lobe); with no separate one, the deepest is still cut."""
    from gmmplugin.engine import analyze
    rng = np.random.default_rng(5)
    x = np.vstack([rng.normal(0, 1, (600, 3)), rng.normal(0, 1, (600, 3)) + [7, 0, 0]])
    between = np.repeat([0, 1], 600)
    through = (x[:, 1] > 0).astype(np.int64)          # halves both populations
    found = [(0.05, through), (0.2, between)]
    monkeypatch.setattr(analyze, "density_valley", lambda *a, **k: list(found))
    assert adjusted_rand_score(between, analyze.split_by_valleys(x, 2)) == 1.0
    found = [(0.05, through)]
    assert adjusted_rand_score(through, analyze.split_by_valleys(x, 2)) == 1.0
