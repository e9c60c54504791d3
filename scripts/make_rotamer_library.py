#!/usr/bin/env python
"""Build gmmplugin/engine/atomic/data/rotamers.npz from the Dunbrack 2010
backbone-dependent rotamer library (Shapovalov & Dunbrack, Structure 2011,
CC BY 4.0), as shipped in the PyPI source distribution of ``chilife``.

Why a derived, backbone-independent table: refinement needs a smooth rotamer
prior per residue, and a residue's φ/ψ moves during refinement. Each rotamer's
probability, mean χ and spread are averaged over the φ/ψ bins weighted by how
often proteins visit them (the Lovell et al. 2003 Ramachandran tables of
``pyrama``: proline table for PRO, general otherwise):
    P(r) = Σ_b w_b P(r|b),  χ̄ = circular mean of χ_b over w_b P(r|b),
    σ² = Σ w_b P(r|b) (σ_b² + (χ_b − χ̄)²) / P(r).
Terminal χ of symmetric groups (ASP χ2, GLU χ3, PHE χ2, TYR χ2) are 180°
periodic: averaged on 2χ, flagged ``period`` 2.

Usage: python scripts/make_rotamer_library.py [--lib ALL.bbdep.rotamers.lib]
(without --lib it runs ``pip download chilife==1.2.5 --no-deps`` and reads the
file from the archive).
"""
import argparse
import io
import os
import subprocess
import sys
import tarfile
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "gmmplugin", "engine", "atomic", "data", "rotamers.npz")
CHILIFE = "chilife==1.2.5"
MEMBER = "chilife-1.2.5/src/chilife/data/rotamer_libraries/ALL.bbdep.rotamers.lib"
RESIDUES = ("ARG", "ASN", "ASP", "CYS", "GLN", "GLU", "HIS", "ILE", "LEU", "LYS", "MET",
            "PHE", "PRO", "SER", "THR", "TRP", "TYR", "VAL")
SYMMETRIC_LAST = {"ASP": 1, "GLU": 2, "PHE": 1, "TYR": 1}   # index of the 180°-periodic χ
MIN_PROBABILITY = 1e-3


def library_text(path):
    if path:
        return open(path).read()
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", CHILIFE, "--no-deps",
                        "--no-binary", ":all:", "-q", "-d", tmp], check=True)
        sdist = [f for f in os.listdir(tmp) if f.endswith(".tar.gz")][0]
        with tarfile.open(os.path.join(tmp, sdist)) as tar:
            return tar.extractfile(MEMBER).read().decode()


def ramachandran_weights(kind):
    """(36, 36) visit frequency of the 10° φ/ψ bins centred on -180..170."""
    sys.path.insert(0, os.path.join(HERE, ".."))
    from gmmplugin.engine.atomic.ramachandran import table
    t = table(kind)                                          # 2° bins from -180
    # the library's bin at φ is the centre of [φ-5, φ+5): gather the 2° cells
    w = np.zeros((36, 36))
    centres = -179.0 + 2.0 * np.arange(180)
    bi = (np.floor((centres + 185.0) / 10.0).astype(int)) % 36
    np.add.at(w, (bi[:, None], bi[None, :]), t)
    return w / w.sum()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--lib", default="")
    ap.add_argument("--out", default=OUT)
    a = ap.parse_args()
    rows = [line.split() for line in io.StringIO(library_text(a.lib))
            if line[:1] != "#" and line.split() and line.split()[0] in RESIDUES]
    weights = {"General": ramachandran_weights("General"), "PRO": ramachandran_weights("PRO")}
    out = {"residues": np.array(RESIDUES)}
    for res in RESIDUES:
        r = [x for x in rows if x[0] == res]
        phi = np.array([float(x[1]) for x in r])
        psi = np.array([float(x[2]) for x in r])
        keep = (phi < 180) & (psi < 180)                     # ±180 are the same bin
        rot = np.array([[int(v) for v in x[4:8]] for x in r])[keep]
        prob = np.array([float(x[8]) for x in r])[keep]
        chi = np.radians(np.array([[float(v) for v in x[9:13]] for x in r]))[keep]
        sig = np.radians(np.array([[float(v) for v in x[13:17]] for x in r]))[keep]
        w = weights["PRO" if res == "PRO" else "General"]
        wb = w[((phi[keep] + 180) // 10).astype(int), ((psi[keep] + 180) // 10).astype(int)]
        nchi = int(np.max(np.nonzero(np.any(sig > 0, axis=0))[0]) + 1)
        period = np.ones(4)
        if res in SYMMETRIC_LAST:
            period[SYMMETRIC_LAST[res]] = 2
        keys, inverse = np.unique(rot, axis=0, return_inverse=True)
        inverse = inverse.ravel()
        P = np.zeros(len(keys))
        mean = np.zeros((len(keys), 4))
        spread = np.zeros((len(keys), 4))
        for k in range(len(keys)):
            sel = inverse == k
            m = wb[sel] * prob[sel]
            P[k] = m.sum()
            if P[k] <= 0:
                continue
            z = (m[:, None] * np.exp(1j * period * chi[sel])).sum(0)
            mean[k] = np.angle(z) / period
            d = np.angle(np.exp(1j * period * (chi[sel] - mean[k]))) / period
            spread[k] = np.sqrt((m[:, None] * (sig[sel] ** 2 + d ** 2)).sum(0) / P[k])
        keep_r = P >= MIN_PROBABILITY
        P = P[keep_r] / P[keep_r].sum()
        order = np.argsort(-P)
        out[res + "_prob"] = P[order]
        out[res + "_mean"] = mean[keep_r][order][:, :nchi]
        out[res + "_sigma"] = spread[keep_r][order][:, :nchi]
        out[res + "_period"] = period[:nchi]
        print("%s: %d chi, %d rotamers (p >= %g), top %.2f at chi %s" % (
            res, nchi, keep_r.sum(), MIN_PROBABILITY, P[order][0],
            np.round(np.degrees(mean[keep_r][order][0, :nchi])).tolist()))
    np.savez_compressed(a.out, **out)
    print("wrote", os.path.abspath(a.out))


if __name__ == "__main__":
    main()
