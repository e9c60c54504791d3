"""``analyze``: classes, volume series (along the latent PCs, along each
class's principal curve, along a path between anchors: decoded GMMs and
reconstructions from the nearest particles), outliers and the population
landscape."""
import os

import numpy as np

from .. import layout
from .common import load_latents, load_particles, log, require_ctf

NAME = "analyze"
HELP = "classes, trajectories and outliers of latents"


def add_args(n):
    n.add_argument("--particles", required=True, help="particles.npz or .star")
    n.add_argument("--latents", required=True, help="latents.npz (ids, z[, frc])")
    n.add_argument("--checkpoint", default="", help="trained networks (to decode frames)")
    n.add_argument("--gmm", default="", help="neutral GMM (to decode frames)")
    n.add_argument("--out-dir", required=True)
    n.add_argument("--num-classes", type=int, default=0, help="0 = automatic")
    n.add_argument("--clustering", default="valley", choices=["valley", "gmm", "kmeans"],
                   help="valley: cut where the particle density drops (minimum-density "
                        "hyperplanes; automatic k: while a class has a valley); gmm: "
                        "Gaussian mixture with full covariances (automatic k by BIC); "
                        "kmeans: k-means (automatic k by silhouette)")
    n.add_argument("--reduction", default="pca", choices=["pca", "umap"])
    n.add_argument("--num-pcs", type=int, default=2)
    n.add_argument("--num-frames", type=int, default=7)
    n.add_argument("--per-frame", type=int, default=0,
                   help="particles reconstructed in each frame, those nearest its latent "
                        "point; 0 = the series's particles divided by its frames, at least "
                        "20 (the whole set along a principal axis, the class along its "
                        "curve, the classes a path runs through). Fewer separate the motion "
                        "more finely in noisier maps; a fixed number bounds the time on a "
                        "very large set")
    n.add_argument("--class-curves", type=int, default=1, choices=[0, 1],
                   help="1: a volume series along each class's principal curve")
    n.add_argument("--path", default="",
                   help="anchors of a path through the populated latent space, in order, "
                        "separated by ';': class:K (the class's central particle), "
                        "particle:ID or point:x,y,... (the particle nearest it)")
    n.add_argument("--weights", default="none", choices=["none", "confidence"],
                   help="confidence: particles weigh in the class maps by their latent "
                        "confidence (written by train), and each frame map widens its "
                        "neighbourhood shell by shell, up to 3 times its particles, as "
                        "far as the decoder and the noise predict a gain (needs "
                        "--checkpoint and --gmm; about 3 times the frames' "
                        "reconstruction time, plus 2 decodings per latent dimension "
                        "and frame)")
    n.add_argument("--outlier-fraction", type=float, default=0.0,
                   help="if > 0: this fraction of highest outlier scores are outliers")
    n.add_argument("--outlier-threshold", type=float, default=3.5,
                   help="robust z-score above which a particle is an outlier (used when "
                        "the fraction is 0; 0 = no outliers)")
    n.add_argument("--box", type=int, default=0, help="reconstruction box (Fourier crop)")
    n.add_argument("--pad", type=int, default=2)
    n.add_argument("--seed", type=int, default=0)


class _Maps:
    """Reconstructions of particle subsets into the output folder; ``weights``
    (one per latent row, or None) weigh each particle in the class maps, and
    with them frame maps widen their neighbourhood shell by shell
    (engine/frame_shells.py)."""

    def __init__(self, a, particles, rows, box, weights=None):
        self.a, self.particles, self.rows, self.box = a, particles, rows, box
        self.weights = weights

    def __call__(self, members, name):
        """FSC 0.143 resolution of the map of ``members`` saved as ``name`` (None
        for fewer than 2 particles)."""
        from ..reconstruct import reconstruct, save_reconstruction
        if len(members) < 2:
            return None
        members = np.sort(members)
        w = None if self.weights is None else self.weights[members]
        if w is not None and not w.any():
            return None
        rec = reconstruct(self.particles, self.rows[members], box=self.box,
                          device=self.a.device_obj, pad=self.a.pad, seed=self.a.seed,
                          weights=w)
        save_reconstruction(rec, self.a.out_dir, name)
        return rec.resolution

    def widening(self, members, name, z, point, population, motion, render):
        """(resolution, particles in each Fourier shell) of the frame map of
        ``members`` whose neighbourhood in ``population`` widens with the shell
        (engine/frame_shells.py; ``motion``: the direction each particle's
        confidence was measured along), saved as ``name``; plain (None for
        the counts) below 2 particles or without weights."""
        from ..frame_shells import widening_frame
        from ..reconstruct import nested_reconstructions, save_reconstruction
        if len(members) < 2 or self.weights is None:
            return self(members, name), None

        def nested(rows, sizes):
            return nested_reconstructions(self.particles, self.rows[rows], sizes,
                                          box=self.box, device=self.a.device_obj,
                                          pad=self.a.pad, seed=self.a.seed)
        rec, counts = widening_frame(z, point, members, population, self.weights, motion,
                                     render, nested)
        save_reconstruction(rec, self.a.out_dir, name)
        return rec.resolution, counts.tolist()


