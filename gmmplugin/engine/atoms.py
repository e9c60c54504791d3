"""Atomic models (gemmi) as GMMs.

One Gaussian per non-hydrogen atom. Waters are dropped (they are not part of
a single-particle map); ligands and ions are kept, since they contribute
density. Each atom's integrated mass is its atomic number (electron count, a
fair proxy for cryo-EM scattering at low resolution), spread with a width
``sigma`` Å; positions are kept in the model's frame (Å) unless centred.
"""
import numpy as np

from .gmm import Gmm


def read_atoms(path):
    """Return (xyz (n,3) Å, Z (n,), chain ids (n,), residue numbers (n,)) of the
    first model's non-hydrogen, non-water atoms, one conformer per atom (the
    first alternative location): counting every altloc would add their mass."""
    import gemmi
    st = gemmi.read_structure(str(path))
    st.setup_entities()
    st.remove_alternative_conformations()
    if len(st) == 0:
        raise ValueError("no model in %s" % path)
    xyz, z, chains, resnum = [], [], [], []
    for chain in st[0]:
        for res in chain:
            if res.is_water():
                continue
            for atom in res:
                if atom.element.is_hydrogen:
                    continue
                xyz.append(atom.pos.tolist())
                z.append(atom.element.atomic_number)
                chains.append(chain.name)
                resnum.append(res.seqid.num)
    if not xyz:
        raise ValueError("no non-hydrogen atoms in %s" % path)
    return (np.array(xyz), np.array(z, dtype=np.float64), np.array(chains),
            np.array(resnum))


def select(chains, resnum, spec):
    """Boolean mask of atoms matching ``spec``: "D,E" (chains) or "A:10-50" (range)."""
    mask = np.zeros(len(chains), dtype=bool)
    for part in str(spec).split(","):
        part = part.strip()
        if not part:
            continue
        if ":" in part:
            ch, rng = part.split(":", 1)
            lo, hi = (int(v) for v in rng.split("-"))
            mask |= (chains == ch) & (resnum >= lo) & (resnum <= hi)
        else:
            mask |= chains == part
    if not mask.any():
        raise ValueError("selection %r matches no atom" % spec)
    return mask


def atoms_to_params(xyz, z, sigma):
    """(n, 5) GMM params: mass Z per atom spread with width ``sigma`` Å."""
    amp = z / ((2 * np.pi) ** 1.5 * sigma ** 3)
    return np.column_stack([xyz, amp, np.full(len(z), sigma)]).astype(np.float32)


def gmm_from_atoms(path, sigma=1.0, center=True, apix=1.0, box=0, resolution=0.0):
    """A GMM with one Gaussian per heavy atom of the model at ``path``."""
    xyz, z, _, _ = read_atoms(path)
    if center:
        xyz = xyz - np.average(xyz, axis=0, weights=z)
    return Gmm(atoms_to_params(xyz, z, sigma), apix, box, resolution)
