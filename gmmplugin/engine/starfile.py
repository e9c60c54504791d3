"""RELION 3.1 .star reading/writing (via emtable), to and from ``Particles``.

Lets the engine run without Scipion (``cli.py --star``) and lets the simulator
write exactly what RELION and Scipion's importer read: a ``data_optics`` block
(pixel size, image size, voltage, Cs, amplitude contrast) and a
``data_particles`` block (``index@stack`` 1-based, angles, origins in Å, CTF).
"""
import itertools
import operator
import os

from emtable import Table
from emtable.metadata import _Reader as _RowReader
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
    ``extra_columns``: {rlnName: array} appended to the particle block. The
    rows are formatted and written a chunk at a time, so a set of 10⁶
    particles needs no more memory than its arrays.
    """
    p = particles
    folder = os.path.dirname(os.path.abspath(path))
    optics = Table(columns=OPTICS_COLUMNS)
    optics.addRow("opticsGroup1", 1, float(p.ctf[0, 3]), float(p.ctf[0, 4]),
                  float(p.ctf[0, 5]), float(p.apix), int(p.box), 2)
    extra = extra_columns or {}
    rot, tilt, psi = matrix_to_euler(p.rotations)
    stacks = [os.path.relpath(s, folder) for s in p.stacks]
    with open(path, "w") as f:
        f.write("# version 30001\n")
        optics.writeStar(f, tableName="optics")
        f.write("# version 30001\n\ndata_particles\n\nloop_\n")
        for name in PARTICLE_COLUMNS + list(extra):
            f.write("_%s \n" % name)
        for start in range(0, len(p), WRITE_CHUNK):
            rows = range(start, min(start + WRITE_CHUNK, len(p)))
            f.write("".join(
                "%06d@%s mic%d 1 %.6f %.6f %.6f %.6f %.6f %.6f %.6f %.6f %.6f 0.0 1.0%s\n"
                % (p.frame[i] + 1, stacks[p.stack_idx[i]], p.stack_idx[i], rot[i], tilt[i],
                   psi[i], p.shifts[i, 0], p.shifts[i, 1], p.ctf[i, 0], p.ctf[i, 1],
                   p.ctf[i, 2], p.ctf[i, 6],
                   "".join(" %s" % v[i].item() for v in extra.values()))
                for i in rows))
        f.write("\n")


WRITE_CHUNK = 65536   # rows formatted per write (and parsed per array block when reading)


ANGLES = ("rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi")
ORIGINS = ("rlnOriginXAngst", "rlnOriginYAngst")
DEFOCUS = ("rlnDefocusU", "rlnDefocusV", "rlnDefocusAngle")
OPTICS = ("rlnImagePixelSize", "rlnImageSize", "rlnVoltage", "rlnSphericalAberration",
          "rlnAmplitudeContrast")


def _blocks(path):
    """The names of the file's data blocks, from one pass over its lines."""
    with open(path) as f:
        return {line.split()[0][5:] for line in f if line.startswith("data_")}


def _iter_rows(path, table):
    """The rows of one table, read from the file as they are iterated: emtable's
    reader, which Table.iterRows wraps (without its '@' parsing of the path)."""
    with open(path) as f:
        yield from _RowReader(f, table)


