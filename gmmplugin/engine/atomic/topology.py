"""An atomic model and its restraints as flat index arrays (numpy).

gemmi builds the topology (bonds, angles, torsions, planes, chiral centres,
peptide links) from the CCP4 monomer library; this module flattens it into
arrays over one atom list so the torch restraint terms are vectorised.

Policy for what the library does not describe: hydrogens and alternative
conformations are removed (heavy-atom refinement; hydrogens are re-added
only for validation); waters, ligands and ions (non-polymer entities),
unknown residues and atoms missing from their residue's dictionary (e.g. OXT)
get no restraints and are moved rigidly with their residue / patch, never
deformed.
"""
from dataclasses import dataclass, field

import numpy as np

from .links import add_sequence_links
from .monlib import load_monlib
from .names import standardise_names
from .rotamers import chi_quadruples

PEPTIDE_LINKS = ("TRANS", "CIS", "PTRANS", "PCIS")
RAMA_KINDS = ("General", "GLY", "PRO", "PRE-PRO")


@dataclass
class Topology:
    structure: object            # gemmi.Structure, atoms in the order of xyz
    xyz: np.ndarray              # (n, 3) Å
    atomic_number: np.ndarray    # (n,)
    vdw: np.ndarray              # (n,) Å
    residue: np.ndarray          # (n,) residue index
    residue_anchor: np.ndarray   # (R, 3) CA (or centroid) of each residue
    residue_chain: np.ndarray    # (R,) chain index of each residue
    restrained: np.ndarray       # (n,) bool: atom is in the library topology
    water: np.ndarray            # (n,) bool
    hydrogens: np.ndarray = None  # (n,) hydrogens the library bonds to each atom
    rigid_polymers: list = None   # residue names of non-protein polymers (kept rigid)
    sequence_links: int = 0       # polymer links restrained beyond the library's
    riding: dict = None           # riding hydrogens: parent, ref_a, ref_b, coef, polar
    bonds: np.ndarray = None     # (nb, 2) int
    bond_ideal: np.ndarray = None
    bond_esd: np.ndarray = None
    angles: np.ndarray = None    # (na, 3)
    angle_ideal: np.ndarray = None   # rad
    angle_esd: np.ndarray = None     # rad
    torsions: np.ndarray = None  # (nt, 4)
    torsion_ideal: np.ndarray = None  # rad
    torsion_esd: np.ndarray = None    # rad
    torsion_period: np.ndarray = None
    torsion_is_omega: np.ndarray = None
    torsion_in_rotamer_library: np.ndarray = None   # χ restrained by rotamers.py instead
    rotamer_quads: np.ndarray = None   # (q, 4) χ atoms of the library-covered side chains
    rotamer_row: np.ndarray = None     # (q,) which covered residue
    rotamer_slot: np.ndarray = None    # (q,) which χ (0-3)
    rotamer_names: np.ndarray = None   # (m,) residue names
    rotamer_residue: np.ndarray = None  # (m,) residue indices
    planes: list = field(default_factory=list)   # [(indices, esd)]
    chirals: np.ndarray = None   # (nc, 4) centre, a1, a2, a3
    chiral_ideal: np.ndarray = None  # signed ideal volume Å³
    rama: np.ndarray = None      # (nr, 5) C-, N, CA, C, N+
    rama_kind: np.ndarray = None  # (nr,) index into RAMA_KINDS
    excluded: np.ndarray = None  # sorted int64 keys i*n+j (i<j) of 1-2 and 1-3 pairs
    one_four: np.ndarray = None  # sorted int64 keys of 1-4 pairs
    missing_residues: list = field(default_factory=list)

    def __len__(self):
        return len(self.xyz)

    def write_cif(self, xyz, path):
        """mmCIF of the model at ``xyz`` with label_seq_id set (validators such
        as tortoize need it), written atomically."""
        from ..io import write_atomically
        st = self.with_coordinates(xyz)
        st.setup_entities()
        st.assign_label_seq_id(True)
        write_atomically(path, lambda tmp: st.make_mmcif_document().write_file(tmp), ".cif")
        return path

    def with_coordinates(self, xyz):
        """A copy of the structure with atoms at ``xyz`` (n, 3) Å."""
        import gemmi
        st = self.structure.clone()
        for i, atom in enumerate(_atoms(st)):
            atom.pos = gemmi.Position(*map(float, xyz[i]))
        return st


def non_protein_polymer(res):
    """A residue of a nucleic-acid (or other non-peptide) polymer: the monomer
    library has no links between them, so they are kept rigid, never linked."""
    import gemmi
    info = gemmi.find_tabulated_residue(res.name)
    return (res.entity_type == gemmi.EntityType.Polymer
            and not (info is not None and info.is_amino_acid()))


