"""Viewers are registered in Scipion for their protocols; plots render."""
import numpy as np
from pwem import Domain
from pyworkflow.viewer import DESKTOP_TKINTER

from gmmplugin.protocols import GmmProtFitNeutral, GmmProtReconstruct
from gmmplugin.engine import plots
from gmmplugin.viewers import GmmFitNeutralViewer, GmmReconstructViewer
from gmmplugin.viewers.viewer_fit_neutral import chimerax_script


def test_viewers_registered():
    assert GmmFitNeutralViewer in Domain.findViewers(GmmProtFitNeutral(), DESKTOP_TKINTER)
    assert GmmReconstructViewer in Domain.findViewers(GmmProtReconstruct(), DESKTOP_TKINTER)


def test_protocols_discovered_by_scipion():
    protocols = Domain.getProtocols()
    assert "GmmProtFitNeutral" in protocols and "GmmProtReconstruct" in protocols


def test_plots_write_png(tmp_path):
    vol = np.random.default_rng(0).normal(size=(16, 16, 16)).astype(np.float32)
    freq = np.linspace(0, 0.25, 9)
    plots.plot_fsc({"a": (freq, np.linspace(1, 0, 9))}, str(tmp_path / "fsc.png"))
    plots.plot_central_slices({"v": vol}, str(tmp_path / "slices.png"))
    plots.plot_map_comparison(vol, vol, out_png=str(tmp_path / "cmp.png"))
    for name in ("fsc.png", "slices.png", "cmp.png"):
        assert (tmp_path / name).stat().st_size > 1000


def test_chimerax_script(tmp_path):
    path = chimerax_script(str(tmp_path / "o.cxc"), "a.mrc", "b.cif")
    text = open(path).read()
    assert "open" in text and "a.mrc" in text and "b.cif" in text


def test_training_curve_names_the_runs_score(tmp_path):
    from gmmplugin.viewers.viewer_analyze import GmmTrainViewer
    assert GmmTrainViewer._score_name({"config": {"loss": "frc"}}) == "FRC"
    name = GmmTrainViewer._score_name({"config": {"loss": "whitened"}})
    assert name == "whitened correlation"
    fig = plots.plot_training([{"epoch": 1, "frc": 0.3}, {"epoch": 2, "frc": 0.35}],
                              str(tmp_path / "curve.png"), score=name)
    assert fig.axes[0].get_ylabel() == "mean whitened correlation"
    assert (tmp_path / "curve.png").stat().st_size > 1000
