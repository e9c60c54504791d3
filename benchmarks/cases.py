"""Where the benchmarks find their inputs and write their outputs, and the
simulated cases they share. Every benchmark locates its data through this module.

Structures (PDB files, ``structure(name)``): the folder named by the environment
variable ``GMM_BENCH_DATA`` when it is set (and then only there); otherwise the
repository's own ``gmmplugin/tests/data`` (1bd2, 1hvr and 5a7u are bundled
there), then ``../shared/data`` next to the repository root. Both are found
relative to this file, so a checkout works wherever it lies.

Outputs: ``benchmarks/output/`` (``OUT``, ``output(...)``; git-ignored). The
simulated heterogeneity datasets are stored there, one folder per name in
``DATASETS``, and reused by every benchmark that needs them (``ensure_dataset``).

cryoDRGN, for ``cryodrgn_compare.py`` only, lives in its own virtual
environment: ``GMM_BENCH_CRYODRGN`` or ``../venv_cryodrgn`` next to the
repository root (``CRYODRGN_VENV``).

Importing this module puts the repository root on ``sys.path``, so that
``gmmplugin`` is imported from this checkout.
"""
import datetime
import json
import os
import shutil
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from gmmplugin.engine.simulate import (Heterogeneity, SimulationSettings,  # noqa: E402
                                       simulate)

# -- where things are ---------------------------------------------------------------
DATA_ENV = "GMM_BENCH_DATA"
DATA_DIRS = (os.path.join(ROOT, "gmmplugin", "tests", "data"),
             os.path.normpath(os.path.join(ROOT, "..", "shared", "data")))
OUT = os.environ.get("GMM_BENCH_OUT") or os.path.join(HERE, "output")   # e.g. a smoke run
CRYODRGN_VENV = os.environ.get("GMM_BENCH_CRYODRGN") or os.path.normpath(
    os.path.join(ROOT, "..", "venv_cryodrgn"))


def data_dirs():
    """The folders searched for structures, in order."""
    override = os.environ.get(DATA_ENV)
    return (override,) if override else DATA_DIRS


def structure(name):
    """Path of the structure file ``name`` (e.g. "1bd2.pdb"): the first folder of
    ``data_dirs()`` that holds it; where none does, its path in the first folder
    (so the error names the place looked at first)."""
    dirs = data_dirs()
    for d in dirs:
        path = os.path.join(d, name)
        if os.path.exists(path):
            return path
    return os.path.join(dirs[0], name)


def output(*parts):
    """A path under benchmarks/output/."""
    return os.path.join(OUT, *parts)


# -- the heterogeneity datasets (heterogeneity.py, analysis.py, refine_orientations.py,
# cyclic_oracle.py, refine_saved_latents.py, cryodrgn_compare.py) ------------------
PDB = structure("1bd2.pdb")          # TCR-pMHC; chains A, B, C = MHC + peptide; D, E = TCR
JUNK_PDB = structure("1hvr.pdb")     # another protein, the junk of analysis.py
BOX, APIX, SNR, SIM_SEED = 64, 2.6, 0.1, 1
FIT_RES = 8.0                        # Å: the neutral GMM fit
TCR = "D,E"

DATASETS = {
    "continuous": Heterogeneity(move=TCR, motion="rotate", amount=30.0),
    "mixed": Heterogeneity(move=TCR, motion="rotate", amount=30.0, remove=TCR,
                           present_fraction=0.5),
    # beta-2-microglobulin (chain B, 11 % of the mass) absent in half of the
    # particles, the TCR swinging 0-30 degrees in all of them
    "moving_partial": Heterogeneity(move=TCR, motion="rotate", amount=30.0, remove="B",
                                    present_fraction=0.5),
    # two populated states of the swing (63 % near 0 degrees, 27 % near 30) and 10 %
    # spread evenly between them
    "two_states": Heterogeneity(move=TCR, motion="rotate", amount=30.0,
                                states=((0.0, 0.63), (1.0, 0.27))),
    # the TCR sliding 15 Å along one fixed direction: views along it do not see
    # the motion, so how well an image determines its latent depends on its view
    "axial": Heterogeneity(move=TCR, motion="translate", amount=15.0, axis=(0.0, 0.0, 1.0)),
    "cyclic": Heterogeneity(move="B", motion="cyclic", amount=7.0),
    "cyclic_wide": Heterogeneity(move="B", motion="cyclic", amount=14.0),
}

