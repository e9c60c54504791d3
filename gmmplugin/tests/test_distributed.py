"""Data-parallel engine runs (engine/distributed.py) against the single process:
two gloo ranks on this CPU under torchrun must give the one process's
reconstruction, poses and latents; checkpoints resume across world sizes; two
torchrun "nodes" on localhost meet at a c10d rendezvous; and the plugin builds
the torchrun command lines (without running torch)."""
import os
import socket
import subprocess
import sys

import mrcfile
import numpy as np
import pytest
from sklearn.decomposition import PCA

from gmmplugin.engine import cli
from gmmplugin.engine.simulate import Heterogeneity, SimulationSettings, simulate
from gmmplugin.tests import data_path

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ENGINE = ["-m", "gmmplugin.engine", "--device", "cpu", "--threads", "1"]
TRAIN = ["--latent-dim", "2", "--batch", "32", "--max-res", "8", "--refine-classes", "0"]


def _env():
    return dict(os.environ, PYTHONPATH=ROOT, OMP_NUM_THREADS="1")


def _torchrun(launch, args, cwd, timeout=600):
    """``python -m torch.distributed.run <launch> -m gmmplugin.engine ... <args>``."""
    return subprocess.run([sys.executable, "-m", "torch.distributed.run"] + launch + ENGINE
                          + args, capture_output=True, text=True, cwd=cwd, env=_env(),
                          timeout=timeout)


def _ranks(n, args, cwd):
    out = _torchrun(["--standalone", "--nproc_per_node=%d" % n], args, cwd)
    assert out.returncode == 0, out.stderr[-3000:]
    return out


def _free_port():
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _maps(folder):
    return {k: mrcfile.read(os.path.join(folder, k + ".mrc"))
            for k in ("map", "map_half1", "map_half2")}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """300 particles of a rotating domain (box 32), their 1-process
    reconstruction and a neutral GMM fitted to it."""
    out = str(tmp_path_factory.mktemp("dist"))
    star = simulate(data_path("1hvr.pdb"), out + "/sim",
                    SimulationSettings(n_particles=300, box=32, apix=3.0, snr=0.5, seed=21),
                    Heterogeneity(move="B", motion="rotate", amount=40.0))
    th = ["--device", "cpu", "--threads", "1"]
    assert cli.main(th + ["reconstruct", "--particles", star, "--out-dir", out + "/rec1"]) == 0
    assert cli.main(th + ["fit", "--map", out + "/rec1/map.mrc", "--resolution", "8",
                          "--out-dir", out + "/fit"]) == 0
    return {"dir": out, "star": star, "gmm": out + "/fit/gmm.npz"}


def test_reconstruction_from_two_ranks_is_the_one_process_map(data):
    _ranks(2, ["reconstruct", "--particles", data["star"], "--out-dir", "rec2"], data["dir"])
    one, two = _maps(data["dir"] + "/rec1"), _maps(data["dir"] + "/rec2")
    for k in one:      # the same sums in another order (float64 accumulators)
        assert np.abs(one[k] - two[k]).max() <= 1e-6 * np.abs(one[k]).max(), k
    assert (np.loadtxt(data["dir"] + "/rec1/map_fsc.txt")
            == pytest.approx(np.loadtxt(data["dir"] + "/rec2/map_fsc.txt"), abs=1e-6))


NESTED = """
import sys
import numpy as np
import torch
from gmmplugin.engine import distributed
from gmmplugin.engine.commands.common import load_particles
from gmmplugin.engine.reconstruct import nested_reconstructions
distributed.setup(torch.device("cpu"))
p = load_particles(sys.argv[1])
recs = nested_reconstructions(p, np.arange(len(p)), [100, 300])
if distributed.is_main():
    np.savez(sys.argv[2], **{"%s%d" % (k, i): getattr(r, k) for i, r in enumerate(recs)
                            for k in ("full", "half1", "fsc")})
distributed.teardown()
"""


