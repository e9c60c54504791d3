"""``fit``: the neutral GMM from a consensus map, an atomic model, or a map
seeded by a model, with the FSC of its rendered map against the target."""
import os

from .. import checks, layout
from .common import log

NAME = "fit"
HELP = "fit the neutral GMM to a map and/or an atomic model"


def add_args(f):
    f.add_argument("--map", default="", help="consensus map (.mrc)")
    f.add_argument("--model", default="", help="atomic model (.pdb/.cif): seeds, or the "
                   "only source when no map is given")
    f.add_argument("--mask", default="", help="mask (.mrc, same box): Gaussians outside "
                   "are dropped")
    f.add_argument("--resolution", type=float, required=True, help="target resolution (Å)")
    f.add_argument("--n", type=int, default=0, help="number of Gaussians (0 = automatic)")
    f.add_argument("--apix", type=float, default=0.0, help="override the map's pixel size")
    f.add_argument("--out-dir", required=True)
    f.add_argument("--seed", type=int, default=0)


def _target(a):
    """(target map, apix, origin Å, seed centres, seed weights) from --map/--model."""
    from ..atoms import read_atoms
    from ..fit_neutral import map_from_atoms
    from ..io import read_map, read_map_origin, write_map
    if a.map:
        target, apix = read_map(a.map)
        origin = read_map_origin(a.map)
        apix = a.apix or apix
        if not a.model:
            return target, apix, origin, None, None
        xyz, z, _, _ = read_atoms(a.model)
        return target, apix, origin, xyz - origin - (target.shape[0] // 2) * apix, z
    xyz, z, _, _ = read_atoms(a.model)
    target, apix, box, centre, seeds = map_from_atoms(xyz, z, a.resolution,
                                                      device=a.device_obj)
    write_map(layout.path(a.out_dir, "model_map"), target, apix)
    return target, apix, centre - (box // 2) * apix, seeds, z


def _mask(path, target, apix):
    from ..io import read_map
    m, mapix = read_map(path)
    if m.shape != target.shape:
        raise ValueError("mask box %s differs from the map box %s" % (m.shape, target.shape))
    if abs(mapix - apix) > 1e-3 * apix:
        raise ValueError("mask sampling %.4f Å/px differs from the map's %.4f Å/px"
                         % (mapix, apix))
    mask = m > 0.5
    if not mask.any():
        raise ValueError("the mask is empty (no voxel above 0.5)")
    return mask


def main(a):
    from ..fit_neutral import fit_neutral
    from ..io import write_fsc, write_json, write_map
    if not a.map and not a.model:
        raise ValueError("give --map, --model or both")
    checks.positive(a.resolution, "--resolution")
    target, apix, origin, seeds, weights = _target(a)
    mask = _mask(a.mask, target, apix) if a.mask else None
    checks.resolution_within_nyquist(a.resolution, apix, "target resolution", "the map's")

    def report(res, it, n, loss):
        if it % 50 == 0 or it == n - 1:
            log("fit at %.1f Å: iteration %d/%d, loss %.5f" % (res, it, n, loss))

    gmm, rep, rendered = fit_neutral(target, apix, a.resolution, a.n, mask=mask, seeds=seeds,
                                     seed_weights=weights, device=a.device_obj,
                                     progress=report, seed=a.seed)
    out = a.out_dir
    os.makedirs(out, exist_ok=True)
    gmm.save(layout.path(out, "gmm"))
    write_map(layout.path(out, "gmm_map"), rendered, apix)
    gmm.write_points(layout.path(out, "gmm_points"), origin=origin)
    write_fsc(layout.path(out, "gmm_fsc"), rep.fsc, target.shape[0], apix)
    write_json(layout.path(out, "fit_info"), {
        "n_gaussians": rep.n_gaussians, "resolution": rep.resolution,
        "seconds": rep.seconds, "fsc_05": rep.fsc_05, "fsc_0143": rep.fsc_0143,
        "fit_box": rep.fit_box, "fit_apix": rep.fit_apix, "apix": apix,
        "box": int(target.shape[0]), "origin": [float(v) for v in origin],
        "source": "map+model" if (a.map and a.model) else ("map" if a.map else "model")})
    print("fitted %d Gaussians in %.0f s: FSC(GMM map, input) 0.5 at %.2f Å, 0.143 at %.2f Å"
          % (rep.n_gaussians, rep.seconds, rep.fsc_05, rep.fsc_0143))
