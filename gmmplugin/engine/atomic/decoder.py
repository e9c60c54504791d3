"""The model decoder of atomic refinement: a latent coordinate -> atom positions.

Moves compose from coarse to fine: rigid moves of whole chains and of k-means
patches of residues, rigid moves of each residue, and per-atom shifts (only
for atoms the monomer library describes). Each level has its own small
network, so a stage can be trained while the finer ones stay at zero.
"""
import numpy as np
import torch
from torch import nn


def _head(latent_dim, hidden, out):
    last = nn.Linear(hidden, out)
    nn.init.zeros_(last.weight)
    nn.init.zeros_(last.bias)
    return nn.Sequential(nn.Linear(latent_dim, hidden), nn.ReLU(),
                         nn.Linear(hidden, hidden), nn.ReLU(), last)


def rotation_matrices(v):
    """Axis-angle vectors (..., 3) -> rotation matrices (..., 3, 3)."""
    zero = torch.zeros_like(v[..., 0])
    k = torch.stack([zero, -v[..., 2], v[..., 1], v[..., 2], zero, -v[..., 0],
                     -v[..., 1], v[..., 0], zero], -1).reshape(v.shape[:-1] + (3, 3))
    return torch.linalg.matrix_exp(k)


class ModelDecoder(nn.Module):
    """latent (B, L) -> atom coordinates (B, n, 3) through patch, residue and
    atom moves of the starting model."""

    SCALES = {"chain": (0.1, 4.0), "patch": (0.1, 2.0), "residue": (0.05, 0.5),
              "atom": (None, 0.2)}

    def __init__(self, xyz, residue, anchors, patch_of_residue, chain_of_residue, movable,
                 latent_dim, hidden):
        super().__init__()
        n_res, n_patch = len(anchors), int(patch_of_residue.max()) + 1
        n_chain = int(chain_of_residue.max()) + 1
        f = lambda a: torch.as_tensor(a, dtype=torch.float32)
        self.register_buffer("xyz", f(xyz))
        self.register_buffer("residue", torch.as_tensor(residue, dtype=torch.long))
        self.register_buffer("anchor", f(anchors))
        patch = torch.as_tensor(patch_of_residue, dtype=torch.long)
        self.register_buffer("patch_of_res", patch)
        centre = torch.zeros(n_patch, 3).index_add_(0, patch, f(anchors))
        count = torch.zeros(n_patch).index_add_(0, patch, torch.ones(n_res))
        self.register_buffer("patch_centre", centre / count.clamp_min(1)[:, None])
        chain = torch.as_tensor(chain_of_residue, dtype=torch.long)
        self.register_buffer("chain_of_res", chain)
        centre = torch.zeros(n_chain, 3).index_add_(0, chain, f(anchors))
        count = torch.zeros(n_chain).index_add_(0, chain, torch.ones(n_res))
        self.register_buffer("chain_centre", centre / count.clamp_min(1)[:, None])
        self.register_buffer("movable", f(movable)[:, None])
        self.heads = nn.ModuleDict({
            "chain": _head(latent_dim, hidden, n_chain * 6),
            "patch": _head(latent_dim, hidden, n_patch * 6),
            "residue": _head(latent_dim, hidden, n_res * 6),
            "atom": _head(latent_dim, hidden, len(xyz) * 3)})
        self.active = set()

    def forward(self, z):
        B = z.shape[0]
        x = self.xyz.expand(B, -1, -1)
        if "atom" in self.active:
            x = x + self.heads["atom"](z).view(B, -1, 3) * self.SCALES["atom"][1] * self.movable
        for name, centres, index in (("residue", self.anchor, self.residue),
                                     ("patch", self.patch_centre,
                                      self.patch_of_res[self.residue]),
                                     ("chain", self.chain_centre,
                                      self.chain_of_res[self.residue])):
            if name not in self.active:
                continue
            rs, ts = self.SCALES[name]
            p = self.heads[name](z).view(B, -1, 6)
            R = rotation_matrices(p[..., :3] * rs)[:, index]        # (B, n, 3, 3)
            c = centres[index]
            x = torch.einsum("bnij,bnj->bni", R, x - c) + c + p[:, index, 3:] * ts
        return x


def assign_patches(topology, n_patches, seed=0):
    """k-means of the non-water residues' anchors; waters join the nearest."""
    from sklearn.cluster import KMeans
    anchors = topology.residue_anchor
    water_res = np.zeros(len(anchors), bool)
    water_res[topology.residue[topology.water]] = True
    solid = np.flatnonzero(~water_res)
    k = max(1, min(n_patches, len(solid)))
    km = KMeans(n_clusters=k, n_init=1, random_state=seed).fit(anchors[solid])
    labels = km.predict(anchors)
    return labels