def test_nested_reconstructions_from_two_ranks_are_the_one_process_maps(data):
    """The inner neighbourhood's map is read while the ranks go on inserting:
    summed into copies, each rank's own sums left to grow."""
    from gmmplugin.engine.commands.common import load_particles
    from gmmplugin.engine.reconstruct import nested_reconstructions
    d = data["dir"]
    with open(os.path.join(d, "nested.py"), "w") as f:
        f.write(NESTED)
    out = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                          "--nproc_per_node=2", "nested.py", data["star"], "nested.npz"],
                         capture_output=True, text=True, cwd=d, env=_env(), timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    two = np.load(os.path.join(d, "nested.npz"))
    p = load_particles(data["star"])
    for i, rec in enumerate(nested_reconstructions(p, np.arange(len(p)), [100, 300])):
        for k in ("full", "half1"):
            one = getattr(rec, k)
            assert np.abs(one - two["%s%d" % (k, i)]).max() <= 1e-6 * np.abs(one).max(), k
        assert np.allclose(rec.fsc, two["fsc%d" % i], atol=1e-6)


def test_two_nodes_meet_at_a_c10d_rendezvous(data):
    """The multi-node path: two torchrun agents (one process each), as a queue
    job starts one per node, with the rank of each node left to the rendezvous."""
    launch = ["--nnodes=2", "--nproc_per_node=1", "--rdzv_backend=c10d",
              "--rdzv_endpoint=localhost:%d" % _free_port(), "--rdzv_id=gmm-test"]
    args = ENGINE + ["reconstruct", "--particles", data["star"], "--out-dir", "rec_nodes"]
    nodes = [subprocess.Popen([sys.executable, "-m", "torch.distributed.run"] + launch + args,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              cwd=data["dir"], env=_env()) for _ in range(2)]
    outs = [n.communicate(timeout=600) for n in nodes]
    assert [n.returncode for n in nodes] == [0, 0], [o[1][-2000:] for o in outs]
    assert sum("reconstructed 300 particles" in o[0] for o in outs) == 1   # rank 0 alone
    one, two = _maps(data["dir"] + "/rec1"), _maps(data["dir"] + "/rec_nodes")
    assert np.abs(one["map"] - two["map"]).max() <= 1e-6 * np.abs(one["map"]).max()


def test_pose_refinement_from_two_ranks_gives_the_same_poses(data):
    args = ["refine-poses", "--particles", data["star"], "--gmm", data["gmm"],
            "--max-res", "8", "--iterations", "12"]
    assert cli.main(["--device", "cpu", "--threads", "1"] + args
                    + ["--out-dir", data["dir"] + "/rp1"]) == 0
    _ranks(2, args + ["--out-dir", "rp2"], data["dir"])
    one = np.load(data["dir"] + "/rp1/particles_refined.npz")
    two = np.load(data["dir"] + "/rp2/particles_refined.npz")
    assert np.array_equal(one["ids"], two["ids"])
    assert np.abs(one["rotations"] - two["rotations"]).max() < 1e-6
    assert np.abs(one["shifts"] - two["shifts"]).max() < 1e-5
    s1, s2 = (np.load(data["dir"] + "/rp%d/refine_stats.npz" % k) for k in (1, 2))
    assert np.array_equal(s1["moved"], s2["moved"]) and s1["moved"].any()


def _latents(folder):
    """(ids, the encoder's latents): before train's refinement on each
    particle's likelihood, which the tests compare separately."""
    lat = np.load(os.path.join(folder, "latents.npz"))
    return lat["ids"], lat["z_before_likelihood"] if "z_before_likelihood" in lat.files \
        else lat["z"]


def _agree(a, b):
    """|Pearson ρ| of the first principal component, and the largest latent
    difference relative to the latents' range."""
    pa, pb = (PCA(1).fit_transform(z)[:, 0] for z in (a, b))
    return abs(np.corrcoef(pa, pb)[0, 1]), np.abs(a - b).max() / np.abs(a).max()


