"""Tests: engine unit tests (fast, no Scipion) and headless Scipion workflows."""
import os

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")


def data_path(name):
    """Bundled test data: PDB entries 1bd2, 1hvr, 5a7u (public domain, copied
    from ../shared/data) and stored cryoDRGN CTF values."""
    return os.path.join(DATA, name)


def import_simulated_particles(test_cls, star, apix, label=None):
    """Launch Scipion's RELION importer on a simulator .star (the simulator's
    acquisition: 300 kV, Cs 2.7 mm, amplitude contrast 0.1, not phase-flipped)."""
    from pwem.protocols import ProtImportParticles
    kwargs = {"objLabel": label} if label else {}
    prot = test_cls.newProtocol(ProtImportParticles,
                                importFrom=ProtImportParticles.IMPORT_FROM_RELION,
                                starFile=star, samplingRate=apix, magnification=50000,
                                haveDataBeenPhaseFlipped=False, voltage=300,
                                sphericalAberration=2.7, amplitudeContrast=0.1, **kwargs)
    test_cls.launchProtocol(prot)
    return prot


def check_every_viewer_entry(test, prot):
    """Run every entry of every gmmplugin viewer registered for ``prot``, as the
    GUI does (without showing the windows): each must return Scipion views, none
    an error window, and each plot window a drawn figure. Returns {entry: views}."""
    import matplotlib.pyplot as plt
    from pwem import Domain
    from pwem.viewers import EmPlotter
    from pyworkflow.viewer import DESKTOP_TKINTER, MSG_ERROR, MessageView
    ours = [v for v in Domain.findViewers(prot, DESKTOP_TKINTER)
            if v.__module__.startswith("gmmplugin")]
    test.assertTrue(ours, "no viewer registered for %s" % prot.getClassName())
    found = {}
    for viewer_cls in ours:
        viewer = viewer_cls(project=test.proj, protocol=prot)
        viewer.setProtocol(prot)
        for key, entry in viewer._getVisualizeDict().items():
            views = entry(key)
            name = "%s.%s" % (viewer_cls.__name__, key)
            test.assertTrue(views, "%s showed nothing" % name)
            for view in views:
                if isinstance(view, MessageView):
                    test.assertNotEqual(view._msgType, MSG_ERROR,
                                        "%s: %s" % (name, view.getMessage()))
                if isinstance(view, EmPlotter):
                    test.assertTrue(view.getFigure().axes, "%s: empty figure" % name)
            found[name] = views
    plt.close("all")
    return found