def _classes(a, z):
    """(labels, centres) of the latent classes."""
    from ..analyze import choose_k, classify
    k = (a.num_classes if a.num_classes > 0
         else choose_k(z, seed=a.seed, method=a.clustering))
    return classify(z, k, seed=a.seed, method=a.clustering, merge=a.num_classes <= 0)


def _class_maps(labels, centres, recon):
    """A record of each class, with its reconstruction."""
    records = []
    for c in range(len(centres)):          # merging can leave fewer classes than k
        sel = np.nonzero(labels == c)[0]
        res = recon(sel, layout.name("class", cls=c + 1))
        records.append({"class": c + 1, "size": int(len(sel)), "resolution": res,
                        "centre": centres[c].tolist()})
    return records


def _decoder(a):
    """The trained decoder, or None when no networks were given."""
    from ..checkpoint import load_decoder
    if not (a.checkpoint and a.gmm):
        return None
    from .common import load_gmm
    return load_decoder(a.checkpoint, load_gmm(a.gmm).params, a.device_obj,
                        latents=np.load(a.latents))


def _renderer(a, decoder, box, apix):
    """point (L,) -> (the decoded GMM's parameters, its map (box³ numpy))."""
    import torch
    from ..gmm import render_volume_fourier

    def render(point):
        with torch.no_grad():
            params = decoder(torch.tensor(np.asarray(point)[None], dtype=torch.float32,
                                          device=a.device_obj))[0]
            vol = render_volume_fourier(params.double(), box, apix).cpu().numpy()
        return params.cpu().numpy(), vol
    return render


def _decode_frame(a, render, point, series, frame, apix):
    """Write the GMM decoded at a latent point: its map and its Gaussians."""
    from ..io import write_map, write_npy
    params, vol = render(point)
    write_map(layout.path(a.out_dir, "gmm_frame", series=series, frame=frame), vol, apix)
    write_npy(layout.path(a.out_dir, "gmm_frame_params", series=series, frame=frame),
              params)


CURVE_MIN = 100        # particles a class needs for its own principal curve
PATH_GAP = 2.0         # a path step this many local neighbour spacings long is a jump


