"""The Gaussian mixture model: parameters, file format, rendering, export.

A GMM is an array ``params`` of shape (N, 5) with columns
``x, y, z`` (centre in Å, relative to the box centre), ``A`` (peak density) and
``s`` (standard deviation in Å). The density is

    M(r) = Σ_j A_j exp(-|r - c_j|² / (2 s_j²)),

so a Gaussian's integrated mass is ``A (2π)^{3/2} s³``. Nothing depends on the
box size: the same file renders at any box and pixel size.

File format (``.npz``, numpy): ``params`` (N, 5) float32 as above, plus the
metadata ``apix`` (Å/px of the map it was fitted to), ``box`` (pixels) and
``resolution`` (Å, the resolution it is faithful to). Load with
:func:`Gmm.load`; any numpy user can read it without this package.
"""
from dataclasses import dataclass

import numpy as np
import torch

X, Y, Z, AMP, WIDTH = range(5)


@dataclass
class Gmm:
    params: np.ndarray          # (N, 5): x, y, z [Å], amplitude, width [Å]
    apix: float = 1.0
    box: int = 0
    resolution: float = 0.0

    def __post_init__(self):
        self.params = np.asarray(self.params, dtype=np.float32).reshape(-1, 5)

    def __len__(self):
        return len(self.params)

    @property
    def centers(self):
        return self.params[:, :3]

    @property
    def amplitudes(self):
        return self.params[:, AMP]

    @property
    def widths(self):
        return self.params[:, WIDTH]

    def save(self, path):
        """Write the documented .npz format (see module docstring)."""
        from .io import write_npz
        write_npz(path, params=self.params, apix=float(self.apix),
                  box=int(self.box), resolution=float(self.resolution))

    @classmethod
    def load(cls, path):
        with np.load(path) as f:
            if "params" not in f or f["params"].ndim != 2 or f["params"].shape[1] != 5:
                raise ValueError("%s is not a GMM file (needs an (N, 5) 'params' array)"
                                 % path)
            params = f["params"]
            if not np.all(np.isfinite(params)):
                raise ValueError("GMM file %s contains NaN or infinite values" % path)
            return cls(params, float(f["apix"]), int(f["box"]), float(f["resolution"]))

    def render(self, box, apix, device="cpu"):
        """Density sampled at the voxel centres of a ``box``³ map (numpy float32)."""
        with torch.no_grad():
            vol = render_volume(torch.as_tensor(self.params, device=device), box, apix)
        return vol.cpu().numpy()

    def to_structure(self, origin=None):
        """The centres as a gemmi pseudo-atom model (one atom per Gaussian).

        ``origin``: physical position (Å, xyz) of voxel (0, 0, 0) of the map
        the GMM describes (MRC header origin); default 0, as for a map whose
        corner is at the origin.

        Atoms are carbons in residues 'GMM'; B-factor = 8π²s² (the equivalent
        isotropic width) and occupancy = amplitude / max amplitude, so a model
        viewer can colour by either.
        """
        import gemmi
        st = gemmi.Structure()
        st.cell = gemmi.UnitCell(max(self.box, 1) * self.apix, max(self.box, 1) * self.apix,
                                 max(self.box, 1) * self.apix, 90, 90, 90)
        model = gemmi.Model("1")
        amax = float(np.abs(self.amplitudes).max()) if len(self) else 1.0
        shift = (self.box // 2) * self.apix + (np.zeros(3) if origin is None
                                               else np.asarray(origin, float))
        chain = None
        for i, (x, y, z, a, s) in enumerate(self.params.astype(float)):
            if i % 9999 == 0:  # keep residue numbers PDB-compatible
                if chain is not None:
                    model.add_chain(chain)
                chain = gemmi.Chain(_chain_name(i // 9999))
            res = gemmi.Residue()
            res.name = "GMM"
            res.seqid = gemmi.SeqId(i % 9999 + 1, " ")
            atom = gemmi.Atom()
            atom.name = "C"
            atom.element = gemmi.Element("C")
            atom.pos = gemmi.Position(x + shift[0], y + shift[1], z + shift[2])
            atom.b_iso = 8 * np.pi ** 2 * s * s
            atom.occ = max(0.0, a / amax)
            res.add_atom(atom)
            chain.add_residue(res)
        if chain is not None:
            model.add_chain(chain)
        st.add_model(model)
        st.setup_entities()
        return st

    def write_points(self, path, origin=None):
        """Write the centres as a pseudo-atom model (.pdb or .cif by extension)."""
        st = self.to_structure(origin)
        if str(path).endswith(".cif"):
            st.make_mmcif_document().write_file(str(path))
        else:
            st.write_pdb(str(path))


def _chain_name(i):
    letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
    return letters[i % len(letters)] + ("" if i < len(letters) else str(i // len(letters)))


def axis_coords(box, apix, device="cpu", dtype=torch.float32):
    """Å coordinates of the voxel centres along one axis; 0 at index box // 2."""
    return (torch.arange(box, device=device, dtype=dtype) - box // 2) * apix


def render_volume(params, box, apix, chunk=512):
    """Differentiable real-space rendering of (N, 5) torch params to (box,)*3.

    The Gaussian is separable, so the map is a sum of N rank-one tensors:
    ``V[z, y, x] = Σ_j A_j gz_j(z) gy_j(y) gx_j(x)``, computed as one matrix
    product per chunk of Gaussians, cost O(N·D³) flops but O(chunk·D²) memory.
    """
    coords = axis_coords(box, apix, params.device, params.dtype)
    vol = torch.zeros(box, box * box, device=params.device, dtype=params.dtype)
    for start in range(0, params.shape[0], chunk):
        p = params[start:start + chunk]
        inv2s2 = 0.5 / p[:, WIDTH:WIDTH + 1] ** 2
        g = [torch.exp(-(coords[None, :] - p[:, k:k + 1]) ** 2 * inv2s2) for k in range(3)]
        gyx = (g[Y][:, :, None] * g[X][:, None, :]).reshape(p.shape[0], -1)
        vol = vol + (g[Z] * p[:, AMP:AMP + 1]).T @ gyx
    return vol.reshape(box, box, box)


def render_volume_fourier(params, box, apix, chunk=512):
    """The GMM band-limited to Nyquist: its analytic 3D FT sampled on the box grid.

    Unlike :func:`render_volume` (density sampled at voxel centres, which
    aliases Gaussians narrower than ~1.5 px) this is exactly the map that the
    analytic projections in ``projection.py`` are slices of, so it is the fair
    ground truth for reconstructions of simulated particles.
    """
    f = torch.fft.fftfreq(box, d=apix, device=params.device, dtype=params.dtype)
    fh = torch.fft.rfftfreq(box, d=apix, device=params.device, dtype=params.dtype)
    H = fh.shape[0]
    acc = torch.zeros(box, box * H, device=params.device, dtype=torch.complex64
                      if params.dtype == torch.float32 else torch.complex128)
    for start in range(0, params.shape[0], chunk):
        p = params[start:start + chunk]
        s2 = -2 * np.pi ** 2 * p[:, WIDTH:WIDTH + 1] ** 2
        fac = [torch.exp(s2 * k ** 2 - 2j * np.pi * p[:, a:a + 1] * k)
               for a, k in ((X, fh), (Y, f), (Z, f))]
        w = (p[:, AMP] * (2 * np.pi) ** 1.5 * p[:, WIDTH] ** 3 / apix ** 3)[:, None]
        gyx = (fac[1][:, :, None] * fac[0][:, None, :]).reshape(p.shape[0], -1)
        acc = acc + (fac[2] * w).T @ gyx
    ft = acc.reshape(box, box, H)
    return torch.fft.fftshift(torch.fft.irfftn(ft, s=(box, box, box)))


def gaussians_in_mask(mask_path, centers):
    """Boolean (N,): Gaussian centres (Å, origin at voxel D // 2) inside a mask
    (> 0.5); centres outside the mask's box are outside."""
    from .io import read_map
    m, mapix = read_map(mask_path)
    idx = np.round(np.asarray(centers) / mapix + m.shape[0] // 2).astype(int)
    inside = np.all((idx >= 0) & (idx < np.array(m.shape[::-1])), axis=1)
    idx = np.clip(idx, 0, np.array(m.shape[::-1]) - 1)
    return inside & (m[idx[:, 2], idx[:, 1], idx[:, 0]] > 0.5)
