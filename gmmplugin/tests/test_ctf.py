"""CTF: RELION convention, checked against stored cryoDRGN values.

cryoDRGN's ``ctf.compute_ctf`` (4.3.1) returns the negative of RELION's CTF
(it inverts the data instead) and uses slightly different constants for the
electron wavelength (12.2639 / sqrt(V + 0.97845e-6 V²) vs RELION's 12.2643247 /
sqrt(V (1 + 0.978466e-6 V))). With cryoDRGN's wavelength our formula equals
-cryoDRGN to float64 precision; with RELION's it differs by < 1.5e-2 at
Nyquist (largest at 120 kV, 3 µm defocus). Reference values were made once by
``data/make_ctf_reference.py``.
"""
import os

import numpy as np
import torch

import gmmplugin.engine.ctf as ctf_mod
from gmmplugin.engine.ctf import compute_ctf

REF = os.path.join(os.path.dirname(__file__), "data", "ctf_reference_cryodrgn.npz")


def _ours(freqs, params):
    kx = torch.tensor(freqs[:, 0], dtype=torch.float64)
    ky = torch.tensor(freqs[:, 1], dtype=torch.float64)
    return compute_ctf(ky, kx, torch.tensor(params)).numpy()


def test_ctf_equals_minus_cryodrgn_with_its_wavelength(monkeypatch):
    ref = np.load(REF)
    monkeypatch.setattr(ctf_mod, "wavelength", lambda kv: 12.2639 / np.sqrt(
        np.asarray(kv, float) * 1e3 + 0.97845e-6 * (np.asarray(kv, float) * 1e3) ** 2))
    ours = _ours(ref["freqs"], ref["params"])
    assert np.abs(ours + ref["ctf"]).max() < 1e-9
    # and the sign convention really matters (not a coincidence of symmetric values)
    assert np.abs(ours - ref["ctf"]).max() > 1.0


def test_ctf_relion_wavelength_close_to_cryodrgn():
    ref = np.load(REF)
    assert np.abs(_ours(ref["freqs"], ref["params"]) + ref["ctf"]).max() < 1.5e-2


def test_low_frequency_is_positive_amplitude_contrast():
    # RELION sign: protein white at low frequency, CTF(0) = Q with no phase shift
    p = torch.tensor([[15000.0, 14000.0, 30.0, 300.0, 2.7, 0.1, 0.0]])
    zero = torch.zeros(1, dtype=torch.float64)
    assert abs(compute_ctf(zero, zero, p).item() - 0.1) < 1e-6


def test_astigmatism_angle_direction():
    # defocusU acts along the direction at defocusAngle from +x
    p = torch.tensor([[20000.0, 10000.0, 30.0, 300.0, 0.0, 0.0, 0.0]])
    k = 0.05
    t = np.deg2rad(30.0)
    along = compute_ctf(torch.tensor([k * np.sin(t)]), torch.tensor([k * np.cos(t)]), p)
    lam = ctf_mod.wavelength(300.0)
    assert abs(along.item() + np.sin(-np.pi * lam * 20000.0 * k * k)) < 1e-6