def _series(a, z, ids, labels):
    """(every volume series to compute: (name, frame points, members per frame,
    extra per-frame fields, the rows its frames may draw on), the path's widest
    gap (paths.path_gap; 0 without one))."""
    from ..analyze import trajectories
    from ..paths import anchor_rows, curve_frames, latent_path, parse_anchors, \
        principal_curve
    out, gap = [], 0.0
    trajs = trajectories(z, a.num_pcs, a.num_frames, a.per_frame)[0] if a.num_pcs > 0 else []
    for t in trajs:
        out.append(("pc%d" % t.pc, t.points, t.members,
                    [{"score": float(s)} for s in t.scores], np.arange(len(z))))
    if a.class_curves:
        for c in range(labels.max() + 1):
            sel = np.nonzero(labels == c)[0]
            if len(sel) < max(CURVE_MIN, 2 * a.num_frames):
                log("class %d: too few particles (%d) for a principal curve" % (c + 1,
                                                                               len(sel)))
                continue
            curve = curve_frames(z[sel], principal_curve(z[sel], a.num_frames),
                                 a.per_frame)
            out.append(("class%d" % (c + 1), curve.points, [sel[m] for m in curve.members],
                        [{"occupancy": int(o), "arc": float(s)}
                         for o, s in zip(curve.occupancy, curve.arc)], sel))
    if a.path:
        rows = anchor_rows(parse_anchors(a.path), z, ids, labels)
        curve = latent_path(z, rows, a.num_frames, a.per_frame, labels=labels)
        out.append(("path", curve.points, curve.members,
                    [{"occupancy": int(o), "arc": float(s)}
                     for o, s in zip(curve.occupancy, curve.arc)],
                    np.nonzero(np.isin(labels, curve.classes))[0]))
        log("path through %d anchors (particles %s): length %.3g in latent units, "
            "occupancy %s" % (len(rows), ", ".join(str(int(ids[r])) for r in rows),
                              curve.arc[-1], " ".join(str(int(o)) for o in curve.occupancy)))
        if curve.gap > PATH_GAP:
            log("WARNING: the anchors lie in separate populations: no chain of near "
                "neighbours joins them, so the path jumps across empty latent space (a "
                "gap of %.0f local neighbour spacings). Frames with no occupancy lie "
                "in the gap; their maps are the decoder's guesses, not states the "
                "particles show." % curve.gap)
        gap = curve.gap
    return out, gap


def _motion(z, lat):
    """The direction each particle's confidence was measured along: train's,
    or (latents from before train wrote it) the same tangents again."""
    if "motion" in lat.files and lat["motion"].shape == z.shape:
        return np.asarray(lat["motion"], dtype=np.float64)
    from ..latent_likelihood import motion_tangents
    return motion_tangents(z)


def _trajectories(a, z, lat, series, recon, box, apix):
    """(members per frame, frame records, decoded?): maps of every volume series.
    With weights, a frame's map widens its neighbourhood shell by shell
    (engine/frame_shells.py), which takes the decoder."""
    decoder = _decoder(a)
    render = _renderer(a, decoder, box, apix) if decoder is not None else None
    widen = recon.weights is not None and render is not None
    motion = _motion(z, lat) if widen else None
    frames, members_all = [], []
    for name, points, members, extra, population in series:
        for f, (point, rows) in enumerate(zip(points, members)):
            frame_name = layout.name("frame", series=name, frame=f + 1)
            record = dict(extra[f], series=name, frame=f + 1, latent=point.tolist(),
                          particles=int(len(rows)))
            if widen:
                record["resolution"], record["shell_particles"] = recon.widening(
                    rows, frame_name, z, point, population, motion, lambda p: render(p)[1])
            else:
                record["resolution"] = recon(rows, frame_name)
            frames.append(record)
            members_all.append(rows)
            if render is not None:
                _decode_frame(a, render, point, name, f + 1, apix)
        log("volume series %s: %d frames" % (name, len(points)))
    return members_all, frames, decoder is not None


def _landscape(a, zred, curves=None, centres=None):
    """The population landscape of the 2-D view: its arrays, basins and picture,
    with the volume series ``curves`` and class ``centres`` drawn on it."""
    from ..io import write_npz
    from ..landscape import population_landscape
    from ..plots import plot_landscape
    land = population_landscape(zred)
    write_npz(layout.path(a.out_dir, "landscape"), energy=land.energy, counts=land.counts,
              xedges=land.xedges, yedges=land.yedges, minima=land.minima,
              populations=land.populations, basin=land.basin)
    plot_landscape(land.energy, land.xedges, land.yedges, land.minima, land.populations,
                   len(zred), out_png=layout.path(a.out_dir, "landscape_png"),
                   curves=curves, centres=centres)
    log("landscape: %d basin(s) holding %s of the particles" % (
        len(land.populations), ", ".join("%.0f %%" % (100 * p) for p in land.populations)))
    return land


def _encoder_latents(z, lat):
    """The encoder's latents when train refined them (by classification or each
    particle's likelihood), else ``z``. Outliers are read from these: the
    refinements pull every image, junk too, towards the population it is
    compared with, while the encoder's latent (and its FRC, which train
    computed there) says how well the model explains the image as it is."""
    for key in ("z_encoder", "z_before_likelihood"):
        if key in lat.files:
            return np.asarray(lat[key], dtype=np.float64)
    return z


