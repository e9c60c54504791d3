"""Scipion sets <-> engine arrays and files, matched by object id.

Pose conversion (checked against scipion-em-relion's importer and by the
simulate -> import -> reconstruct test): a particle's ``Transform`` matrix M
holds ``[[Aᵀ, Aᵀ s], [0, 1]]`` where A is RELION's rotation matrix and s the
RELION origin in pixels. Hence ``A = M[:3, :3]ᵀ`` and ``s = A · M[:3, 3]``.
Note that ``Transform.getShifts()`` is ``Aᵀ s``, not the RELION origin.
"""
import os

import numpy as np
from pwem.constants import ALIGN_PROJ

from .constants import FLEX_PROGRAM
from .engine.particles import Particles, id_index

MRC_EXTENSIONS = (".mrc", ".mrcs", ".st", ".map")


# -- checks shared by every protocol's _validate -------------------------------
def validate_particles(partSet, needs_alignment=True, needs_ctf=True):
    """Readable error strings for a particle set the engine cannot use."""
    errors = []
    if partSet is None:
        return ["No input particles selected."]
    if partSet.getSize() == 0:
        return ["The input particle set is empty."]
    if needs_alignment and partSet.getAlignment() != ALIGN_PROJ:
        errors.append("The input particles need 3D projection alignment (angles and "
                      "shifts, e.g. from a RELION/cryoSPARC refinement); this set has "
                      "alignment '%s'." % partSet.getAlignment())
    if needs_ctf and not partSet.hasCTF():
        errors.append("The input particles have no CTF information; estimate the CTF "
                      "and re-extract, or import them with their CTF parameters.")
    sr = partSet.getSamplingRate()
    if not sr or sr <= 0:
        errors.append("The input particles have no valid sampling rate.")
    x, y, _ = partSet.getDim() or (0, 0, 0)
    if x != y or x <= 0:
        errors.append("The particle images must be square; they are %s x %s." % (x, y))
    elif x % 2:
        errors.append("The particle box must be even; it is %d." % x)
    return errors


def gmm_flex_attr(partSet, name):
    """A FlexInfo attribute written by our training (paths of the networks, the
    GMM, the latents), or None. Flexible sets of other programs (cryoDRGN,
    flexutils) carry their own attributes and networks, which the engine cannot
    read: for those only the zFlex latents are used."""
    get_info = getattr(partSet, "getFlexInfo", None)
    info = get_info() if get_info else None
    if info is None or info.getProgName() != FLEX_PROGRAM:
        return None
    attr = getattr(info, name, None)
    val = attr.get() if hasattr(attr, "get") else attr
    return val if val not in ("", None) else None


# -- poses -----------------------------------------------------------------------
def matrix_to_pose(M, apix):
    """Scipion 4x4 ``Transform`` matrix -> (RELION A (3,3), origin (x, y) Å)."""
    M = np.asarray(M, dtype=np.float64)
    A = M[:3, :3].T
    origin_px = A @ M[:3, 3]
    return A, origin_px[:2] * apix


def pose_to_matrix(A, origin, apix):
    """Inverse of :func:`matrix_to_pose` (origin in Å, z origin 0)."""
    M = np.eye(4)
    A = np.asarray(A, dtype=np.float64)
    M[:3, :3] = A.T
    M[:3, 3] = A.T @ np.array([origin[0] / apix, origin[1] / apix, 0.0])
    return M


# -- particles -> engine -------------------------------------------------------------
def _particle_stack(fn, stack_dir, converted):
    """Absolute path of an MRC stack holding ``fn``; other formats are converted
    once to .mrcs in ``stack_dir`` with Scipion's ImageHandler."""
    fn = os.path.abspath(fn.split(":")[0])
    if fn.lower().endswith(MRC_EXTENSIONS):
        return fn
    if fn not in converted:
        from pwem.emlib.image import ImageHandler
        out = os.path.join(stack_dir, "stack_%03d.mrcs" % len(converted))
        ImageHandler().convertStack(fn, out)
        converted[fn] = out
    return converted[fn]


