"""``refine-poses``: every particle's pose refined against its own decoded GMM
(or the neutral one); a pose moves only when a likelihood-ratio test favours it."""
import os
import time

import numpy as np

from .. import checks, layout
from .common import load_gmm, load_latents, load_particles, log, require_ctf

NAME = "refine-poses"
HELP = "refine poses against each particle's GMM"


def add_args(o):
    o.add_argument("--particles", required=True, help="particles.npz or .star")
    o.add_argument("--gmm", required=True, help="neutral GMM (.npz)")
    o.add_argument("--checkpoint", default="", help="trained networks (decoded GMMs)")
    o.add_argument("--latents", default="", help="latents.npz (with --checkpoint)")
    o.add_argument("--out-dir", required=True)
    o.add_argument("--max-res", type=float, default=8.0)
    o.add_argument("--min-res", type=float, default=100.0)
    o.add_argument("--max-angle", type=float, default=10.0, help="degrees")
    o.add_argument("--max-shift", type=float, default=5.0, help="Å")
    o.add_argument("--iterations", type=int, default=60)
    o.add_argument("--batch", type=int, default=64)
    o.add_argument("--focus-mask", default="", help="align on the masked Gaussians only")
    o.add_argument("--objective", default="ml", choices=["ml", "frc"],
                   help="ml: noise-whitened correlation (maximum likelihood); frc: mean FRC")
    o.add_argument("--significance", type=float, default=0.05,
                   help="keep a refined pose only if it beats the input pose at this level "
                        "(likelihood-ratio test); 0 keeps every refined pose")


def check_settings(a, particles):
    """The limits, band and test level, before any heavy step."""
    checks.resolution_within_nyquist(a.max_res, particles.apix, "--max-res")
    checks.resolution_band(a.max_res, a.min_res, "--max-res")
    checks.positive(a.max_angle, "--max-angle")
    checks.positive(a.max_shift, "--max-shift", allow_zero=True)
    checks.positive(a.iterations, "--iterations")
    checks.fraction(a.significance, "--significance")


def gmm_source(a, particles, gmm):
    """(params_fn(rows) -> GMM parameters, "decoded" | "neutral")."""
    import torch
    from ..particles import rows_of
    if not a.checkpoint:
        neutral = torch.as_tensor(gmm.params, dtype=torch.float32)
        return (lambda rows: neutral), "neutral"
    from ..checkpoint import load_decoder
    if not a.latents:
        raise ValueError("--checkpoint needs --latents (the particles' latent vectors)")
    ids, z, lat = load_latents(a.latents)
    z = torch.tensor(z[rows_of(ids, particles.ids, "the latents (particle ids)")],
                     dtype=torch.float32)
    decoder = load_decoder(a.checkpoint, gmm.params, a.device_obj, latents=lat)

    def params_fn(rows):
        with torch.no_grad():
            return decoder(z[rows].to(a.device_obj))
    return params_fn, "decoded"


def main(a):
    from .. import distributed
    from ..geometry import rotation_angle_deg
    from ..gmm import gaussians_in_mask
    from ..io import write_json, write_npz
    from ..refine_poses import refine_poses
    particles = load_particles(a.particles)
    require_ctf(particles)
    gmm = load_gmm(a.gmm)
    checks.same_extent(gmm.box, gmm.apix, particles.box, particles.apix)
    check_settings(a, particles)
    params_fn, source = gmm_source(a, particles, gmm)
    focus = None
    if a.focus_mask:
        focus = gaussians_in_mask(a.focus_mask, gmm.centers)
        if not focus.any():
            raise ValueError("no Gaussian lies inside the focus mask")
    t0 = time.time()
    r = refine_poses(particles, params_fn, a.max_res, a.min_res, a.max_angle,
                     a.max_shift, a.iterations, batch_size=a.batch, device=a.device_obj,
                     focus=focus, objective=a.objective, significance=a.significance,
                     log=log)
    if not distributed.is_main():
        return
    dang = rotation_angle_deg(particles.rotations, r.rotations)
    dsh = np.linalg.norm(r.shifts - particles.shifts, axis=1)
    refined = particles.subset(np.arange(len(particles)))
    refined.rotations, refined.shifts = r.rotations, r.shifts
    os.makedirs(a.out_dir, exist_ok=True)
    refined.save(layout.path(a.out_dir, "particles_refined"))
    write_npz(layout.path(a.out_dir, "refine_stats"), ids=particles.ids, gain=r.gain,
              moved=r.moved, frc=r.frc)
    write_json(layout.path(a.out_dir, "refine_info"), {
        "particles": len(particles), "source": source, "iterations": a.iterations,
        "objective": a.objective, "significance": a.significance,
        "moved_fraction": float(r.moved.mean()),
        "median_angle_change": float(np.median(dang)),
        "median_shift_change_A": float(np.median(dsh)), "mean_frc": float(r.frc.mean()),
        "particles_per_s": r.rate, "particle_iterations_per_s": r.rate * a.iterations,
        "seconds": time.time() - t0})
    print("refined %d particles (%s GMM): %.1f%% moved significantly; median change "
          "%.2f deg, %.2f Å; %.1f particles/s" % (len(particles), source, 100 * r.moved.mean(),
                                                 np.median(dang), np.median(dsh), r.rate))
