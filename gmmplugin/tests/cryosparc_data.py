"""Test data in cryoSPARC's format, and whether Scipion can import it here.

``write_cryosparc`` turns a simulator .star into the particle dataset of a
cryoSPARC refinement job (``J1/J1_particles.cs``, written with cryosparc-tools)
with the stack next to it, in the layout scipion-em-cryosparc2's importer
searches. Conventions, as pyem (the converter that importer runs) maps them to
RELION: ``alignments3D/pose`` is the rotation vector of RELION's matrix A,
``alignments3D/shift`` RELION's origin in pixels, ``ctf/df1_A``/``df2_A`` the
defoci U/V in Å and ``ctf/df_angle_rad`` the astigmatism angle in radians.
The reconstruction test against the truth is what confirms them.
"""
import os
import shutil
import subprocess

import numpy as np


def write_cryosparc(star, job_dir, flip=None):
    """Write ``star``'s particles as ``<job>/<job>_particles.cs`` (+ the stack);
    ``flip`` = "pose" or "shift" writes a deliberately wrong convention (the
    inverse rotation, or the opposite shift) for negative tests."""
    from cryosparc.dataset import Dataset
    from scipy.spatial.transform import Rotation

    from gmmplugin.engine.starfile import read_star
    p = read_star(star)
    os.makedirs(job_dir, exist_ok=True)
    job = os.path.basename(os.path.normpath(job_dir))
    stacks = []
    for s in p.stacks:
        name = "%s_%s" % (job, os.path.basename(s))
        shutil.copy(s, os.path.join(job_dir, name))
        stacks.append(name)
    A = p.rotations if flip != "pose" else np.transpose(p.rotations, (0, 2, 1))
    shift = p.shifts / p.apix * (-1.0 if flip == "shift" else 1.0)
    n = len(p)
    ds = Dataset.allocate(n, [("blob/path", "O"), ("blob/idx", "u4"), ("blob/shape", "2u4"),
                              ("blob/psize_A", "f4"), ("blob/sign", "f4"),
                              ("ctf/type", "O"), ("ctf/accel_kv", "f4"), ("ctf/cs_mm", "f4"),
                              ("ctf/amp_contrast", "f4"), ("ctf/df1_A", "f4"),
                              ("ctf/df2_A", "f4"), ("ctf/df_angle_rad", "f4"),
                              ("ctf/phase_shift_rad", "f4"), ("ctf/scale", "f4"),
                              ("ctf/bfactor", "f4"),
                              ("alignments3D/pose", "3f4"), ("alignments3D/shift", "2f4"),
                              ("alignments3D/psize_A", "f4")])
    ds["uid"] = np.arange(1, n + 1, dtype=np.uint64)
    ds["blob/path"] = np.array(["%s/%s" % (job, stacks[i]) for i in p.stack_idx], dtype=object)
    ds["blob/idx"] = p.frame.astype(np.uint32)
    ds["blob/shape"] = np.tile([p.box, p.box], (n, 1)).astype(np.uint32)
    ds["blob/psize_A"] = p.apix
    ds["blob/sign"] = 1.0
    ds["ctf/type"] = np.array(["spa"] * n, dtype=object)
    ds["ctf/accel_kv"], ds["ctf/cs_mm"], ds["ctf/amp_contrast"] = p.ctf[:, 3], p.ctf[:, 4], \
        p.ctf[:, 5]
    ds["ctf/df1_A"], ds["ctf/df2_A"] = p.ctf[:, 0], p.ctf[:, 1]
    ds["ctf/df_angle_rad"] = np.deg2rad(p.ctf[:, 2])
    ds["ctf/phase_shift_rad"] = np.deg2rad(p.ctf[:, 6])
    ds["ctf/scale"] = 1.0
    ds["alignments3D/pose"] = Rotation.from_matrix(A).as_rotvec().astype(np.float32)
    ds["alignments3D/shift"] = shift.astype(np.float32)
    ds["alignments3D/psize_A"] = p.apix
    path = os.path.join(job_dir, "%s_particles.cs" % job)
    ds.save(path)
    return path


def cryosparc_importer_problem():
    """Why Scipion cannot import a .cs file here, or None when it can.

    pwem's ProtImportParticles hands .cs files to scipion-em-cryosparc2, whose
    importer converts them with pyem in a shell that activates pyem's own
    environment (PYEM_ENV_ACTIVATION; ``scipion3 installb pyem`` makes it from
    GitHub with conda). pyem is not on PyPI."""
    try:
        import cryosparc.dataset  # noqa: F401  (cryosparc-tools)
        from cryosparc2 import Plugin
    except ImportError as e:
        return "scipion-em-cryosparc2 / cryosparc-tools not installed (%s)" % e
    activation = (Plugin.getCondaActivationCmd() or "") + (Plugin.getPyemEnvActivation() or "")
    if not activation.strip():
        return ("scipion-em-cryosparc2's importer needs pyem, and no pyem environment is "
                "configured (PYEM_ENV_ACTIVATION; 'scipion3 installb pyem' makes one)")
    probe = subprocess.run(activation + " && python3 -c 'import pyem.metadata'", shell=True,
                           capture_output=True, text=True)
    if probe.returncode:
        return ("scipion-em-cryosparc2's importer needs pyem (its environment: %r; "
                "install it with 'scipion3 installb pyem'): %s"
                % (activation, (probe.stderr.strip().splitlines() or ["not found"])[-1]))
    return None
