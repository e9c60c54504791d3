"""Curves through the populated latent space: a class's principal curve
follows a curved population, a path between states stays on the particles,
and anchors are read and checked."""
import numpy as np
import pytest
from scipy.stats import spearmanr

from gmmplugin.engine.paths import (MIN_PER_FRAME, anchor_rows, curve_frames, graph_path,
                                    latent_path, nearest_rows, parse_anchors, principal_curve,
                                    project, resample)


def _arc(n=3000, seed=0, noise=0.08):
    """Particles along a half circle of radius 1 (a curved motion), their true
    position along it (angle)."""
    rng = np.random.default_rng(seed)
    angle = rng.uniform(0, np.pi, n)
    z = np.column_stack([np.cos(angle), np.sin(angle), np.zeros(n), np.zeros(n)])
    return z + rng.normal(0, noise, z.shape), angle


def test_principal_curve_follows_a_curved_population():
    z, angle = _arc()
    curve = principal_curve(z, 9)
    radius = np.linalg.norm(curve[:, :2], axis=1)
    assert np.all(np.abs(radius - 1) < 0.12)              # on the arc, not across it
    theta = np.arctan2(curve[:, 1], curve[:, 0])
    steps = np.diff(theta)
    assert np.all(steps > 0) or np.all(steps < 0)           # in order, end to end
    assert np.ptp(theta) > 0.8 * np.pi
    # a principal axis would cut through the empty middle
    assert np.linalg.norm(curve[4, :2]) > 0.85


def test_frames_hold_their_own_particles_and_the_occupancy_counts_them():
    z, angle = _arc(seed=1)
    curve = curve_frames(z, principal_curve(z, 7), per_frame=200)
    for f, members in enumerate(curve.members):
        assert len(members) == 200
        near = np.linalg.norm(z[members] - curve.points[f], axis=1)
        assert near.max() < 0.5
    assert curve.occupancy.sum() > 0.95 * len(z)
    assert np.all(curve.occupancy > 0.5 * len(z) / 7 / 2)   # evenly populated arc
    assert np.all(np.diff(curve.arc) > 0)


def test_automatic_frames_share_the_particles_along_the_curve():
    """per_frame 0: the particles along the curve shared among its frames, so
    a set four times larger gives frames four times fuller (not thinner
    slices of the motion), and together the frames hold most of the arc."""
    z, _ = _arc(seed=1)
    curve = curve_frames(z, principal_curve(z, 7))
    size = len(curve.members[0])
    assert size == round(curve.occupancy.sum() / 7)
    assert len(np.unique(np.concatenate(curve.members))) > 0.85 * len(z)
    big, _ = _arc(n=4 * len(z), seed=2)
    fuller = curve_frames(big, principal_curve(big, 7))
    assert len(fuller.members[0]) == pytest.approx(4 * size, rel=0.1)


def _moving_and_absent(n=4000, seed=2):
    """State 1 moves along a curve; state 0 is a blob close to the curve's middle,
    as an absent domain beside a motion."""
    rng = np.random.default_rng(seed)
    state = (rng.uniform(size=n) < 0.5).astype(int)
    t = rng.uniform(0, 1, n)
    z = np.zeros((n, 3))
    z[:, 0] = np.where(state == 1, 4 * t - 2, rng.normal(0, 0.3, n))
    z[:, 1] = np.where(state == 1, 1.5 * (1 - (2 * t - 1) ** 2), -0.6 + rng.normal(0, 0.3, n))
    z += rng.normal(0, 0.1, z.shape)
    return z, state, t


def test_path_between_the_ends_of_a_motion_stays_on_its_state():
    z, state, t = _moving_and_absent()
    moving = np.nonzero(state == 1)[0]
    ends = [moving[np.argmin(t[moving])], moving[np.argmax(t[moving])]]
    curve = latent_path(z, ends, n_frames=9, per_frame=150)
    means = [t[m].mean() for m in curve.members]
    assert np.all(np.diff(means) > 0)
    absent = np.mean([np.mean(state[m] == 0) for m in curve.members])
    assert absent <= 0.02
    # the straight line between the ends would pass through the other state
    straight = resample(z[ends], 9)
    mid = np.argsort(np.linalg.norm(z - straight[4], axis=1))[:150]
    assert np.mean(state[mid] == 0) > 0.5


def test_automatic_path_frames_share_the_classes_the_path_runs_through():
    """per_frame 0 with the classes: a path within the moving state shares that
    state's particles among its frames, not the whole set (which would draw
    the absent state into its frames where the two lie close)."""
    z, state, t = _moving_and_absent()
    moving = np.nonzero(state == 1)[0]
    ends = [moving[np.argmin(t[moving])], moving[np.argmax(t[moving])]]
    curve = latent_path(z, ends, n_frames=9, labels=state)
    assert len(curve.members[0]) == round(len(moving) / 9)
    assert np.all(np.diff([t[m].mean() for m in curve.members]) > 0)
    assert np.mean([np.mean(state[m] == 0) for m in curve.members]) < 0.02


