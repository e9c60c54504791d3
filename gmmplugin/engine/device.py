"""Choosing the torch device from a command-line/protocol setting."""
import os

import torch


def pick_device(spec="auto"):
    """Return a torch.device for ``spec``.

    ``spec`` is "auto" (first visible CUDA device, else CPU), "cpu", or a GPU
    index/"cuda:N". Protocols restrict the visible GPUs with
    CUDA_VISIBLE_DEVICES, so "auto" then means "the GPU the user chose".
    Asking for CUDA where none exists falls back to the CPU with a warning
    rather than failing a long queued job.
    """
    spec = str(spec).strip().lower()
    if spec in ("", "auto"):
        return torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
    if spec == "cpu":
        return torch.device("cpu")
    if spec.isdigit():
        spec = "cuda:%s" % spec
    if spec.startswith("cuda") and not torch.cuda.is_available():
        print("WARNING: %s requested but CUDA is not available; using the CPU"
              % spec, flush=True)
        return torch.device("cpu")
    return torch.device(spec)


def usable_cores():
    """Cores this process may run on (its CPU affinity, e.g. a queue's allocation)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:      # not on Linux
        return os.cpu_count() or 1


def set_cpu_threads(n=None):
    """torch's CPU threads: ``n`` (the protocol's Threads), else OMP_NUM_THREADS,
    else every usable core; never more than the usable cores, since more threads
    than cores only make CPU-bound work wait on each other."""
    if n is None:
        n = int(os.environ.get("OMP_NUM_THREADS", 0) or usable_cores())
    torch.set_num_threads(max(1, min(n, usable_cores())))
    return torch.get_num_threads()


def total_memory_bytes(device):
    """Memory of ``device`` in bytes (RAM for the CPU), or 0 when unknown."""
    device = torch.device(device)
    if device.type == "cuda":
        return int(torch.cuda.get_device_properties(device).total_memory)
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return 0


def available_memory_bytes(device):
    """Memory ``device`` can give now, in bytes, or 0 when unknown: free GPU memory
    on CUDA; on the CPU the RAM the kernel reports as available (free plus
    reclaimable caches), within this process's cgroup limit where one is set
    (a queue's allocation)."""
    device = torch.device(device)
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    available = 0
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    available = int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return 0
    limit = _cgroup_room()
    return min(available, limit) if limit is not None else available


def _cgroup_room():
    """Bytes this process's cgroup may still allocate, None without a limit."""
    for limit_file, usage_file in (("/sys/fs/cgroup/memory.max",
                                    "/sys/fs/cgroup/memory.current"),
                                   ("/sys/fs/cgroup/memory/memory.limit_in_bytes",
                                    "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
        try:
            with open(limit_file) as f:
                limit = f.read().strip()
            with open(usage_file) as f:
                usage = int(f.read().strip())
        except (OSError, ValueError):
            continue
        if limit == "max" or int(limit) >= 1 << 60:
            return None
        return max(int(limit) - usage, 0)
    return None
