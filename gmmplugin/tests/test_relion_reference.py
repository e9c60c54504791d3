"""Independent check of the simulator's .star conventions with RELION itself:
``relion_reconstruct --ctf`` on our simulated particles must give back the
ground-truth map, and agree with our own reconstruction. Skipped where RELION
is not installed (scripts/setup.sh installs Debian's relion when it can)."""
import shutil
import subprocess

import mrcfile
import numpy as np
import pytest

from gmmplugin.engine.fourier import fsc
from gmmplugin.engine.reconstruct import reconstruct
from gmmplugin.engine.simulate import SimulationSettings, simulate
from gmmplugin.engine.starfile import read_star
from gmmplugin.tests import data_path


@pytest.mark.skipif(shutil.which("relion_reconstruct") is None,
                    reason="relion_reconstruct not installed")
def test_relion_reconstructs_our_simulation(tmp_path):
    box = 48
    star = simulate(data_path("1hvr.pdb"), str(tmp_path),
                    SimulationSettings(n_particles=1500, box=box, apix=2.0, snr=0.0,
                                       seed=5))
    subprocess.run(["relion_reconstruct", "--i", star, "--o", str(tmp_path / "relion.mrc"),
                    "--ctf", "--angpix", "2.0"], check=True, capture_output=True,
                   cwd=str(tmp_path))
    relion = mrcfile.read(tmp_path / "relion.mrc")
    truth = mrcfile.read(tmp_path / "maps" / "consensus.mrc")
    ours = reconstruct(read_star(star), pad=1).full
    shells = np.arange(1, int(box / 2.5) + 1)
    assert fsc(relion, truth)[shells].min() > 0.9
    assert fsc(relion, ours)[shells].min() > 0.9