def test_anchors_not_connected_are_refused():
    rng = np.random.default_rng(3)
    z = np.concatenate([rng.normal(0, 0.1, (300, 2)), rng.normal(50, 0.1, (300, 2))])
    with pytest.raises(ValueError, match="not connected"):
        graph_path(z, [0, 400])


def test_anchors_are_read_and_checked():
    assert parse_anchors("class:2; particle:17 ;point:0.5,-1") == [
        ("class", 2), ("particle", 17), ("point", [0.5, -1.0])]
    for bad in ("class:x; class:2", "cluster:1; class:2", "class:1"):
        with pytest.raises(ValueError):
            parse_anchors(bad)
    z = np.array([[0.0, 0], [1, 0], [2, 0], [3, 0]])
    ids = np.array([10, 11, 12, 13])
    labels = np.array([0, 0, 1, 1])
    rows = anchor_rows(parse_anchors("class:2; particle:11; point:0.1,0.1"), z, ids, labels)
    assert rows[1:] == [1, 0] and rows[0] in (2, 3)
    for bad in ("class:3; class:1", "particle:99; class:1", "point:1,2,3; class:1"):
        with pytest.raises(ValueError):
            anchor_rows(parse_anchors(bad), z, ids, labels)


def test_principal_curve_of_a_class_in_pieces():
    """A class made of two separate blobs has no graph path between its ends:
    the curve starts from the straight line instead of failing."""
    rng = np.random.default_rng(9)
    z = np.concatenate([rng.normal([0, 0], 0.1, (300, 2)), rng.normal([40, 0], 0.1, (300, 2))])
    curve = principal_curve(z, 5)
    assert curve.shape == (5, 2) and np.all(np.isfinite(curve))
    assert curve[0, 0] < 5 and curve[-1, 0] > 35


def test_principal_curve_runs_along_a_bend_as_wide_as_it_is_long():
    """A U whose arms are longer than it is wide: its first principal axis
    runs along both arms at once (their ends are its extremes on the same
    side), the curve must still run from one arm's end to the other's."""
    rng = np.random.default_rng(1)
    arm, n = 2.0, 4000
    s = rng.uniform(0, np.pi + 2 * arm, n)            # true position along the U
    bottom = s - arm
    x = np.where(s < arm, -1.0, np.where(bottom > np.pi, 1.0, -np.cos(bottom)))
    y = np.where(s < arm, arm - s, np.where(bottom > np.pi, bottom - np.pi, -np.sin(bottom)))
    z = np.column_stack([x, y, np.zeros(n)]) + rng.normal(0, 0.3, (n, 3)) * [1, 1, 0.2]
    curve = principal_curve(z, 15)
    position, _ = project(z, curve)
    assert abs(spearmanr(position, s)[0]) > 0.97
    assert curve[0, 1] > 1 and curve[-1, 1] > 1               # both ends up the arms
    assert abs(curve[0, 0] - curve[-1, 0]) > 1.5              # one on each arm


def test_a_path_between_separate_populations_crosses_their_gap_and_says_so():
    rng = np.random.default_rng(3)
    z = np.concatenate([rng.normal(0, 0.1, (300, 2)), rng.normal(2, 0.1, (300, 2))])
    curve = latent_path(z, [0, 599], n_frames=9, per_frame=50)
    assert curve.points[0, 0] < 0.3 and curve.points[-1, 0] > 1.7     # end to end
    assert curve.gap > 10                   # the jump between the two blobs
    assert curve.occupancy[4] == 0          # the middle frame holds no particles
    one = latent_path(z[:300], [0, 299], n_frames=5, per_frame=50)
    assert one.gap <= 1.0 + 1e-9            # within one population: neighbour steps
    tail = np.concatenate([z[:300], rng.normal(0, 1.0, (20, 2))])      # a sparse tail
    far = int(np.argmax(np.linalg.norm(tail, axis=1)))
    assert latent_path(tail, [0, far], n_frames=5, per_frame=20).gap < 2


def test_curve_tangents_follow_the_motion_where_each_particle_is():
    from gmmplugin.engine.paths import curve_tangents
    curve = np.array([[0.0, 2.0], [0.0, 0.0], [2.0, 0.0], [2.0, 2.0]])   # a square U
    z = np.array([[0.1, 1.5], [1.0, -0.1], [1.9, 1.2]])
    d = curve_tangents(z, curve)
    assert np.allclose(np.abs(d), [[0, 1], [1, 0], [0, 1]])


def test_the_neighbour_graph_is_in_canonical_form():
    """The graph is handed on sorted and without duplicate entries, the form
    graph algorithms expect (maximum() of a graph and its transpose leaves
    rows unsorted)."""
    from gmmplugin.engine.paths import knn_graph
    rng = np.random.default_rng(1)
    z = rng.normal(0, [0.8, 0.12], (1400, 2))
    g = knn_graph(z, 10)
    assert g.has_sorted_indices and g.has_canonical_format
    assert np.allclose((g - g.T).toarray(), 0)            # symmetric


