"""The bonds that join polymer residues, found from the sequence and the atoms
alone: C(i)–N(i+1) between amino acids, O3'(i)–P(i+1) between nucleotides.

The monomer library links only residues it describes, so a residue without a
dictionary (kept rigid) or a nucleic acid would leave its links unrestrained
and unchecked; these are restrained and validated whatever the dictionaries.
"""
import numpy as np

# (atom of residue i, atom of residue i + 1, ideal length Å, esd Å): the library's
# TRANS peptide link and the RELION/CCP4 nucleic-acid phosphodiester link
LINKS = (("C", "N", 1.329, 0.014), ("O3'", "P", 1.607, 0.015))
BREAK = 4.0     # Å: a longer gap between sequence neighbours is a chain break


def polymer_links(st, index=None):
    """(i, j, ideal, esd) per link of model 1: i, j flat atom indices in the
    order of the model's atoms (or ``index``: {(chain, residue, atom): flat})."""
    if index is None:
        index, flat = {}, 0
        for c, chain in enumerate(st[0]):
            for k, res in enumerate(chain):
                for atom in res:
                    index[(c, k, atom.name)] = flat
                    flat += 1
    out = []
    for c, chain in enumerate(st[0]):
        residues = list(chain)
        for k in range(len(residues) - 1):
            a, b = residues[k], residues[k + 1]
            if b.seqid.num != a.seqid.num + 1:
                continue
            for first, second, ideal, esd in LINKS:
                i, j = index.get((c, k, first)), index.get((c, k + 1, second))
                if i is not None and j is not None and \
                        a[first][0].pos.dist(b[second][0].pos) < BREAK:
                    out.append((i, j, ideal, esd))
    return out


def link_deviations(st):
    """(number of links more than 4 esd from ideal, largest deviation Å) of
    model 1, measured on the coordinates alone."""
    links = polymer_links(st)
    if not links:
        return 0, 0.0
    xyz = np.array([a.pos.tolist() for ch in st[0] for r in ch for a in r])
    i, j, ideal, esd = (np.array(v) for v in zip(*links))
    dev = np.abs(np.linalg.norm(xyz[i.astype(int)] - xyz[j.astype(int)], axis=1) - ideal)
    return int(np.sum(dev > 4 * esd)), float(dev.max())


def add_sequence_links(tp, st):
    """Restrain every polymer link the library's topology missed (residues
    without a dictionary, nucleic acids), so no chain falls apart at them."""
    have = {tuple(sorted(b)) for b in tp.bonds.tolist()}
    extra = [l for l in polymer_links(st) if tuple(sorted(l[:2])) not in have]
    tp.sequence_links = len(extra)
    if extra:
        i, j, ideal, esd = (np.array(v) for v in zip(*extra))
        tp.bonds = np.vstack([tp.bonds, np.column_stack([i, j]).astype(int)])
        tp.bond_ideal = np.concatenate([tp.bond_ideal, ideal])
        tp.bond_esd = np.concatenate([tp.bond_esd, esd])
