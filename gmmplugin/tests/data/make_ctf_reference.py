"""Generate ``ctf_reference_cryodrgn.npz``: reference CTF values from cryoDRGN.

Run by hand only, inside a separate venv that has cryoDRGN installed::

    python3 -m venv /work/venv_cryodrgn
    /work/venv_cryodrgn/bin/pip install torch==2.13.0 cryodrgn
    /work/venv_cryodrgn/bin/python make_ctf_reference.py

The tests never import cryoDRGN; they only read the stored ``.npz``.  No
cryoDRGN code is copied here: this script just calls
``cryodrgn.ctf.compute_ctf`` and saves its numerical output.

Stored arrays
-------------
freqs : (M, 2) float64
    Columns (kx, ky) in 1/Angstrom.  400 points drawn uniformly in the disc
    |k| <= 1/(2*1.3) (Nyquist for a 1.3 A pixel) with
    ``np.random.default_rng(0)``, followed by k=(0,0) and 8 points on the axes.
params : (P, 7) float64
    Columns: defocusU (A), defocusV (A), defocusAngle (deg), voltage (kV),
    Cs (mm), amplitude contrast, phase shift (deg).
ctf : (P, M) float64
    ``compute_ctf(freqs, *params[p], scalefactor=1, bfactor=None)``:
    a pure CTF, no envelope.
note : str array
    cryoDRGN / torch versions used.

Conventions (as defined by cryoDRGN 4.3.1, ``cryodrgn.ctf.compute_ctf``)
--------------------------------------------------------------------
* ``freqs[:, 0]`` is x: the frequency component along the image's fast
  (column) axis; ``freqs[:, 1]`` is y, along the slow (row) axis.  This is
  how ``cryodrgn.lattice.Lattice`` builds ``freqs2d`` (``np.meshgrid`` with
  'xy' indexing, raveled row-major, y increasing with the row index).
* The angle of a frequency is ``theta = atan2(ky, kx)``, i.e. measured from
  the +x (column) axis towards +y (row) axis.  The defocus is
  ``df(theta) = (dU + dV)/2 + (dU - dV)/2 * cos(2*(theta - defocusAngle))``,
  so defocusU lies along the direction at ``defocusAngle`` from +x.
* ``gamma = 2*pi*(-df*lam*s^2/2 + Cs*lam^3*s^4/4) - phase_shift`` (phase
  shift converted from degrees to radians) and
  ``ctf = sqrt(1 - w^2)*sin(gamma) - w*cos(gamma)`` with w the amplitude
  contrast; i.e. the opposite sign to RELION's ``-sin(chi - K5)``.
* Wavelength: ``lam = 12.2639 / sqrt(V + 0.97845e-6 * V^2)`` A (V in volts),
  slightly different constants from RELION's 12.2643247 / 0.978466e-6
  (relative difference ~3.3e-5).  This is the only difference from
  -1 x RELION's formula: the residual printed below (up to ~1e-2, largest at
  high defocus / low voltage near Nyquist) drops to ~1e-13 when the RELION
  formula uses cryoDRGN's wavelength constants.
"""
from pathlib import Path

import numpy as np
import torch
import cryodrgn
from cryodrgn.ctf import compute_ctf

APIX = 1.3
KMAX = 1.0 / (2 * APIX)
M = 400
PARAMS = np.array([
    # dU,    dV,   angle, kV,  Cs,   Q,    phase shift (deg)
    [15000, 14000, 30, 300, 2.7, 0.1, 0],
    [25000, 20000, -60, 300, 2.7, 0.07, 0],
    [8000, 8000, 0, 200, 2.0, 0.1, 0],
    [12000, 10000, 135, 300, 0.01, 0.1, 90],
    [30000, 29000, 10, 120, 2.7, 0.15, 45],
], dtype=np.float64)


def make_freqs():
    rng = np.random.default_rng(0)
    r = KMAX * np.sqrt(rng.uniform(0.0, 1.0, M))  # uniform in the disc
    phi = rng.uniform(0.0, 2 * np.pi, M)
    rand = np.stack([r * np.cos(phi), r * np.sin(phi)], axis=1)
    axes = np.array([[0, 0],
                     [KMAX, 0], [-KMAX, 0], [0, KMAX], [0, -KMAX],
                     [KMAX / 2, 0], [-KMAX / 3, 0], [0, KMAX / 2], [0, -KMAX / 3]])
    return np.concatenate([rand, axes]).astype(np.float64)


def relion_ctf(freqs, dU, dV, ang, kv, cs, q, ps):
    """RELION-convention CTF, written from its published formula (for comparison)."""
    V = kv * 1e3
    lam = 12.2643247 / np.sqrt(V * (1 + V * 0.978466e-6))
    K1, K2 = np.pi * lam, np.pi / 2 * cs * 1e7 * lam**3
    K3, K5 = np.deg2rad(ps), np.arctan(q / np.sqrt(1 - q**2))
    kx, ky = freqs[:, 0], freqs[:, 1]
    s2 = kx**2 + ky**2
    theta = np.arctan2(ky, kx)
    deltaf = -((dU + dV) / 2 + (dU - dV) / 2 * np.cos(2 * (theta - np.deg2rad(ang))))
    return -np.sin(K1 * deltaf * s2 + K2 * s2**2 - K3 - K5)


def main():
    freqs = make_freqs()
    ft = torch.tensor(freqs, dtype=torch.float64)
    ctf = np.empty((len(PARAMS), len(freqs)))
    for i, p in enumerate(PARAMS):
        t = [torch.tensor(v, dtype=torch.float64) for v in p]
        c = compute_ctf(ft, *t[:6], phase_shift=t[6],
                        scalefactor=torch.tensor(1.0, dtype=torch.float64),
                        bfactor=None)
        ctf[i] = c.numpy()
        diff = np.abs(ctf[i] + relion_ctf(freqs, *p)).max()
        print(f"set {i}: max |cryoDRGN + RELION formula| = {diff:.3e}")
    note = np.array([f"cryodrgn {cryodrgn.__version__}, torch {torch.__version__}; "
                     "cryodrgn.ctf.compute_ctf(freqs, dfu, dfv, dfang, volt, cs, w, "
                     "phase_shift=, scalefactor=1, bfactor=None)"])
    out = Path(__file__).with_name("ctf_reference_cryodrgn.npz")
    np.savez(out, freqs=freqs, params=PARAMS, ctf=ctf, note=note)
    print(f"wrote {out}: freqs {freqs.shape}, ctf {ctf.shape}")


if __name__ == "__main__":
    main()