def library_copy(st, monlib, polymer_only=False):
    """Copy of ``st`` without waters, residues the library lacks, non-protein
    polymer residues, and atoms their dictionary lacks (gemmi's topology needs
    every atom described); ``polymer_only`` also drops ligands and ions (kept
    rigid in refinement)."""
    import gemmi
    lib = st.clone()
    for chain in lib[0]:
        for j in reversed(range(len(chain))):
            res = chain[j]
            if (res.is_water() or res.name not in monlib.monomers
                    or non_protein_polymer(res)
                    or (polymer_only and res.entity_type != gemmi.EntityType.Polymer)):
                del chain[j]
                continue
            known = {a.id for a in monlib.monomers[res.name].atoms}
            for k in reversed(range(len(res))):
                if res[k].name not in known:
                    del res[k]
    lib.remove_empty_chains()
    return lib


MAX_PEPTIDE_GAP = 4.0   # Å: C(i)-N(i+1) up to this, with consecutive numbers, is a link


def close_peptide_gaps(lib):
    """Make gemmi link every pair of sequence-consecutive residues of a chain.

    gemmi links polymer neighbours only when C(i)–N(i+1) is near bonding
    distance, so a noisy or badly fitted start model (or a model broken during
    refinement) would silently lose peptide bonds — never restrained, never
    validated. In this topology-only copy, N(i+1) is moved onto C(i) + 1.33 Å
    along the C→N direction (keeps ω, hence cis/trans) when the residue numbers
    are consecutive and the gap is below MAX_PEPTIDE_GAP; real chain breaks
    (numbering gaps, far ends) stay breaks. Returns the number of gaps closed.
    """
    import gemmi
    closed = 0
    for chain in lib[0]:
        for a, b in zip(chain, list(chain)[1:]):
            if (b.seqid.num != a.seqid.num + 1 and not (b.seqid.num == a.seqid.num
                                                        and b.seqid.icode != a.seqid.icode)):
                continue
            c, n = a.find_atom("C", "*"), b.find_atom("N", "*")
            if c is None or n is None:
                continue
            d = c.pos.dist(n.pos)
            if 1.5 < d <= MAX_PEPTIDE_GAP:
                u = (n.pos - c.pos) * (1.33 / d)
                n.pos = gemmi.Position(c.pos.x + u.x, c.pos.y + u.y, c.pos.z + u.z)
                closed += 1
    return closed


def _atoms(st):
    for chain in st[0]:
        for res in chain:
            for atom in res:
                yield atom


def read_model(path, log=None):
    """gemmi Structure of model 1, hydrogens and alternative conformations removed,
    force-field names mapped to the monomer library's (``log`` gets the list)."""
    import gemmi
    try:
        st = gemmi.read_structure(str(path))
    except Exception as exc:
        raise ValueError("cannot read atomic model %s: %s" % (path, exc))
    if len(st) == 0:
        raise ValueError("no model in %s" % path)
    while len(st) > 1:
        del st[1]
    st.remove_hydrogens()
    st.remove_alternative_conformations()
    st.remove_empty_chains()
    if st[0].count_atom_sites() == 0:
        raise ValueError("no non-hydrogen atoms in %s" % path)
    renamed = standardise_names(st)          # before the entities: HSD is no polymer name
    if renamed and log is not None:
        log("renamed to the monomer library's names: %s" % ", ".join(renamed))
    st.setup_entities()
    return st


