"""Selection in the latent space (engine/selection.py) and the decoder the
latent window uses (``decode``)."""
import os
import subprocess
import sys

import numpy as np
import pytest

from gmmplugin.engine import cli
from gmmplugin.engine.selection import (format_polygons, inside_polygons, parse_classes,
                                        parse_polygons, read_selection, select,
                                        write_selection)

SQUARE = "0,0 2,0 2,2 0,2"


def test_polygons_round_trip_and_bad_text_is_a_clear_error():
    polys = parse_polygons(SQUARE + "; 5,5 6,5 6,7")
    assert [p.shape for p in polys] == [(4, 2), (3, 2)]
    assert all(np.array_equal(a, b) for a, b in zip(parse_polygons(format_polygons(polys)),
                                                    polys))
    assert parse_polygons("  ") == []
    with pytest.raises(ValueError, match="polygon 2 needs at least 3"):
        parse_polygons(SQUARE + "; 1,1 2,2")
    with pytest.raises(ValueError, match="polygon 1 is not a list"):
        parse_polygons("a,b 3,4 5,6")
    assert parse_classes("1, 3 4") == [1, 3, 4]
    with pytest.raises(ValueError, match="start at 1"):
        parse_classes("0 2")
    with pytest.raises(ValueError, match="whole numbers"):
        parse_classes("a")


def test_inside_polygons_counts_edges_and_either_orientation():
    pts = np.array([[1, 1], [0, 0], [2, 1], [3, 3], [2.0001, 1], [5.5, 5.5]])
    want = [True, True, True, False, False, True]
    square = parse_polygons(SQUARE)[0]
    for polys in ([square, parse_polygons("5,5 6,5 6,7")[0]],
                  [square[::-1], parse_polygons("6,7 6,5 5,5")[0]]):
        assert inside_polygons(pts, polys).tolist() == want


def test_select_by_polygon_and_class():
    rng = np.random.default_rng(0)
    zred = rng.uniform(-4, 4, (500, 2))
    classes = np.where(zred[:, 0] > 0, 2, 1)
    by_class = select(zred, classes=classes, class_ids=[2])
    assert by_class.tolist() == (zred[:, 0] > 0).tolist()
    box = parse_polygons("0,-5 5,-5 5,5 0,5")
    assert select(zred, box).tolist() == by_class.tolist()
    both = select(zred, parse_polygons("-5,-5 -3,-5 -3,5 -5,5"), classes, [2])
    assert both.sum() == by_class.sum() + (zred[:, 0] <= -3).sum()
    with pytest.raises(ValueError, match="carry no class"):
        select(zred, class_ids=[1])


def test_selection_file_round_trip(tmp_path):
    path = str(tmp_path / "selection.json")
    write_selection(path, parse_polygons(SQUARE), [3, 1])
    polys, classes = read_selection(path)
    assert np.array_equal(polys[0], parse_polygons(SQUARE)[0]) and classes == [3, 1]
    (tmp_path / "bad.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="not a selection file"):
        read_selection(str(tmp_path / "bad.json"))


@pytest.fixture(scope="module")
def untrained(tmp_path_factory):
    """A checkpoint whose decoder reproduces its neutral GMM at every latent point
    (its last layer starts at zero), and that GMM."""
    from gmmplugin.engine.gmm import Gmm
    from gmmplugin.engine.particles import Particles
    from gmmplugin.engine.settings import TrainConfig
    from gmmplugin.engine.train import Trainer
    folder = tmp_path_factory.mktemp("decode")
    rng = np.random.default_rng(1)
    params = np.column_stack([rng.normal(0, 6, (40, 3)), np.ones(40), np.full(40, 3.0)])
    gmm = Gmm(params, apix=2.0, box=32, resolution=8.0)
    gmm.save(str(folder / "gmm.npz"))
    particles = Particles(ids=np.arange(1, 3), stacks=[], stack_idx=np.zeros(2, np.int32),
                          frame=np.arange(2), rotations=np.stack([np.eye(3)] * 2),
                          shifts=np.zeros((2, 2)), ctf=np.zeros((2, 7)), apix=2.0, box=32)
    trainer = Trainer(particles, gmm, TrainConfig(latent_dim=3, max_res=8.0),
                      str(folder / "work"), log=lambda m: None)
    trainer.save_checkpoint()
    return folder, trainer.checkpoint_path(), gmm


def test_decode_writes_the_gmm_at_each_point(untrained, tmp_path, capsys):
    from gmmplugin.engine.io import read_map
    folder, checkpoint, gmm = untrained
    assert cli.main(["--device", "cpu", "decode", "--checkpoint", checkpoint, "--gmm",
                     str(folder / "gmm.npz"), "--out-dir", str(tmp_path),
                     "--latent", "0.5,-1,2"]) == 0
    path = capsys.readouterr().out.strip()
    vol, apix = read_map(path)
    assert vol.shape == (32, 32, 32) and apix == pytest.approx(2.0)
    assert np.allclose(vol, gmm.render(32, 2.0), atol=1e-4 * np.abs(vol).max())
    assert cli.main(["--device", "cpu", "decode", "--checkpoint", checkpoint, "--gmm",
                     str(folder / "gmm.npz"), "--out-dir", str(tmp_path),
                     "--latent", "1,2"]) == 2
    assert "needs 3 finite values" in capsys.readouterr().err


def test_decode_serves_points_from_standard_input(untrained, tmp_path):
    folder, checkpoint, _ = untrained
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    out = subprocess.run([sys.executable, "-m", "gmmplugin.engine", "--device", "cpu",
                          "decode", "--serve", "--checkpoint", checkpoint, "--gmm",
                          str(folder / "gmm.npz"), "--out-dir", str(tmp_path)],
                         input="0 0 0\n1 2\n\n0.1 0.2 0.3\n", capture_output=True, text=True,
                         env=dict(os.environ, PYTHONPATH=root), timeout=120)
    assert out.returncode == 0, out.stderr
    answers = out.stdout.strip().splitlines()
    assert len(answers) == 3
    assert os.path.exists(answers[0]) and os.path.exists(answers[2])
    assert answers[1].startswith("ERROR: a latent point needs 3")


def test_a_hull_written_as_text_still_holds_its_own_vertices():
    """The text form is exact: a polygon through particles keeps them inside."""
    from scipy.spatial import ConvexHull
    pts = np.random.default_rng(2).normal(0, 1.7, (300, 2))
    hull = pts[ConvexHull(pts).vertices]
    text = format_polygons([hull])
    assert inside_polygons(pts, parse_polygons(text)).all()
