"""Data parallelism over particles with torch.distributed.

A command started by ``torchrun`` (``python -m torch.distributed.run``) runs
once per process; every process ("rank") reads the same inputs, works on its
own share of the particles and combines its results with the others' through
torch.distributed collectives: NCCL between GPUs, gloo between CPU processes.
A command started without torchrun is the world of one: no process group is
made and every helper below returns its input (the shard is every particle,
a reduction or gather changes nothing), so the single-process run and the
data-parallel run go through the same code.

Shares are contiguous blocks of the particle rows, in order, made of whole
batches of the single process's loop: results put back together by
``gather_rows`` are in particle order, files written share by share land where
a single process would have written them, and every batch is computed as the
single process computes it. Files that all ranks write into (the training's
caches) must be on a filesystem every node sees, as a Scipion project folder
is on a cluster.
"""
import datetime
import os

import numpy as np
import torch
import torch.distributed as dist

# A rank waits at most this long for the others (torch's default is 30 min), e.g.
# at a barrier while another rank still reads its share from a slow disk.
TIMEOUT = datetime.timedelta(hours=6)

_state = {"device": torch.device("cpu"), "alone": False}


def _active():
    """In a process group of several ranks that still work together."""
    return dist.is_initialized() and not _state["alone"]


def launched():
    """Whether this process was started by torchrun (its rendezvous environment)."""
    return all(k in os.environ for k in ("RANK", "WORLD_SIZE", "MASTER_ADDR",
                                         "MASTER_PORT"))


def setup(device):
    """Join torchrun's process group, if started by torchrun, and return this
    rank's device: on CUDA the GPU of its local rank (each process of a node
    takes one of the visible GPUs), else ``device``. Backend: NCCL on CUDA,
    gloo on the CPU."""
    device = torch.device(device)
    if not launched() or dist.is_initialized():
        _state["device"] = device
        return device
    if device.type == "cuda":
        local = int(os.environ.get("LOCAL_RANK", 0))
        if local >= torch.cuda.device_count():
            raise ValueError("%d processes on this node but only %d visible GPUs: start "
                             "at most one process per GPU"
                             % (local + 1, torch.cuda.device_count()))
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo", timeout=TIMEOUT)
    _state["device"] = device
    return device


def backend():
    """The collectives' backend ("nccl", "gloo"), or None in a world of one."""
    return dist.get_backend() if _active() else None


def teardown():
    _state["alone"] = False
    if dist.is_initialized():
        dist.destroy_process_group()


def rank():
    return dist.get_rank() if _active() else 0


def world():
    return dist.get_world_size() if _active() else 1


def is_main():
    """Rank 0: the process that writes files and logs."""
    return rank() == 0


def check_particles(n, what="particles"):
    """A clear error when there are fewer particles than processes (a rank
    would have nothing to do)."""
    if n < world():
        raise ValueError("%d processes for %d %s: start at most as many processes as "
                         "there are particles" % (world(), n, what))


def share(n, batch_size=1):
    """This rank's block of ``n`` items in order, a slice (all of them in a world
    of one); the blocks of ranks 0, 1, ... follow each other. With
    ``batch_size`` the blocks are whole batches of a single process's loop over
    the items, so that a rank looping over its block in batches of that size
    computes every batch exactly as the single process does (batched kernels
    may round differently for another batch make-up)."""
    batches = -(-n // batch_size)
    bounds = np.linspace(0, batches, world() + 1).round().astype(int) * batch_size
    return slice(int(min(bounds[rank()], n)), int(min(bounds[rank() + 1], n)))


def shard(rows, batch_size=1):
    """This rank's contiguous block of ``rows`` (all of them in a world of one),
    in whole batches of ``batch_size`` (``share``)."""
    rows = np.asarray(rows)
    return rows[share(len(rows), batch_size)]


def barrier():
    if _active():
        dist.barrier()


def all_reduce_(tensor):
    """Sum ``tensor`` over the ranks, in place (on its own device; NCCL needs
    CUDA tensors, gloo takes CPU ones)."""
    if _active():
        dist.all_reduce(tensor)
    return tensor


def all_sum(value):
    """The sum of a Python number over the ranks."""
    if not _active():
        return value
    t = torch.tensor(float(value), dtype=torch.float64, device=_state["device"])
    return float(all_reduce_(t).item())


def all_min(value):
    """The smallest of a Python number over the ranks: what every rank can count
    on (e.g. its free memory), so that all take the same decision from it."""
    if not _active():
        return value
    t = torch.tensor(float(value), dtype=torch.float64, device=_state["device"])
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return float(t.item())


def gather_rows(local, n, rows=None):
    """The (n, ...) array whose block ``rows`` (this rank's ``shard(range(n))``
    by default) is ``local``, on every rank: each rank fills its block of a
    zero array and the arrays are summed, which adds exact zeros, so the
    values are the ranks' own bit for bit."""
    local = np.asarray(local)
    if not _active():
        return local
    rows = shard(np.arange(n)) if rows is None else rows
    kind = local.dtype
    wire = np.float64 if kind.kind in "fc" and kind.itemsize > 4 else (
        np.float32 if kind.kind == "f" else np.int64)
    full = np.zeros((n,) + local.shape[1:], dtype=wire)
    full[rows] = local
    t = all_reduce_(torch.from_numpy(full).to(_state["device"]))
    return t.cpu().numpy().astype(kind)


def agree(value):
    """Rank 0's ``value`` (any picklable object) on every rank: decisions
    that must be the same everywhere, e.g. whether a cache is valid."""
    if not _active():
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def main_goes_on_alone():
    """End the ranks' work together: the other ranks return False (they are
    done), rank 0 returns True and goes on as a world of one (shards are every
    particle, collectives do nothing), e.g. for steps that are not shared
    among the ranks and for writing the results."""
    if is_main():
        _state["alone"] = True
        return True
    return False


def data_parallel(module, device):
    """``module`` in DistributedDataParallel within a process group (it starts
    from rank 0's parameters and averages the ranks' gradients in backward),
    else ``module`` itself."""
    if not _active():
        return module
    from torch.nn.parallel import DistributedDataParallel
    device = torch.device(device)
    return DistributedDataParallel(module, device_ids=[device] if device.type == "cuda"
                                   else None)
