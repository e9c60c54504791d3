"""Neutral GMM fit, engine level (small and fast)."""
import json

import mrcfile
import numpy as np
import pytest

from gmmplugin.engine import cli
from gmmplugin.engine.atoms import read_atoms
from gmmplugin.engine.fit_neutral import fit_neutral, map_from_atoms
from gmmplugin.engine.sampling import crop_box_for
from gmmplugin.engine.fourier import fsc, shell_resolutions
from gmmplugin.engine.gmm import Gmm
from gmmplugin.engine.io import write_map
from gmmplugin.tests import data_path


@pytest.fixture(scope="module")
def hvr_map():
    xyz, z, _, _ = read_atoms(data_path("1hvr.pdb"))
    vol, apix, box, centre, _ = map_from_atoms(xyz, z, 4.0, apix=2.0, box=48)
    return vol, apix


def _below(curve, box, apix, res):
    r = shell_resolutions(box, apix)
    shells = np.arange(1, len(r))
    return curve[shells[r[shells] >= res]]


def test_fit_reaches_fsc_09_at_target(hvr_map):
    vol, apix = hvr_map
    gmm, rep, rendered = fit_neutral(vol, apix, 8.0)
    assert rep.fit_box == crop_box_for(48, 2.0, 8.0) == 24
    assert _below(rep.fsc, 48, apix, 8.0).min() >= 0.9
    # the report's FSC is the real one between the rendered GMM and the map
    assert np.allclose(fsc(gmm.render(48, apix), vol)[:6], rep.fsc[:6], atol=0.02)
    assert 50 < len(gmm) < 2000 and np.all(gmm.widths > 0)


def test_mask_keeps_centres_inside(hvr_map):
    vol, apix = hvr_map
    mask = np.zeros(vol.shape, bool)
    mask[:, :, 24:] = True                      # x >= 0 half
    gmm, rep, _ = fit_neutral(vol, apix, 10.0, mask=mask, iterations=(20, 20, 40), polish=10)
    assert (np.round(gmm.centers[:, 0] / apix) + 24 >= 24).all()


def test_bad_inputs(hvr_map):
    vol, apix = hvr_map
    with pytest.raises(ValueError, match="Nyquist"):
        fit_neutral(vol, apix, 3.0)
    with pytest.raises(ValueError, match="mask is empty"):
        fit_neutral(vol, apix, 8.0, mask=np.zeros(vol.shape, bool))
    bad = vol.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        fit_neutral(bad, apix, 8.0)


def test_cli_fit_from_model_only(tmp_path):
    rc = cli.main(["--device", "cpu", "fit", "--model", data_path("5a7u.pdb"),
                   "--resolution", "6", "--out-dir", str(tmp_path)])
    assert rc == 0
    info = json.load(open(tmp_path / "fit.json"))
    assert info["source"] == "model"
    target = mrcfile.read(tmp_path / "model_map.mrc")
    gmm = Gmm.load(tmp_path / "gmm.npz")
    curve = fsc(gmm.render(target.shape[0], info["apix"]), target)
    assert _below(curve, target.shape[0], info["apix"], 6.0).min() >= 0.9
    # the pseudo-atoms sit on the model's atoms (same frame)
    import gemmi
    pts = gemmi.read_structure(str(tmp_path / "gmm_points.cif"))
    xyz, _, _, _ = read_atoms(data_path("5a7u.pdb"))
    p = np.array([a.pos.tolist() for r in pts[0].all() for a in [r.atom]])
    nearest = np.linalg.norm(p[:, None] - xyz[None], axis=-1).min(1)
    assert np.median(nearest) < 2.5


def test_cli_fit_errors(tmp_path, hvr_map):
    vol, apix = hvr_map
    write_map(str(tmp_path / "m.mrc"), vol, apix)
    write_map(str(tmp_path / "mask.mrc"), np.zeros((32, 32, 32)), apix)
    assert cli.main(["fit", "--map", str(tmp_path / "m.mrc"), "--resolution", "8",
                     "--mask", str(tmp_path / "mask.mrc"), "--out-dir", str(tmp_path)]) == 2
    assert cli.main(["fit", "--map", str(tmp_path / "m.mrc"), "--resolution", "2",
                     "--out-dir", str(tmp_path)]) == 2
    (tmp_path / "junk.mrc").write_bytes(b"junk" * 64)
    assert cli.main(["fit", "--map", str(tmp_path / "junk.mrc"), "--resolution", "8",
                     "--out-dir", str(tmp_path)]) == 2
    assert not (tmp_path / "gmm.npz").exists()
