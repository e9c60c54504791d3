"""The interactive latent-space window: draw polygons on the 2-D latent view
to select particles, see how many are selected, and click any point to see the
GMM decoded there (central slices and projections, in the same window).

The decoding runs in the engine's own process (``python -m gmmplugin.engine
decode --serve``, started at the first click), so the GUI never loads torch.
A clicked point of the 2-D view is mapped back to the latent space as the mean
latent of the particles nearest to it, which keeps the decoded GMM within the
populated space for PCA and UMAP views alike.
"""
import os
import subprocess
import tkinter as tk

import numpy as np

from ..engine import selection
from ..engine.io import read_map

NEAREST = 20          # particles whose mean latent stands for a clicked point


class Decoding:
    """A running ``decode --serve`` engine process for one trained run."""

    def __init__(self, checkpoint, gmm, out_dir):
        import tempfile
        from .. import Plugin
        os.makedirs(out_dir, exist_ok=True)
        # a folder of its own: the engine holds its output folder while it runs,
        # and several windows may be open on one run
        out_dir = tempfile.mkdtemp(prefix="window_", dir=out_dir)
        args = [Plugin.getPython()] + Plugin.getEngineArgs(
            "decode --serve --checkpoint %s --gmm %s --out-dir %s"
            % (checkpoint, gmm, out_dir), "cpu", 1).split()
        self.process = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, text=True,
                                        env=Plugin.getEnviron())

    def __call__(self, z):
        """The decoded map (array) at latent point ``z``."""
        self.process.stdin.write(" ".join("%.6g" % v for v in z) + "\n")
        self.process.stdin.flush()
        answer = self.process.stdout.readline().strip()
        if not answer or answer.startswith("ERROR"):
            raise RuntimeError(answer or self.process.stderr.read()[-2000:])
        return read_map(answer)[0]

    def close(self):
        if self.process.poll() is None:
            self.process.stdin.close()
            self.process.wait(timeout=10)


