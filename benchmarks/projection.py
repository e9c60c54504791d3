#!/usr/bin/env python
"""Throughput of the batched Fourier-space GMM projector.

Measures ``gmmplugin.engine.projection.project(params, rotations, shifts, box,
apix)`` against this machine's float32 matrix-product rate, measured in the
same run, and beside it ``project_direct`` below: the previous implementation
(every factor from exp/cos/sin at every frequency, one complex bmm over all D
rows), kept here only as the baseline.

FLOP conventions (useful flops, not what the implementation happens to do)
---------------------------------------------------------------------------
* Forward: ``8·B·N·D·H`` with ``H = D//2 + 1``: each output element of the
  (B, D, H) complex half-plane is a sum over N Gaussians of a complex
  multiply-add (8 real flops). This equals the flop count of one complex bmm
  ``(B, D, N) @ (B, N, H)`` or of one real bmm ``(B, 2D, N) @ (B, N, 2H)`` on
  stacked real/imaginary blocks (the two ways ``project`` has been written);
  computing the exp/cos/sin factors and assembling the result count as zero.
  ``project`` exploits the conjugate symmetry along ky and its GEMM executes
  only ``2·B·(2H)·N·(2H)`` flops, (D+2)/(2D) of the count (0.52 at D=64), so
  its "% of matmul" can in principle exceed 100 %; img/s compare directly.
* Forward + backward: ``3 × 8·B·N·D·H`` (the backward of a matmul is two
  matmuls of the same size).
* Matmul reference rate ("matmul rate"): best of several repetitions, after
  warm-up, of a float32 ``torch.bmm`` of the comparable shape
  ``(64, 2D, N) @ (64, N, 2H)`` with D=128, N=2000 (flops ``2·B·M·K·N``), and,
  for information, of a square ``torch.mm`` 2048×2048. The "% of matmul"
  column divides achieved GFLOP/s by the bmm reference. A complex64 bmm of
  the comparable shape ``(64, D, N) @ (64, N, H)`` is reported too.
* Projection timings are the median of ≥5 repetitions after warm-up
  (``--quick``: 2 repetitions); the two implementations run one after the
  other on the same inputs. "bare GEMM" is the best time of the bare matrix
  product that implementation performs, at the configuration's size: the
  real ``(B, 2H, N) @ (B, 2H, N)ᵀ`` for ``project``, the complex
  ``(B, D, N) @ (B, N, H)`` for ``project_direct``; "GEMM share" is that
  time divided by the forward time, i.e. the part of the forward pass the
  implementation could not avoid. "other procs' CPU" is the CPU (in cores) that *other*
  processes used meanwhile; anything above ~0.05 makes the row unreliable.

Inputs are realistic: Gaussian centres uniform in a ball of radius
0.35·D·apix (apix = 1.5 Å), widths uniform in 2–4 Å, amplitudes 1 ± 10 %,
Haar-random rotations (``geometry.random_rotations``), shifts ~ N(0, 2 Å).
The loss for the backward pass is ``view_as_real(out).square().sum()``.

Usage::

    python benchmarks/projection.py [--device auto|cpu|cuda[:N]] [--quick]
                                    [--impl both|project|direct]
                                    [--out results.json] [--profile]

``--profile`` additionally runs ``torch.profiler`` on one configuration
(D=128, N=2000, B=64) and prints where the time goes, grouped by kind of op.
"""
import argparse
import datetime
import json
import os
import platform
import resource
import statistics
import sys
import time

import numpy as np
import torch

import cases  # puts the repository on sys.path
from gmmplugin.engine.device import pick_device
from gmmplugin.engine.fourier import freqs_1d
from gmmplugin.engine.geometry import random_rotations
from gmmplugin.engine.gmm import AMP, WIDTH
from gmmplugin.engine.projection import project

APIX = 1.5
BATCH = 64
NS = (500, 2000, 8000)
DS = (64, 128)


