"""Plotting functions (matplotlib only, no Scipion): reused by the viewers,
the demo and the benchmarks, and testable headless (Agg backend)."""
import numpy as np


def _figure(*args, **kwargs):
    import matplotlib
    if matplotlib.get_backend().lower() not in ("tkagg", "agg") and not _has_display():
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt.figure(*args, **kwargs)


def _has_display():
    import os
    return bool(os.environ.get("DISPLAY"))


def _finish(fig, out_png=None, title=None, tight=True):
    """Common ending of every plot: optional title, layout, optional PNG."""
    if title:
        fig.suptitle(title)
    if tight:
        fig.tight_layout()
    if out_png:
        fig.savefig(out_png, dpi=100)
    return fig


def plot_fsc(curves, out_png=None, title="FSC", thresholds=(0.143, 0.5)):
    """``curves``: {label: (frequency 1/Å, fsc)}. Returns the figure."""
    fig = _figure(figsize=(6, 4))
    ax = fig.add_subplot(111)
    for label, (freq, curve) in curves.items():
        ax.plot(freq, curve, label=label)
    for t in thresholds:
        ax.axhline(t, color="grey", lw=0.8, ls="--")
    ax.set_xlabel("spatial frequency (1/Å)")
    ax.set_ylabel("FSC")
    ax.set_ylim(-0.1, 1.05)
    ax.set_title(title)
    ax.legend()
    # resolution labels on top, at the bottom axis' ticks
    top = ax.twiny()
    top.set_xlim(ax.get_xlim())
    ticks = [t for t in ax.get_xticks() if 0 < t <= ax.get_xlim()[1]]
    top.set_xticks(ticks)
    top.set_xticklabels(["%.1f" % (1 / t) for t in ticks])
    top.set_xlabel("resolution (Å)")
    return _finish(fig, out_png)


def plot_central_slices(maps, out_png=None, title=None):
    """``maps``: {label: (D, D, D) array}; one row of XY/XZ/YZ slices per map."""
    fig = _figure(figsize=(7.5, 2.6 * len(maps)))
    for row, (label, vol) in enumerate(maps.items()):
        c = vol.shape[0] // 2
        for col, (name, sl) in enumerate((("XY", vol[c]), ("XZ", vol[:, c]),
                                          ("YZ", vol[:, :, c]))):
            ax = fig.add_subplot(len(maps), 3, row * 3 + col + 1)
            ax.imshow(sl, cmap="gray", origin="lower")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title("%s %s" % (label, name), fontsize=9)
    return _finish(fig, out_png, title)


