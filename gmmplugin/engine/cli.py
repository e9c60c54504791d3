"""The engine's command line: ``python -m gmmplugin.engine COMMAND ...``.

Commands (one module each in ``commands/``): simulate, reconstruct, fit, train,
analyze, refine-poses, refine-models. The protocols run it through ``runJob``
(so runs can be queued and use the GPUs the user chose); it is equally usable
outside Scipion on RELION .star files. Every command checks its inputs first
and exits with a one-line error (status 2) instead of a traceback from deep
inside torch.
"""
import argparse
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
    from .device import pick_device, set_cpu_threads
    set_cpu_threads(args.threads)
    args.device_obj = pick_device(args.device)
    try:
        if getattr(args, "out_dir", None):
            from .rundir import owned
            with owned(args.out_dir, log=lambda m: print(m, flush=True)):
                args.func(args)
        else:
            args.func(args)
    except (ValueError, FileNotFoundError, KeyError) as e:
        print("ERROR: %s" % e, file=sys.stderr, flush=True)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