def test_training_on_two_ranks_gives_the_one_process_latents(data):
    """Same particle order, batches, latent noise and initialisation: the two
    runs differ only by the order of floating-point sums; a checkpoint of
    either resumes on the other number of processes."""
    d, common = data["dir"], ["train", "--particles", data["star"], "--gmm", data["gmm"]]
    assert cli.main(["--device", "cpu", "--threads", "1"] + common + TRAIN
                    + ["--epochs", "2", "--out-dir", d + "/t1"]) == 0
    out = _ranks(2, common + TRAIN + ["--epochs", "2", "--out-dir", "t2"], d)
    assert out.stdout.count("epoch 2/2") == 1            # one log: rank 0's
    assert "2 processes (gloo), each on its share of the particles" in out.stdout
    ids1, z1 = _latents(d + "/t1")
    ids2, z2 = _latents(d + "/t2")
    assert np.array_equal(ids1, ids2)
    rho, diff = _agree(z1, z2)
    assert rho >= 0.999 and diff < 1e-3, (rho, diff)
    # each rank refined its share of the latents on their likelihood (the default)
    # and read its share of the confidences: together the one process's. The
    # refinement's Jacobians are float32 finite differences, which turn the
    # encoders' 1e-7 differences into about 1e-4 of the latents' range, far
    # below any latent's posterior spread.
    lat1, lat2 = (np.load(os.path.join(d, f, "latents.npz")) for f in ("t1", "t2"))
    moved = np.abs(lat1["z"] - lat1["z_before_likelihood"]).max(1)
    assert np.median(moved) > 0.05 * np.abs(lat1["z"]).max()
    apart = np.abs(lat1["z"] - lat2["z"]).max(1) / np.abs(lat1["z"]).max()
    assert np.median(apart) < 1e-3 and apart.max() < 2e-2, (np.median(apart), apart.max())
    # the confidence is read along the principal curve of all latents, whose
    # tangent at a few particles turns with those round-off differences
    # the direction each confidence was read along: unit vectors, the same
    assert lat1["motion"].shape == lat1["z"].shape
    assert np.allclose(np.linalg.norm(lat1["motion"], axis=1), 1.0, atol=1e-5)
    turned = 1 - np.abs(np.einsum("bi,bi->b", lat1["motion"], lat2["motion"]))
    assert np.median(turned) < 1e-3, np.median(turned)
    off = np.abs(lat1["confidence"] - lat2["confidence"])
    assert np.median(off) < 5e-3 and np.percentile(off, 95) < 3e-2, (np.median(off),
                                                                      np.percentile(off, 95))
    # each rank's share of the posterior spreads, gathered: the one process's
    spread = np.abs(lat1["latent_sd"] - lat2["latent_sd"]) / np.median(lat1["latent_sd"])
    assert np.median(spread) < 5e-3 and np.percentile(spread, 95) < 3e-2, np.median(spread)
    assert os.path.exists(d + "/t2/work/checkpoint.pt")
    # resumed across world sizes: 1 -> 2 ranks and 2 -> 1 process, one more epoch
    _ranks(2, common + TRAIN + ["--epochs", "3", "--resume", "--out-dir", "t1"], d)
    assert cli.main(["--device", "cpu", "--threads", "1"] + common + TRAIN
                    + ["--epochs", "3", "--resume", "--out-dir", d + "/t2"]) == 0
    z1, z2 = _latents(d + "/t1")[1], _latents(d + "/t2")[1]
    assert int(np.load(d + "/t1/latents.npz")["epoch"]) == 3
    rho, diff = _agree(z1, z2)
    assert rho >= 0.999 and diff < 1e-3, (rho, diff)


