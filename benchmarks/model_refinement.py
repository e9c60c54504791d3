"""Atomic model (series) refinement benchmark: acceptance of GmmProtRefineModels.

1. single: 1bd2 with the TCR (chains D+E) moved rigidly by 8 Å and 10° plus
   0.3 Å noise on every atom, refined into the map of the true model at 4 Å.
2. series: maps of N frames of a 0–30° TCR swing (5 Å), one model per frame
   from the crystal model; models decoded half-way between frames must not
   jump (max Cα move between neighbours ≤ the true frame step's).
Validation is independent of the refinement's terms: library RMSZ (gemmi
topology), Ramachandran outliers (Lovell tables), tortoize z-scores,
king-probe clashscore (hydrogens added by gemmi), Cα RMSD to the truth.

    python benchmarks/model_refinement.py [--case single|series|all] [--threads 1]

Writes benchmarks/output/model_refinement.json and prints markdown tables.
"""
import argparse
import json
import os
import time

import numpy as np

import cases  # the data; puts the repository on sys.path
from gmmplugin.tests.perturb import ca_rmsd, jitter, rigid_move, swing  # noqa: E402
from gmmplugin.engine.atomic.refine import RefineConfig, SeriesRefiner  # noqa: E402
from gmmplugin.engine.atomic.topology import build_topology, read_model  # noqa: E402
from gmmplugin.engine.atomic.validate import validate_model  # noqa: E402
from gmmplugin.engine.fit_neutral import map_from_atoms  # noqa: E402

PDB = cases.PDB
OUT = cases.output("model_refinement")
COLUMNS = (("ca_rmsd", "Cα RMSD (Å)", "%.2f"), ("bond_rmsz", "bond RMSZ", "%.2f"),
           ("angle_rmsz", "angle RMSZ", "%.2f"), ("rama_outliers_pct", "Rama outliers %", "%.2f"),
           ("rama_favoured_pct", "Rama favoured %", "%.1f"), ("omega_over_30_pct", "ω > 30° %", "%.1f"),
           ("clashscore", "clashscore", "%.1f"), ("rama_z", "tortoize Rama z", "%.2f"),
           ("torsion_z", "tortoize torsion z", "%.2f"))


def setup():
    st = read_model(PDB)
    st.remove_waters()
    top = build_topology(st)
    atoms = [(ch.name, a.name) for ch in top.structure[0] for r in ch for a in r]
    chains = np.array([c for c, _ in atoms])
    ca = np.array([n == "CA" for _, n in atoms])
    tcr = np.isin(chains, ["D", "E"])
    return top, ca, tcr


def write(top, xyz, path):
    return top.write_cif(xyz, path)


def row(label, path, truth_path, extra=None):
    r = validate_model(path, truth_path)
    r["label"] = label
    r.update(extra or {})
    return r


def table(rows):
    head = "| model | " + " | ".join(c[1] for c in COLUMNS) + " | FRC | time (s) |"
    lines = [head, "|" + "---|" * (len(COLUMNS) + 3)]
    for r in rows:
        cells = [(fmt % r[k]) if r.get(k) is not None else "–" for k, _, fmt in COLUMNS]
        lines.append("| %s | %s | %s | %s |" % (
            r["label"], " | ".join(cells),
            "%.3f" % r["frc"] if r.get("frc") is not None else "–",
            "%.0f" % r["seconds"] if r.get("seconds") is not None else "–"))
    return "\n".join(lines)


def case_single(top, ca, tcr, steps, res=4.0):
    truth = top.xyz.copy()
    d = np.random.default_rng(1).normal(size=3)
    start = jitter(rigid_move(truth, tcr, 10.0, 8.0 * d / np.linalg.norm(d)), 0.3, seed=2)
    vol, apix, box, centre, _ = map_from_atoms(truth, top.atomic_number, res, apix=res / 3)
    os.makedirs(OUT, exist_ok=True)
    tp = write(top, truth, os.path.join(OUT, "single_truth.cif"))
    sp = write(top, start, os.path.join(OUT, "single_start.cif"))
    top_start = build_topology(top.with_coordinates(start))
    t0 = time.time()
    ref = SeriesRefiner(top_start, [vol], apix, centre,
                        cfg=RefineConfig(resolution=res, steps=steps))
    rep = ref.run()
    seconds = time.time() - t0
    x = ref.frame_coordinates()[0]
    fp = write(top, x, os.path.join(OUT, "single_refined.cif"))
    rows = [row("crystal (truth)", tp, tp), row("start", sp, tp),
            row("refined", fp, tp, {"frc": rep.frc[0], "seconds": seconds})]
    rows[-1]["ca_rmsd_tcr"] = ca_rmsd(x[tcr], truth[tcr], ca[tcr])
    return {"case": "single", "resolution": res, "box": int(box), "apix": apix,
            "atoms": len(x), "seconds": seconds, "geometry_weight": rep.geometry_weight,
            "rows": rows, "history": rep.history}


