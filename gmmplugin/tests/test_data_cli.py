"""Particle metadata, star files, lazy stacks and the CLI's error handling."""
import mrcfile
import numpy as np
import pytest

from gmmplugin.engine import cli
from gmmplugin.engine.particles import Particles
from gmmplugin.engine.simulate import SimulationSettings, simulate
from gmmplugin.engine.starfile import read_star, write_star
from gmmplugin.tests import data_path


@pytest.fixture(scope="module")
def small_sim(tmp_path_factory):
    out = tmp_path_factory.mktemp("sim")
    star = simulate(data_path("5a7u.pdb"), str(out),
                    SimulationSettings(n_particles=150, box=32, apix=1.5, snr=1.0,
                                       per_stack=64, seed=3))
    return out, star


def test_simulation_is_deterministic(small_sim, tmp_path):
    out, star = small_sim
    star2 = simulate(data_path("5a7u.pdb"), str(tmp_path),
                     SimulationSettings(n_particles=150, box=32, apix=1.5, snr=1.0,
                                        per_stack=64, seed=3))
    a, b = read_star(star), read_star(star2)
    assert np.allclose(a.images(np.arange(150)), b.images(np.arange(150)))
    assert len(a.stacks) == 3  # 150 particles, 64 per stack


def test_star_round_trip(small_sim, tmp_path):
    out, star = small_sim
    p = read_star(star)
    gt = np.load(out / "ground_truth.npz")
    assert np.allclose(p.rotations, gt["rotations"], atol=1e-5)
    assert np.allclose(p.shifts, gt["shifts"], atol=1e-5)
    assert np.allclose(p.ctf, gt["ctf"], atol=1e-3)
    p.save(tmp_path / "p.npz")
    q = Particles.load(tmp_path / "p.npz")
    rows = np.array([149, 0, 70, 64])
    assert np.array_equal(p.images(rows), q.images(rows))
    write_star(tmp_path / "again.star", q)
    r = read_star(tmp_path / "again.star")
    assert np.allclose(r.rotations, p.rotations, atol=1e-5)


def test_images_come_from_the_right_stack_and_frame(small_sim):
    out, star = small_sim
    p = read_star(star)
    with mrcfile.open(out / "stacks" / "particles_001.mrcs") as m:
        assert np.array_equal(p.images(np.array([70]))[0], m.data[70 - 64])


