"""Atomic model refinement, engine level: library, restraints, projections,
a small refinement, validation and CLI errors."""
import json
import os
import unittest
import shutil

import numpy as np
import pytest
import torch

try:
    import pyrama  # noqa: F401
except ImportError:
    raise unittest.SkipTest("pyrama not installed")
from gmmplugin.engine.atomic import monlib  # noqa: E402

# unittest's SkipTest: a skip for pytest and for Scipion's runner (unittest) alike
if not os.path.isdir(monlib.DEBIAN_MONOMERS) and not os.environ.get("GMM_MONOMERS"):
    raise unittest.SkipTest("CCP4 monomer library (refmac-dictionary) not installed")

from gmmplugin.engine import cli  # noqa: E402
from gmmplugin.engine.atomic import ramachandran, rotamers  # noqa: E402
from gmmplugin.engine.atomic.map_projections import MapTarget, projection_directions  # noqa
from gmmplugin.tests.perturb import ca_rmsd, jitter, rigid_move  # noqa: E402
from gmmplugin.engine.atomic.refine import RefineConfig, SeriesRefiner  # noqa: E402
from gmmplugin.engine.atomic.restraints import Geometry  # noqa: E402
from gmmplugin.engine.atomic.topology import build_topology, read_model  # noqa: E402
from gmmplugin.engine.atomic.validate import geometry_metrics, validate_model  # noqa: E402
from gmmplugin.engine.atoms import atoms_to_params  # noqa: E402
from gmmplugin.engine.fit_neutral import map_from_atoms  # noqa: E402
from gmmplugin.engine.fourier import frc  # noqa: E402
from gmmplugin.engine.io import write_map  # noqa: E402
from gmmplugin.engine.projection import project  # noqa: E402
from gmmplugin.tests import data_path  # noqa: E402


@pytest.fixture(scope="module")
def tcr():
    return build_topology(read_model(data_path("1bd2.pdb")))


@pytest.fixture(scope="module")
def zinc_finger():
    return build_topology(read_model(data_path("5a7u.pdb")))


