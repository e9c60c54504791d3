"""Contrast transfer function, RELION convention (``ctf.h``).

    CTF(k) = -sin(K1·Δ(θ)·s² + K2·s⁴ - K3 - K5)

with s = |k| (1/Å), θ = atan2(ky, kx) (x = image column = fast MRC axis),
λ the relativistic electron wavelength, K1 = πλ, K2 = (π/2)·Cs·λ³ (Cs in Å),
K3 = phase shift (rad), K5 = atan(Q / sqrt(1 - Q²)) for amplitude contrast Q,
and Δ(θ) = -[(dU + dV)/2 + (dU - dV)/2 · cos(2(θ - θ_ast))] (defocus stored
positive = underfocus). With this sign the particle is white (positive) at
low frequency, as in RELION-extracted, contrast-inverted particles, so the
GMM (positive density) is compared to the data without any sign flip.
cryoDRGN's ``ctf.compute_ctf`` returns exactly the negative of this (it
inverts the data instead); ``tests/test_ctf.py`` checks that against stored
cryoDRGN values.

CTF parameters travel as an (B, 7) array, columns ``CTF_COLUMNS``.
"""
import numpy as np
import torch

CTF_COLUMNS = ("defocusU", "defocusV", "defocusAngle", "voltage", "cs",
               "ampContrast", "phaseShift")
# units: Å, Å, degrees, kV, mm, fraction, degrees


def wavelength(voltage_kv):
    """Relativistic electron wavelength (Å) at ``voltage_kv``."""
    v = np.asarray(voltage_kv, dtype=np.float64) * 1e3
    return 12.2643247 / np.sqrt(v * (1 + v * 0.978466e-6))


def compute_ctf(ky, kx, ctf_params):
    """CTF values on a frequency grid.

    ky, kx: broadcastable frequency tensors (1/Å), e.g. from
    ``fourier.freq_grid_2d``; ctf_params: (B, 7) tensor (see CTF_COLUMNS).
    Returns (B, *broadcast(ky, kx).shape).
    """
    p = torch.as_tensor(ctf_params, dtype=torch.float64)
    lam = torch.as_tensor(wavelength(p[:, 3].cpu().numpy()), dtype=torch.float64)
    p = p.to(kx.device)
    lam = lam.to(kx.device)
    extra = (None,) * max(kx.dim(), ky.dim())
    col = lambda i: p[(slice(None), i) + extra]
    du, dv = col(0), col(1)
    ang = torch.deg2rad(col(2))
    lam_ = lam[(slice(None),) + extra]
    cs = col(4) * 1e7
    q = col(5)
    k3 = torch.deg2rad(col(6))
    k1 = np.pi * lam_
    k2 = 0.5 * np.pi * cs * lam_ ** 3
    k5 = torch.atan(q / torch.sqrt(1 - q ** 2))
    kx64, ky64 = kx.to(torch.float64), ky.to(torch.float64)
    s2 = kx64 ** 2 + ky64 ** 2
    theta = torch.atan2(ky64, kx64)
    delta = -(0.5 * (du + dv) + 0.5 * (du - dv) * torch.cos(2 * (theta - ang)))
    gamma = k1 * delta * s2 + k2 * s2 ** 2 - k3 - k5
    return (-torch.sin(gamma)).to(kx.dtype)
