"""Where users find the protocols: Scipion's own loader reads the plugin's
protocols.conf into pwem's "3D > Analysis > Heterogeneity" section, in
pipeline order, with labels that read well after Scipion's plugin prefix."""
import inspect
import os

import pwem
from pyworkflow import Config
from pyworkflow.gui.project.viewprotocols_extra import ProtocolTreeConfig
from pyworkflow.protocol import Protocol

import gmmplugin.protocols as protocols

PIPELINE = ["GmmProtReconstruct", "GmmProtFitNeutral", "GmmProtTrain", "GmmProtAnalyze",
            "GmmProtSelectLatent", "GmmProtRefineOrientations", "GmmProtRefineModels",
            "GmmProtExportLatents"]


def _child(node, text):
    found = [c for c in node.childs if c.text == text]
    assert found, "%r not in %r: %s" % (text, node.text, [c.text for c in node.childs])
    return found[0]


def test_protocols_fill_pwem_heterogeneity_section_in_pipeline_order():
    ours = {name for name, cls in inspect.getmembers(protocols, inspect.isclass)
            if issubclass(cls, Protocol) and not cls.isBase()}
    assert ours == set(PIPELINE)
    # the GUI's own call; the base tree is pwem's (scipion_env.py), as in a full install
    assert Config.SCIPION_PROTOCOLS == os.path.join(os.path.dirname(pwem.__file__),
                                                    "protocols.conf")
    tree = ProtocolTreeConfig.load(Config.getDomain(), Config.SCIPION_PROTOCOLS)
    assert [c.text for c in tree["Protocols SPA"].childs][:6] == [
        "Imports", "Movies", "Micrographs", "Particles", "2D", "3D"]
    section = _child(_child(_child(tree["Protocols SPA"], "3D"), "Analysis"), "Heterogeneity")
    listed = [c.value for c in section.childs if c.value in ours]
    assert listed == PIPELINE


def test_labels_do_not_repeat_the_plugin_name():
    for name in PIPELINE:
        cls = getattr(protocols, name)
        label = cls.getClassLabel()
        assert label.startswith("gmmplugin - "), label
        assert "gmm" not in label[len("gmmplugin - "):].split()[0].lower(), label
    import gmmplugin.viewers as viewers
    for name, cls in inspect.getmembers(viewers, inspect.isclass):
        assert not cls._label.lower().startswith("gmm"), (name, cls._label)