def _map_in_model_frame(path, xyz, znum, resolution=5.0, apix=1.25):
    """A map of the atoms at ``resolution``, its MRC origin set so that the model's
    coordinates are in its frame (as a model viewer overlays them)."""
    import mrcfile
    vol, apix, box, centre, _ = map_from_atoms(xyz, znum, resolution, apix=apix)
    write_map(path, vol, apix)
    with mrcfile.open(path, "r+") as m:
        o = centre - (box // 2) * apix
        m.header.origin = (o[0], o[1], o[2])
    return path


def _charmm_named(path, his="HSD"):
    """5a7u written with CHARMM names: HIS as ``his``, ILE CD1 as CD."""
    import gemmi
    st = gemmi.read_structure(data_path("5a7u.pdb"))
    for res in st[0][0]:
        res.name = his if res.name == "HIS" else res.name
        for atom in res:
            if res.name == "ILE" and atom.name == "CD1":
                atom.name = "CD"
    st.write_pdb(path)
    return path


def test_debian_defects_repaired():
    import gemmi
    for name in ("HIS", "TRP"):
        path = monlib.monomer_path(name)
        with open(path) as fh:
            raw = fh.read()
        doc = gemmi.cif.read_string(monlib.repaired_text(raw, name))
        cc = gemmi.make_chemcomp_from_block(doc["comp_" + name])
        assert len(cc.rt.bonds) > 10 and len(cc.rt.angles) > 10
    lib, missing = monlib.load_monlib(["PRO", "GLY"])
    assert missing == [] and {"TRANS", "CIS", "PTRANS", "PCIS"} <= set(lib.links.keys())


def test_crystal_geometry_against_library(tcr):
    """A real 2.5 Å crystal structure is near ideal by the library's sigmas, and
    every peptide bond got a link (trans, cis, or to proline)."""
    m = geometry_metrics(tcr.structure)
    assert m["bond_rmsz"] < 0.8 and m["angle_rmsz"] < 1.0
    assert m["omega_over_30_pct"] == 0.0
    assert 85 < m["rama_favoured_pct"] and m["rama_outliers_pct"] < 2
    assert tcr.torsion_is_omega.sum() >= 800          # 5 chains, ~850 residues
    assert len(tcr.rama) > 780 and set(np.unique(tcr.rama_kind)) == {0, 1, 2, 3}



def test_stretched_peptide_bonds_stay_linked_and_are_validated(zinc_finger):
    """A start model with stretched C–N bonds keeps its peptide links (so they
    are restrained), and validation sees broken bonds instead of skipping them."""
    st = zinc_finger.structure.clone()
    n_links = int(zinc_finger.torsion_is_omega.sum())
    stretched = 0
    for chain in st[0]:
        for a, b in zip(chain, list(chain)[1:]):
            c, n = a.find_atom("C", "*"), b.find_atom("N", "*")
            if c is not None and n is not None and b.seqid.num == a.seqid.num + 1 \
                    and stretched < 5:
                n.pos = n.pos + (n.pos - c.pos) * 1.0          # C–N 1.33 → ~2.7 Å
                stretched += 1
    top = build_topology(st)
    assert stretched == 5 and int(top.torsion_is_omega.sum()) == n_links
    m = geometry_metrics(st)
    assert m["bond_outliers_4sigma"] >= 5 and m["bond_rmsz"] > 3


def test_unknown_and_rigid_parts(zinc_finger):
    """The zinc ion and the terminal OXT have no restraints (kept rigid), and
    nothing crashes on them."""
    top = zinc_finger
    assert (~top.restrained).sum() >= 1
    names = [a.name for ch in top.structure[0] for r in ch for a in r]
    zn = names.index("ZN")
    assert not top.restrained[zn]
    assert not np.isin(zn, top.bonds)


def test_ramachandran_fit_keeps_outliers_out():
    e = ramachandran.RamachandranEnergy()
    g = np.radians(-179 + 2 * np.arange(180))
    P, S = (torch.tensor(a.ravel(), dtype=torch.float32) for a in np.meshgrid(g, g, indexing="ij"))
    for k, kind in enumerate(ramachandran.KINDS):
        t = ramachandran.table(kind).ravel()
        en = e(P, S, torch.full((len(P),), k)).numpy()
        favoured, outlier = en[t > 0.02], en[t < ramachandran.OUTLIER_BELOW[kind]]
        assert np.percentile(favoured, 95) < np.percentile(outlier, 5)


def test_rotamer_library_and_energy(tcr):
    """The derived Dunbrack table is sane (LEU's commonest rotamer is mt at
    about (-65°, 175°)); the crystal's side chains sit much lower on the
    mixture energy than the same side chains with χ rotated off-rotamer; and
    descending the energy from an eclipsed χ lands on a library rotamer."""
    lib = rotamers.load_library()
    assert set(lib) == set(rotamers.CHI_ATOMS)
    for name, (p, mu, sig, per) in lib.items():
        assert abs(p.sum() - 1) < 1e-6 and mu.shape[1] == len(rotamers.CHI_ATOMS[name])
    p, mu, _, _ = lib["LEU"]
    assert p[0] > 0.5 and np.allclose(np.degrees(mu[0]), [-65, 175], atol=8)
    assert len(tcr.rotamer_names) > 600 and len(tcr.rotamer_quads) > 1200
    g = Geometry(tcr)
    x = torch.tensor(tcr.xyz, dtype=torch.float32)[None]
    from gmmplugin.engine.atomic.restraints import dihedral
    q = g.rot_quads
    ang = dihedral(*(x[:, q[:, k]] for k in range(4)))
    chi = x.new_zeros(1, g.rot_count * 4).index_copy(1, g.rot_flat, ang).view(1, -1, 4)
    crystal = g.rotamer_energy(chi)[0]
    off = g.rotamer_energy(chi + np.radians(60.0) / 2)[0]   # half-way between staggers
    assert torch.median(crystal) < 4.0 and torch.median(off) > 3 * torch.median(crystal)
    assert float(g.terms(x)["rotamer"]) < 4.0
    # descent from eclipsed χ1 = 0 on VAL and PHE reaches a rotamer of the table
    e = rotamers.RotamerEnergy(["VAL", "PHE"])
    c = torch.zeros(1, 2, 4)
    c[0, 1, 1] = np.radians(90.0)
    c.requires_grad_(True)
    opt = torch.optim.Adam([c], lr=0.05)
    for _ in range(300):
        opt.zero_grad()
        e(c).sum().backward()
        opt.step()
    for k, name in enumerate(("VAL", "PHE")):
        _, mu, _, per = lib[name]
        d = np.degrees(np.angle(np.exp(1j * per * (c[0, k, :mu.shape[1]].detach().numpy()
                                                   - mu)))) / per
        assert np.abs(d).max(1).min() < 10, (name, d)


def test_geometry_gradient_repairs_noise(zinc_finger):
    """Gradient descent on the restraints alone turns 0.3 Å noise back into
    library geometry: the terms are correct and differentiable."""
    top = zinc_finger
    g = Geometry(top)
    x = torch.tensor(jitter(top.xyz, 0.3, seed=1), dtype=torch.float32)[None]
    x.requires_grad_(True)
    opt = torch.optim.LBFGS([x], lr=1, max_iter=50, history_size=20,
                            line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = sum(g.terms(x).values())
        loss.backward()
        return loss

    for _ in range(4):
        g.update_neighbours(x[0].detach())
        opt.step(closure)
    m = geometry_metrics(top.with_coordinates(x[0].detach().numpy()))
    # (the clash wall starts 0.15 Å before probe's limit, which costs a little angle)
    assert m["bond_rmsz"] < 0.3 and m["angle_rmsz"] < 0.7
    assert m["rama_outliers_pct"] == 0 and m["omega_over_30_pct"] == 0


def test_map_projections_match_analytic(zinc_finger):
    top = zinc_finger
    vol, apix, box, centre, xyz = map_from_atoms(top.xyz, top.atomic_number, 4.0, apix=1.0)
    rots = projection_directions(6)
    t = MapTarget(vol, apix, 4.0, rots)
    p = torch.tensor(atoms_to_params(xyz, top.atomic_number, 1.0))
    pred = project(p, rots, None, t.box, t.apix)
    assert frc(pred, t.ft, t.box, t.apix, 40, 4.0).min() > 0.98


def test_single_model_refinement_recovers_truth(zinc_finger):
    """5a7u moved rigidly by 2 Å and 6° plus 0.2 Å noise, refined into the map
    of the true model at 4 Å (few steps): Cα back within 0.7 Å, geometry near
    ideal. (The benchmark's full-length run reaches 0.3 Å on 1bd2.)"""
    top = zinc_finger
    truth = top.xyz.copy()
    vol, apix, box, centre, _ = map_from_atoms(truth, top.atomic_number, 4.0, apix=1.0)
    part = np.zeros(len(truth), bool)
    part[: len(truth) // 2] = True
    start = jitter(rigid_move(truth, part, 6.0, [2.0, 0, 0]), 0.2, seed=3)
    top_start = build_topology(top.with_coordinates(start))
    ca = np.array([a.name == "CA" for ch in top.structure[0] for r in ch for a in r])
    before = ca_rmsd(start, truth, ca)
    cfg = RefineConfig(resolution=4.0, num_patches=8, steps=(60, 60, 80), directions=16)
    ref = SeriesRefiner(top_start, [vol], apix, centre, cfg=cfg, log=lambda m: None)
    rep = ref.run()
    x = ref.frame_coordinates()[0]
    after = ca_rmsd(x, truth, ca)
    assert before > 1.0 and after < 0.7, (before, after)
    assert rep.frc[0] > 0.9
    m = geometry_metrics(top.with_coordinates(x))
    assert m["bond_rmsz"] < 1.5 and m["angle_rmsz"] < 1.5


def test_cli_refine_models_and_errors(tmp_path, zinc_finger):
    top = zinc_finger
    path = _map_in_model_frame(str(tmp_path / "map.mrc"), top.xyz, top.atomic_number)
    out = str(tmp_path / "out")
    rc = cli.main(["refine-models", "--model", data_path("5a7u.pdb"), "--maps", path, path,
                   "--resolution", "5", "--steps", "10,10,10", "--patches", "4",
                   "--directions", "8", "--no-validation", "--out-dir", out])
    assert rc == 0
    info = json.load(open(os.path.join(out, "refine_models.json")))
    assert len(info["frames"]) == 2 and info["frames"][1]["latent"] == [1.0]
    assert all(f["frc"] > 0.9 for f in info["frames"])
    import gemmi
    st = gemmi.read_structure(info["frames"][0]["model"])
    assert st[0].count_atom_sites() == len(top)
    rows = json.load(open(os.path.join(out, "validation.json")))
    assert len(rows) == 2 and rows[0]["bond_rmsz"] < 2
    # bad inputs: clear errors, exit status 2
    bad = str(tmp_path / "nan.mrc")
    write_map(bad, np.full((8, 8, 8), np.nan, np.float32), 1.0)
    assert cli.main(["refine-models", "--model", data_path("5a7u.pdb"), "--maps", bad,
                     "--resolution", "5", "--out-dir", out]) == 2
    assert cli.main(["refine-models", "--model", str(tmp_path / "none.pdb"), "--maps", path,
                     "--resolution", "5", "--out-dir", out]) == 2
    assert cli.main(["refine-models", "--model", data_path("5a7u.pdb"), "--maps", path,
                     "--resolution", "1", "--out-dir", out]) == 2


@pytest.mark.skipif(not shutil.which("king-probe") or not shutil.which("tortoize"),
                    reason="king-probe / tortoize not installed")
def test_independent_validators_run():
    row = validate_model(data_path("5a7u.pdb"), data_path("5a7u.pdb"))
    assert row["ca_rmsd"] == 0.0
    assert row["clashscore"] is not None and 0 <= row["clashscore"] < 200
    assert row["rama_z"] is not None and -10 < row["rama_z"] < 5


def test_peptide_flip_rescue_restores_a_flipped_peptide(tcr):
    """A peptide turned 180° (a typical local minimum) makes Ramachandran
    outliers; the rescue proposes the flip back. (It may also propose flips for
    the crystal's own outliers: the refinement keeps them only if map +
    geometry improve.)"""
    from gmmplugin.engine.atomic.peptide_flips import flip, peptide_units, propose_flips
    from gmmplugin.engine.atomic.ramachandran import is_outlier
    geo = Geometry(tcr)
    units = peptide_units(tcr)
    x_true = tcr.xyz.astype(np.float64)

    def outliers(x):
        r = tcr.rama
        phi = geometry_dihedral(x[r[:, :4]])
        psi = geometry_dihedral(x[r[:, 1:]])
        return is_outlier(tcr.rama_kind, phi, psi)

    before = outliers(x_true).sum()
    row = next(i for i in range(100, len(units)) if units[i][1] is not None
               and tcr.rama_kind[i] == 0 and not outliers(x_true)[i])
    bad = flip(x_true.copy(), units[row][1])
    assert outliers(bad).sum() > before
    fixed, n = propose_flips(geo, tcr, torch.as_tensor(bad, dtype=torch.float64), units)
    assert n >= 1
    assert outliers(fixed.numpy()).sum() <= before
    atoms = units[row][1][2]                 # the flipped peptide is back in place
    assert np.abs(fixed.numpy()[atoms] - x_true[atoms]).max() < 1e-6


def geometry_dihedral(p):
    from gmmplugin.engine.atomic.validate import _dihedral
    return _dihedral(p)


def _with_dna(path, distance=30.0):
    """5a7u plus a two-nucleotide DNA chain D (ideal DA geometry of the monomer
    library, O3'-P linked, 30 Å away from the protein)."""
    import gemmi
    doc = gemmi.cif.read(monlib.monomer_path("DA"))
    rows = doc["comp_DA"].find("_chem_comp_atom.", ["atom_id", "type_symbol", "x", "y", "z"])
    atoms = [(gemmi.cif.as_string(r[0]), r[1], np.array([float(r[i]) for i in (2, 3, 4)]))
             for r in rows if r[1] != "H" and gemmi.cif.as_string(r[0]) != "OP3"]
    pos = {name: x for name, _, x in atoms}
    st = gemmi.read_structure(data_path("5a7u.pdb"))
    st.remove_hydrogens()
    offset = np.array([a.pos.tolist() for a in st[0][0][0]]).mean(0) + [distance, 0, 0]
    chain = gemmi.Chain("D")
    for k, d in enumerate((np.zeros(3), pos["O3'"] + [1.6, 0, 0] - pos["P"])):
        res = gemmi.Residue()
        res.name, res.seqid = "DA", gemmi.SeqId(k + 1, " ")
        for name, el, x in atoms:
            a = gemmi.Atom()
            a.name, a.element, a.occ, a.b_iso = name, gemmi.Element(el), 1.0, 30.0
            a.pos = gemmi.Position(*(x + d + offset))
            res.add_atom(a)
        chain.add_residue(res)
    st[0].add_chain(chain)
    st.setup_entities()
    st.write_pdb(path)
    return path


def test_nucleic_acid_chains_are_kept_rigid_not_a_crash(tmp_path, capsys):
    model = _with_dna(str(tmp_path / "with_dna.pdb"))
    top = build_topology(read_model(model))
    assert top.rigid_polymers == ["DA"]
    dna = np.array([top.structure[0][top.residue_chain[r]].name == "D"
                    for r in top.residue])
    assert dna.sum() == 42 and not top.restrained[dna].any()
    assert top.restrained[~dna].mean() > 0.95        # the protein (not its zinc ion)
    path = _map_in_model_frame(str(tmp_path / "map.mrc"), top.xyz, top.atomic_number)
    out = str(tmp_path / "out")
    assert cli.main(["refine-models", "--model", model, "--maps", path, "--resolution", "5",
                     "--steps", "5,5,5", "--patches", "4", "--directions", "8",
                     "--no-validation", "--out-dir", out]) == 0
    said = capsys.readouterr().out
    assert "DA: kept rigid" in said and "1 polymer link(s)" in said
    info = json.load(open(os.path.join(out, "refine_models.json")))
    assert info["rigid_polymers"] == ["DA"] and "DA x2" in info["unrestrained"]
    assert top.sequence_links == 1                     # the O3'-P link, by distance
    import gemmi
    dna = gemmi.read_structure(info["frames"][0]["model"])[0]["D"]
    assert abs(dna[0]["O3'"][0].pos.dist(dna[1]["P"][0].pos) - 1.607) < 0.1


def test_validation_measures_every_link_whatever_the_dictionary(tmp_path):
    """A stretched peptide link is reported from the coordinates, also next to a
    residue the library does not describe, and that residue is named."""
    import gemmi
    from gmmplugin.engine.atomic.links import link_deviations
    st = read_model(data_path("5a7u.pdb"))
    assert link_deviations(st)[0] == 0
    residues = list(st[0][0])
    half = len(residues) // 2
    for res in residues[half:]:
        for atom in res:
            atom.pos = gemmi.Position(atom.pos.x + 0.8, atom.pos.y, atom.pos.z)
    residues[half].name = "XXX"                       # no dictionary for it
    n, worst = link_deviations(st)
    assert n >= 1 and worst > 0.1
    m = geometry_metrics(st)
    assert m["links_over_4sigma"] >= 1 and "XXX x1" in m["not_in_library"]


def test_force_field_names_refine_to_the_same_models(tmp_path):
    """The same model with CHARMM names, refined into maps of its own motion,
    gives the same coordinates as with the library's names."""
    import gemmi
    from gmmplugin.tests.perturb import swing
    top = build_topology(read_model(data_path("5a7u.pdb")))
    half = np.arange(len(top.xyz)) >= len(top.xyz) // 2
    paths = [_map_in_model_frame(str(tmp_path / ("map_%d.mrc" % f)),
                                 swing(top.xyz, half, angle), top.atomic_number)
             for f, angle in enumerate((0.0, 8.0))]
    charmm = _charmm_named(str(tmp_path / "charmm.pdb"), his="HSE")
    coords = []
    for name, model in (("std", data_path("5a7u.pdb")), ("charmm", charmm)):
        out = str(tmp_path / name)
        assert cli.main(["--device", "cpu", "--threads", "1", "refine-models", "--model",
                         model, "--maps"] + paths + ["--resolution", "5", "--steps", "8,8,8",
                                                     "--patches", "4", "--directions", "8",
                                                     "--no-validation", "--out-dir", out]) == 0
        info = json.load(open(os.path.join(out, "refine_models.json")))
        coords.append([np.array([a.pos.tolist() for r in gemmi.read_structure(f["model"])[0][0]
                                 for a in r]) for f in info["frames"]])
    for a, b in zip(*coords):
        assert np.allclose(a, b, atol=1e-4)


def test_force_field_names_get_the_same_restraints(tmp_path, zinc_finger):
    """A model written with CHARMM names (HSD, ILE CD, OT1/OT2) is read with the
    library's names: the same restraints as the standard model, and a log line."""
    path = _charmm_named(str(tmp_path / "charmm.pdb"))
    said = []
    top = build_topology(read_model(path, said.append))
    assert "HSD->HIS" in said[0] and "ILE CD->CD1" in said[0]
    assert top.missing_residues == []
    assert len(top.bonds) == len(zinc_finger.bonds)
    assert len(top.angles) == len(zinc_finger.angles)
    assert top.restrained.sum() == zinc_finger.restrained.sum()
    assert np.array_equal(top.xyz, zinc_finger.xyz)


@pytest.mark.skipif(not shutil.which("king-probe"), reason="king-probe not installed")
def test_clashes_with_residues_the_library_lacks_are_counted(tmp_path):
    """The clashscore probes the whole model: nucleotides put onto the protein
    (no dictionary for their links) raise it."""
    from gmmplugin.engine.atomic.validate import clashscore
    apart = clashscore(read_model(_with_dna(str(tmp_path / "apart.pdb"))))
    onto = clashscore(read_model(_with_dna(str(tmp_path / "onto.pdb"), distance=2.0)))
    assert onto > apart + 5