def build_topology(st, monomer_folder=None):
    """Topology of a gemmi Structure (as returned by :func:`read_model`)."""
    import gemmi
    st = st.clone()
    atoms = list(_atoms(st))
    n = len(atoms)
    xyz = np.array([a.pos.tolist() for a in atoms])
    znum = np.array([a.element.atomic_number for a in atoms], dtype=np.float64)
    vdw = np.array([a.element.vdw_r for a in atoms])
    residue, water, anchors, res_chain = np.zeros(n, int), np.zeros(n, bool), [], []
    res_atoms = []
    i = 0
    for c, chain in enumerate(st[0]):
        for res in chain:
            k = len(anchors)
            res_chain.append(c)
            pos = [a.pos.tolist() for a in res]
            ca = res.find_atom("CA", "*")
            anchors.append(ca.pos.tolist() if ca is not None else np.mean(pos, axis=0))
            res_atoms.append((k, res.name, {a.name: i + j for j, a in enumerate(res)}))
            for atom in res:
                atom.serial = i + 1   # the flat index, carried into the topology copy
                residue[i] = k
                water[i] = res.is_water()
                i += 1
    names = {r.name for ch in st[0] for r in ch if not r.is_water()}
    monlib, missing = load_monlib(names, monomer_folder)

    # topology on a copy holding only what the library describes
    lib = library_copy(st, monlib, polymer_only=True)
    close_peptide_gaps(lib)
    # prepare_topology renumbers serials: carry the flat index in b_iso of the copy
    restrained = np.zeros(n, bool)
    for atom in _atoms(lib):
        restrained[atom.serial - 1] = True
        atom.b_iso = atom.serial - 1
    topo = gemmi.prepare_topology(lib, monlib, warnings=None, ignore_unknown_links=True)
    hydrogens = np.zeros(n, int)
    h_by_comp = {name: _hydrogen_counts(monlib.monomers[name]) for name in
                 {r.name for ch in lib[0] for r in ch}}
    for chain in lib[0]:
        for res in chain:
            for atom in res:
                hydrogens[atom.serial - 1] = h_by_comp[res.name].get(atom.name, 0)

    tp = Topology(structure=st, xyz=xyz, atomic_number=znum, vdw=vdw, residue=residue,
                  residue_anchor=np.array(anchors, dtype=np.float64).reshape(-1, 3),
                  residue_chain=np.array(res_chain, dtype=int),
                  restrained=restrained, water=water, missing_residues=sorted(missing))
    tp.hydrogens = hydrogens
    tp.rigid_polymers = sorted({r.name for ch in st[0] for r in ch if non_protein_polymer(r)})
    _add_restraints(tp, topo, residue, restrained, res_atoms)
    add_sequence_links(tp, st)
    tp.rama, tp.rama_kind = _ramachandran(topo)
    tp.excluded, tp.one_four = _bonded_pairs(n, tp.bonds)
    tp.riding = _riding_hydrogens(lib, monlib, tp.bonds, xyz)
    return tp


def _atom_index(restraint):
    """Flat atom indices of a restraint's atoms (carried in b_iso of the copy)."""
    return [int(round(a.b_iso)) for a in restraint.atoms]


def _add_restraints(tp, topo, residue, restrained, res_atoms):
    """The library's restraints of gemmi's topology as index and target arrays."""
    import gemmi
    idx = _atom_index
    tp.bonds = np.array([idx(b) for b in topo.bonds], int).reshape(-1, 2)
    tp.bond_ideal = np.array([b.restr.value for b in topo.bonds])
    tp.bond_esd = np.array([b.restr.esd for b in topo.bonds])
    tp.angles = np.array([idx(a) for a in topo.angles], int).reshape(-1, 3)
    tp.angle_ideal = np.radians([a.restr.value for a in topo.angles])
    tp.angle_esd = np.radians([a.restr.esd for a in topo.angles])
    # torsions with a real sigma: peptide omega (period 0 = one minimum) and the
    # side-chain chi (periodic: staggered minima, the library's rotamer prior);
    # the CONST_* ring torsions (esd 0) are covered by the planes
    tors = [t for t in topo.torsions if t.restr.esd > 0]
    tp.torsions = np.array([idx(t) for t in tors], int).reshape(-1, 4)
    tp.torsion_ideal = np.radians([t.restr.value for t in tors])
    tp.torsion_esd = np.radians([t.restr.esd for t in tors])
    tp.torsion_period = np.array([max(1, t.restr.period) for t in tors], int)
    tp.torsion_is_omega = np.array([t.restr.label == "omega" for t in tors], bool)
    # side chains the rotamer library covers get its mixture prior instead
    (tp.rotamer_quads, tp.rotamer_row, tp.rotamer_slot, tp.rotamer_names,
     tp.rotamer_residue) = chi_quadruples(
        (k, name, atoms) for k, name, atoms in res_atoms
        if all(restrained[v] for v in atoms.values()))
    covered = np.isin(residue[tp.torsions[:, 1]], tp.rotamer_residue) if len(tors) else \
        np.zeros(0, bool)
    tp.torsion_in_rotamer_library = covered & ~tp.torsion_is_omega
    tp.planes = [(np.array(idx(p), int), float(p.restr.esd)) for p in topo.planes
                 if len(p.atoms) >= 4]
    chirs = [c for c in topo.chirs if c.restr.sign in (gemmi.ChiralityType.Positive,
                                                        gemmi.ChiralityType.Negative)]
    tp.chirals = np.array([idx(c) for c in chirs], int).reshape(-1, 4)
    tp.chiral_ideal = np.array([
        (1.0 if c.restr.sign == gemmi.ChiralityType.Positive else -1.0)
        * topo.ideal_chiral_abs_volume(c) for c in chirs])


