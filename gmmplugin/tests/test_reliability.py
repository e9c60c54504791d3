"""Wrong or stale inputs never give a plausible-looking result: caches know
what they were made from, star files without what a command needs are refused,
output folders have one owner, latents and networks of different runs are not
combined, and files follow the user's umask."""
import os
import stat

import numpy as np
import pytest
import torch

from gmmplugin.engine import cli
from gmmplugin.engine.fourier import crop_images
from gmmplugin.engine.gmm import Gmm
from gmmplugin.engine.io import write_json
from gmmplugin.engine.rundir import LOCK
from gmmplugin.engine.settings import TrainConfig
from gmmplugin.engine.simulate import SimulationSettings, simulate
from gmmplugin.engine.starfile import read_star
from gmmplugin.engine.checkpoint import load_decoder
from gmmplugin.engine.train import Trainer
from gmmplugin.tests import data_path


@pytest.fixture(scope="module")
def two_sets(tmp_path_factory):
    """Two particle sets of the same box and sampling but different images."""
    out = tmp_path_factory.mktemp("sets")
    stars = [simulate(data_path("5a7u.pdb"), str(out / name),
                      SimulationSettings(n_particles=40, box=32, apix=1.5, snr=1.0, seed=seed))
             for name, seed in (("a", 1), ("b", 2))]
    rng = np.random.default_rng(0)
    gmm = Gmm(np.column_stack([rng.normal(0, 8, (30, 3)), np.ones(30), np.full(30, 3.0)]),
              apix=1.5, box=32, resolution=6.0)
    return [read_star(s) for s in stars], stars, gmm


def _trainer(particles, gmm, folder):
    return Trainer(particles, gmm, TrainConfig(latent_dim=2, max_res=6.0), str(folder),
                   log=lambda m: None)


def test_image_and_feature_caches_are_rebuilt_for_another_set(two_sets, tmp_path):
    (a, b), _, gmm = two_sets
    first = _trainer(a, gmm, tmp_path)
    feats_a = np.array(first.prepare_features(first.prepare_images()))
    second = _trainer(b, gmm, tmp_path)                # same folder, other images
    images = np.array(second.prepare_images())
    want = crop_images(torch.from_numpy(b.images(np.arange(len(b)))), second.box).numpy()
    assert np.allclose(images, want, atol=1e-5)
    moved = a.subset(np.arange(len(a)))                 # same images, other poses
    moved.rotations = moved.rotations[::-1].copy()
    third = _trainer(moved, gmm, tmp_path)
    feats = np.array(third.prepare_features(third.prepare_images()))
    assert not np.allclose(feats, feats_a)


def test_resume_in_a_folder_of_another_set_is_refused(two_sets, tmp_path):
    (a, b), _, gmm = two_sets
    first = _trainer(a, gmm, tmp_path)
    first.save_checkpoint()
    with pytest.raises(ValueError, match="trained on another particle set"):
        _trainer(b, gmm, tmp_path).load_checkpoint(same_run=True)
    same = _trainer(a, gmm, tmp_path)
    same.load_checkpoint(same_run=True)                  # its own interrupted run
    assert same.run_id == first.run_id
    other = _trainer(b, gmm, tmp_path / "b")
    other.load_checkpoint(first.checkpoint_path())       # --continue-from: allowed
    assert other.run_id != first.run_id


def test_latents_of_another_run_are_not_decoded(two_sets, tmp_path):
    (a, _), _, gmm = two_sets
    first = _trainer(a, gmm, tmp_path)
    first.save_checkpoint()
    np.savez(tmp_path / "mine.npz", ids=a.ids, z=np.zeros((len(a), 2)), run_id=first.run_id,
             epoch=first.epoch)
    np.savez(tmp_path / "theirs.npz", ids=a.ids, z=np.zeros((len(a), 2)),
             run_id="0" * 32, epoch=first.epoch)
    load_decoder(first.checkpoint_path(), gmm.params, latents=np.load(tmp_path / "mine.npz"))
    with pytest.raises(ValueError, match="different runs or epochs"):
        load_decoder(first.checkpoint_path(), gmm.params,
                     latents=np.load(tmp_path / "theirs.npz"))


def _star_without(star, tmp_path, drop=(), negative=False):
    lines = open(star).read().split("\n")
    header = [i for i, line in enumerate(lines) if line.startswith("_rln")]
    particles_at = lines.index("data_particles")
    cols = [i for i in header if i > particles_at]
    names = [lines[i].split()[0] for i in cols]
    keep = [j for j, name in enumerate(names) if name not in drop]
    out = lines[:cols[0]] + ["%s #%d" % (names[j], k + 1) for k, j in enumerate(keep)]
    for line in lines[cols[-1] + 1:]:
        values = line.split()
        if len(values) == len(names):
            if negative:
                values[names.index("_rlnDefocusU")] = "-12000"
            values = [values[j] for j in keep]
        out.append(" ".join(values) if len(values) else line)
    path = tmp_path / ("edited_%d.star" % len(list(tmp_path.iterdir())))
    path.write_text("\n".join(out))
    os.symlink(os.path.join(os.path.dirname(star), "stacks"), tmp_path / "stacks") \
        if not (tmp_path / "stacks").exists() else None
    return str(path)


