"""Residue and atom names of molecular-dynamics packages, mapped to the monomer
library's."""

# Force-field names (CHARMM, AMBER, GROMACS) of standard residues and atoms, as
# molecular-dynamics packages write them, and the monomer library's names: a
# residue the library does not know is kept rigid and unrestrained, so unmapped
# names would leave its bonds and peptide links unchecked.
RESIDUE_ALIASES = {"HSD": "HIS", "HSE": "HIS", "HSP": "HIS", "HID": "HIS", "HIE": "HIS",
                   "HIP": "HIS", "HISD": "HIS", "HISE": "HIS", "HISH": "HIS", "HIS1": "HIS",
                   "HIS2": "HIS", "CYX": "CYS", "CYM": "CYS", "CYS2": "CYS", "ASH": "ASP",
                   "ASPH": "ASP", "GLH": "GLU", "GLUH": "GLU", "LYN": "LYS", "LSN": "LYS",
                   "LYP": "LYS"}
ATOM_ALIASES = {"ILE": {"CD": "CD1"}, "*": {"OT1": "O", "OT2": "OXT", "O1": "O",
                                             "O2": "OXT", "OC1": "O", "OC2": "OXT"}}


def standardise_names(st):
    """Rename force-field residue and atom names to the monomer library's, in
    place. Returns sorted 'OLD->NEW' strings of what was renamed."""
    done = set()
    for chain in st[0]:
        for res in chain:
            new = RESIDUE_ALIASES.get(res.name.upper())
            if new:
                done.add("%s->%s" % (res.name, new))
                res.name = new
            names = {a.name for a in res}
            for table in (ATOM_ALIASES.get(res.name, {}), ATOM_ALIASES["*"]):
                for atom in res:
                    target = table.get(atom.name)
                    if target and target not in names:
                        done.add("%s %s->%s" % (res.name, atom.name, target))
                        names.discard(atom.name)
                        atom.name = target
                        names.add(target)
    return sorted(done)