def _riding_hydrogens(lib, monlib, bonds, xyz):
    """Hydrogens placed by gemmi from the library, each expressed in a local
    frame of heavy atoms (parent P, a neighbour A, a third atom B):
    H = P + c1 e1 + c2 e2 + c3 e3 with e1 ∥ A-P, e2 ⟂ e1 in the PAB plane.
    The refinement rebuilds them from the moving heavy atoms (riding model)."""
    import gemmi
    with_h = lib.clone()
    topo = gemmi.prepare_topology(with_h, monlib, h_change=gemmi.HydrogenChange.ReAddButWater,
                                  warnings=None, ignore_unknown_links=True)
    nbr = {}
    for a, b in bonds:
        nbr.setdefault(a, []).append(b)
        nbr.setdefault(b, []).append(a)
    rows = []
    for bond in topo.bonds:
        h, p = bond.atoms
        if p.element.is_hydrogen:
            h, p = p, h
        if not h.element.is_hydrogen or p.element.is_hydrogen:
            continue
        pi = int(round(p.b_iso))
        near = nbr.get(pi, [])
        if not near:
            continue
        ai = near[0]
        others = [b for b in near[1:]] or [b for b in nbr.get(ai, []) if b != pi]
        if not others:
            continue
        bi = others[0]
        P, A, B = xyz[pi], xyz[ai], xyz[bi]
        e1 = (A - P) / np.linalg.norm(A - P)
        v = (B - P) - np.dot(B - P, e1) * e1
        e2 = v / np.linalg.norm(v)
        e3 = np.cross(e1, e2)
        d = np.array(h.pos.tolist()) - P
        rows.append((pi, ai, bi, d @ e1, d @ e2, d @ e3, p.element.name in ("N", "O")))
    if not rows:
        return None
    r = np.array(rows, dtype=np.float64)
    return {"parent": r[:, 0].astype(int), "ref_a": r[:, 1].astype(int),
            "ref_b": r[:, 2].astype(int), "coef": r[:, 3:6], "polar": r[:, 6].astype(bool)}


def _hydrogen_counts(chemcomp):
    """{atom name: number of hydrogens bonded to it} from a library entry."""
    is_h = {a.id: a.el.is_hydrogen for a in chemcomp.atoms}
    count = {}
    for b in chemcomp.rt.bonds:
        a1, a2 = b.id1.atom, b.id2.atom
        if is_h.get(a2) and not is_h.get(a1):
            count[a1] = count.get(a1, 0) + 1
        elif is_h.get(a1) and not is_h.get(a2):
            count[a2] = count.get(a2, 0) + 1
    return count


def _ramachandran(topo):
    """(C-, N, CA, C, N+) per residue with peptide links on both sides."""
    rows, kinds = [], []
    for ci in topo.chain_infos:
        infos = list(ci.res_infos)
        for j in range(1, len(infos) - 1):
            prev_link = [l for l in infos[j].prev if l.link_id in PEPTIDE_LINKS]
            next_link = [l for l in infos[j + 1].prev if l.link_id in PEPTIDE_LINKS]
            if not prev_link or not next_link:
                continue
            before, res, after = infos[j - 1].res, infos[j].res, infos[j + 1].res
            got = [before.find_atom("C", "*"), res.find_atom("N", "*"),
                   res.find_atom("CA", "*"), res.find_atom("C", "*"),
                   after.find_atom("N", "*")]
            if any(a is None for a in got):
                continue
            rows.append([int(round(a.b_iso)) for a in got])
            if res.name == "GLY":
                kinds.append(1)
            elif res.name == "PRO":
                kinds.append(2)
            elif after.name == "PRO":
                kinds.append(3)
            else:
                kinds.append(0)
    return np.array(rows, int).reshape(-1, 5), np.array(kinds, int)


def _bonded_pairs(n, bonds):
    """Keys of atom pairs 1-2 or 1-3 apart (excluded from clashes) and 1-4 apart."""
    nbr = [set() for _ in range(n)]
    for a, b in bonds:
        nbr[a].add(b)
        nbr[b].add(a)
    close, four = set(), set()
    for a in range(n):
        one = nbr[a]
        two = set().union(*(nbr[b] for b in one)) if one else set()
        three = set().union(*(nbr[c] for c in two)) if two else set()
        for b in one | two:
            if b > a:
                close.add(a * n + b)
        for b in three - one - two:
            if b > a:
                four.add(a * n + b)
    four -= close
    return (np.array(sorted(close), dtype=np.int64),
            np.array(sorted(four), dtype=np.int64))