def test_validation_errors(small_sim):
    p = read_star(small_sim[1])
    bad = p.subset(np.arange(5))
    bad.rotations[2, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        bad.validate()
    with pytest.raises(ValueError, match="empty"):
        p.subset(np.zeros(len(p), bool)).validate()


def test_cli_reports_clear_errors(small_sim, tmp_path, capsys):
    assert cli.main(["reconstruct", "--particles", str(tmp_path / "nope.npz"),
                     "--out-dir", str(tmp_path)]) == 2
    assert "not found" in capsys.readouterr().err
    corrupt = tmp_path / "corrupt.star"
    p = read_star(small_sim[1])
    bad_stack = tmp_path / "bad.mrcs"
    bad_stack.write_bytes(b"this is not an MRC file" * 100)
    p.stacks = [str(bad_stack)] * len(p.stacks)
    write_star(corrupt, p)
    assert cli.main(["reconstruct", "--particles", str(corrupt),
                     "--out-dir", str(tmp_path / "rec")]) == 2
    assert "cannot read particle stack" in capsys.readouterr().err
    assert not (tmp_path / "rec" / "map.mrc").exists()


def test_cli_reconstructs_a_subset_by_id(small_sim, tmp_path):
    np.savetxt(tmp_path / "ids.txt", np.arange(1, 101), fmt="%d")
    assert cli.main(["--device", "cpu", "reconstruct", "--particles", str(small_sim[1]),
                     "--out-dir", str(tmp_path), "--ids", str(tmp_path / "ids.txt"),
                     "--pad", "1"]) == 0
    import json
    info = json.load(open(tmp_path / "map.json"))
    assert info["particles"] == 100 and info["box"] == 32
    vol = mrcfile.read(tmp_path / "map.mrc")
    gt = mrcfile.read(small_sim[0] / "maps" / "consensus.mrc")
    from gmmplugin.engine.fourier import fsc
    assert fsc(vol, gt)[1:6].min() > 0.8   # 100 particles at SNR 1: low resolution agrees


def test_continuing_from_an_incompatible_checkpoint_is_a_clear_error(small_sim, tmp_path,
                                                                     capsys):
    from gmmplugin.engine.gmm import Gmm
    from gmmplugin.engine.settings import TrainConfig
    from gmmplugin.engine.train import Trainer
    p = read_star(small_sim[1])
    rng = np.random.default_rng(0)
    params = np.column_stack([rng.normal(0, 8, (30, 3)), np.ones(30), np.full(30, 3.0)])
    first = Trainer(p, Gmm(params), TrainConfig(latent_dim=2, max_res=6.0), str(tmp_path / "a"),
                    log=lambda s: None)
    first.save_checkpoint()
    ck = first.checkpoint_path()
    same = Trainer(p, Gmm(params), TrainConfig(latent_dim=2, max_res=6.0), str(tmp_path / "b"),
                   log=lambda s: None)
    same.load_checkpoint(ck)                        # compatible: loads
    # retraining (refine-orientations) continues a focused run without the mask
    # argument: the mask comes back from the checkpoint
    focus = np.arange(30) < 10
    focused = Trainer(p, Gmm(params), TrainConfig(latent_dim=2, max_res=6.0),
                      str(tmp_path / "f"), focus_mask=focus, log=lambda s: None)
    focused.save_checkpoint()
    same.load_checkpoint(focused.checkpoint_path())
    assert same.decoder.gaussian_mask.numpy().tolist() == focus.astype(float).tolist()
    other = Trainer(p, Gmm(params[:20]), TrainConfig(latent_dim=3, max_res=6.0),
                    str(tmp_path / "c"), log=lambda s: None)
    with pytest.raises(ValueError, match=r"latent dim 2 \(now 3\).*30 Gaussians \(now 20\)"):
        other.load_checkpoint(ck)
    # another similarity score would mix two objectives in one run
    whitened = Trainer(p, Gmm(params), TrainConfig(latent_dim=2, max_res=6.0, loss="whitened"),
                       str(tmp_path / "w"), log=lambda s: None)
    with pytest.raises(ValueError, match=r"loss frc \(now whitened\)"):
        whitened.load_checkpoint(ck)
    # the whitened score needs the images' noise power first: a clear error
    blank = np.zeros((len(p), whitened.box, whitened.box), dtype=np.float32)
    rows, data, ctf, rot, sh = whitened._batch(blank, np.arange(2))
    with pytest.raises(RuntimeError, match="prepare_images"):
        whitened._score(whitened.neutral, data, ctf, rot, sh)
    from gmmplugin.engine.checkpoint import load_decoder
    with pytest.raises(ValueError, match="30 Gaussians, not 20"):
        load_decoder(ck, params[:20])
    # the CLI refuses a GMM fitted in another frame before any work
    wrong = tmp_path / "wrong_box.npz"
    Gmm(params, apix=p.apix, box=2 * p.box).save(str(wrong))
    assert cli.main(["refine-poses", "--particles", str(small_sim[1]), "--gmm", str(wrong),
                     "--out-dir", str(tmp_path / "rp"), "--max-res", "6"]) == 2
    assert "the GMM covers a 96.0 Å box but the particles cover 48.0 Å" in capsys.readouterr().err
    assert not (tmp_path / "rp" / "particles_refined.npz").exists()
    (tmp_path / "broken.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="cannot read the checkpoint"):
        same.load_checkpoint(str(tmp_path / "broken.pt"))


def test_cached_features_are_recomputed_for_other_settings(small_sim, tmp_path):
    from gmmplugin.engine.gmm import Gmm
    from gmmplugin.engine.settings import TrainConfig
    from gmmplugin.engine.train import Trainer
    p = read_star(small_sim[1])
    rng = np.random.default_rng(1)
    params = np.column_stack([rng.normal(0, 6, (20, 3)), np.ones(20), np.full(20, 3.0)])
    work, logs = str(tmp_path / "w"), []

    def features(max_res, loss="frc"):
        t = Trainer(p, Gmm(params), TrainConfig(latent_dim=2, max_res=max_res, loss=loss),
                    work, log=logs.append)
        return np.array(t.prepare_features(t.prepare_images()), dtype=np.float32)

    a = features(6.0)
    again = features(6.0)                       # same settings: the cache is reused
    assert not any("recomputing" in m for m in logs) and np.array_equal(a, again)
    b = features(9.0)                           # another band: recomputed
    assert any("recomputing" in m for m in logs) and not np.allclose(a, b)
    logs.clear()
    c = features(9.0, loss="whitened")          # another score: recomputed
    assert any("recomputing" in m for m in logs) and not np.allclose(b, c)


def test_analyze_with_automatic_classes_merges_one_spread_state(small_sim, tmp_path, capsys):
    """The command line's automatic classes: a spread-out state that BIC splits
    is merged back, and every class that is left is reconstructed."""
    import json
    p = read_star(small_sim[1])
    rng = np.random.default_rng(5)
    state = (np.arange(len(p)) % 2).astype(int)
    z = rng.normal(0, 0.25, (len(p), 3))
    z[state == 1, 0] += rng.uniform(-2, 2, (state == 1).sum())
    z[state == 1, 1] += 2.0
    np.savez(tmp_path / "lat.npz", ids=p.ids, z=z)
    out = tmp_path / "ana"
    args = ["--device", "cpu", "analyze", "--particles", small_sim[1], "--latents",
            str(tmp_path / "lat.npz"), "--out-dir", str(out), "--num-pcs", "1",
            "--num-frames", "2", "--pad", "1"]
    assert cli.main(args + ["--per-frame", "1"]) != 0       # refused before any output
    assert not list(out.glob("*.mrc")) and not (out / "analysis.json").exists()
    # widening frames by confidence takes the decoder: refused without it
    np.savez(tmp_path / "lat_c.npz", ids=p.ids, z=z, confidence=np.full(len(p), 0.5))
    args_c = [str(tmp_path / "lat_c.npz") if x == str(tmp_path / "lat.npz") else x
              for x in args]
    capsys.readouterr()
    assert cli.main(args_c + ["--weights", "confidence"]) != 0
    assert "needs --checkpoint and --gmm" in capsys.readouterr().err
    assert not list(out.glob("*.mrc")) and not (out / "analysis.json").exists()
    assert cli.main(args + ["--per-frame", "20"]) == 0
    info = json.load(open(out / "analysis.json"))
    assert info["clustering"] == "valley" and info["num_classes"] == 2
    labels = np.load(out / "analysis.npz")["labels"]
    assert min(np.mean(labels == state), np.mean(labels != state)) < 0.05
    for c in info["classes"]:
        assert (out / ("class_%02d.mrc" % c["class"])).exists()