def main(a):
    from ..analyze import find_outliers, locate_in_view, reduce
    from ..io import write_json, write_npz
    from ..particles import rows_of
    particles = load_particles(a.particles)
    require_ctf(particles)
    ids, z, lat = load_latents(a.latents)
    rows = rows_of(particles.ids, ids, "the particles (latent ids)")
    if len(z) < 4:
        raise ValueError("too few particles to analyse (%d)" % len(z))
    if a.num_frames < 2:
        raise ValueError("--num-frames must be at least 2, not %d" % a.num_frames)
    if a.per_frame < 0 or a.per_frame == 1:
        raise ValueError("--per-frame must be 0 (automatic) or at least 2, not %d"
                         % a.per_frame)
    frc = lat["frc"] if "frc" in lat.files else None
    confidence = lat["confidence"] if "confidence" in lat.files else None
    if a.weights == "confidence" and confidence is None:
        raise ValueError("--weights confidence: the latents carry no confidence (train "
                         "writes it)")
    if a.weights == "confidence" and not (a.checkpoint and a.gmm):
        raise ValueError("--weights confidence needs --checkpoint and --gmm: the decoder "
                         "predicts how each frame's map changes over its neighbourhood")
    if a.path:                                  # a bad anchor fails before any work
        from ..paths import parse_anchors
        parse_anchors(a.path)
    os.makedirs(a.out_dir, exist_ok=True)
    box = a.box or particles.box
    apix = particles.apix * particles.box / box
    recon = _Maps(a, particles, rows, box,
                  weights=confidence if a.weights == "confidence" else None)
    outlier, score = find_outliers(_encoder_latents(z, lat), frc, a.outlier_fraction,
                                   a.outlier_threshold)
    zred = reduce(z, a.reduction, seed=a.seed)
    labels, centres = _classes(a, z)
    series, path_gap = _series(a, z, ids, labels)   # bad anchors fail here, before the maps
    classes = _class_maps(labels, centres, recon)
    log("%d classes (%s, %s); %d outliers"
        % (len(classes), a.clustering, "given" if a.num_classes > 0 else
           {"valley": "chosen by density valleys", "gmm": "chosen by BIC and merging",
            "kmeans": "chosen by silhouette"}[a.clustering],
           outlier.sum()))
    for c in classes:
        log("class %d: %d particles, FSC 0.143 at %s Å" % (c["class"], c["size"],
                                                         c["resolution"]))
    members, frames, decoded = _trajectories(a, z, lat, series, recon, box, apix)
    if frames:
        for f, xy in zip(frames, locate_in_view(z, zred, [f["latent"] for f in frames])):
            f["zred"] = xy.tolist()
    for c, xy in zip(classes, locate_in_view(z, zred, [c["centre"] for c in classes])):
        c["zred"] = xy.tolist()
    curves = {}
    for f in frames:
        curves.setdefault(f["series"], []).append(f["zred"])
    land = _landscape(a, zred, curves, {"class %d" % c["class"]: c["zred"] for c in classes})
    extra = {} if confidence is None else {"confidence": confidence}
    write_npz(layout.path(a.out_dir, "analysis"), ids=ids, labels=labels,
              zred=zred, outlier=outlier, score=score, z=z,
              frame_members=np.concatenate([ids[rows] for rows in members]).astype(np.int64)
              if members else np.zeros(0, np.int64),
              frame_starts=np.cumsum([0] + [len(rows) for rows in members]),
              **extra)
    write_json(layout.path(a.out_dir, "analysis_info"), {
        "num_classes": len(classes), "k_chosen_automatically": a.num_classes <= 0,
        "clustering": a.clustering,
        "classes": classes, "frames": frames, "outliers": int(outlier.sum()),
        "apix": apix, "box": box, "reduction": a.reduction, "decoded": decoded,
        "series": list(dict.fromkeys(f["series"] for f in frames)),
        "path_anchors": a.path, "path_jumps_a_gap": bool(path_gap > PATH_GAP),
        "weights": a.weights,
        "landscape": {"minima": land.minima.tolist(),
                      "populations": land.populations.tolist()}})
