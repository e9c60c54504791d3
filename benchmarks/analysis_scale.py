"""Time and peak memory of the latent analysis's steps on n latents (no maps).

Synthetic 8-D latents, as a trained set of two compositions gives them: half
the particles move along an arc (the moving state), half along a line beside
it (the other composition), with noise. Each step of ``analyze`` that works on
the latents alone runs in turn, in one process (the peak resident memory is
cumulative): the automatic number of classes (density valleys), the classes,
the principal-axis trajectories, the 2-D view and its landscape, a class's
principal curve and its frames, the outlier scores, and a path between the
two ends of the motion. Reconstructions are left out (benchmarks/scale.py
measures them).

    python benchmarks/analysis_scale.py [--particles 1000000]
"""
import argparse
import os
import resource
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from gmmplugin.engine import analyze, paths  # noqa: E402
from gmmplugin.engine.landscape import population_landscape  # noqa: E402


def peak_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def latents(n, dims=8, seed=0):
    """(z, true place along the motion, moving state?) of ``n`` particles."""
    rng = np.random.default_rng(seed)
    t = rng.uniform(0, 1, n)
    moving = rng.uniform(size=n) < 0.5
    z = rng.normal(0, 0.15, (n, dims))
    z[:, 0] += 4 * t - 2
    z[:, 1] += np.where(moving, 1.5 * (1 - (2 * t - 1) ** 2), -1.0)
    return z, t, moving


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--particles", type=int, default=1000000)
    a = ap.parse_args()
    z, t, moving = latents(a.particles)
    print("%d latents of %d dimensions; start: peak RSS %.0f MB"
          % (len(z), z.shape[1], peak_mb()), flush=True)

    def step(name, run):
        t0 = time.time()
        out = run()
        print("%-34s %7.1f s   peak RSS %6.0f MB" % (name, time.time() - t0, peak_mb()),
              flush=True)
        return out

    k = step("automatic k (density valleys)", lambda: analyze.choose_k(z))
    labels, _ = step("classes (k = %d)" % k, lambda: analyze.classify(z, k))
    step("trajectories, 2 PCs, automatic frames", lambda: analyze.trajectories(z, 2, 7))
    view = step("2-D view (PCA)", lambda: analyze.reduce(z, "pca"))
    step("landscape", lambda: population_landscape(view))
    cls = z[labels == 0]
    step("class curve and its frames (%d)" % len(cls),
         lambda: paths.curve_frames(cls, paths.principal_curve(cls, 7)))
    step("outlier scores", lambda: analyze.find_outliers(z))
    rows = np.nonzero(moving)[0]
    ends = [rows[np.argmin(t[rows])], rows[np.argmax(t[rows])]]
    curve = step("path between the motion's ends",
                 lambda: paths.latent_path(z, ends, 7, labels=labels))
    means = [t[m].mean() for m in curve.members]
    print("path frames' mean true place: %s (moving state: %.1f %%)"
          % (" ".join("%.2f" % m for m in means),
             100 * np.mean([moving[m].mean() for m in curve.members])))


if __name__ == "__main__":
    main()
