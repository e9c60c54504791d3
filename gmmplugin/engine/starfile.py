"""RELION 3.1 .star reading/writing (via emtable), to and from ``Particles``.

Lets the engine run without Scipion (``cli.py --star``) and lets the simulator
write exactly what RELION and Scipion's importer read: a ``data_optics`` block
(pixel size, image size, voltage, Cs, amplitude contrast) and a
``data_particles`` block (``index@stack`` 1-based, angles, origins in Å, CTF).
"""
import os

from emtable import Table
import numpy as np

from .geometry import euler_to_matrix, matrix_to_euler
from .particles import Particles

OPTICS_COLUMNS = ["rlnOpticsGroupName", "rlnOpticsGroup", "rlnVoltage",
                  "rlnSphericalAberration", "rlnAmplitudeContrast", "rlnImagePixelSize",
                  "rlnImageSize", "rlnImageDimensionality"]
PARTICLE_COLUMNS = ["rlnImageName", "rlnMicrographName", "rlnOpticsGroup",
                    "rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi",
                    "rlnOriginXAngst", "rlnOriginYAngst",
                    "rlnDefocusU", "rlnDefocusV", "rlnDefocusAngle", "rlnPhaseShift",
                    "rlnCtfBfactor", "rlnCtfScalefactor"]


def write_star(path, particles, extra_columns=None):
    """Write ``particles`` (one optics group: voltage/Cs/Q of the first row).

    Stack paths are written relative to the star file's folder when possible.
    ``extra_columns``: {rlnName: array} appended to the particle block.
    """
    p = particles
    folder = os.path.dirname(os.path.abspath(path))
    optics = Table(columns=OPTICS_COLUMNS)
    optics.addRow("opticsGroup1", 1, float(p.ctf[0, 3]), float(p.ctf[0, 4]),
                  float(p.ctf[0, 5]), float(p.apix), int(p.box), 2)
    extra = extra_columns or {}
    table = Table(columns=PARTICLE_COLUMNS + list(extra))
    rot, tilt, psi = matrix_to_euler(p.rotations)
    for i in range(len(p)):
        stack = os.path.relpath(p.stacks[p.stack_idx[i]], folder)
        c = p.ctf[i]
        table.addRow("%06d@%s" % (p.frame[i] + 1, stack), "mic%d" % p.stack_idx[i], 1,
                     float(rot[i]), float(tilt[i]), float(psi[i]),
                     float(p.shifts[i, 0]), float(p.shifts[i, 1]),
                     float(c[0]), float(c[1]), float(c[2]), float(c[6]), 0.0, 1.0,
                     *[v[i].item() for v in extra.values()])
    with open(path, "w") as f:
        f.write("# version 30001\n")
        optics.writeStar(f, tableName="optics")
        f.write("# version 30001\n")
        table.writeStar(f, tableName="particles")


ANGLES = ("rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi")
ORIGINS = ("rlnOriginXAngst", "rlnOriginYAngst")
DEFOCUS = ("rlnDefocusU", "rlnDefocusV", "rlnDefocusAngle")
OPTICS = ("rlnImagePixelSize", "rlnImageSize", "rlnVoltage", "rlnSphericalAberration",
          "rlnAmplitudeContrast")


def _tables(path):
    """(optics rows by group, particles table) of a RELION 3.1 star file."""
    with open(path) as f:
        text = f.read()
    if "data_optics" not in text:
        raise ValueError("%s has no optics table: it is a RELION 3.0 (or older) star file, "
                         "which is not read here. Convert it with 'relion_convert_star "
                         "--i OLD.star --o NEW.star' (RELION 3.1+), or import it into "
                         "Scipion" % path)
    if "data_particles" not in text:
        raise ValueError("%s has no particles table (data_particles)" % path)
    optics = Table(fileName=path, tableName="optics")
    _require(optics, OPTICS, path, "optics table")
    table = Table(fileName=path, tableName="particles")
    _require(table, ("rlnImageName",) + ANGLES, path,
             "particles table (every command needs each particle's orientation)")
    for group in (ORIGINS, DEFOCUS):
        present = [c for c in group if table.hasColumn(c)]
        if present and len(present) < len(group):
            _require(table, group, path, "particles table")
    return {int(r.rlnOpticsGroup): r for r in optics}, table


def _require(table, columns, path, what):
    missing = [c for c in columns if not table.hasColumn(c)]
    if missing:
        raise ValueError("%s: the %s lacks %s" % (path, what, ", ".join(missing)))


def read_star(path):
    """Read a RELION 3.1 particle .star into ``Particles`` (ids = row + 1).

    Refuses what would give a plausible-looking wrong result: missing angle
    columns, a partial set of origin or defocus columns, non-positive defocus,
    and RELION 3.0 files (no optics table). Without any defocus column the
    particles have no CTF (``has_ctf`` False), which commands needing one refuse.
    """
    if not os.path.exists(path):
        raise FileNotFoundError("star file not found: %s" % path)
    folder = os.path.dirname(os.path.abspath(path))
    optics, table = _tables(path)
    n = table.size()
    if n == 0:
        raise ValueError("no particles in %s" % path)
    has_ctf = table.hasColumn("rlnDefocusU")
    stacks, stack_idx, frame = {}, np.zeros(n, np.int32), np.zeros(n, np.int64)
    angles, shifts, ctf = np.zeros((n, 3)), np.zeros((n, 2)), np.zeros((n, 7))
    apix = box = None
    for i, r in enumerate(table):
        og = optics[int(r.get("rlnOpticsGroup", 1))]
        apix_i, box_i = float(og.rlnImagePixelSize), int(og.rlnImageSize)
        if apix is None:
            apix, box = apix_i, box_i
        elif abs(apix_i - apix) > 1e-6 or box_i != box:
            raise ValueError("optics groups with different pixel or box sizes are "
                             "not supported (%s)" % path)
        idx, name = str(r.rlnImageName).split("@")
        full = os.path.normpath(os.path.join(folder, name))
        stack_idx[i] = stacks.setdefault(full, len(stacks))
        frame[i] = int(idx) - 1
        angles[i] = [float(r.get(c)) for c in ANGLES]
        shifts[i] = [float(r.get(c, 0.0)) for c in ORIGINS]
        ctf[i] = ([float(r.get(c, 0.0)) for c in DEFOCUS]
                  + [float(og.rlnVoltage), float(og.rlnSphericalAberration),
                     float(og.rlnAmplitudeContrast), float(r.get("rlnPhaseShift", 0.0))])
    if has_ctf and np.any(ctf[:, :2] <= 0):
        bad = int(np.flatnonzero((ctf[:, :2] <= 0).any(1))[0])
        raise ValueError("%s: particle %d has a non-positive defocus (%g, %g Å); RELION's "
                         "defocus is positive for underfocus" % (path, bad + 1, *ctf[bad, :2]))
    p = Particles(ids=np.arange(1, n + 1, dtype=np.int64), stacks=list(stacks),
                  stack_idx=stack_idx, frame=frame,
                  rotations=euler_to_matrix(*angles.T), shifts=shifts, ctf=ctf,
                  apix=apix, box=box, has_ctf=has_ctf)
    p.validate()
    return p
