#!/usr/bin/env python
"""Latent refinement (engine/refine_latents.py) of latents saved by a training run.

Training is the slow part of ``heterogeneity.py``; this re-runs only the refinement
on the latents it saved (``--save-latents``), to compare refinement settings on the
same encoder output. Prints the case's metric before and after.

Usage::

    python benchmarks/refine_saved_latents.py LATENTS.npz [--dataset cyclic]
        [--classes 36] [--iterations 4] [--res 6] [--smooth 1.2] [--wiener 0.05]
        [--no-fsc-weight] [--fixed-centres] [--save OUT.npz]
        [--threads 1]
"""
import argparse
import json
import resource
import time

import numpy as np
import torch

import cases  # the data and datasets; puts the repository on sys.path
import heterogeneity as het_bench  # noqa: E402  (the metrics)
from gmmplugin.engine.refine_latents import refine_latents  # noqa: E402
from gmmplugin.engine.settings import RefineLatentsConfig  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("latents", help="<out>_<case>_latents.npz of heterogeneity.py")
    ap.add_argument("--dataset", default="cyclic", choices=sorted(cases.DATASETS))
    ap.add_argument("--case", default=None, help="metric (default: the dataset's name)")
    ap.add_argument("--classes", type=int, default=36)
    ap.add_argument("--iterations", type=int, default=4)
    ap.add_argument("--res", type=float, default=6.0)
    ap.add_argument("--smooth", type=float, default=1.2)
    ap.add_argument("--wiener", type=float, default=0.05)
    ap.add_argument("--no-fsc-weight", action="store_true",
                    help="do not filter the class deviations by their half-set FSC")
    ap.add_argument("--fixed-centres", action="store_true",
                    help="keep the k-means class centres (do not move them to the mean "
                         "encoder latent of their particles)")
    ap.add_argument("--save", default=None,
                    help="write the refined latents and confidences to this .npz")
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    lat = np.load(a.latents)
    z = lat["z_encoder"] if "z_encoder" in lat.files else lat["z"]   # start from the encoder
    _, _, particles, _ = cases.load_dataset(a.dataset, len(z))
    gt = {"conformation": lat["conformation"], "composition": lat["composition"]}
    case = a.case or a.dataset
    cfg = RefineLatentsConfig(classes=a.classes, iterations=a.iterations, max_res=a.res,
                              smooth=a.smooth, wiener=a.wiener,
                              fsc_weight=not a.no_fsc_weight,
                              move_centres=not a.fixed_centres)
    t0 = time.time()
    z2, confidence, history = refine_latents(particles, z, cfg)
    if a.save:
        np.savez(a.save, z=z2, z_encoder=z, confidence=confidence, **gt)
    before = het_bench.case_metrics(case, z, gt)
    after = het_bench.case_metrics(case, z2, gt)
    key = {"cyclic": "circ", "mixed": "ari"}.get(het_bench.METRIC_OF.get(case, case), "rho")
    print(json.dumps({"settings": vars(a), "seconds": round(time.time() - t0, 1),
                      "peak_rss_gb": round(resource.getrusage(
                          resource.RUSAGE_SELF).ru_maxrss / 1e6, 2),
                      "before": before[key], "after": after[key], "history": history},
                     default=float))


if __name__ == "__main__":
    main()
