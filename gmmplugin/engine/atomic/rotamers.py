"""Side-chain rotamer prior from the Dunbrack 2010 rotamer library.

``data/rotamers.npz`` is derived from the backbone-dependent library of
Shapovalov & Dunbrack (Structure 2011, CC BY 4.0) by
``scripts/make_rotamer_library.py``: per residue type, each rotamer's
probability, mean χ and spread, averaged over the φ/ψ regions proteins visit
(backbone-independent, because φ/ψ move during refinement).

The energy of a residue is a von Mises mixture over its rotamers,
``E = 2 (c − log Σ_r p_r Π_i exp(κ_ri (cos(n_i (χ_i − μ_ri)) − 1)))``,
κ = 1/(n σ)², n = 2 for the 180°-periodic terminal χ of ASP, GLU, PHE and TYR.
The factor 2 puts it on the z² scale of the other terms (a single Gaussian
would give z²), and c makes the best point of the residue type 0. So a side
chain between rotamers is pushed to the nearest one, and one in a rare
rotamer pays 2 log(p_best / p) unless the map holds it there.
"""
import os

import numpy as np
import torch

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "rotamers.npz")
MIN_SIGMA = np.radians(5.0)
# χ angle definitions (IUPAC-IUB 1970; the library's own)
CHI_ATOMS = {
    "ARG": ("N CA CB CG", "CA CB CG CD", "CB CG CD NE", "CG CD NE CZ"),
    "ASN": ("N CA CB CG", "CA CB CG OD1"),
    "ASP": ("N CA CB CG", "CA CB CG OD1"),
    "CYS": ("N CA CB SG",),
    "GLN": ("N CA CB CG", "CA CB CG CD", "CB CG CD OE1"),
    "GLU": ("N CA CB CG", "CA CB CG CD", "CB CG CD OE1"),
    "HIS": ("N CA CB CG", "CA CB CG ND1"),
    "ILE": ("N CA CB CG1", "CA CB CG1 CD1"),
    "LEU": ("N CA CB CG", "CA CB CG CD1"),
    "LYS": ("N CA CB CG", "CA CB CG CD", "CB CG CD CE", "CG CD CE NZ"),
    "MET": ("N CA CB CG", "CA CB CG SD", "CB CG SD CE"),
    "PHE": ("N CA CB CG", "CA CB CG CD1"),
    "PRO": ("N CA CB CG", "CA CB CG CD", "CB CG CD N"),
    "SER": ("N CA CB OG",),
    "THR": ("N CA CB OG1",),
    "TRP": ("N CA CB CG", "CA CB CG CD1"),
    "TYR": ("N CA CB CG", "CA CB CG CD1"),
    "VAL": ("N CA CB CG1",),
}


def load_library(path=DATA):
    """{residue: (prob (R,), mean (R, nchi) rad, sigma (R, nchi) rad, period (nchi,))}."""
    if not os.path.exists(path):
        raise FileNotFoundError("rotamer library missing: %s (run "
                                "scripts/make_rotamer_library.py)" % path)
    d = np.load(path)
    return {str(r): (d[r + "_prob"], d[r + "_mean"], d[r + "_sigma"], d[r + "_period"])
            for r in d["residues"]}


def chi_quadruples(residues):
    """χ atom quadruples of the residues the library covers.

    residues: iterable of (residue index, residue name, {atom name: flat index}).
    Returns (quads (q, 4), row (q,) into the covered residues, slot (q,) χ number,
    names (m,), residue indices (m,)); a residue missing any χ atom is skipped.
    """
    quads, row, slot, names, index = [], [], [], [], []
    for k, name, atoms in residues:
        chis = CHI_ATOMS.get(name)
        if chis is None:
            continue
        got = [[atoms.get(a) for a in c.split()] for c in chis]
        if any(a is None for q in got for a in q):
            continue
        for s, q in enumerate(got):
            quads.append(q)
            row.append(len(names))
            slot.append(s)
        names.append(name)
        index.append(k)
    return (np.array(quads, int).reshape(-1, 4), np.array(row, int), np.array(slot, int),
            np.array(names, dtype=object), np.array(index, int))


class RotamerEnergy:
    """Batched mixture energy; call with χ (B, m, 4) rad (unused slots ignored)."""

    def __init__(self, names, device="cpu", library=None):
        lib = library or load_library()
        types = sorted(set(names))
        R = max(len(lib[t][0]) for t in types)
        T = len(types)
        logp = np.full((T, R), -1e4)
        mean = np.zeros((T, R, 4))
        kappa = np.zeros((T, R, 4))
        period = np.ones((T, 4))
        best = np.zeros(T)
        for i, t in enumerate(types):
            p, mu, sig, per = lib[t]
            r, c = mu.shape
            logp[i, :r] = np.log(p)
            mean[i, :r, :c] = mu
            kappa[i, :r, :c] = 1.0 / (per * np.maximum(sig, MIN_SIGMA)) ** 2
            period[i, :c] = per
            # normaliser: the highest mixture value, found at the rotamer centres
            d = per * (mu[:, None, :] - mu[None, :, :])            # (at, of, chi)
            s = np.log(p)[None, :] + (kappa[i, :r, :c][None] * (np.cos(d) - 1)).sum(-1)
            best[i] = np.max(np.log(np.exp(s - s.max(1, keepdims=True)).sum(1))
                             + s.max(1))
        F = lambda a: torch.as_tensor(a, dtype=torch.float32, device=device)
        type_of = {t: i for i, t in enumerate(types)}
        self.kind = torch.as_tensor([type_of[n] for n in names], dtype=torch.long,
                                    device=device)
        self.logp, self.mean, self.kappa = F(logp)[self.kind], F(mean)[self.kind], \
            F(kappa)[self.kind]
        self.period, self.best = F(period)[self.kind], F(best)[self.kind]

    def __call__(self, chi):
        """(B, m) energies, ~0 at the most favoured rotamer of each residue type."""
        d = self.period[None, :, None, :] * (chi[:, :, None, :] - self.mean[None])
        s = self.logp[None] + (self.kappa[None] * (torch.cos(d) - 1)).sum(-1)
        return 2 * (self.best[None] - torch.logsumexp(s, dim=-1))