def _tables(path):
    """(optics rows by group, an iterator over the particle rows) of a RELION 3.1
    star file. The particle rows are read as they are iterated, not before."""
    blocks = _blocks(path)
    if "optics" not in blocks:
        raise ValueError("%s has no optics table: it is a RELION 3.0 (or older) star file, "
                         "which is not read here. Convert it with 'relion_convert_star "
                         "--i OLD.star --o NEW.star' (RELION 3.1+), or import it into "
                         "Scipion" % path)
    if "particles" not in blocks:
        raise ValueError("%s has no particles table (data_particles)" % path)
    optics = Table(fileName=path, tableName="optics")
    _require(optics, OPTICS, path, "optics table")
    rows = _iter_rows(path, "particles")
    first = next(rows, None)
    if first is None:
        raise ValueError("no particles in %s" % path)
    _require(first, ("rlnImageName",) + ANGLES, path,
             "particles table (every command needs each particle's orientation)")
    for group in (ORIGINS, DEFOCUS):
        present = [c for c in group if first.hasColumn(c)]
        if present and len(present) < len(group):
            _require(first, group, path, "particles table")
    return {int(r.rlnOpticsGroup): r for r in optics}, first, itertools.chain([first], rows)


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
    The rows are read one at a time into blocks of numbers, so memory holds the
    final arrays and one block, never the whole table.
    """
    if not os.path.exists(path):
        raise FileNotFoundError("star file not found: %s" % path)
    folder = os.path.dirname(os.path.abspath(path))
    optics, first, rows = _tables(path)
    has_ctf = first.hasColumn("rlnDefocusU")
    # the numbers of each row: optics group, 3 angles, 2 origins, 3 defocus, phase
    wanted = (["rlnOpticsGroup"] + list(ANGLES) + list(ORIGINS) + list(DEFOCUS)
              + ["rlnPhaseShift"])
    present = [c for c in wanted if first.hasColumn(c)]
    take = operator.attrgetter(*present)
    place = [wanted.index(c) for c in present]
    defaults = np.array([1] + [0.0] * (len(wanted) - 1))
    stacks, names, blocks, block = {}, {}, [], []
    for r in rows:
        idx, name = str(r.rlnImageName).split("@")
        s = names.get(name)
        if s is None:                     # a stack path seen for the first time
            full = os.path.normpath(os.path.join(folder, name))
            s = names[name] = stacks.setdefault(full, len(stacks))
        block.append((s, int(idx) - 1) + take(r))
        if len(block) == WRITE_CHUNK:
            blocks.append(np.array(block, dtype=np.float64))
            block = []
    if block:
        blocks.append(np.array(block, dtype=np.float64))
    table = np.concatenate(blocks)
    del blocks, block
    n = len(table)
    values = np.tile(defaults, (n, 1))
    values[:, place] = table[:, 2:]
    group, angles, shifts = values[:, 0].astype(int), values[:, 1:4], values[:, 4:6]
    apix = box = None
    per_group = {}
    for g in np.unique(group):
        if int(g) not in optics:
            raise ValueError("%s: optics group %d is not in the optics table" % (path, g))
        og = optics[int(g)]
        apix_g, box_g = float(og.rlnImagePixelSize), int(og.rlnImageSize)
        if apix is None:
            apix, box = apix_g, box_g
        elif abs(apix_g - apix) > 1e-6 or box_g != box:
            raise ValueError("optics groups with different pixel or box sizes are "
                             "not supported (%s)" % path)
        per_group[int(g)] = [float(og.rlnVoltage), float(og.rlnSphericalAberration),
                             float(og.rlnAmplitudeContrast)]
    lookup = np.zeros((max(per_group) + 1, 3))
    for g, values_g in per_group.items():
        lookup[g] = values_g
    microscope = lookup[group]
    ctf = np.column_stack([values[:, 6:9], microscope, values[:, 9]])
    if has_ctf and np.any(ctf[:, :2] <= 0):
        bad = int(np.flatnonzero((ctf[:, :2] <= 0).any(1))[0])
        raise ValueError("%s: particle %d has a non-positive defocus (%g, %g Å); RELION's "
                         "defocus is positive for underfocus" % (path, bad + 1, *ctf[bad, :2]))
    p = Particles(ids=np.arange(1, n + 1, dtype=np.int64), stacks=list(stacks),
                  stack_idx=table[:, 0].astype(np.int32), frame=table[:, 1].astype(np.int64),
                  rotations=euler_to_matrix(*angles.T), shifts=shifts, ctf=ctf,
                  apix=apix, box=box, has_ctf=has_ctf)
    p.validate()
    return p
