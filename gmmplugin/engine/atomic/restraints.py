"""Differentiable stereochemistry (torch) over a :class:`Topology`.

Every term is a mean over its restraints of a squared z-score, so ~1 means
"as good as the library's sigma" and the terms add on one scale:
bonds and angles (with a steeper wall beyond 4.5σ so outliers cannot hide in
the mean), peptide ω, side-chain rotamers (the Dunbrack library's mixture,
see rotamers.py; χ of residues it lacks keep the monomer library's periodic
staggered prior, term "chi"), planes (RMS distance to the least-squares plane),
chiral volumes, Ramachandran (smooth log-preference fit, see ramachandran.py)
and clashes. Clashes are probe-like, with riding hydrogens: the hydrogens
gemmi places from the library are rebuilt at every step from their parent and
two neighbouring heavy atoms (a fixed local frame), and any pair of atoms
(heavy or H) whose van der Waals spheres overlap by more than
CLASH_ALLOWANCE − CLASH_MARGIN (probe counts 0.4 Å) is penalised; a polar H and an N/O acceptor
may overlap by HBOND_OVERLAP, heavy N/O pairs come to HBOND_DISTANCE, heavy
1-4 pairs ONE_FOUR_RELIEF closer; pairs whose heavy anchors (an H's anchor is
its parent) are 1-2 or 1-3 bonded, or the same atom, are excluded; the
neighbour list is refreshed every few steps. Without hydrogen information
(unknown residues) heavy atoms grow by H_RADIUS_GAIN per library hydrogen.
"""
import numpy as np
import torch

from .ramachandran import RamachandranEnergy
from .rotamers import RotamerEnergy

OUTLIER_Z = 4.5
CLASH_ALLOWANCE = 0.4
CLASH_MARGIN = 0.15   # the penalty starts this far before probe's 0.4 Å overlap:
                      # a wall exactly at the limit lets the map push pairs just
                      # past it, where probe counts them as clashes
H_RADIUS_GAIN = 0.1
HBOND_DISTANCE = 2.6
ONE_FOUR_RELIEF = 0.5
HBOND_OVERLAP = 0.8
# probe's van der Waals radii (Å); other elements use gemmi's
PROBE_RADII = {1: 1.17, 6: 1.75, 7: 1.55, 8: 1.40, 16: 1.80}
POLAR_H_RADIUS = 1.0
CLASH_SIGMA = 0.1
CLASH_CUTOFF = 4.0


def _z2(z):
    """z² plus a steep wall beyond OUTLIER_Z."""
    over = torch.relu(z.abs() - OUTLIER_Z)
    return z ** 2 + 10.0 * over ** 2


def dihedral(p0, p1, p2, p3):
    """Dihedral angles (rad) of point quadruples, (..., 3) each."""
    b0, b1, b2 = p0 - p1, p2 - p1, p3 - p2
    b1n = b1 / b1.norm(dim=-1, keepdim=True).clamp_min(1e-8)
    v = b0 - (b0 * b1n).sum(-1, keepdim=True) * b1n
    w = b2 - (b2 * b1n).sum(-1, keepdim=True) * b1n
    x = (v * w).sum(-1)
    y = (torch.cross(b1n, v, dim=-1) * w).sum(-1)
    return torch.atan2(y, x)


def bond_angle(p0, p1, p2):
    u, v = p0 - p1, p2 - p1
    return torch.atan2(torch.cross(u, v, dim=-1).norm(dim=-1), (u * v).sum(-1))


def wrap(a):
    return torch.remainder(a + np.pi, 2 * np.pi) - np.pi


