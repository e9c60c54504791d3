"""Projections of density maps, in the convention of ``projection.project``.

The model is compared with a map through projections (Chen 2025): a map is
Fourier-cropped to a grid 1.5× finer than the comparison band needs (so
trilinear interpolation costs little accuracy: FRC ≥ 0.98 to Nyquist with the analytic
projection of the same atoms, tested), rotated with ``grid_sample``
and summed along z, then Fourier-cropped to the comparison box. A direction
set is fixed per map, so each map is projected once.
"""
import numpy as np
import torch
import torch.nn.functional as F

from ..fourier import crop_images, crop_map, image_ft
from ..geometry import random_rotations
from ..sampling import crop_box_for


def projection_directions(n, seed=0):
    """``n`` (n, 3, 3) float32 rotations, uniformly random (fixed by ``seed``)."""
    return torch.as_tensor(random_rotations(n, np.random.default_rng(seed)),
                           dtype=torch.float32)


def project_map(vol, apix, rotations, batch=4):
    """Real-space projections (B, D, D) of ``vol`` (D³ [z, y, x]) along RELION
    rotations A: image(x, y) = Σ_z V(Aᵀ (x, y, z)), voxel D // 2 at the origin.
    Runs on the device of ``rotations``."""
    vol = torch.as_tensor(vol, dtype=torch.float32, device=rotations.device)
    D = vol.shape[0]
    ax = (torch.arange(D, dtype=torch.float32, device=vol.device) - D // 2) * apix
    zz, yy, xx = torch.meshgrid(ax, ax, ax, indexing="ij")
    r = torch.stack([xx, yy, zz], -1).reshape(-1, 3)         # projection frame, Å
    out = []
    for s in range(0, len(rotations), batch):
        A = rotations[s:s + batch]
        p = torch.einsum("bji,nj->bni", A, r)                  # Aᵀ r: map frame
        g = (p / apix + D // 2) * (2.0 / (D - 1)) - 1.0        # align_corners=True
        g = g.reshape(len(A), D, D, D, 3)
        v = vol[None, None].expand(len(A), 1, D, D, D)
        sampled = F.grid_sample(v, g, mode="bilinear", padding_mode="zeros",
                                align_corners=True)
        out.append(sampled[:, 0].sum(1) * apix)
    return torch.cat(out)


class MapTarget:
    """Projection FTs of one map on the comparison grid (Nyquist = resolution)."""

    def __init__(self, vol, apix, resolution, rotations):
        """Projections run on the device of ``rotations``."""
        D = vol.shape[0]
        self.box = crop_box_for(D, apix, resolution)
        self.apix = apix * D / self.box
        fine = min(D, int(1.5 * self.box))
        fine += fine % 2
        fine_apix = apix * D / fine
        small = crop_map(torch.as_tensor(vol, dtype=torch.float32, device=rotations.device),
                         fine)
        imgs = project_map(small, fine_apix, rotations)
        self.ft = image_ft(crop_images(imgs, self.box))          # (B, box, box//2+1)
        self.rotations = rotations