def case_series(top, ca, tcr, steps, frames=10, res=5.0, max_angle=30.0):
    truth0 = top.xyz.copy()
    angles = np.linspace(0.0, max_angle, frames)
    truths = [swing(truth0, tcr, a) for a in angles]
    centre_all = np.average(truth0, axis=0, weights=top.atomic_number)
    extent = max(np.abs(t - centre_all).max() for t in truths)
    apix = res / 3
    box = int(np.ceil((2 * extent + 2 * res) * 1.3 / apix))
    box += box % 2
    # all frames' maps in one frame (map_from_atoms would centre each on its model)
    from gmmplugin.engine.atoms import atoms_to_params
    from gmmplugin.engine.gmm import render_volume_fourier
    import torch
    sigma = float(np.sqrt(1.0 + (0.225 * res) ** 2))
    vols = []
    for t in truths:
        p = torch.as_tensor(atoms_to_params(t - centre_all, top.atomic_number, sigma),
                            dtype=torch.float64)
        with torch.no_grad():
            vols.append(render_volume_fourier(p, box, apix).float().numpy())
    os.makedirs(OUT, exist_ok=True)
    t0 = time.time()
    ref = SeriesRefiner(top, vols, apix, centre_all, latents=angles[:, None],
                        cfg=RefineConfig(resolution=res, steps=steps))
    rep = ref.run()
    seconds = time.time() - t0
    xs = ref.frame_coordinates()
    rows = []
    for f, (a, x) in enumerate(zip(angles, xs)):
        tp = write(top, truths[f], os.path.join(OUT, "series_truth_%02d.cif" % f))
        fp = write(top, x, os.path.join(OUT, "series_model_%02d.cif" % f))
        rows.append(row("frame %d (%.1f°)" % (f, a), fp, tp, {"frc": rep.frc[f]}))
    # smoothness: decoded models at the frames and half-way between them
    mids = np.sort(np.concatenate([angles, (angles[1:] + angles[:-1]) / 2]))
    dec = ref.decode(mids[:, None])
    jumps = [float(np.linalg.norm(dec[i + 1][ca] - dec[i][ca], axis=1).max())
             for i in range(len(dec) - 1)]
    true_step = float(np.linalg.norm(truths[1][ca] - truths[0][ca], axis=1).max())
    return {"case": "series", "frames": frames, "resolution": res, "box": box, "apix": apix,
            "atoms": len(truth0), "seconds": seconds, "seconds_per_model": seconds / frames,
            "geometry_weight": rep.geometry_weight, "rows": rows,
            "max_decoded_half_step_ca_move": max(jumps), "true_frame_step_max_ca_move":
            true_step, "history": rep.history}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--case", default="all", choices=["single", "series", "all"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--frames", type=int, default=10)
    ap.add_argument("--steps", default="150,150,200")
    ap.add_argument("--out", default=cases.output("model_refinement.json"))
    a = ap.parse_args()
    import torch
    torch.set_num_threads(a.threads)
    steps = tuple(int(v) for v in a.steps.split(","))
    top, ca, tcr = setup()
    results = []
    if a.case in ("single", "all"):
        r = case_single(top, ca, tcr, steps)
        results.append(r)
        print("\n## single model (%d atoms, %.0f Å map, %.0f s)\n" % (r["atoms"], r["resolution"],
                                                                    r["seconds"]))
        print(table(r["rows"]))
        print("TCR Cα RMSD after refinement: %.2f Å" % r["rows"][-1]["ca_rmsd_tcr"])
    if a.case in ("series", "all"):
        r = case_series(top, ca, tcr, steps, frames=a.frames)
        results.append(r)
        print("\n## series (%d frames, %.0f Å maps, %.0f s = %.0f s per model)\n"
              % (r["frames"], r["resolution"], r["seconds"], r["seconds_per_model"]))
        print(table(r["rows"]))
        print("largest Cα move between decoded models half a frame apart: %.2f Å "
              "(true frame step: %.2f Å)" % (r["max_decoded_half_step_ca_move"],
                                             r["true_frame_step_max_ca_move"]))
    with open(a.out, "w") as fh:
        json.dump({"date": time.strftime("%Y-%m-%dT%H:%M:%S"), "threads": a.threads,
                   "results": results}, fh, indent=1, default=float)


if __name__ == "__main__":
    main()
