"""``analyze``: classes, trajectories along the latent PCs (decoded GMMs and
reconstructions from the nearest particles) and outliers."""
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
    n.add_argument("--clustering", default="gmm", choices=["gmm", "kmeans"],
                   help="gmm: Gaussian mixture with full covariances (follows elongated "
                        "populations; automatic k by BIC); kmeans: k-means (automatic k "
                        "by silhouette)")
    n.add_argument("--reduction", default="pca", choices=["pca", "umap"])
    n.add_argument("--num-pcs", type=int, default=2)
    n.add_argument("--num-frames", type=int, default=7)
    n.add_argument("--per-frame", type=int, default=500)
    n.add_argument("--outlier-fraction", type=float, default=0.0,
                   help="if > 0: this fraction of highest outlier scores are outliers")
    n.add_argument("--outlier-threshold", type=float, default=3.5,
                   help="robust z-score above which a particle is an outlier (used when "
                        "the fraction is 0; 0 = no outliers)")
    n.add_argument("--box", type=int, default=0, help="reconstruction box (Fourier crop)")
    n.add_argument("--pad", type=int, default=2)
    n.add_argument("--seed", type=int, default=0)


class _Maps:
    """Reconstructions of particle subsets into the output folder."""

    def __init__(self, a, particles, rows, box):
        self.a, self.particles, self.rows, self.box = a, particles, rows, box

    def __call__(self, members, name):
        """FSC 0.143 resolution of the map of ``members`` saved as ``name`` (None
        for fewer than 2 particles)."""
        from ..reconstruct import reconstruct, save_reconstruction
        if len(members) < 2:
            return None
        rec = reconstruct(self.particles, self.rows[members], box=self.box,
                          device=self.a.device_obj, pad=self.a.pad, seed=self.a.seed)
        save_reconstruction(rec, self.a.out_dir, name)
        return rec.resolution


def _classes(a, z, recon):
    """(labels, class records) of the latent classes, each reconstructed."""
    from ..analyze import choose_k, classify
    k = (a.num_classes if a.num_classes > 0
         else choose_k(z, seed=a.seed, method=a.clustering))
    labels, centres = classify(z, k, seed=a.seed, method=a.clustering,
                               merge=a.num_classes <= 0)
    records = []
    for c in range(len(centres)):          # merging can leave fewer classes than k
        sel = np.nonzero(labels == c)[0]
        res = recon(sel, layout.name("class", cls=c + 1))
        records.append({"class": c + 1, "size": int(len(sel)), "resolution": res,
                        "centre": centres[c].tolist()})
    return labels, records


def _decoder(a):
    """The trained decoder, or None when no networks were given."""
    from ..checkpoint import load_decoder
    if not (a.checkpoint and a.gmm):
        return None
    from .common import load_gmm
    return load_decoder(a.checkpoint, load_gmm(a.gmm).params, a.device_obj,
                        latents=np.load(a.latents))


def _decode_frame(a, decoder, point, pc, frame, box, apix):
    """Write the GMM decoded at a latent point: its map and its Gaussians."""
    import torch
    from ..gmm import render_volume_fourier
    from ..io import write_map, write_npy
    with torch.no_grad():
        params = decoder(torch.tensor(point[None], dtype=torch.float32,
                                      device=a.device_obj))[0]
        vol = render_volume_fourier(params.double(), box, apix).cpu().numpy()
    write_map(layout.path(a.out_dir, "gmm_frame", pc=pc, frame=frame), vol, apix)
    write_npy(layout.path(a.out_dir, "gmm_frame_params", pc=pc, frame=frame),
              params.cpu().numpy())


def _trajectories(a, z, recon, box, apix):
    """(trajectories, frame records): maps along the first PCs of the latents."""
    from ..analyze import trajectories
    decoder = _decoder(a)
    trajs, _ = trajectories(z, a.num_pcs, a.num_frames, a.per_frame)
    frames = []
    for t in trajs:
        for f, (point, members) in enumerate(zip(t.points, t.members)):
            res = recon(members, layout.name("frame", pc=t.pc, frame=f + 1))
            frames.append({"pc": t.pc, "frame": f + 1, "score": float(t.scores[f]),
                           "latent": point.tolist(), "resolution": res,
                           "particles": int(len(members))})
            if decoder is not None:
                _decode_frame(a, decoder, point, t.pc, f + 1, box, apix)
        log("trajectory along PC%d: %d frames" % (t.pc, len(t.points)))
    return trajs, frames, decoder is not None


def _landscape(a, zred):
    """The population landscape of the 2-D view: its arrays, basins and picture."""
    from ..io import write_npz
    from ..landscape import population_landscape
    from ..plots import plot_landscape
    land = population_landscape(zred)
    write_npz(layout.path(a.out_dir, "landscape"), energy=land.energy, counts=land.counts,
              xedges=land.xedges, yedges=land.yedges, minima=land.minima,
              populations=land.populations, basin=land.basin)
    plot_landscape(land.energy, land.xedges, land.yedges, land.minima, land.populations,
                   len(zred), out_png=layout.path(a.out_dir, "landscape_png"))
    log("landscape: %d basin(s) holding %s of the particles" % (
        len(land.populations), ", ".join("%.0f %%" % (100 * p) for p in land.populations)))
    return land


def main(a):
    from ..analyze import find_outliers, reduce
    from ..io import write_json, write_npz
    from ..particles import rows_of
    particles = load_particles(a.particles)
    require_ctf(particles)
    ids, z, lat = load_latents(a.latents)
    rows = rows_of(particles.ids, ids, "the particles (latent ids)")
    if len(z) < 4:
        raise ValueError("too few particles to analyse (%d)" % len(z))
    frc = lat["frc"] if "frc" in lat.files else None
    os.makedirs(a.out_dir, exist_ok=True)
    box = a.box or particles.box
    apix = particles.apix * particles.box / box
    recon = _Maps(a, particles, rows, box)
    outlier, score = find_outliers(z, frc, a.outlier_fraction, a.outlier_threshold)
    zred = reduce(z, a.reduction, seed=a.seed)
    labels, classes = _classes(a, z, recon)
    log("%d classes (%s, %s); %d outliers"
        % (len(classes), a.clustering, "given" if a.num_classes > 0 else
           "chosen by BIC and merging" if a.clustering == "gmm" else "chosen by silhouette",
           outlier.sum()))
    for c in classes:
        log("class %d: %d particles, FSC 0.143 at %s Å" % (c["class"], c["size"],
                                                         c["resolution"]))
    trajs, frames, decoded = _trajectories(a, z, recon, box, apix)
    land = _landscape(a, zred)
    write_npz(layout.path(a.out_dir, "analysis"), ids=ids, labels=labels,
              zred=zred, outlier=outlier, score=score, z=z,
              frame_members=np.array([[int(ids[m]) for m in members]
                                      for t in trajs for members in t.members]))
    write_json(layout.path(a.out_dir, "analysis_info"), {
        "num_classes": len(classes), "k_chosen_automatically": a.num_classes <= 0,
        "clustering": a.clustering,
        "classes": classes, "frames": frames, "outliers": int(outlier.sum()),
        "apix": apix, "box": box, "reduction": a.reduction, "decoded": decoded,
        "landscape": {"minima": land.minima.tolist(),
                      "populations": land.populations.tolist()}})
