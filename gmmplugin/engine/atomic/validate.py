"""Model validation, independent of the refinement's own smooth terms.

- bond / angle RMSZ against the CCP4 monomer library (gemmi topology of the
  model as written, not the refiner's arrays), and what the library does not
  describe (so not checked by it);
- every polymer link (C–N, O3'–P between sequence neighbours) measured on the
  coordinates alone, whatever the residues' dictionaries;
- Ramachandran favoured / outlier fractions from the raw Lovell tables
  (pyrama's thresholds), and peptide ω more than 30° from planar;
- ``tortoize`` (Ramachandran and side-chain torsion z-scores) and
  ``king-probe`` (MolProbity clashscore: unique atom pairs overlapping ≥ 0.4 Å
  per 1000 atoms, riding hydrogens added by gemmi from the library), when
  those programs are installed (Debian packages tortoize, king-probe);
- Cα RMSD to a reference model when one is given.
"""
import json
import os
import shutil
import subprocess
import tempfile

import numpy as np

from .links import link_deviations
from .monlib import load_monlib
from .ramachandran import is_outlier, preference
from .topology import build_topology, library_copy, read_model

FAVOURED = 0.02


def unrestrained_summary(top):
    """What the library's restraints do not cover (waters aside): residues
    without a dictionary or of nucleic acids ("NAME xN"), and single atoms of
    restrained residues ("RES ATOM xN"), e.g. a C-terminal OXT."""
    counts = {}
    for k, (res, inside) in enumerate(_residue_atoms(top)):
        if res.is_water() or all(inside):
            continue
        key = res.name if not any(inside) else None
        if key:
            counts[key] = counts.get(key, 0) + 1
        else:
            for atom, ok in zip(res, inside):
                if not ok:
                    name = "%s %s" % (res.name, atom.name)
                    counts[name] = counts.get(name, 0) + 1
    return ["%s x%d" % (name, n) for name, n in sorted(counts.items())]


def _residue_atoms(top):
    """(residue, restrained flag of each of its atoms) in the model's order."""
    flat = 0
    for chain in top.structure[0]:
        for res in chain:
            yield res, [bool(top.restrained[flat + j]) for j in range(len(res))]
            flat += len(res)


def _dihedral(p):
    b0, b1, b2 = p[:, 0] - p[:, 1], p[:, 2] - p[:, 1], p[:, 3] - p[:, 2]
    b1 = b1 / np.linalg.norm(b1, axis=1, keepdims=True)
    v = b0 - (b0 * b1).sum(1, keepdims=True) * b1
    w = b2 - (b2 * b1).sum(1, keepdims=True) * b1
    return np.arctan2((np.cross(b1, v) * w).sum(1), (v * w).sum(1))


def geometry_metrics(st):
    """Library RMSZ, Ramachandran and ω statistics of a gemmi Structure."""
    top = build_topology(st)
    x = top.xyz
    d = np.linalg.norm(x[top.bonds[:, 0]] - x[top.bonds[:, 1]], axis=1)
    bz = (d - top.bond_ideal) / top.bond_esd
    u = x[top.angles[:, 0]] - x[top.angles[:, 1]]
    v = x[top.angles[:, 2]] - x[top.angles[:, 1]]
    th = np.arctan2(np.linalg.norm(np.cross(u, v), axis=1), (u * v).sum(1))
    az = (th - top.angle_ideal) / top.angle_esd
    out = {"atoms": int(len(x)), "bond_rmsz": float(np.sqrt(np.mean(bz ** 2))),
           "angle_rmsz": float(np.sqrt(np.mean(az ** 2))),
           "bond_outliers_4sigma": int(np.sum(np.abs(bz) > 4)),
           "angle_outliers_4sigma": int(np.sum(np.abs(az) > 4))}
    if len(top.rama):
        phi = _dihedral(x[top.rama[:, :4]])
        psi = _dihedral(x[top.rama[:, 1:]])
        pref = preference(top.rama_kind, phi, psi)
        out["rama_favoured_pct"] = float(100 * np.mean(pref >= FAVOURED))
        out["rama_outliers_pct"] = float(100 * np.mean(is_outlier(top.rama_kind, phi, psi)))
    out["links_over_4sigma"], out["link_max_dev_A"] = link_deviations(st)
    out["not_in_library"] = ", ".join(unrestrained_summary(top)) or "-"
    om = top.torsions[top.torsion_is_omega]
    if len(om):
        w = np.degrees(_dihedral(x[om]))
        dev = np.minimum(np.abs(np.abs(w) - 180), np.abs(w))
        out["omega_over_30_pct"] = float(100 * np.mean(dev > 30))
    return out