def particles_to_engine(partSet, out_file, stack_dir=None):
    """Write the engine's ``particles.npz`` for ``partSet`` (ordered by id).

    Raises ValueError with the reason if the set cannot be used.
    """
    errors = validate_particles(partSet, needs_ctf=False)
    if errors:
        raise ValueError(" ".join(errors))
    apix = partSet.getSamplingRate()
    box = partSet.getXDim()
    acq = partSet.getAcquisition()
    stack_dir = stack_dir or os.path.dirname(os.path.abspath(out_file))
    stacks, converted = {}, {}
    ids, stack_idx, frame, rots, shifts, ctf = [], [], [], [], [], []
    has_ctf = partSet.hasCTF()
    for p in partSet.iterItems(orderBy="id"):
        index, fn = p.getLocation()
        path = _particle_stack(fn, stack_dir, converted)
        stack_idx.append(stacks.setdefault(path, len(stacks)))
        frame.append(max(int(index), 1) - 1)   # NO_INDEX (0) = single image file
        A, origin = matrix_to_pose(p.getTransform().getMatrix(), apix)
        rots.append(A)
        shifts.append(origin)
        a = p.getAcquisition() if p.getAcquisition() is not None else acq
        if a is None or a.getVoltage() is None:
            a = acq
        c = p.getCTF() if has_ctf else None
        if c is not None:
            ps = c.getPhaseShift() if hasattr(c, "getPhaseShift") else None
            ctf.append([c.getDefocusU(), c.getDefocusV(), c.getDefocusAngle(),
                        a.getVoltage(), a.getSphericalAberration(),
                        a.getAmplitudeContrast(), ps or 0.0])
        else:
            ctf.append([0.0, 0.0, 0.0, a.getVoltage() or 300.0,
                        a.getSphericalAberration() or 2.7, a.getAmplitudeContrast() or 0.1,
                        0.0])
        ids.append(p.getObjId())
    particles = Particles(ids=np.array(ids, np.int64), stacks=list(stacks),
                          stack_idx=np.array(stack_idx, np.int32),
                          frame=np.array(frame, np.int64), rotations=np.array(rots),
                          shifts=np.array(shifts), ctf=np.array(ctf, dtype=np.float64),
                          apix=float(apix), box=int(box),
                          phase_flipped=bool(partSet.isPhaseFlipped()), has_ctf=has_ctf)
    if has_ctf and np.any(particles.ctf[:, 0] <= 0):
        raise ValueError("some particles have a non-positive defocus; check their CTF")
    particles.validate()
    particles.save(out_file)
    return particles


# -- volumes -> engine ------------------------------------------------------------------
def map_file(volume, converted_path):
    """Absolute path of an MRC file with ``volume``'s data; non-MRC formats are
    converted once with Scipion's ImageHandler to ``converted_path``."""
    fn = os.path.abspath(volume.getFileName().split(":")[0])
    if fn.lower().endswith((".mrc", ".map", ".mrcs")):
        return fn
    from pwem.emlib.image import ImageHandler
    ImageHandler().convert(volume, converted_path)
    return os.path.abspath(converted_path)


def mask_voxels(mask):
    """Number of voxels above 0.5 in a mask (-1 when unreadable), for _validate."""
    import mrcfile
    fn = mask.getFileName().split(":")[0]
    try:
        with mrcfile.mmap(fn, permissive=True) as m:
            return int(np.count_nonzero(np.asarray(m.data) > 0.5))
    except (ValueError, OSError):
        return -1


def model_atoms(path):
    """Number of atoms in the first model of a PDB/mmCIF file (-1 if unreadable)."""
    import gemmi
    try:
        st = gemmi.read_structure(path)
    except (RuntimeError, ValueError, OSError):
        return -1
    return st[0].count_atom_sites() if len(st) else 0