def plot_map_comparison(map_a, map_b, labels=("input", "GMM"), out_png=None):
    """Central XY slices and Z projections of two maps side by side."""
    fig = _figure(figsize=(6.5, 6))
    panels = [("%s slice" % labels[0], map_a[map_a.shape[0] // 2]),
              ("%s slice" % labels[1], map_b[map_b.shape[0] // 2]),
              ("%s projection" % labels[0], map_a.sum(0)),
              ("%s projection" % labels[1], map_b.sum(0))]
    for i, (title, img) in enumerate(panels):
        ax = fig.add_subplot(2, 2, i + 1)
        ax.imshow(img, cmap="gray", origin="lower")
        ax.set_title(title, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    return _finish(fig, out_png)


def plot_training(history, out_png=None, score="FRC"):
    """Mean similarity score (FRC or whitened correlation) per epoch."""
    fig = _figure(figsize=(6, 3.5))
    ax = fig.add_subplot(111)
    ep = [h["epoch"] for h in history]
    ax.plot(ep, [h["frc"] for h in history], "o-", label="mean " + score)
    ax.set_xlabel("epoch")
    ax.set_ylabel("mean " + score)
    ax.set_title("Heterogeneity training")
    ax.legend()
    return _finish(fig, out_png)


def _draw_curves(ax, curves, colour="k"):
    """Volume series drawn on a 2-D latent view: ``curves`` maps a label to its
    frames' (F, 2) positions, joined in order, the first frame marked."""
    for label, pts in (curves or {}).items():
        pts = np.asarray(pts).reshape(-1, 2)
        ax.plot(pts[:, 0], pts[:, 1], ".-", color=colour, ms=7, lw=1.2)
        ax.plot(pts[:1, 0], pts[:1, 1], "o", mfc="none", mec=colour, ms=9)
        ax.annotate(label, pts[-1], xytext=(4, 4), textcoords="offset points",
                    fontsize=8, color=colour)


def plot_latent_scatter(zred, color=None, color_label="", points=None, out_png=None,
                        title="Latent space", categorical=False):
    """2D latent embedding, coloured by class or by a value (loss, score);
    ``points``: trajectory frames drawn on top, joined in order, either one
    (M, 2) array or a dict label -> (M, 2) (several volume series)."""
    fig = _figure(figsize=(5.5, 5))
    ax = fig.add_subplot(111)
    n = len(zred)
    size = max(1, min(12, 20000 // max(n, 1)))
    if color is None:
        ax.scatter(zred[:, 0], zred[:, 1], s=size, alpha=0.5, lw=0)
    else:
        sc = ax.scatter(zred[:, 0], zred[:, 1], c=color, s=size, alpha=0.6, lw=0,
                        cmap="tab10" if categorical else "viridis")
        if categorical:
            for c in np.unique(color):
                ax.scatter([], [], color=sc.cmap(sc.norm(c)), label="class %d" % c)
            ax.legend(fontsize=8, markerscale=2)
        else:
            fig.colorbar(sc, ax=ax, label=color_label)
    if isinstance(points, dict):
        _draw_curves(ax, points)
    elif points is not None:
        ax.plot(points[:, 0], points[:, 1], "k.-", ms=9)
    ax.set_xlabel("dimension 1")
    ax.set_ylabel("dimension 2")
    ax.set_title(title)
    return _finish(fig, out_png)


def plot_selection(zred, selected, polygons=(), out_png=None,
                   title="Selection in the latent space"):
    """The 2-D latent view with the selected particles highlighted and the
    selection's polygons drawn."""
    fig = _figure(figsize=(5.5, 5))
    ax = fig.add_subplot(111)
    selected = np.asarray(selected, bool)
    size = max(1, min(12, 20000 // max(len(zred), 1)))
    ax.scatter(zred[~selected, 0], zred[~selected, 1], s=size, c="0.7", lw=0,
               label="not selected (%d)" % (~selected).sum())
    ax.scatter(zred[selected, 0], zred[selected, 1], s=size, c="tab:red", lw=0,
               label="selected (%d)" % selected.sum())
    for p in polygons:
        p = np.asarray(p)
        ax.plot(np.r_[p[:, 0], p[:1, 0]], np.r_[p[:, 1], p[:1, 1]], "k-", lw=1)
    ax.legend(fontsize=8, markerscale=2)
    ax.set_xlabel("dimension 1")
    ax.set_ylabel("dimension 2")
    ax.set_title(title)
    return _finish(fig, out_png)


def plot_landscape(energy, xedges, yedges, minima=(), populations=(), n_particles=None,
                   out_png=None, title="Population landscape of the latent space",
                   curves=None, centres=None):
    """−ln p over the 2-D latent view (lowest = most populated), with the basins'
    minima and the fraction of particles in each, the volume series ``curves``
    (label -> (F, 2)) and the class ``centres`` (label -> (x, y)). A picture of
    how the particles are distributed, not a thermodynamic measurement."""
    fig = _figure(figsize=(6.2, 5.2))
    ax = fig.add_subplot(111)
    extent = [xedges[0], xedges[-1], yedges[0], yedges[-1]]
    im = ax.imshow(np.asarray(energy).T, origin="lower", extent=extent, aspect="auto",
                   cmap="viridis_r")
    fig.colorbar(im, ax=ax, label="-ln(p / p_max)")
    for (x, y), frac in zip(np.asarray(minima).reshape(-1, 2), populations):
        ax.plot(x, y, "r+", ms=12, mew=2)
        ax.annotate("%.0f %%" % (100 * frac), (x, y), xytext=(6, 6),
                    textcoords="offset points", color="red", fontsize=9)
    _draw_curves(ax, curves, colour="white")
    for label, (x, y) in (centres or {}).items():
        ax.plot(x, y, "s", mfc="none", mec="orange", ms=8, mew=1.5)
        ax.annotate(label, (x, y), xytext=(5, -10), textcoords="offset points",
                    color="orange", fontsize=8)
    ax.set_xlabel("dimension 1")
    ax.set_ylabel("dimension 2")
    ax.set_title(title, fontsize=10)
    note = "particle counts%s; not a free energy" % (
        " (%d particles)" % n_particles if n_particles else "")
    fig.text(0.01, 0.01, note, fontsize=7, color="0.4")
    return _finish(fig, out_png)


def plot_volume_series(maps, labels=None, out_png=None, title="Volume series"):
    """Montage: one column per frame, rows = central XY slice, Z projection."""
    k = len(maps)
    fig = _figure(figsize=(1.6 * k + 0.5, 3.6))
    for i, vol in enumerate(maps):
        for r, (img, what) in enumerate(((vol[vol.shape[0] // 2], "slice"),
                                         (vol.sum(0), "projection"))):
            ax = fig.add_subplot(2, k, r * k + i + 1)
            ax.imshow(img, cmap="gray", origin="lower")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(labels[i] if labels else str(i + 1), fontsize=8)
            if i == 0:
                ax.set_ylabel(what, fontsize=8)
    return _finish(fig, out_png, title)


def plot_quiver(params_a, params_b, out_png=None, title="Gaussian displacements",
                min_shift=0.0):
    """Displacement arrows of the Gaussians between two decoded GMMs (N, 5),
    seen along z (x/y) and along y (x/z); colour = displacement length (Å)."""
    a, b = np.asarray(params_a), np.asarray(params_b)
    d = b[:, :3] - a[:, :3]
    length = np.linalg.norm(d, axis=1)
    sel = length >= min_shift
    fig = _figure(figsize=(10, 4.8))
    for i, (u, v, name) in enumerate(((0, 1, "x / y"), (0, 2, "x / z"))):
        ax = fig.add_subplot(1, 2, i + 1)
        ax.scatter(a[:, u], a[:, v], s=2, c="lightgrey")
        q = ax.quiver(a[sel, u], a[sel, v], d[sel, u], d[sel, v], length[sel],
                      angles="xy", scale_units="xy", scale=1, cmap="plasma", width=0.003)
        ax.set_aspect("equal")
        ax.set_title(name)
        ax.set_xlabel("Å")
    fig.colorbar(q, ax=fig.axes, label="displacement (Å)")
    return _finish(fig, out_png, title, tight=False)   # colorbar spans all axes


MODEL_METRICS = (("bond_rmsz", "bond RMSZ", 1.0), ("angle_rmsz", "angle RMSZ", 1.2),
                 ("rama_outliers_pct", "Ramachandran outliers (%)", 0.5),
                 ("clashscore", "clashscore", 5.0), ("frc", "FRC with the map", None))


def plot_model_validation(rows, out_png=None, title="Model series validation"):
    """One panel per validation metric against the frame index, with the
    acceptance line where there is one; the starting model (frame -1) dashed."""
    frames = [r for r in rows if r.get("frame", 0) >= 0]
    start = next((r for r in rows if r.get("frame") == -1), None)
    shown = [m for m in MODEL_METRICS if any(r.get(m[0]) is not None for r in frames)]
    fig = _figure(figsize=(3.2 * max(1, len(shown)), 3))
    axes = np.atleast_1d(fig.subplots(1, max(1, len(shown))))
    for ax, (key, label, goal) in zip(axes, shown):
        x = [r["frame"] for r in frames if r.get(key) is not None]
        y = [r[key] for r in frames if r.get(key) is not None]
        ax.plot(x, y, "o-", label="refined")
        if start is not None and start.get(key) is not None:
            ax.axhline(start[key], color="grey", ls="--", label="start")
        if goal is not None:
            ax.axhline(goal, color="red", ls=":", label="goal")
        ax.set_xlabel("frame")
        ax.set_title(label, fontsize=9)
    axes[0].legend(fontsize=7)
    return _finish(fig, out_png, title)


def plot_pose_changes(angle_deg, shift_A, moved, out_png=None,
                      title="Orientation refinement: pose changes"):
    """Histograms of each particle's angular and shift change, split into the
    poses that moved (the data favoured the refined pose) and those kept."""
    angle_deg, shift_A = np.asarray(angle_deg, float), np.asarray(shift_A, float)
    moved = np.asarray(moved, bool)
    fig = _figure(figsize=(9, 3.5))
    axes = fig.subplots(1, 2)
    for ax, values, label in ((axes[0], angle_deg, "angular change (°)"),
                              (axes[1], shift_A, "shift change (Å)")):
        bins = np.linspace(0, max(float(values.max()) if len(values) else 1.0, 1e-3), 40)
        ax.hist(values[moved], bins=bins, alpha=0.7,
                label="moved (%d)" % moved.sum())
        ax.hist(values[~moved], bins=bins, alpha=0.7,
                label="kept input (%d)" % (~moved).sum())
        ax.set_xlabel(label)
        ax.set_ylabel("particles")
    axes[0].legend(fontsize=8)
    return _finish(fig, out_png, title)