def clashscore(st):
    """MolProbity-style clashscore with king-probe, or None if not installed."""
    import gemmi
    probe = shutil.which("king-probe") or shutil.which("probe")
    if probe is None:
        return None
    names = {r.name for ch in st[0] for r in ch}
    monlib, _ = load_monlib(names)
    lib = library_copy(st, monlib)
    gemmi.prepare_topology(lib, monlib, h_change=gemmi.HydrogenChange.ReAddButWater,
                           warnings=None, ignore_unknown_links=True)
    _add_back_undescribed(lib, st)      # probe the whole model, not only what the
    with tempfile.TemporaryDirectory() as tmp:    # library describes
        path = os.path.join(tmp, "model_h.pdb")
        lib.write_pdb(path)
        res = subprocess.run([probe, "-u", "-q", "-mc", "-het", "-once", "-NOVDWOUT",
                              "ogt33 not water", "ogt33", path],
                             capture_output=True, text=True, timeout=600)
    pairs = set()
    for line in res.stdout.splitlines():
        f = line.split(":")
        if len(f) > 6 and f[2] == "bo" and float(f[5]) <= -0.4:
            pairs.add(tuple(sorted((f[3], f[4]))))   # a pair once, whichever is "src"
    n = lib[0].count_atom_sites()
    return 1000.0 * len(pairs) / max(1, n)


def _add_back_undescribed(lib, st):
    """Add to ``lib`` (the library's copy, with hydrogens) the residues and atoms
    of ``st`` it left out (no dictionary, nucleic acids), as heavy atoms."""
    have = {(ch.name, str(r.seqid)): r for ch in lib[0] for r in ch}
    for chain in st[0]:
        if chain.is_water() if hasattr(chain, "is_water") else False:
            continue
        target = lib[0].find_last_chain(chain.name) or lib[0].add_chain(chain.name)
        for res in chain:
            if res.is_water():
                continue
            mine = have.get((chain.name, str(res.seqid)))
            if mine is None:
                target.add_residue(res)
                continue
            names = {a.name for a in mine}
            for atom in res:
                if atom.name not in names:
                    mine.add_atom(atom)


def tortoize(path):
    """(Ramachandran z, torsion z) from tortoize, or (None, None)."""
    exe = shutil.which("tortoize")
    if exe is None:
        return None, None
    import gemmi
    with tempfile.TemporaryDirectory() as tmp:
        # tortoize 2.0 returns nulls for some valid mmCIF (label_asym ids from
        # gemmi's entity setup) and rejects PDB headers with dangling REMARK
        # 800s; a minimal PDB (coordinates only) behind a HEADER line works
        pdb = os.path.join(tmp, "model.pdb")
        text = gemmi.read_structure(str(path)).make_minimal_pdb()
        with open(pdb, "w") as fh:
            fh.write("HEADER    GMMPLUGIN MODEL\n" + text)
        out = os.path.join(tmp, "t.json")
        subprocess.run([exe, pdb, out], capture_output=True, text=True, timeout=600)
        if not os.path.exists(out):
            return None, None
        with open(out) as fh:
            m = next(iter(json.load(fh)["model"].values()))
    return m.get("ramachandran-z"), m.get("torsion-z")


def validate_model(path, reference=None):
    """Validation row (dict) of the model file ``path``."""
    st = read_model(path)
    row = {"model": os.path.basename(str(path))}
    row.update(geometry_metrics(st))
    row["clashscore"] = clashscore(st)
    row["rama_z"], row["torsion_z"] = tortoize(path)
    if reference is not None:
        ref = read_model(reference)
        row["ca_rmsd"] = ca_rmsd_structures(st, ref)
    return row


def ca_rmsd_structures(a, b):
    """Cα RMSD (Å) over residues present in both (matched by chain and number)."""
    def cas(st):
        return {(ch.name, str(r.seqid)): r.find_atom("CA", "*").pos
                for ch in st[0] for r in ch if r.find_atom("CA", "*") is not None}
    ca, cb = cas(a), cas(b)
    common = sorted(set(ca) & set(cb))
    if not common:
        raise ValueError("the models share no residue")
    d = [ca[k].dist(cb[k]) ** 2 for k in common]
    return float(np.sqrt(np.mean(d)))