# -- engine -> Scipion --------------------------------------------------------------
def update_transforms(partSet, outSet, rotations, shifts, ids, update=None):
    """Copy ``partSet`` into ``outSet`` with new poses, matched by object id.

    ``rotations`` (n,3,3) RELION A, ``shifts`` (n,2) Å, ``ids`` (n,) objIds;
    ``update(item)``, if given, changes each item further before it is added.
    Particles without a new pose are dropped (a subset stays a subset).
    """
    apix = partSet.getSamplingRate()
    lookup = id_index(ids)
    outSet.copyInfo(partSet)
    for p in partSet.iterItems(orderBy="id"):
        r = lookup.get(p.getObjId())
        if r is None:
            continue
        p.getTransform().setMatrix(pose_to_matrix(rotations[r], shifts[r], apix))
        if update is not None:
            update(p)
        outSet.append(p)
    return outSet


def flex_item(particle, obj_id, z, zred, prog=FLEX_PROGRAM):
    """A ParticleFlex copy of ``particle`` with id ``obj_id`` and its latents."""
    from pwem.objects import ParticleFlex
    f = ParticleFlex(progName=prog)
    f.copyInfo(particle)
    f.setObjId(obj_id)
    f.setZFlex(np.asarray(z, dtype=float).tolist())
    f.setZRed(np.asarray(zred, dtype=float).tolist())
    return f


def append_flex_particles(partSet, outSet, lat, expanded=None):
    """Append to ``outSet`` the particles of ``partSet`` with the latents of a
    training's ``lat`` (ids, z, zred), matched by id. With symmetry expansion
    (``expanded`` particles, ``lat`` with source_ids and copies) each particle
    gives one item per copy: the expanded pose, a new id, and the source
    particle id and copy index (_gmmSourceId, _gmmSymCopy) to trace it back.
    Each item also carries its latent confidence and spread (_gmmConfidence,
    _gmmLatentSd) when the training wrote them."""
    from pyworkflow.object import Float, Integer

    def with_confidence(item, r):
        if "confidence" in lat.files:
            item._gmmConfidence = Float(float(lat["confidence"][r]))
            item._gmmLatentSd = Float(float(lat["latent_sd"][r]))
        return item

    if expanded is None:
        row = id_index(lat["ids"])
        for p in partSet.iterItems(orderBy="id"):
            r = row.get(p.getObjId())
            if r is not None:
                outSet.append(with_confidence(
                    flex_item(p, p.getObjId(), lat["z"][r], lat["zred"][r]), r))
        return outSet
    rows = {}
    for r, src in enumerate(lat["source_ids"]):
        rows.setdefault(int(src), []).append(r)
    pose_row = id_index(expanded.ids)
    apix = partSet.getSamplingRate()
    for p in partSet.iterItems(orderBy="id"):
        for r in rows.get(p.getObjId(), []):
            e = pose_row[int(lat["ids"][r])]
            f = flex_item(p, int(lat["ids"][r]), lat["z"][r], lat["zred"][r])
            f.getTransform().setMatrix(pose_to_matrix(expanded.rotations[e],
                                                      expanded.shifts[e], apix))
            f._gmmSourceId = Integer(p.getObjId())
            f._gmmSymCopy = Integer(int(lat["copies"][r]))
            outSet.append(with_confidence(f, r))
    return outSet


def write_latents(partSet, path, scores_from=None):
    """The latents (zFlex) of a flexible set as the engine's latents file (ids, z),
    ordered by id; with ``scores_from`` (a training's latents file) each
    particle's final score, latent confidence (and the direction it was
    measured along) and spread are carried over when every particle has one."""
    from .engine.io import write_npz
    ids, z = [], []
    for p in partSet.iterItems(orderBy="id"):
        ids.append(p.getObjId())
        z.append(p.getZFlex())
    data = {"ids": np.array(ids, dtype=np.int64), "z": np.array(z, dtype=np.float32)}
    if scores_from and os.path.exists(str(scores_from)):
        with np.load(str(scores_from)) as lat:
            for key in ("frc", "confidence", "motion", "latent_sd"):
                if key in lat.files:
                    value = dict(zip(lat["ids"].tolist(), lat[key]))
                    if all(int(i) in value for i in ids):
                        data[key] = np.array([value[int(i)] for i in ids], dtype=np.float32)
    write_npz(path, **data)
    return path
