"""Neutral GMM fit benchmark: a 128³ map at 6 Å (and the 96³ / 8 Å acceptance case).

The map is computed from PDB 1bd2 (TCR–pMHC, ~100 kDa) at 3 Å resolution on
a 128³ grid of 1.5 Å/px (or 96³ at 2 Å/px). Reports the time to fit, the final
N (automatic), the FSC crossings between the GMM map and the input, the
minimum FSC below the target frequency, and writes the FSC curve (PNG and
text) to benchmarks/output/.

Usage: python benchmarks/fit_neutral.py [--case 128|96|both] [--device auto]
"""
import argparse
import json
import os
import time

import numpy as np
import torch

import cases  # the data; puts the repository on sys.path
from gmmplugin.engine.atoms import read_atoms  # noqa: E402
from gmmplugin.engine.device import pick_device  # noqa: E402
from gmmplugin.engine.fit_neutral import fit_neutral, map_from_atoms  # noqa: E402
from gmmplugin.engine.fourier import shell_resolutions  # noqa: E402

CASES = {"128": (128, 1.5, 6.0), "96": (96, 2.0, 8.0)}


def run(case, device, out_dir):
    box, apix, res = CASES[case]
    xyz, z, _, _ = read_atoms(cases.PDB)
    vol, _, _, _, _ = map_from_atoms(xyz, z, 3.0, apix=apix, box=box)
    t0 = time.time()
    gmm, rep, _ = fit_neutral(vol, apix, res, device=device)
    seconds = time.time() - t0
    r = shell_resolutions(box, apix)
    shells = np.arange(1, len(r))
    below = rep.fsc[shells[r[shells] >= res]]
    result = {"case": "%d^3 at %.1f A/px, target %.0f A" % (box, apix, res),
              "seconds": round(seconds, 1), "n_gaussians": rep.n_gaussians,
              "fit_box": rep.fit_box, "fsc_05_A": round(rep.fsc_05, 2),
              "fsc_0143_A": round(rep.fsc_0143, 2),
              "min_fsc_below_target": round(float(below.min()), 4),
              "device": str(device), "threads": torch.get_num_threads()}
    freq = np.arange(len(rep.fsc)) / (box * apix)
    np.savetxt(os.path.join(out_dir, "fit_fsc_%s.txt" % case),
               np.column_stack([freq, rep.fsc]), fmt="%.5f", header="1/A fsc")
    try:
        from gmmplugin.engine.plots import plot_fsc
        plot_fsc({"GMM map vs input": (freq, rep.fsc)},
                 os.path.join(out_dir, "fit_fsc_%s.png" % case), title=result["case"])
    except Exception as e:  # plotting is a convenience here
        print("plot skipped:", e)
    return result


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--case", default="both", choices=["128", "96", "both"])
    ap.add_argument("--device", default="auto")
    a = ap.parse_args()
    out_dir = cases.OUT
    os.makedirs(out_dir, exist_ok=True)
    device = pick_device(a.device)
    results = [run(c, device, out_dir) for c in (["128", "96"] if a.case == "both"
                                                  else [a.case])]
    print("| case | N (auto) | fit box | time (s) | FSC 0.5 (Å) | FSC 0.143 (Å) "
          "| min FSC below target |")
    print("|---|---|---|---|---|---|---|")
    for r in results:
        print("| %s | %d | %d³ | %.1f | %.2f | %.2f | %.4f |" % (
            r["case"], r["n_gaussians"], r["fit_box"], r["seconds"], r["fsc_05_A"],
            r["fsc_0143_A"], r["min_fsc_below_target"]))
    with open(os.path.join(out_dir, "fit_neutral.json"), "w") as f:
        json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