class Geometry:
    """Geometry energy terms of one topology; call with coordinates (B, n, 3)."""

    def __init__(self, topology, device="cpu"):
        t, dev = topology, torch.device(device)
        self.n = len(t)
        L = lambda a: torch.as_tensor(a, dtype=torch.long, device=dev)
        F = lambda a: torch.as_tensor(a, dtype=torch.float32, device=dev)
        self.bonds, self.bond_ideal, self.bond_esd = L(t.bonds), F(t.bond_ideal), F(t.bond_esd)
        self.angles, self.angle_ideal, self.angle_esd = L(t.angles), F(t.angle_ideal), F(t.angle_esd)
        self.tors, self.tor_ideal, self.tor_esd = L(t.torsions), F(t.torsion_ideal), F(t.torsion_esd)
        self.tor_period = F(t.torsion_period)
        self.omega = torch.as_tensor(t.torsion_is_omega, device=dev)
        covered = (t.torsion_in_rotamer_library if t.torsion_in_rotamer_library is not None
                   else np.zeros(len(t.torsion_is_omega), bool))
        self.other_chi = torch.as_tensor(~t.torsion_is_omega & ~covered, device=dev)
        self.rotamer_energy = None
        if t.rotamer_quads is not None and len(t.rotamer_quads):
            self.rot_quads = L(t.rotamer_quads)
            self.rot_flat = L(4 * t.rotamer_row + t.rotamer_slot)
            self.rot_count = len(t.rotamer_names)
            self.rotamer_energy = RotamerEnergy(list(t.rotamer_names), dev)
        self.chirals, self.chiral_ideal = L(t.chirals), F(t.chiral_ideal)
        self.rama, self.rama_kind = L(t.rama), L(t.rama_kind)
        self.rama_energy = RamachandranEnergy(dev) if len(t.rama) else None
        # planes grouped by size so each group is one batched eigen-problem
        self.planes = {}
        for idx, esd in t.planes:
            self.planes.setdefault(len(idx), ([], []))
            self.planes[len(idx)][0].append(idx)
            self.planes[len(idx)][1].append(esd)
        self.planes = [(L(np.stack(i)), F(e)) for i, e in self.planes.values()]
        self.excluded = torch.as_tensor(t.excluded, device=dev)
        self.one_four = torch.as_tensor(t.one_four, device=dev)
        polar = np.isin(t.atomic_number, (7, 8))
        hyd = t.hydrogens if t.hydrogens is not None else np.zeros(len(t))
        self.riding = None
        if t.riding is not None:
            r = t.riding
            self.riding = (L(r["parent"]), L(r["ref_a"]), L(r["ref_b"]), F(r["coef"]))
            heavy_r = np.array([PROBE_RADII.get(int(zn), v)
                                for zn, v in zip(t.atomic_number, t.vdw)])
            h_r = np.where(r["polar"], POLAR_H_RADIUS, PROBE_RADII[1])
            vdw = np.concatenate([heavy_r, h_r])
            polar = np.concatenate([polar, np.zeros(len(h_r), bool)])
            self.polar_h = torch.as_tensor(np.concatenate([np.zeros(len(t), bool), r["polar"]]),
                                           device=dev)
            self.anchor = L(np.concatenate([np.arange(len(t)), r["parent"]]))
            clash_atoms = np.concatenate([np.flatnonzero(t.restrained),
                                          len(t) + np.arange(len(h_r))])
        else:
            vdw = t.vdw + H_RADIUS_GAIN * hyd
            self.polar_h = torch.zeros(len(t), dtype=torch.bool, device=dev)
            self.anchor = L(np.arange(len(t)))
            clash_atoms = np.flatnonzero(t.restrained)
        self.vdw = F(vdw)
        self.polar = torch.as_tensor(polar, device=dev)
        # waters and unrestrained atoms do not take part in clashes (rigid, not refined)
        self.clash_atoms = torch.as_tensor(clash_atoms, device=dev)
        self.pairs = None

    def with_hydrogens(self, x):
        """Heavy coordinates (..., n, 3) followed by the riding hydrogens."""
        if self.riding is None:
            return x
        parent, a, b, coef = self.riding
        P, A, B = x[..., parent, :], x[..., a, :], x[..., b, :]
        e1 = A - P
        e1 = e1 / e1.norm(dim=-1, keepdim=True).clamp_min(1e-6)
        v = (B - P) - ((B - P) * e1).sum(-1, keepdim=True) * e1
        e2 = v / v.norm(dim=-1, keepdim=True).clamp_min(1e-6)
        e3 = torch.cross(e1, e2, dim=-1)
        h = P + coef[:, 0:1] * e1 + coef[:, 1:2] * e2 + coef[:, 2:3] * e3
        return torch.cat([x, h], dim=-2)

    # -- neighbour list -------------------------------------------------------
    def update_neighbours(self, xyz):
        """Non-bonded pairs closer than CLASH_CUTOFF in ``xyz`` (n, 3), hydrogens
        included, with their clash distance limits."""
        with torch.no_grad():
            x = self.with_hydrogens(xyz)[self.clash_atoms]
            pairs = []
            chunk = 2048
            for s in range(0, len(x), chunk):
                d = torch.cdist(x[s:s + chunk], x)
                i, j = torch.nonzero(d < CLASH_CUTOFF, as_tuple=True)
                i = i + s
                keep = i < j
                pairs.append(torch.stack([self.clash_atoms[i[keep]], self.clash_atoms[j[keep]]], 1))
            p = torch.cat(pairs) if pairs else torch.zeros(0, 2, dtype=torch.long,
                                                              device=self.clash_atoms.device)
            a0, a1 = self.anchor[p[:, 0]], self.anchor[p[:, 1]]
            lo, hi = torch.minimum(a0, a1), torch.maximum(a0, a1)
            key = lo * self.n + hi
            drop = (lo == hi) | torch.isin(key, self.excluded)
            p, key, lo, hi = p[~drop], key[~drop], lo[~drop], hi[~drop]
            heavy = (p[:, 0] < self.n) & (p[:, 1] < self.n)
            fourth = heavy & torch.isin(key, self.one_four)
            limit = self.vdw[p[:, 0]] + self.vdw[p[:, 1]] - CLASH_ALLOWANCE + CLASH_MARGIN
            limit = torch.where(fourth, limit - ONE_FOUR_RELIEF, limit)
            hb = heavy & self.polar[p[:, 0]] & self.polar[p[:, 1]]
            limit = torch.where(hb, torch.clamp(limit, max=HBOND_DISTANCE), limit)
            acceptor = torch.cat([self.polar, torch.zeros(len(self.vdw) - len(self.polar),
                                                          dtype=torch.bool,
                                                          device=self.polar.device)])
            hbond_h = ((self.polar_h[p[:, 0]] & acceptor[p[:, 1]])
                       | (self.polar_h[p[:, 1]] & acceptor[p[:, 0]]))
            limit = torch.where(hbond_h, limit - (HBOND_OVERLAP - CLASH_ALLOWANCE), limit)
            self.pairs, self.pair_limit = p, limit

    # -- terms ----------------------------------------------------------------
    def terms(self, x):
        """Dict of mean squared z-scores for coordinates x (B, n, 3)."""
        out = {}
        b = self.bonds
        d = (x[:, b[:, 0]] - x[:, b[:, 1]]).norm(dim=-1)
        out["bond"] = _z2((d - self.bond_ideal) / self.bond_esd).mean()
        a = self.angles
        th = bond_angle(x[:, a[:, 0]], x[:, a[:, 1]], x[:, a[:, 2]])
        out["angle"] = _z2((th - self.angle_ideal) / self.angle_esd).mean()
        if len(self.tors):
            t = self.tors
            chi = dihedral(*(x[:, t[:, k]] for k in range(4)))
            dev = wrap(self.tor_period * (chi - self.tor_ideal)) / self.tor_period
            z2 = (dev / self.tor_esd) ** 2
            out["omega"] = z2[:, self.omega].mean() if self.omega.any() else x.new_zeros(())
            out["chi"] = (z2[:, self.other_chi].mean() if self.other_chi.any()
                          else x.new_zeros(()))
        if self.rotamer_energy is not None:
            q = self.rot_quads
            ang = dihedral(*(x[:, q[:, k]] for k in range(4)))           # (B, q)
            chi = x.new_zeros(x.shape[0], self.rot_count * 4).index_copy(
                1, self.rot_flat, ang).view(x.shape[0], self.rot_count, 4)
            # per χ angle, like the other torsion terms (a residue's energy sums its χ)
            out["rotamer"] = self.rotamer_energy(chi).sum(-1).mean() / len(q)
        plane_terms = []
        for idx, esd in self.planes:
            p = x[:, idx]                                   # (B, P, k, 3)
            c = p - p.mean(-2, keepdim=True)
            cov = c.transpose(-1, -2) @ c
            normal = torch.linalg.eigh(cov.double())[1][..., 0].float()   # smallest
            dist = (c * normal[..., None, :]).sum(-1)
            plane_terms.append(((dist / esd[:, None]) ** 2).flatten())
        if plane_terms:
            out["plane"] = torch.cat(plane_terms).mean()
        if len(self.chirals):
            c = self.chirals
            ctr = x[:, c[:, 0]]
            vol = ((x[:, c[:, 1]] - ctr) * torch.cross(x[:, c[:, 2]] - ctr,
                                                       x[:, c[:, 3]] - ctr, dim=-1)).sum(-1)
            out["chiral"] = _z2((vol - self.chiral_ideal) / 0.2).mean()
        if self.rama_energy is not None:
            r = self.rama
            phi = dihedral(*(x[:, r[:, k]] for k in range(4)))
            psi = dihedral(*(x[:, r[:, k]] for k in range(1, 5)))
            B = x.shape[0]
            e = self.rama_energy(phi.flatten(), psi.flatten(),
                                 self.rama_kind.repeat(B))
            out["rama"] = e.mean()
        if self.pairs is not None and len(self.pairs):
            p = self.pairs
            xh = self.with_hydrogens(x)
            d = (xh[:, p[:, 0]] - xh[:, p[:, 1]]).norm(dim=-1)
            over = torch.relu(self.pair_limit - d) / CLASH_SIGMA
            out["clash"] = (over ** 2).sum(-1).mean() / max(1, len(self.clash_atoms)) * 100
        return out