# ----------------------------------------------------------------------------
# baseline: the previous projector, verbatim (package version up to 2026-12-07)
# ----------------------------------------------------------------------------
def project_direct(params, rotations, shifts, box, apix):
    """Same contract as ``project``: exp/cos/sin at every (Gaussian, frequency)
    for k >= 0, one complex bmm over all D rows."""
    B = rotations.shape[0]
    dtype, device = rotations.dtype, rotations.device
    if params.dim() == 2:
        params = params.unsqueeze(0).expand(B, -1, -1)
    centers = params[..., :3]
    u = torch.einsum("bij,bnj->bni", rotations[:, :2, :], centers)  # (B, N, 2)
    if shifts is not None:
        u = u - shifts[:, None, :]
    s = params[..., WIDTH]
    weight = params[..., AMP] * (2 * np.pi) ** 1.5 * s ** 3 / apix ** 2  # (B, N)

    k = freqs_1d(box, apix, device, dtype, half=True)   # (H,) 0 … Nyquist, 1/Å
    s2 = (-2 * np.pi ** 2) * s[..., None] ** 2           # (B, N, 1)

    def factor(coord, scale=None):
        env = torch.exp(s2 * k ** 2)
        if scale is not None:
            env = env * scale[..., None]
        return torch.polar(env, (-2 * np.pi) * coord[..., None] * k)

    x = factor(u[..., 0])                                 # (B, N, H)
    y_pos = factor(u[..., 1], weight)                      # (B, N, H)
    head = y_pos[..., :box // 2] if box % 2 == 0 else y_pos
    y = torch.cat([head, y_pos[..., 1:].flip(-1).conj()], dim=-1)   # (B, N, D)
    return torch.bmm(y.transpose(1, 2), x)                # (B, D, H) complex


IMPLS = {"project": project, "direct": project_direct}


# ----------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------
def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_info(device):
    info = {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "device": str(device),
        "python": platform.python_version(),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


class OtherLoad:
    """CPU used by *other* processes while a block runs, in cores (0..ncpu).

    Busy jiffies of the whole machine (/proc/stat) minus this process's own
    user+system time. A shared machine makes every timing here unreliable, so
    each row records this next to its numbers.
    """

    def __init__(self):
        self.hz = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100

    def _machine_busy(self):
        try:
            with open("/proc/stat") as f:
                v = [int(x) for x in f.readline().split()[1:]]
        except OSError:
            return None
        return (sum(v) - v[3] - v[4]) / self.hz  # all but idle, iowait

    @staticmethod
    def _own():
        r = resource.getrusage(resource.RUSAGE_SELF)
        return r.ru_utime + r.ru_stime

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        return False

    def start(self):
        self.t0, self.b0, self.o0 = time.perf_counter(), self._machine_busy(), self._own()
        return self

    def stop(self):
        wall = time.perf_counter() - self.t0
        b1 = self._machine_busy()
        if b1 is None or self.b0 is None or wall <= 0:
            self.cores = float("nan")
        else:
            self.cores = max(0.0, ((b1 - self.b0) - (self._own() - self.o0)) / wall)
        return self.cores


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_fn(fn, device, reps, warmup):
    """Per-call wall times (s) of ``fn`` after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    return times


def make_inputs(n, box, batch, device, rng):
    """Realistic GMM params (N, 5), rotations (B, 3, 3), shifts (B, 2)."""
    radius = 0.35 * box * APIX
    direction = rng.normal(size=(n, 3))
    direction /= np.linalg.norm(direction, axis=1, keepdims=True)
    r = radius * rng.random(n) ** (1.0 / 3.0)
    params = np.empty((n, 5))
    params[:, :3] = direction * r[:, None]
    params[:, 3] = rng.uniform(0.9, 1.1, n)         # amplitude ~ 1
    params[:, 4] = rng.uniform(2.0, 4.0, n)         # width, Å
    rotations = random_rotations(batch, rng)
    shifts = rng.normal(scale=2.0, size=(batch, 2))
    as_t = lambda a: torch.as_tensor(a, dtype=torch.float32, device=device)  # noqa: E731
    return as_t(params), as_t(rotations), as_t(shifts)


def proj_flops(batch, n, box):
    return 8.0 * batch * n * box * (box // 2 + 1)


# ----------------------------------------------------------------------------
# matmul reference
# ----------------------------------------------------------------------------
def matmul_reference(device, reps, warmup):
    g = torch.Generator(device="cpu").manual_seed(0)
    D, N, B = 128, 2000, BATCH
    H = D // 2 + 1
    a = torch.randn(B, 2 * D, N, generator=g).to(device)
    b = torch.randn(B, N, 2 * H, generator=g).to(device)
    t_bmm = min(time_fn(lambda: torch.bmm(a, b), device, reps, warmup))
    bmm_gflops = 2.0 * B * (2 * D) * N * (2 * H) / t_bmm / 1e9
    del a, b
    a = torch.randn(B, D, N, dtype=torch.complex64, generator=g).to(device)
    b = torch.randn(B, N, H, dtype=torch.complex64, generator=g).to(device)
    t_cbmm = min(time_fn(lambda: torch.bmm(a, b), device, reps, warmup))
    cbmm_gflops = 8.0 * B * D * N * H / t_cbmm / 1e9
    del a, b
    S = 2048
    a = torch.randn(S, S, generator=g).to(device)
    b = torch.randn(S, S, generator=g).to(device)
    t_mm = min(time_fn(lambda: torch.mm(a, b), device, reps, warmup))
    mm_gflops = 2.0 * S ** 3 / t_mm / 1e9
    return {
        "bmm_shape": "(%d, %d, %d) @ (%d, %d, %d)" % (B, 2 * D, N, B, N, 2 * H),
        "bmm_s": t_bmm, "bmm_gflops": bmm_gflops,
        "cbmm_shape": "complex64 (%d, %d, %d) @ (%d, %d, %d)" % (B, D, N, B, N, H),
        "cbmm_s": t_cbmm, "cbmm_gflops": cbmm_gflops,
        "mm_shape": "(%d, %d) @ (%d, %d)" % (S, S, S, S),
        "mm_s": t_mm, "mm_gflops": mm_gflops,
    }


def bare_gemm_time(impl, batch, n, box, device, reps, warmup):
    """Best time of the matrix product alone that ``impl`` performs at this size,
    in its layout: real ``(B, 2H, N) @ (B, 2H, N)ᵀ`` (both N-contiguous; project
    does it block by block of Gaussians, same flops) for project, complex
    ``(B, D, N) @ (B, N, H)`` with the left factor built as (B, N, D) and
    transposed for project_direct."""
    H = box // 2 + 1
    if impl == "project":
        a = torch.randn(batch, 2 * H, n, device=device)
        b = torch.randn(batch, 2 * H, n, device=device).transpose(1, 2)
    else:
        a = torch.randn(batch, n, box, dtype=torch.complex64, device=device).transpose(1, 2)
        b = torch.randn(batch, n, H, dtype=torch.complex64, device=device)
    return min(time_fn(lambda: torch.bmm(a, b), device, reps, warmup))


# ----------------------------------------------------------------------------
# projection benchmark
# ----------------------------------------------------------------------------
def bench_config(n, box, device, reps, warmup, rng, ref_gflops, impls):
    params, rots, shifts = make_inputs(n, box, BATCH, device, rng)
    return [bench_impl(name, params, rots, shifts, n, box, device, reps, warmup,
                       ref_gflops) for name in impls]


def bench_impl(impl, params, rots, shifts, n, box, device, reps, warmup, ref_gflops):
    project_fn = IMPLS[impl]

    def fwd():
        with torch.no_grad():
            return project_fn(params, rots, shifts, box, APIX)

    p_leaf = params.clone().requires_grad_(True)

    def fwd_bwd():
        p_leaf.grad = None
        out = project_fn(p_leaf, rots, shifts, box, APIX)
        loss = torch.view_as_real(out).square().sum()
        loss.backward()

    out = fwd()
    assert out.shape == (BATCH, box, box // 2 + 1) and out.is_complex()
    del out

    with OtherLoad() as other:
        t_f = statistics.median(time_fn(fwd, device, reps, warmup))
        t_fb = statistics.median(time_fn(fwd_bwd, device, reps, warmup))
        t_mm = bare_gemm_time(impl, BATCH, n, box, device, max(reps, 3), warmup)
    fl = proj_flops(BATCH, n, box)
    row = {
        "impl": impl, "N": n, "D": box, "B": BATCH,
        "fwd_s": t_f, "fwd_img_s": BATCH / t_f, "fwd_gflops": fl / t_f / 1e9,
        "fb_s": t_fb, "fb_img_s": BATCH / t_fb, "fb_gflops": 3 * fl / t_fb / 1e9,
        "bare_gemm_s": t_mm,
        "other_cpu_cores": other.cores,
    }
    row["fwd_frac"] = row["fwd_gflops"] / ref_gflops
    row["fb_frac"] = row["fb_gflops"] / ref_gflops
    row["gemm_share"] = t_mm / t_f
    return row


def markdown_table(rows):
    head = ("| implementation | D | N | fwd ms/batch | fwd img/s | fwd GFLOP/s | fwd % of matmul "
            "| fwd+bwd ms/batch | fwd+bwd img/s | fwd+bwd GFLOP/s | fwd+bwd % of matmul "
            "| bare GEMM ms | GEMM share of fwd | other procs' CPU |")
    sep = "|" + "---|" * 14
    lines = [head, sep]
    for r in rows:
        lines.append(
            "| %s | %d | %d | %.1f | %.0f | %.1f | %.0f%% | %.1f | %.0f | %.1f | %.0f%% | %.1f "
            "| %.0f%% | %.2f |"
            % (r["impl"], r["D"], r["N"],
               1e3 * r["fwd_s"], r["fwd_img_s"], r["fwd_gflops"], 100 * r["fwd_frac"],
               1e3 * r["fb_s"], r["fb_img_s"], r["fb_gflops"], 100 * r["fb_frac"],
               1e3 * r["bare_gemm_s"], 100 * r["gemm_share"], r["other_cpu_cores"]))
    return "\n".join(lines)


# ----------------------------------------------------------------------------
# profile
# ----------------------------------------------------------------------------
CATEGORIES = [
    ("GEMM (bmm/mm)", ("aten::bmm", "aten::mm", "aten::addmm", "aten::baddbmm")),
    ("exp/cos/sin/polar", ("aten::exp", "aten::cos", "aten::sin", "aten::polar",
                           "aten::sgn")),
    ("elementwise mul/pow/neg/div", ("aten::mul", "aten::mul_", "aten::pow", "aten::neg",
                                     "aten::div", "aten::square")),
    ("add/sub (complex assembly, grads)", ("aten::add", "aten::add_", "aten::sub",
                                           "aten::sub_", "aten::rsub")),
    ("cat/copy/flip/conj", ("aten::cat", "aten::copy_", "aten::clone", "aten::contiguous",
                            "aten::_to_copy", "aten::to", "aten::flip", "aten::conj",
                            "aten::resolve_conj", "aten::_conj_physical",
                            "aten::conj_physical", "aten::conj_physical_")),
    ("complex / view_as_real / angle", ("aten::complex", "aten::view_as_real", "aten::real",
                                        "aten::imag", "aten::view_as_complex",
                                        "aten::angle", "aten::abs")),
    ("alloc/zero/fill", ("aten::empty", "aten::empty_strided", "aten::zeros",
                         "aten::zero_", "aten::fill_", "aten::new_zeros",
                         "aten::empty_like", "aten::zeros_like")),
    ("reductions (sum)", ("aten::sum", "aten::sum_")),
]


def run_profile(device, rng, box=128, n=2000):
    from torch.profiler import ProfilerActivity, profile

    params, rots, shifts = make_inputs(n, box, BATCH, device, rng)
    p_leaf = params.clone().requires_grad_(True)
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    use_dev = device.type == "cuda"

    def fwd():
        with torch.no_grad():
            project(params, rots, shifts, box, APIX)

    def fwd_bwd():
        p_leaf.grad = None
        out = project(p_leaf, rots, shifts, box, APIX)
        torch.view_as_real(out).square().sum().backward()

    result = {}
    for name, fn in (("forward", fwd), ("forward+backward", fwd_bwd)):
        fn()
        fn()
        sync(device)
        reps = 3
        with OtherLoad() as other, profile(activities=acts) as prof:
            for _ in range(reps):
                fn()
            sync(device)
        events = prof.key_averages()
        per_op = {}
        for ev in events:
            t = (getattr(ev, "self_device_time_total", 0) if use_dev
                 else ev.self_cpu_time_total)
            if t > 0:
                per_op[ev.key] = per_op.get(ev.key, 0.0) + t / reps / 1e3  # ms per call
        total = sum(per_op.values())
        cats = {c: 0.0 for c, _ in CATEGORIES}
        cats["other"] = 0.0
        for op, t in per_op.items():
            for c, names in CATEGORIES:
                if op in names:
                    cats[c] += t
                    break
            else:
                cats["other"] += t
        top = sorted(per_op.items(), key=lambda kv: -kv[1])[:12]
        result[name] = {"total_ms": total, "categories_ms": cats, "top_ops_ms": top,
                        "other_cpu_cores": other.cores}
    return {"D": box, "N": n, "B": BATCH, "phases": result}


def print_profile(prof):
    out = ["### Profile (torch.profiler, self time per call), D=%d, N=%d, B=%d"
           % (prof["D"], prof["N"], prof["B"]), ""]
    for phase, res in prof["phases"].items():
        out.append("%s — total %.1f ms/batch (other processes meanwhile: %.2f cores)"
                   % (phase, res["total_ms"], res["other_cpu_cores"]))
        out.append("")
        out.append("| category | ms | share |")
        out.append("|---|---|---|")
        for c, t in sorted(res["categories_ms"].items(), key=lambda kv: -kv[1]):
            if t > 0:
                out.append("| %s | %.1f | %.0f%% |" % (c, t, 100 * t / res["total_ms"]))
        out.append("")
        out.append("top ops: " + ", ".join("%s %.1f ms" % (op, t) for op, t in res["top_ops_ms"]))
        out.append("")
    return "\n".join(out)


# ----------------------------------------------------------------------------
def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="auto", help="auto (cuda if available), cpu, cuda[:N]")
    ap.add_argument("--quick", action="store_true", help="fewer repetitions")
    ap.add_argument("--out", help="write results as JSON to this file (e.g. %s)"
                    % os.path.relpath(cases.output("projection.json")))
    ap.add_argument("--profile", action="store_true",
                    help="also profile one configuration with torch.profiler")
    ap.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's)")
    ap.add_argument("--impl", choices=("both", "project", "direct"), default="both",
                    help="project (the package's), direct (the previous one, the "
                         "baseline) or both, one after the other on the same inputs")
    args = ap.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    reps, warmup = (2, 1) if args.quick else (5, 2)
    rng = np.random.default_rng(20240601)
    torch.manual_seed(0)

    info = machine_info(device)
    print("# Projection throughput", flush=True)
    print("date: %(date)s\ncpu: %(cpu)s, %(cores)s cores\ntorch %(torch)s, "
          "%(torch_threads)s threads, device %(device)s" % info
          + ("\ngpu: %s" % info["gpu"] if "gpu" in info else ""))
    print("command: %s" % " ".join(["python"] + [os.path.relpath(sys.argv[0])] + sys.argv[1:]))
    print()

    t_start = time.perf_counter()
    whole_run = OtherLoad().start()
    ref = matmul_reference(device, reps=max(reps, 5), warmup=warmup)
    print("matmul reference (float32, best of %d after warm-up):" % max(reps, 5))
    print("  torch.bmm %s: %.1f GFLOP/s" % (ref["bmm_shape"], ref["bmm_gflops"]))
    print("  torch.mm  %s: %.1f GFLOP/s" % (ref["mm_shape"], ref["mm_gflops"]))
    print("  torch.bmm %s: %.1f GFLOP/s" % (ref["cbmm_shape"], ref["cbmm_gflops"]))
    print("  (%% of matmul below is relative to the bmm rate, %.1f GFLOP/s;"
          " re-checked at the end of the run)" % ref["bmm_gflops"])
    print(flush=True)

    impls = ("project", "direct") if args.impl == "both" else (args.impl,)
    rows = []
    for box in DS:
        for n in NS:
            for row in bench_config(n, box, device, reps, warmup, rng, ref["bmm_gflops"],
                                    impls):
                rows.append(row)
                print("  %s D=%d N=%d: fwd %.1f ms, fwd+bwd %.1f ms" %
                      (row["impl"], box, n, 1e3 * row["fwd_s"], 1e3 * row["fb_s"]),
                      file=sys.stderr, flush=True)

    ref_end = matmul_reference(device, reps=max(reps, 5), warmup=warmup)
    ref["bmm_gflops_end"] = ref_end["bmm_gflops"]
    ref["mm_gflops_end"] = ref_end["mm_gflops"]
    whole_run.stop()
    info["other_cpu_cores"] = whole_run.cores
    worst = max(r["other_cpu_cores"] for r in rows)
    ref["cbmm_gflops_end"] = ref_end["cbmm_gflops"]
    print("matmul reference re-check at end: bmm %.1f GFLOP/s, mm %.1f GFLOP/s, "
          "complex bmm %.1f GFLOP/s"
          % (ref_end["bmm_gflops"], ref_end["mm_gflops"], ref_end["cbmm_gflops"]))
    print("CPU used by other processes during the run: %.2f cores on average, %.2f in the "
          "worst configuration (of %d)" % (whole_run.cores, worst, os.cpu_count()))
    if worst > 0.1 or abs(ref_end["bmm_gflops"] / ref["bmm_gflops"] - 1) > 0.2:
        print("WARNING: the machine looks busy (other processes or drifting matmul rate); "
              "timings are unreliable -- rerun on an idle machine.")
    print()
    print("median of %d reps after %d warm-up; B=%d, apix=%.1f Å; forward flops = 8·B·N·D·(D/2+1), "
          "fwd+bwd = 3×;\nlast column = CPU cores used by other processes meanwhile"
          % (reps, warmup, BATCH, APIX))
    print()
    goal = [r for r in rows if r["D"] == 64 and r["N"] == 2000]
    if goal:
        print("goal row (D=64, N=2000, forward+backward, aim >= 50% of the bmm rate): "
              + ", ".join("%s %.0f%% (%.1f ms, %.0f img/s)"
                          % (r["impl"], 100 * r["fb_frac"], 1e3 * r["fb_s"], r["fb_img_s"])
                          for r in goal))
        print()
    print(markdown_table(rows))
    print()

    prof = None
    if args.profile:
        prof = run_profile(device, rng)
        print(print_profile(prof))
    print("total benchmark time: %.0f s" % (time.perf_counter() - t_start))

    if args.out:
        with open(args.out, "w") as f:
            json.dump({"machine": info, "reps": reps, "warmup": warmup, "apix": APIX,
                       "matmul_reference": ref, "rows": rows, "profile": prof,
                       "argv": sys.argv[1:]}, f, indent=2)


if __name__ == "__main__":
    main()