@pytest.mark.parametrize("drop,message", [
    (("_rlnAngleTilt",), "lacks rlnAngleTilt"),
    (("_rlnDefocusV",), "lacks rlnDefocusV"),
    (("_rlnOriginYAngst",), "lacks rlnOriginYAngst"),
])
def test_star_files_missing_what_a_command_needs_are_refused(two_sets, tmp_path, drop,
                                                             message, capsys):
    star = _star_without(two_sets[1][0], tmp_path, drop)
    with pytest.raises(ValueError, match=message):
        read_star(star)
    assert cli.main(["reconstruct", "--particles", star, "--out-dir",
                     str(tmp_path / "rec")]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "rec" / "map.mrc").exists()


def test_star_without_ctf_or_with_negative_defocus_or_relion30(two_sets, tmp_path, capsys):
    star = two_sets[1][0]
    no_ctf = _star_without(star, tmp_path, ("_rlnDefocusU", "_rlnDefocusV",
                                            "_rlnDefocusAngle"))
    assert read_star(no_ctf).has_ctf is False
    assert cli.main(["reconstruct", "--particles", no_ctf, "--out-dir",
                     str(tmp_path / "rec")]) == 2
    assert "no CTF parameters" in capsys.readouterr().err
    with pytest.raises(ValueError, match="non-positive defocus"):
        read_star(_star_without(star, tmp_path, negative=True))
    old = tmp_path / "relion30.star"
    text = open(star).read()
    old.write_text(text[text.index("data_particles"):].replace("data_particles", "data_"))
    with pytest.raises(ValueError, match="RELION 3.0 .*relion_convert_star"):
        read_star(str(old))


def test_an_output_folder_has_one_owner(two_sets, tmp_path, capsys):
    star = two_sets[1][0]
    folder = tmp_path / "rec"
    folder.mkdir()
    (folder / LOCK).write_text("%s %d" % (os.uname().nodename, os.getppid()))   # alive
    assert cli.main(["reconstruct", "--particles", star, "--out-dir", str(folder),
                     "--pad", "1"]) == 2
    assert "another run" in capsys.readouterr().err
    assert not (folder / "map.mrc").exists()
    (folder / LOCK).write_text("%s %d" % (os.uname().nodename, 2 ** 22 + 12345))  # gone
    assert cli.main(["reconstruct", "--particles", star, "--out-dir", str(folder),
                     "--pad", "1"]) == 0
    assert "taking over" in capsys.readouterr().out
    assert (folder / "map.mrc").exists() and not (folder / LOCK).exists()


@pytest.mark.parametrize("umask,mode", [(0o022, 0o644), (0o002, 0o664)])
def test_outputs_follow_the_umask(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        write_json(str(tmp_path / "r.json"), {"a": 1})
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(tmp_path / "r.json").st_mode) == mode


def test_a_resumed_training_ends_where_an_uninterrupted_one_does(two_sets, tmp_path):
    (a, _), _, gmm = two_sets
    cfg = dict(latent_dim=2, max_res=6.0, epochs=3, batch_size=16)
    whole = Trainer(a, gmm, TrainConfig(**cfg), str(tmp_path / "whole"), log=lambda m: None)
    z_whole, _ = whole.run()
    killed = Trainer(a, gmm, TrainConfig(**cfg), str(tmp_path / "cut"), log=lambda m: None)
    images = killed.prepare_images()
    killed.train(images, killed.prepare_features(images), epochs=1)   # then killed
    torch.manual_seed(123)                     # the new process's own random state
    resumed = Trainer(a, gmm, TrainConfig(**cfg), str(tmp_path / "cut"), log=lambda m: None)
    resumed.load_checkpoint(same_run=True)
    z_resumed, _ = resumed.run()
    assert resumed.epoch == whole.epoch == 3
    assert np.abs(z_resumed - z_whole).max() < 1e-5


def test_alternative_conformations_count_once(tmp_path):
    """A model whose side chains have two altlocs (occupancy 0.5 each) has the
    mass of one conformer."""
    import gemmi
    from gmmplugin.engine.atoms import read_atoms
    st = gemmi.read_structure(data_path("5a7u.pdb"))
    st.remove_hydrogens()
    xyz0, z0, _, _ = read_atoms(data_path("5a7u.pdb"))
    for res in st[0][0]:
        for atom in list(res):
            if atom.name not in ("N", "CA", "C", "O"):
                atom.altloc, atom.occ = "A", 0.5
                other = atom.clone()
                other.altloc = "B"
                other.pos = gemmi.Position(atom.pos.x + 1.0, atom.pos.y, atom.pos.z)
                res.add_atom(other)
    path = str(tmp_path / "altlocs.pdb")
    st.write_pdb(path)
    xyz, z, _, _ = read_atoms(path)
    assert len(xyz) == len(xyz0) and z.sum() == z0.sum()