def test_work_that_cannot_be_shared_is_a_clear_error(data):
    d = data["dir"]
    out = _torchrun(["--standalone", "--nproc_per_node=2"],
                    ["train", "--particles", data["star"], "--gmm", data["gmm"], "--epochs",
                     "1", "--batch", "299", "--max-res", "8", "--out-dir", "t_bad"], d)
    assert out.returncode != 0
    assert "ERROR: batches of 299 particles (the last of 1) cannot be shared among 2 " \
           "processes" in out.stderr
    assert not os.path.exists(d + "/t_bad/work/features.npy")
    with open(d + "/two.txt", "w") as f:
        f.write("1\n2\n")
    out = _torchrun(["--standalone", "--nproc_per_node=3"],
                    ["reconstruct", "--particles", data["star"], "--ids", "two.txt",
                     "--out-dir", "rec_bad"], d)
    assert out.returncode != 0
    assert "ERROR: 3 processes for 2 particles" in out.stderr


# -- the plugin's command lines (no torch) -------------------------------------------

def test_plugin_runs_data_parallel_commands_under_torchrun():
    from gmmplugin import Plugin
    py = Plugin.getPython()
    assert Plugin.getEngineCommand("train", "auto", 4) == (
        py, "-m gmmplugin.engine --device auto --threads 4 train")
    # one process per GPU on one machine
    assert Plugin.getEngineCommand("reconstruct", "auto", 2, processes=2) == (
        py, "-m torch.distributed.run --nproc_per_node=2 --standalone "
            "-m gmmplugin.engine --device auto --threads 2 reconstruct")
    # commands that are not data parallel run once, on the first GPU
    assert Plugin.getEngineCommand("fit", "auto", 2, processes=2, nodes=3)[1] == \
        "-m gmmplugin.engine --device auto --threads 2 fit"
    # several nodes: one torchrun per node, meeting at the queue job's endpoint
    program, args = Plugin.getEngineCommand("refine-poses", "auto", 8, processes=4,
                                            nodes=3, job="gmmplugin-12")
    assert program == "srun --ntasks-per-node=1 %s" % py
    assert args == ("-m torch.distributed.run --nproc_per_node=4 --nnodes=3 "
                    "--rdzv_backend=c10d --rdzv_endpoint=$MASTER_ADDR:$MASTER_PORT "
                    "--rdzv_id=gmmplugin-12 -m gmmplugin.engine --device auto --threads 8 "
                    "refine-poses")


def test_protocol_runs_the_engine_on_every_chosen_gpu_and_node():
    from gmmplugin.protocols import GmmProtFitNeutral, GmmProtReconstruct, GmmProtTrain
    prot = GmmProtReconstruct()
    prot.useGpu.set(True)
    prot.gpuList.set("2,3")
    prot.numberOfThreads.set(3)
    calls = []
    prot.runJob = lambda program, args, **kw: calls.append((program, args, kw))
    prot.runEngine("reconstruct", "--out-dir x")
    program, args, kw = calls[-1]
    assert args.startswith("-m torch.distributed.run --nproc_per_node=2 --standalone ")
    assert args.endswith("--threads 3 reconstruct --out-dir x")
    assert kw["env"]["CUDA_VISIBLE_DEVICES"] == "2,3" and kw["numberOfMpi"] == 1
    prot.useGpu.set(False)                       # on the CPU: one process
    prot.runEngine("reconstruct", "--out-dir x")
    assert calls[-1][1].startswith("-m gmmplugin.engine --device cpu")
    # the node count is the MPI field, shown as Nodes where the engine shares
    # particles, and needs the queue
    assert GmmProtTrain().getDefinition().getParam("numberOfMpi").label.get() == "Nodes"
    assert GmmProtFitNeutral().getDefinition().getParam("numberOfMpi") is None
    prot.numberOfMpi.set(2)
    assert prot.engineNodes() == 2
    assert any("queue" in e for e in prot._validateNodes())
    prot.numberOfMpi.set(1)
    assert prot._validateNodes() == []
