"""One module per engine command, each with ``NAME``, ``HELP``, ``add_args(parser)``
and ``main(args)``; ``engine/cli.py`` builds the command line from this list.

A command only orchestrates: it checks its inputs, builds the engine's objects,
runs them and writes the files ``engine/layout.py`` names.
"""
from . import (analyze, decode, fit, reconstruct, refine_models, refine_poses, simulate,
               train)

COMMANDS = (simulate, reconstruct, fit, train, analyze, decode, refine_poses, refine_models)
