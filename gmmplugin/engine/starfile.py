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


def read_star(path):
    """Read a RELION 3.1 particle .star into ``Particles`` (ids = row + 1)."""
    folder = os.path.dirname(os.path.abspath(path))
    optics = {int(r.rlnOpticsGroup): r for r in Table(fileName=path, tableName="optics")}
    table = Table(fileName=path, tableName="particles")
    n = table.size()
    if n == 0:
        raise ValueError("no particles in %s" % path)
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
        angles[i] = (r.get("rlnAngleRot", 0.0), r.get("rlnAngleTilt", 0.0),
                     r.get("rlnAnglePsi", 0.0))
        shifts[i] = (r.get("rlnOriginXAngst", 0.0), r.get("rlnOriginYAngst", 0.0))
        ctf[i] = (r.get("rlnDefocusU", 0.0), r.get("rlnDefocusV", 0.0),
                  r.get("rlnDefocusAngle", 0.0), float(og.rlnVoltage),
                  float(og.rlnSphericalAberration), float(og.rlnAmplitudeContrast),
                  r.get("rlnPhaseShift", 0.0))
    has_ctf = table.hasColumn("rlnDefocusU")
    p = Particles(ids=np.arange(1, n + 1, dtype=np.int64), stacks=list(stacks),
                  stack_idx=stack_idx, frame=frame,
                  rotations=euler_to_matrix(*angles.T), shifts=shifts, ctf=ctf,
                  apix=apix, box=box, has_ctf=has_ctf)
    p.validate()
    return p