class LatentSelectionWindow:
    """A Tk window over ``master`` with the latent plot and the selection tools.

    ``zred`` (n, 2), ``z`` (n, L) latents, ``classes`` (n,) or None; ``decoding``
    (a callable z -> map, or None); ``on_apply(polygons, classes)`` receives the
    selection in the protocol's text forms."""

    def __init__(self, master, zred, z, classes=None, polygons="", decoding=None,
                 on_apply=None, title="Select particles in the latent space", class_ids=""):
        from matplotlib.backends.backend_tkagg import FigureCanvasTkAgg
        from matplotlib.figure import Figure
        from matplotlib.widgets import PolygonSelector
        self.zred, self.z, self.classes = np.asarray(zred), np.asarray(z), classes
        self.decoding, self.on_apply = decoding, on_apply
        self.polygons = selection.parse_polygons(polygons)
        self.class_ids = set(selection.parse_classes(class_ids)) if classes is not None \
            else set()
        self.top = tk.Toplevel(master)
        self.top.title(title)
        self.figure = Figure(figsize=(10, 5), dpi=90)
        self.ax = self.figure.add_subplot(1, 2, 1)
        self.ax_map = [self.figure.add_subplot(2, 2, 2), self.figure.add_subplot(2, 2, 4)]
        self.canvas = FigureCanvasTkAgg(self.figure, master=self.top)
        self.canvas.get_tk_widget().pack(side=tk.TOP, fill=tk.BOTH, expand=True)
        self.status = tk.StringVar()
        self._buttons()
        self.selector = PolygonSelector(self.ax, self._polygon_done, useblit=False)
        self.canvas.mpl_connect("button_press_event", self._clicked)
        self._draw()
        self._show_map(None)

    def _buttons(self):
        bar = tk.Frame(self.top)
        bar.pack(side=tk.BOTTOM, fill=tk.X)
        tk.Label(bar, textvariable=self.status).pack(side=tk.LEFT, padx=8)
        for text, command in (("Use this selection", self.apply), ("Clear", self.clear),
                              ("Close", self.close)):
            tk.Button(bar, text=text, command=command).pack(side=tk.RIGHT, padx=4, pady=4)
        tk.Label(bar, text="Draw: click the vertices, close on the first one. Shift-click: "
                           "a particle's whole class. Right-click: the GMM at that "
                           "point.").pack(side=tk.LEFT)

    def selected(self):
        return selection.select(self.zred, self.polygons, self.classes,
                                sorted(self.class_ids))

    def _draw(self):
        ax, keep = self.ax, self.selected()
        limits = (ax.get_xlim(), ax.get_ylim()) if ax.collections else None
        for artist in list(ax.collections) + list(ax.lines):
            if artist not in getattr(self.selector, "artists", ()):
                artist.remove()
        size = max(1, min(12, 20000 // max(len(self.zred), 1)))
        colour = self.classes if self.classes is not None else "0.6"
        ax.scatter(self.zred[:, 0], self.zred[:, 1], s=size, c=colour, cmap="tab10",
                   vmin=0, vmax=9, lw=0, alpha=0.5)      # class k: the k-th tab10 colour
        ax.scatter(self.zred[keep, 0], self.zred[keep, 1], s=size, c="tab:red", lw=0)
        for p in self.polygons:
            ax.plot(np.r_[p[:, 0], p[:1, 0]], np.r_[p[:, 1], p[:1, 1]], "k-", lw=1)
        if limits:
            ax.set_xlim(*limits[0])
            ax.set_ylim(*limits[1])
        ax.set_title("latent space (zRed)")
        self.status.set("%d of %d particles selected, %d polygon(s)%s"
                        % (keep.sum(), len(keep), len(self.polygons),
                           ", classes %s" % " ".join(map(str, sorted(self.class_ids)))
                           if self.class_ids else ""))
        self.canvas.draw_idle()

    def _polygon_done(self, vertices):
        if len(vertices) >= 3:
            self.polygons.append(np.asarray(vertices, dtype=np.float64))
        self.selector.clear()
        self._draw()

    def _clicked(self, event):
        if event.inaxes is not self.ax:
            return
        if event.button == 3:
            self.decode_at(event.xdata, event.ydata)
        elif event.button == 1 and event.key == "shift":
            self.toggle_class_at(event.xdata, event.ydata)

    def toggle_class_at(self, x, y):
        """Add (or remove) the class of the particle nearest to (x, y)."""
        if self.classes is None:
            self.status.set("These particles carry no classes.")
            return
        cls = int(self.classes[np.argmin(np.linalg.norm(self.zred - [x, y], axis=1))])
        self.class_ids.symmetric_difference_update({cls})
        self.selector.clear()
        self._draw()

    def decode_at(self, x, y):
        """Show the GMM decoded at the 2-D point (x, y) of the latent view."""
        if self.decoding is None:
            self.status.set("No trained networks for these latents: nothing to decode.")
            return None
        d = np.linalg.norm(self.zred - np.array([x, y]), axis=1)
        point = self.z[np.argsort(d)[:NEAREST]].mean(0)
        try:
            vol = self.decoding(point)
        except Exception as e:
            self.status.set("Decoding failed: %s" % e)
            return None
        self._show_map(vol, (x, y))
        return vol

    def _show_map(self, vol, where=None):
        for ax in self.ax_map:
            ax.clear()
            ax.set_xticks([])
            ax.set_yticks([])
        if vol is None:
            self.ax_map[0].set_title("right-click the latent plot", fontsize=9)
        else:
            self.ax_map[0].imshow(vol[vol.shape[0] // 2], cmap="gray", origin="lower")
            self.ax_map[0].set_title("GMM at (%.2f, %.2f): central slice" % where,
                                     fontsize=9)
            self.ax_map[1].imshow(vol.sum(0), cmap="gray", origin="lower")
            self.ax_map[1].set_title("projection", fontsize=9)
        self.canvas.draw_idle()

    def clear(self):
        self.polygons, self.class_ids = [], set()
        self._draw()

    def apply(self):
        if self.on_apply is not None:
            self.on_apply(selection.format_polygons(self.polygons),
                          " ".join(map(str, sorted(self.class_ids))))
        self.close()

    def close(self):
        if self.decoding is not None and hasattr(self.decoding, "close"):
            self.decoding.close()
        self.top.destroy()


def latent_arrays(partSet):
    """(zRed (n, 2), z (n, L), classes (n,) or None) of a flexible set, by id."""
    from ..protocols.protocol_select import latent_view
    _, zred, classes = latent_view(partSet)
    z = np.array([list(p.getZFlex()) for p in partSet.iterItems(orderBy="id")],
                 dtype=np.float64)
    return zred, z, classes


class StartOnFirstUse:
    """Starts the decoding engine process at the first request (the first click),
    not when the window opens."""

    def __init__(self, start):
        self.start, self.decoding = start, None

    def __call__(self, z):
        if self.decoding is None:
            self.decoding = self.start()
        return self.decoding(z)

    def close(self):
        if self.decoding is not None:
            self.decoding.close()
