"""How the viewers show things: Scipion's own windows, and a working fallback
wherever an optional tool (xmipp's data viewer, ChimeraX) is missing.

Every viewer entry returns a list of Scipion views: plot windows (pwem's
``EmPlotter`` around a figure of ``engine/plots.py``), data views, ChimeraX
command views, or a message window that says what is missing. An entry never
ends in a traceback: :func:`shown` turns a missing or unreadable result into
an error window.
"""
import functools
import os
import shutil

from pwem.viewers import DataView, EmPlotter
from pyworkflow.viewer import CommandView

from ..engine import plots
from ..engine.io import read_map


def plot_window(figure):
    """A Scipion plot window around a matplotlib figure."""
    return EmPlotter(figure=figure)


def has_data_viewer():
    """xmipp's data viewer (showj), which Scipion's DataView needs, is installed."""
    from pwem import Domain
    try:
        return Domain.importFromPlugin("xmipp3", "Plugin", doRaise=False) is not None
    except Exception:
        return False


def data_or_fallback(path, fallback):
    """Scipion's DataView of ``path`` when xmipp is installed, else ``fallback()``."""
    return [DataView(path)] if has_data_viewer() else fallback()


def map_slices(paths, labels=None, title=None):
    """Plot window of the central slices of maps (the data viewer's fallback)."""
    maps = {label: read_map(p)[0] for label, p in zip(labels or paths, paths)}
    return plot_window(plots.plot_central_slices(maps, title=title))


def chimerax_program():
    """ChimeraX of Scipion's chimera plugin when configured, else from the PATH."""
    try:
        from pwem.viewers.viewer_chimera import Chimera
        prog = Chimera.getProgram()
        if prog and os.path.exists(prog):
            return prog
    except Exception:
        pass
    return shutil.which("chimerax") or shutil.which("ChimeraX")


def chimerax_or_fallback(viewer, script, fallback=None):
    """Open a ChimeraX command file (through scipion-em-chimera's view when it
    is configured); without ChimeraX, ``fallback()`` plus a message saying how
    to get the 3D view."""
    prog = chimerax_program()
    if prog:
        try:
            from pwem.viewers.viewer_chimera import Chimera, ChimeraView
            if prog == Chimera.getProgram():
                return [ChimeraView(os.path.abspath(script))]
        except Exception:
            pass
        return [CommandView('"%s" "%s" &' % (prog, os.path.abspath(script)))]
    message = viewer.infoMessage(
        "ChimeraX is not configured in Scipion (scipion-em-chimera) nor on the PATH. "
        "The 3D view is saved as a ChimeraX script: %s" % os.path.abspath(script),
        "ChimeraX not found")
    return (fallback() if fallback else []) + [message]


def shown(method):
    """A viewer entry that reports a missing or unreadable result in an error
    window instead of raising (e.g. a run that failed half-way)."""
    @functools.wraps(method)
    def entry(viewer, param=None):
        try:
            return method(viewer, param)
        except (OSError, KeyError, ValueError, TypeError, IndexError) as e:
            return [viewer.errorMessage("This result cannot be shown: %s" % e,
                                        "Missing result")]
    return entry