# datasets of another structure or geometry than 1bd2 at BOX, APIX: (structure,
# box, pixel size Å, neutral-fit resolution Å)
OTHER_GEOMETRY = {
    # a small protein (HIV protease dimer, 22 kDa): one monomer rotates 0-30 degrees
    # about the hinge with the other, a closure whose far end moves by 16 Å
    "small_closure": ("1hvr.pdb", 48, 1.8, 6.0),
}
DATASETS["small_closure"] = Heterogeneity(move="B", motion="rotate", amount=30.0)

# per-particle arrays of ground_truth.npz (a prefix of the set keeps their first rows)
PER_PARTICLE = ("conformation", "composition", "ids")


def geometry(name=None):
    """(structure path, box, pixel size, neutral-fit resolution) of dataset ``name``."""
    if name in OTHER_GEOMETRY:
        pdb, box, apix, fit_res = OTHER_GEOMETRY[name]
        return structure(pdb), box, apix, fit_res
    return PDB, BOX, APIX, FIT_RES


def settings(n, name=None):
    """Simulation settings of heterogeneity dataset ``name``, for n particles."""
    _, box, apix, _ = geometry(name)
    return SimulationSettings(n_particles=n, box=box, apix=apix, snr=SNR, seed=SIM_SEED)


OLD_HETEROGENEITY_FIELDS = ("move", "motion", "amount", "axis", "remove", "present_fraction")


def _signature(het, name=None):
    """What makes a stored dataset reusable. Fields of ``Heterogeneity`` left at
    their defaults are omitted, so adding a field to the simulator does not
    invalidate (and re-simulate) the stored datasets."""
    s = settings(0, name).__dict__.copy()
    s.pop("n_particles")
    defaults = Heterogeneity()
    sig = {"settings": s, "heterogeneity": {
        k: v for k, v in het.__dict__.items()
        if k in OLD_HETEROGENEITY_FIELDS or v != getattr(defaults, k)},
        "source": os.path.basename(geometry(name)[0])}
    return json.loads(json.dumps(sig))      # as stored: tuples become lists


def dataset_folder(name):
    return output(name)


def ensure_dataset(name, n):
    """Simulate ``name`` with >= n particles unless a matching set exists (a stored
    set with more particles is used through its first rows: the per-particle states
    are i.i.d., so a prefix is a valid smaller set).
    Returns (folder, info) with info["sim_seconds"] and info["cached"]."""
    folder = dataset_folder(name)
    info_path = os.path.join(folder, "dataset.json")
    het = DATASETS[name]
    sig = _signature(het, name)
    if os.path.exists(info_path):
        info = json.load(open(info_path))
        if info.get("signature") == sig and info.get("n_particles", 0) >= n:
            return folder, dict(info, cached=True)
        print("[%s] stored dataset does not match (or is too small): re-simulating" % name)
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder)
    print("[%s] simulating %d particles ..." % (name, n), flush=True)
    t0 = time.time()
    simulate(geometry(name)[0], folder, settings(n, name), het)
    info = {"signature": sig, "n_particles": n, "sim_seconds": time.time() - t0,
            "date": datetime.datetime.now().isoformat(timespec="seconds")}
    json.dump(info, open(info_path, "w"), indent=1)
    print("[%s] simulated in %.0f s" % (name, info["sim_seconds"]), flush=True)
    return folder, dict(info, cached=False)


def load_ground_truth(folder, n):
    """ground_truth.npz of a dataset, its per-particle arrays cut to the first n."""
    gt = dict(np.load(os.path.join(folder, "ground_truth.npz")))
    return {k: (v[:n] if k in PER_PARTICLE else v) for k, v in gt.items()}


def load_dataset(name, n):
    """The first n particles of dataset ``name`` (simulated if needed):
    (folder, info, particles, ground truth)."""
    from gmmplugin.engine.starfile import read_star
    folder, info = ensure_dataset(name, n)
    particles = read_star(os.path.join(folder, "particles.star"))
    if len(particles) > n:
        particles = particles.subset(np.arange(n))
    return folder, info, particles, load_ground_truth(folder, n)


# -- the symmetric oligomer (symmetry.py) -------------------------------------------
SYMMETRY_PDB = structure("1hvr.pdb")   # HIV protease; chain A is the subunit
SYMMETRY_BOX, SYMMETRY_APIX, SYMMETRY_SEED = 40, 3.0, 11


def symmetry_heterogeneity(sym):
    """A ``sym`` oligomer of 1hvr chain A whose residues 43-78 swing 0-30° about
    their hinge, independently in every subunit."""
    return Heterogeneity(move="A:43-78", motion="rotate", amount=30.0, symmetry=sym,
                         subunit="A")


def symmetry_settings(n, snr):
    return SimulationSettings(n_particles=n, box=SYMMETRY_BOX, apix=SYMMETRY_APIX, snr=snr,
                              seed=SYMMETRY_SEED)
