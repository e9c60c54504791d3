"""The CCP4 monomer library (restraint dictionary) as a gemmi MonLib.

Ideal bond lengths, angles, planes, chiral centres and torsions come from the
real library (Debian ``refmac-dictionary``, or any ``$CLIBD_MON`` copy), read
with gemmi. Debian's copy has two known defects, repaired here on the fly
rather than by shipping edited copies: some files carry stray text before the
first ``data_`` block (HIS.cif starts with ``f#``) and TRP.cif misspells a bond
type (``sinlge``). It also lacks ``list/mon_lib_list.cif``, where the peptide
links live, and where proline's group is "P-peptide" (its own file says
"L-peptide", which would give Xaa-Pro bonds the plain trans link); the four
peptide links ship with the package (data/peptide_links.cif, Engh & Huber
2001 values, heavy atoms) and proline's group is set here.
"""
import os
import re

DEBIAN_MONOMERS = "/usr/share/refmac/monomers"
LINKS_FILE = os.path.join(os.path.dirname(__file__), "data", "peptide_links.cif")
_TYPO_FIXES = ((re.compile(r"\bsinlge\b"), "single"), (re.compile(r"\bdoulbe\b"), "double"))


def monomer_dir():
    """The monomer library folder: $GMM_MONOMERS, $CLIBD_MON or Debian's."""
    for cand in (os.environ.get("GMM_MONOMERS"), os.environ.get("CLIBD_MON"),
                 DEBIAN_MONOMERS):
        if cand and os.path.isdir(cand):
            return cand
    raise FileNotFoundError(
        "CCP4 monomer library not found: install the Debian package refmac-dictionary "
        "or set GMM_MONOMERS to a monomers/ folder")


_GROUP_FIXES = {"PRO": ("L-peptide", "P-peptide")}


def repaired_text(text, name=None):
    """Monomer cif text with the known Debian defects fixed."""
    start = min((i for i in (text.find("data_"), text.find("global_")) if i >= 0),
                default=-1)
    if start < 0:
        raise ValueError("not a monomer cif (no data_ block)")
    text = text[start:]
    for pattern, fix in _TYPO_FIXES:
        text = pattern.sub(fix, text)
    if name in _GROUP_FIXES:
        old, new = _GROUP_FIXES[name]
        text = text.replace(old, new, 1)
    return text


def monomer_path(name, folder=None):
    folder = folder or monomer_dir()
    path = os.path.join(folder, name[0].lower(), name + ".cif")
    return path if os.path.isfile(path) else None


def load_monlib(resnames, folder=None):
    """A gemmi.MonLib with the residues ``resnames`` (those found) and the links.

    Returns (monlib, missing names). Residues without a dictionary are
    reported, not fatal: the refinement keeps them rigid.
    """
    import gemmi
    monlib = gemmi.MonLib()
    missing = []
    for name in sorted(set(resnames)):
        path = monomer_path(name, folder)
        if path is None:
            missing.append(name)
            continue
        with open(path, errors="replace") as fh:
            text = repaired_text(fh.read(), name)
        try:
            monlib.read_monomer_doc(gemmi.cif.read_string(text))
        except Exception as exc:  # damaged beyond the known defects
            missing.append(name)
            print("warning: monomer %s unreadable (%s); kept rigid" % (name, exc))
    with open(LINKS_FILE) as fh:
        monlib.read_monomer_doc(gemmi.cif.read_string(fh.read()))
    return monlib, missing
