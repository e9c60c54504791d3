"""``refine-models``: an atomic model refined into one map or a map series.

Writes into ``--out-dir``: one model per map, in order (mmCIF by gemmi),
a validation table (one row per model and one for the starting model), a
summary (maps, latents, FRC, timing) and the decoder that interpolates models
between the frames' latents; ``layout.py`` names the files.
"""
import os
import time

import numpy as np

from .. import layout
from .common import log

NAME = "refine-models"
HELP = "refine an atomic model into a map or a volume series (one model per map)"


def add_args(m):
    m.add_argument("--model", required=True, help="starting model (.pdb/.cif)")
    m.add_argument("--maps", required=True, nargs="+", help="map(s) (.mrc), in order")
    m.add_argument("--latents", default="", help="latent coordinate per map (.npy or "
                   "text, one row per map); default: the frame index")
    m.add_argument("--resolution", type=float, required=True, help="target resolution (Å)")
    m.add_argument("--stages", default="patch,residue,atom")
    m.add_argument("--patches", type=int, default=64)
    m.add_argument("--geometry-weight", type=float, default=0.0, help="0 = automatic")
    m.add_argument("--steps", default="150,150,200", help="steps per stage")
    m.add_argument("--directions", type=int, default=32, help="projections per map")
    m.add_argument("--apix", type=float, default=0.0, help="override the maps' pixel size")
    m.add_argument("--no-validation", action="store_true",
                   help="skip tortoize / king-probe (geometry RMSZ still computed)")
    m.add_argument("--out-dir", required=True)
    m.add_argument("--seed", type=int, default=0)


def _read_latents(path, n_maps):
    if not path:
        return None
    if not os.path.exists(path):
        raise FileNotFoundError("latents file not found: %s" % path)
    lat = np.load(path) if path.endswith(".npy") else np.loadtxt(path, ndmin=2)
    lat = np.asarray(lat, dtype=np.float64).reshape(len(lat), -1)
    if len(lat) != n_maps:
        raise ValueError("%d latent rows for %d maps" % (len(lat), n_maps))
    if not np.all(np.isfinite(lat)):
        raise ValueError("the latents contain NaN or infinite values")
    return lat


def read_maps(paths, apix_override=0.0):
    """(maps, Å/px, origins): the series must share one box and one sampling."""
    from ..io import read_map, read_map_origin
    maps, apix0, origins = [], None, []
    for path in paths:
        vol, apix = read_map(path)
        apix = apix_override or apix
        if maps and vol.shape != maps[0].shape:
            raise ValueError("map %s has box %s, the first map %s" % (path, vol.shape,
                                                                       maps[0].shape))
        if apix0 is not None and abs(apix - apix0) > 1e-3 * apix0:
            raise ValueError("map %s has %.4f Å/px, the first map %.4f" % (path, apix, apix0))
        maps.append(vol)
        apix0 = apix
        origins.append(read_map_origin(path))
    return maps, apix0, origins


def refine_config(a):
    from ..atomic.refine import RefineConfig
    stages = tuple(s.strip() for s in a.stages.split(",") if s.strip())
    steps = tuple(int(v) for v in a.steps.split(","))
    if len(steps) != 3 or min(steps) < 0:
        raise ValueError("--steps needs three non-negative counts (patch,residue,atom)")
    return RefineConfig(resolution=a.resolution, stages=stages, num_patches=a.patches,
                        geometry_weight=a.geometry_weight, steps=steps,
                        directions=a.directions, seed=a.seed)


def write_models(a, top, coords, latents, rep):
    """One mmCIF per frame and the validation rows (start model first)."""
    from ..atomic.validate import geometry_metrics, validate_model
    out = a.out_dir
    os.makedirs(layout.path(out, "models"), exist_ok=True)
    frames, rows = [], []
    start_path = top.write_cif(top.xyz, layout.path(out, "start_model"))
    if not a.no_validation:
        rows.append(dict(validate_model(start_path), frame=-1))
    for f, x in enumerate(coords):
        path = layout.path(out, "model", frame=f)
        top.write_cif(x, path)
        lat = (latents[f] if latents is not None else [float(f)])
        frames.append({"map": os.path.abspath(a.maps[f]), "model": os.path.abspath(path),
                       "latent": [float(v) for v in np.ravel(lat)], "frc": rep.frc[f]})
        if a.no_validation:
            rows.append(dict(geometry_metrics(top.with_coordinates(x)),
                             model=os.path.basename(path), frame=f))
        else:
            rows.append(dict(validate_model(path), frame=f))
    return frames, rows


def save_decoder(path, refiner):
    import torch
    from ..io import write_atomically
    write_atomically(path, lambda tmp: torch.save({
        "state": {k: v.cpu() for k, v in refiner.decoder.state_dict().items()},
        "lat_mean": refiner.lat_mean, "lat_spread": refiner.lat_spread, "centre": refiner.centre,
        "active": sorted(refiner.decoder.active)}, tmp), ".pt")


def main(a):
    from ..atomic.refine import SeriesRefiner
    from ..atomic.topology import build_topology, read_model
    from ..atomic.validate import unrestrained_summary
    from ..io import write_json
    if not os.path.exists(a.model):
        raise FileNotFoundError("model not found: %s" % a.model)
    maps, apix, origins = read_maps(a.maps, a.apix)
    latents = _read_latents(a.latents, len(maps))
    cfg = refine_config(a)
    top = build_topology(read_model(a.model, log))
    if top.missing_residues:
        log("no dictionary for %s: kept rigid" % ", ".join(top.missing_residues))
    if top.rigid_polymers:
        log("nucleic-acid (non-protein polymer) residues %s: kept rigid, not restrained"
            % ", ".join(top.rigid_polymers))
    unrestrained = unrestrained_summary(top)
    if unrestrained:
        log("not restrained by the library (moved with their residue): %s"
            % ", ".join(unrestrained))
    if top.sequence_links:
        log("%d polymer link(s) the library does not describe restrained by distance"
            % top.sequence_links)
    centre = origins[0] + (maps[0].shape[0] // 2) * apix
    t0 = time.time()
    refiner = SeriesRefiner(top, maps, apix, centre, latents, cfg, a.device_obj, log)
    rep = refiner.run()
    frames, rows = write_models(a, top, refiner.frame_coordinates(), latents, rep)
    save_decoder(layout.path(a.out_dir, "model_decoder"), refiner)
    write_json(layout.path(a.out_dir, "validation"), rows)
    total = time.time() - t0
    write_json(layout.path(a.out_dir, "refine_models_info"), {
        "frames": frames, "seconds": total, "seconds_refinement": rep.seconds,
        "seconds_per_model": total / len(maps), "geometry_weight": rep.geometry_weight,
        "resolution": a.resolution, "stages": list(cfg.stages), "patches": a.patches,
        "rigid_residues": top.missing_residues, "rigid_polymers": top.rigid_polymers,
        "unrestrained": unrestrained, "sequence_links": top.sequence_links,
        "history": rep.history})
    print("refined %d model(s) in %.0f s: mean FRC %.3f" % (len(maps), total,
                                                          float(np.mean(rep.frc))))