def test_path_follows_a_dense_population_not_a_shortcut_through_sparse_particles():
    """A U of closely spaced particles whose two ends are joined across the
    opening by a few isolated ones (as noisy latents in a sparse end of a
    population): the path between the ends runs along the U."""
    s = np.arange(0.0, 1.0, 0.02)
    arm = np.column_stack([np.zeros_like(s), 1.0 - s])
    bend = np.linspace(np.pi, 2 * np.pi, 80)[1:-1]
    u = np.concatenate([arm - [0.5, 0], np.column_stack([0.5 * np.cos(bend),
                                                         0.5 * np.sin(bend)]),
                        (arm + [0.5, 0])[::-1]])
    bridge = np.column_stack([[-1 / 6, 1 / 6], [1.0, 1.0]])
    z = np.concatenate([u, bridge])
    rows = graph_path(z, [0, len(u) - 1])
    assert not np.isin(rows, [len(u), len(u) + 1]).any()
    assert len(rows) > 0.9 * len(u)


def test_a_path_on_latents_where_scipys_dijkstra_loops_forever_returns():
    """Latents (a class of a small GUI-test project) on whose squared-edge
    neighbour graph scipy 1.10.0's dijkstra never returns (its heap bug, scipy
    issue 17782): the path is found, in a child process bounded in time."""
    import os
    import subprocess
    import sys
    data = os.path.join(os.path.dirname(__file__), "data", "latents_dijkstra_loop.npz")
    code = ("import numpy as np; from gmmplugin.engine.paths import graph_path, "
            "principal_curve; z = np.load(%r)['z']; rows = graph_path(z, [130, 47]); "
            "principal_curve(z, 3); print(len(rows), rows[0], rows[-1])" % data)
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, cwd=root)
    assert out.returncode == 0, out.stderr[-2000:]
    n, first, last = map(int, out.stdout.split())
    assert (first, last) == (130, 47) and n > 2


def test_projection_in_chunks_is_the_projection():
    """project() works through large sets in chunks (bounded memory): each point
    lands at its nearest point of the polyline, by brute force over a fine
    sampling of it, whatever the chunk size."""
    z, _ = _arc(n=1000, seed=4)
    curve = principal_curve(z, 7)
    fine = resample(curve, 20000)                       # arc-length spaced
    arc = np.concatenate([[0], np.cumsum(np.linalg.norm(np.diff(fine, axis=0), axis=1))])
    d = np.linalg.norm(z[:, None, :] - fine[None], axis=2)
    for chunk in (100000, 77):
        pos, dist = project(z, curve, chunk=chunk)
        np.testing.assert_allclose(dist, d.min(1), atol=2e-3)
        np.testing.assert_allclose(pos, arc[d.argmin(1)], atol=0.05)


def test_nearest_rows_are_the_nearest_in_order():
    rng = np.random.default_rng(5)
    dist = rng.uniform(size=1000)
    np.testing.assert_array_equal(nearest_rows(dist, 50), np.argsort(dist)[:50])
    assert len(nearest_rows(dist, 5000)) == 1000          # no more than the set


def test_automatic_frames_of_a_small_set_and_a_path_across_two_classes():
    """At least MIN_PER_FRAME particles a frame, never more than the set; a path
    from one state to another shares both states' particles."""
    z, _ = _arc(n=60, seed=6)
    small = curve_frames(z, principal_curve(z, 7))
    assert all(len(m) == MIN_PER_FRAME for m in small.members)
    assert all(len(m) == 60 for m in curve_frames(z, small.points, per_frame=500).members)
    rng = np.random.default_rng(7)
    a = rng.normal([-2, 0], 0.4, (800, 2))
    b = rng.normal([2, 0], 0.4, (400, 2))
    bridge = np.column_stack([np.linspace(-1, 1, 200), rng.normal(0, 0.1, 200)])
    z = np.concatenate([a, b, bridge, rng.normal([0, 5], 0.3, (900, 2))])
    labels = np.repeat([0, 1, 0, 2], [800, 400, 200, 900])
    labels[1300:1400] = 1                                  # the bridge's right half
    curve = latent_path(z, [int(np.argmin(z[:800, 0])), 800 + int(np.argmax(z[800:1200, 0]))],
                        n_frames=8, labels=labels)
    assert len(curve.members[0]) == round(1400 / 8)          # classes 0 and 1, not 2


def test_curves_and_paths_of_a_large_set_run_on_a_sample():
    """A principal curve fitted to a sample of the set follows the same arc; a
    path on the neighbour graph of a sample starts and ends at its anchors and
    follows the motion, its frames drawing on the whole set."""
    z, angle = _arc(n=6000, seed=8)
    full, part = principal_curve(z, 7), principal_curve(z, 7, sample=1500)
    assert np.abs(full - part).max() < 0.1                  # on an arc of radius 1
    ends = [int(np.argmin(angle)), int(np.argmax(angle))]
    curve = latent_path(z, ends, n_frames=7, per_frame=300, sample=1500)
    np.testing.assert_allclose(curve.points[[0, -1]], z[ends], atol=1e-9)
    means = [angle[m].mean() for m in curve.members]
    assert np.all(np.diff(means) > 0)
    assert len(np.unique(np.concatenate(curve.members))) > 1500  # frames from the whole set
