"""The engine's command line: ``python -m gmmplugin.engine COMMAND ...``.

Commands (one module each in ``commands/``): simulate, reconstruct, fit, train,
analyze, refine-poses, refine-models. The protocols run it through ``runJob``
(so runs can be queued and use the GPUs the user chose); it is equally usable
outside Scipion on RELION .star files. Every command checks its inputs first
and exits with a one-line error (status 2) instead of a traceback from deep
inside torch.

Under ``torchrun`` (``python -m torch.distributed.run ... -m gmmplugin.engine``)
the data-parallel commands (reconstruct, train, refine-poses) share the
particles among the processes (engine/distributed.py); rank 0 holds the output
folder, writes the files and prints, the other ranks print nothing but errors.
"""
import argparse
import contextlib
import os
import sys

from .commands import COMMANDS


def build_parser():
    p = argparse.ArgumentParser(prog="python -m gmmplugin.engine",
                                description=__doc__.split("\n")[0])
    p.add_argument("--device", default="auto",
                   help="auto (GPU if visible, else CPU), cpu, or a CUDA index")
    p.add_argument("--threads", type=int, default=None,
                   help="CPU threads for torch (default: OMP_NUM_THREADS, else all cores)")
    sub = p.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        c = sub.add_parser(command.NAME, help=command.HELP, description=command.__doc__)
        command.add_args(c)
        c.set_defaults(func=command.main)
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    from . import distributed
    from .device import pick_device, set_cpu_threads
    set_cpu_threads(args.threads)
    try:
        args.device_obj = distributed.setup(pick_device(args.device))
        if not distributed.is_main():
            sys.stdout = open(os.devnull, "w")      # one log, rank 0's
        elif distributed.world() > 1:
            print("%d processes (%s), each on its share of the particles"
                  % (distributed.world(), distributed.backend()), flush=True)
        with contextlib.ExitStack() as stack:
            _own_out_dir(args, stack)
            args.func(args)
    except (ValueError, FileNotFoundError, KeyError) as e:
        print("ERROR: %s" % e, file=sys.stderr, flush=True)
        return 2
    finally:
        distributed.teardown()
    return 0


def _own_out_dir(args, stack):
    """Rank 0 holds the output folder for the run (rundir.owned); every rank
    learns whether it could, so that all stop together if not."""
    from . import distributed
    from .rundir import owned
    if not getattr(args, "out_dir", None):
        return
    error = None
    if distributed.is_main():
        try:
            stack.enter_context(owned(args.out_dir, log=lambda m: print(m, flush=True)))
        except ValueError as e:
            error = str(e)
    error = distributed.agree(error)
    if error:
        raise ValueError(error)


if __name__ == "__main__":
    sys.exit(main())
