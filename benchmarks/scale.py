"""Time and peak memory of the engine's steps at 10⁴, 10⁵ and 10⁶ particles.

    python benchmarks/scale.py make [--data DIR] [--particles 1000000]
    python benchmarks/scale.py run  [--data DIR] [--sizes 10000,100000,1000000]
                                    [--sample 2000] [--full import,images]

``make`` writes the dataset once, in chunks: a million particles at box 64
(2.6 Å/px) in RELION stacks of 1,000 half-precision images (MRC mode 12), with
fresh ids, poses and CTFs, whose images are those of the benchmarks' simulated
"mixed" set (cases.py) reused in turn: this measures streaming and memory, not
quality. It also fits the neutral GMM to that set's middle state, as
heterogeneity.py does, and writes one .star per size: the first n rows.

``run`` runs each step in its own process, so that the process's peak resident
memory (``ru_maxrss``, which counts the pages of memory maps it touched) is the
step's alone: the engine-side import of the .star (to particles.npz), the
cropped-image cache, the gradient features, one training epoch, the encoding
of the latents and a reconstruction. The steps named by ``--full`` process
every particle; the others process ``--sample`` particles drawn at random from
across the whole set, in the order the full step would take them (batches of
neighbouring rows; the epoch in a random order), and are timed per particle:
at every size the same amount of work, so that any cost that grows with the
size of the files shows as a rising time per particle. Steps read the files the
previous steps wrote (features need the image cache of their rows, the epoch
and the encoding the features).

Outputs in ``benchmarks/output/scale/``: ``scale.json`` (every step's seconds,
seconds per particle, peak RSS), ``scale.png`` (log-log cost against the number
of particles: measured for full steps, per-particle time × n for sampled ones),
and a table on stdout for RESULTS.md.
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np

import cases  # puts the repository on sys.path

DATA = os.environ.get("GMM_SCALE_DATA", "/work/scale_data")
BASE = "mixed"                 # cases.DATASETS: the simulated set whose images are reused
BASE_N = 5000
PER_STACK = 1000
STEPS = ("import", "images", "features", "epoch", "encode", "reconstruct")
OUT = cases.output("scale")


def star_path(data, n):
    return os.path.join(data, "particles_%d.star" % n)


# -- the dataset -----------------------------------------------------------------------
def make(a):
    """The million-particle set, written stack by stack (memory: one stack and
    the metadata arrays), the neutral GMM and one .star per size."""
    import mrcfile
    from gmmplugin.engine.fit_neutral import fit_neutral
    from gmmplugin.engine.geometry import random_rotations
    from gmmplugin.engine.particles import Particles
    from gmmplugin.engine.starfile import read_star, write_star
    t0 = time.time()
    folder = a.base or cases.ensure_dataset(BASE, BASE_N)[0]
    base = read_star(os.path.join(folder, "particles.star"))
    os.makedirs(os.path.join(a.data, "stacks"), exist_ok=True)
    gmm_path = os.path.join(a.data, "gmm.npz")
    if not os.path.exists(gmm_path):
        gmm, rep, _ = fit_neutral(mrcfile.read(os.path.join(folder, "maps",
                                                            "state_t0.50.mrc")),
                                  cases.APIX, cases.FIT_RES)
        gmm.save(gmm_path)
        print("neutral GMM: %d Gaussians" % len(gmm), flush=True)
    n, rng = a.particles, np.random.default_rng(7)
    stacks = []
    for s in range(0, n, PER_STACK):
        path = os.path.join(a.data, "stacks", "mic%05d.mrcs" % (s // PER_STACK))
        stacks.append(path)
        if os.path.exists(path):
            continue
        rows = rng.integers(0, len(base), min(PER_STACK, n - s))
        with mrcfile.new(path + ".tmp", data=base.images(rows).astype(np.float16),
                         overwrite=True) as m:
            m.voxel_size = base.apix
        os.replace(path + ".tmp", path)
        if (s // PER_STACK) % 100 == 0:
            print("stacks: %d / %d particles (%.0f s)" % (s, n, time.time() - t0), flush=True)
    du = rng.uniform(5000, 15000, n)
    ctf = np.column_stack([du, du + rng.uniform(0, 1000, n), rng.uniform(0, 180, n),
                           np.full(n, 300.0), np.full(n, 2.7), np.full(n, 0.1), np.zeros(n)])
    p = Particles(ids=np.arange(1, n + 1, dtype=np.int64), stacks=stacks,
                  stack_idx=(np.arange(n) // PER_STACK).astype(np.int32),
                  frame=(np.arange(n) % PER_STACK).astype(np.int64),
                  rotations=random_rotations(n, rng), shifts=rng.normal(0, 3.0, (n, 2)),
                  ctf=ctf, apix=base.apix, box=base.box)
    for size in a.sizes:
        if size <= n:
            write_star(star_path(a.data, size), p.subset(np.arange(size)))
    print("made %d particles in %.0f s" % (n, time.time() - t0))


# -- one step, in its own process --------------------------------------------------------
def sample_rows(n, k, seed=0):
    """k rows drawn at random from all n, sorted (all n when k >= n)."""
    if k >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, k, replace=False))


def trainer_for(a, particles, rows):
    """A Trainer whose stages 1, 2 and 4 compute ``rows`` only and whose epoch
    trains on them (the held-out part of them kept out, as for a set of their
    size)."""
    from gmmplugin.engine import distributed
    from gmmplugin.engine.gmm import Gmm
    from gmmplugin.engine.settings import TrainConfig
    from gmmplugin.engine.train import Trainer, held_out_rows

    class Sampled(Trainer):
        def _my_rows(self, n, batch):
            return distributed.shard(rows, batch)

    gmm = Gmm.load(os.path.join(a.data, "gmm.npz"))
    if a.gaussians:                                   # fewer: every k-th Gaussian
        gmm = Gmm(gmm.params[::int(np.ceil(len(gmm) / a.gaussians))], apix=gmm.apix,
                  box=gmm.box, resolution=gmm.resolution)
    cfg = TrainConfig(latent_dim=4, epochs=1, batch_size=a.batch,
                      max_res=a.max_res or cases.FIT_RES)
    folder = "train" + ("_n%d_res%g" % (len(gmm), cfg.max_res) if a.gaussians or a.max_res
                        else "")
    t = Sampled(particles, gmm, cfg, os.path.join(a.work, folder), log=print)
    held, train = held_out_rows(len(rows), cfg.held_out, cfg.seed)
    t.held, t.train_rows = rows[held], rows[train]
    return t


def step(a):
    """Run one step; print a JSON line with its seconds, particles and peak RSS."""
    import torch
    torch.set_num_threads(a.threads)
    from gmmplugin.engine.particles import Particles
    from gmmplugin.engine.starfile import read_star
    npz = os.path.join(a.work, "particles.npz")
    t0 = time.time()
    extra = {}
    if a.step == "import":
        p = read_star(star_path(a.data, a.size))
        p.save(npz)
        done = len(p)
    else:
        p = Particles.load(npz)
        rows = sample_rows(len(p), len(p) if a.step in a.full else a.sample)
        done = len(rows)
        t0 = time.time()
        if a.step == "reconstruct":
            from gmmplugin.engine.reconstruct import reconstruct
            rec = reconstruct(p, rows, batch_size=a.batch)
            extra["resolution"] = rec.resolution
        else:
            trainer = trainer_for(a, p, rows)
            images = trainer.prepare_images()
            if a.step != "images":
                t0 = time.time()
                feats = trainer.prepare_features(images)
                if len(trainer.neutral_frc) != len(p):    # one process's gather_rows
                    full = np.zeros(len(p), np.float32)  # keeps the computed rows only
                    full[rows] = trainer.neutral_frc
                    trainer.neutral_frc = full
            if a.step == "epoch":
                t0 = time.time()
                trainer.train(images, feats)
                done = len(trainer.train_rows) + len(trainer.held)
                extra["epoch_only_s"] = done / trainer.history[-1]["particles_per_s"]
            elif a.step == "encode":
                t0 = time.time()
                trainer.encode_all(images, feats)
            extra["batch"] = trainer.cfg.batch_size
            extra["train_box"] = trainer.box
            extra["gaussians"] = len(trainer.gmm)
    seconds = time.time() - t0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print("RESULT " + json.dumps(dict(step=a.step, size=a.size, particles=done,
                                      seconds=seconds, per_particle_s=seconds / done,
                                      peak_rss_bytes=rss, full=done == a.size, **extra)),
          flush=True)


# -- memory of a training step per particle of the batch --------------------------------
def batch_memory(a, batches=(16, 64), configs=((1897, 8.0), (950, 8.0), (1897, 5.6))):
    """Peak RSS of one epoch on 2 batches of particles at two batch sizes, for a
    few numbers of Gaussians and training boxes: the growth per particle of the
    batch, against settings.training_bytes_per_particle (what --batch 0 uses)."""
    from gmmplugin.engine.settings import training_bytes_per_particle
    work = os.path.join(a.data, "work_%d" % a.sizes[0])
    rows = []
    for gaussians, res in configs:
        peak = {}
        for b in batches:
            cmd = [sys.executable, os.path.abspath(__file__), "step", "epoch",
                   "--size", str(a.sizes[0]), "--data", a.data, "--work", work,
                   "--sample", str(2 * b), "--full", "", "--batch", str(b),
                   "--threads", str(a.threads), "--gaussians", str(gaussians),
                   "--max-res", str(res)]
            out = subprocess.run(cmd, capture_output=True, text=True).stdout
            r = json.loads([x for x in out.splitlines() if x.startswith("RESULT ")][-1][7:])
            peak[b] = r["peak_rss_bytes"]
        per = (peak[batches[1]] - peak[batches[0]]) / (batches[1] - batches[0])
        model = training_bytes_per_particle(r["train_box"], r["gaussians"], 4)
        d = r["train_box"]
        rows.append(dict(gaussians=r["gaussians"], box=d, measured_per_particle=per,
                         model_per_particle=model,
                         measured_per_gaussian_frequency=per / (r["gaussians"]
                                                                * (d + d // 2 + 1)),
                         peaks=peak))
        print("N=%d box %d: %.2f MB per batch particle measured (%.1f B per Gaussian and "
              "frequency), model %.2f MB" % (r["gaussians"], d, per / 1e6,
                                             rows[-1]["measured_per_gaussian_frequency"],
                                             model / 1e6), flush=True)
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, "batch_memory.json"), "w") as f:
        json.dump(rows, f, indent=1)


# -- all steps at all sizes ---------------------------------------------------------------
def run(a):
    os.makedirs(OUT, exist_ok=True)
    out_json = os.path.join(OUT, "scale.json")
    results = []          # an earlier run's results, but for the steps run again now
    if os.path.exists(out_json):
        results = [r for r in json.load(open(out_json))["results"]
                   if not (r["step"] in a.steps and r["size"] in a.sizes)]
    for size in a.sizes:
        work = os.path.join(a.data, "work_%d" % size)
        os.makedirs(work, exist_ok=True)
        for name in a.steps:
            cmd = [sys.executable, os.path.abspath(__file__), "step", name, "--size", str(size),
                   "--data", a.data, "--work", work, "--sample", str(a.sample),
                   "--full", ",".join(a.full), "--batch", str(a.batch),
                   "--threads", str(a.threads)]
            t0 = time.time()
            proc = subprocess.run(cmd, capture_output=True, text=True)
            with open(os.path.join(OUT, "%s_%d.log" % (name, size)), "w") as f:
                f.write(proc.stdout + proc.stderr)
            line = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
            if proc.returncode or not line:
                print("%s at %d failed:\n%s" % (name, size, proc.stderr[-2000:]), flush=True)
                continue
            r = json.loads(line[-1][7:])
            r["process_s"] = time.time() - t0
            r["load"] = os.getloadavg()[0]
            results.append(r)
            results.sort(key=lambda r: (r["size"], STEPS.index(r["step"])))
            print("%-12s n=%-8d %8.1f s for %d particles (%.3g ms each), peak RSS %.2f GB, "
                  "load %.1f" % (name, size, r["seconds"], r["particles"],
                                 1e3 * r["per_particle_s"], r["peak_rss_bytes"] / 1e9,
                                 r["load"]), flush=True)
            with open(out_json, "w") as f:
                json.dump({"args": {k: v for k, v in vars(a).items() if k != "func"},
                           "results": results}, f, indent=1)
    plot(results, os.path.join(OUT, "scale.png"))
    print(table(results))


def slope(results, name):
    """Log-log slope of cost against particles over a step's sizes (1 = linear):
    measured seconds for full steps, seconds per particle × n for sampled ones."""
    rs = sorted((r for r in results if r["step"] == name), key=lambda r: r["size"])
    if len(rs) < 2:
        return None
    x = np.log([r["size"] for r in rs])
    y = np.log([r["per_particle_s"] * r["size"] for r in rs])
    return float(np.polyfit(x, y, 1)[0])


def plot(results, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for name in STEPS:
        rs = sorted((r for r in results if r["step"] == name), key=lambda r: r["size"])
        if not rs:
            continue
        n = np.array([r["size"] for r in rs])
        cost = np.array([r["per_particle_s"] * r["size"] for r in rs])
        full = all(r["full"] for r in rs)
        s = slope(results, name)
        ax.loglog(n, cost, "o-" if full else "o--", mfc=None if full else "none",
                  label="%s%s%s" % (name, "" if full else " (sampled, × n)",
                                    "" if s is None else ", slope %.2f" % s))
    lo, hi = ax.get_xlim()
    ref = np.array([1e4, 1e6])
    ax.loglog(ref, ref / 1e4, ":", color="grey", label="slope 1 (linear)")
    ax.set_xlabel("particles")
    ax.set_ylabel("wall time (s)")
    ax.legend(fontsize=7)
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def table(results):
    lines = ["| step | particles in set | processed | wall time (s) | ms per particle | "
             "cost at n (s) | peak RSS (GB) |", "|---|---|---|---|---|---|---|"]
    for r in results:
        lines.append("| %s | %s | %s | %.1f | %.3g | %.0f%s | %.2f |" % (
            r["step"], format(r["size"], ","), format(r["particles"], ","), r["seconds"],
            1e3 * r["per_particle_s"], r["per_particle_s"] * r["size"],
            "" if r["full"] else " (×n)", r["peak_rss_bytes"] / 1e9))
    slopes = ["%s %.2f" % (name, slope(results, name)) for name in STEPS
              if slope(results, name) is not None]
    return "\n".join(lines) + "\n\nlog-log slopes: " + ", ".join(slopes)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("what", choices=["make", "run", "step", "batch-memory"])
    ap.add_argument("name", nargs="?", help="the step (with 'step')")
    ap.add_argument("--data", default=DATA)
    ap.add_argument("--particles", type=int, default=1000000)
    ap.add_argument("--base", default="",
                    help="make: a simulated set (cases.py layout) whose images are reused; "
                         "default: the '%s' set, simulated if needed" % BASE)
    ap.add_argument("--sizes", default="10000,100000,1000000")
    ap.add_argument("--steps", default=",".join(STEPS))
    ap.add_argument("--sample", type=int, default=2000)
    ap.add_argument("--full", default="import,images")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--size", type=int, default=0)
    ap.add_argument("--gaussians", type=int, default=0,
                    help="step: use about this many of the GMM's Gaussians (0 = all)")
    ap.add_argument("--max-res", type=float, default=0.0,
                    help="step: training band (Å), which sets the training box")
    ap.add_argument("--work", default="")
    a = ap.parse_args()
    a.sizes = [int(s) for s in a.sizes.split(",")]
    a.steps = [s for s in a.steps.split(",") if s]
    a.full = [s for s in a.full.split(",") if s]
    if a.what == "make":
        make(a)
    elif a.what == "run":
        run(a)
    elif a.what == "batch-memory":
        batch_memory(a)
    else:
        a.step = a.name
        step(a)


if __name__ == "__main__":
    main()
