"""Ground-truth particle simulator.

From an atomic model (one Gaussian per heavy atom, see ``atoms.py``) or a GMM,
generate particles with uniform random orientations, Gaussian random shifts,
astigmatic CTFs (RELION convention) and white noise at a chosen SNR, with
optional heterogeneity:

* conformational: a selection (chains "D,E" or a range "A:10-50") moves as a
  rigid body with a per-particle conformation value t ∈ [0, 1] (uniform):
  ``rotate`` (angle t·amount° about an axis through a pivot), ``translate``
  (t·amount Å along a direction) or ``cyclic`` (a closed loop of radius
  amount Å: t and t+1 are the same state); with ``states`` ((t, fraction),
  ...) that fraction of the particles sits near each t (Gaussian of width
  ``state_width``, within [0, 1]) and the rest spreads uniformly between:
  populated states with a continuous motion between them;
* compositional: another selection is present with probability
  ``present_fraction`` (label 1) or absent (label 0);
* symmetric: with ``symmetry`` Cn/Dn, the ``subunit`` selection is copied
  by the group (off the axes, ``subunit_radius`` Å out) and every copy
  moves with its own conformation value (``conformation`` is then (n, G),
  copy g being the subunit at R_g · subunit 0).

SNR is var(clean CTF-modulated image) / var(noise), both over the full box,
the signal variance averaged over the first 256 particles. Images are
computed analytically in Fourier space (no interpolation), so they are exact
projections of the ground-truth density.

Outputs in ``out_dir``: ``particles.star`` (RELION 3.1), ``stacks/*.mrcs``,
``ground_truth.npz`` (ids, conformation, composition, rotations, shifts, ctf,
plus the motion definition) and ``maps/*.mrc`` (ground-truth maps: the
consensus state for a homogeneous set; states at t = 0, .25, .5, .75, 1 and
with/without the compositional part otherwise). Deterministic for a seed.
"""
from dataclasses import dataclass
import json
import os

import mrcfile
import numpy as np
import torch

from .atoms import atoms_to_params, read_atoms, select
from .ctf import compute_ctf
from .fourier import freq_grid_2d, image_ift
from .geometry import axis_angle_matrix, random_rotations
from .gmm import Gmm, render_volume_fourier
from .particles import Particles
from .projection import project
from .starfile import write_star


@dataclass
class Heterogeneity:
    move: str = ""            # selection that moves ("" = none)
    motion: str = "rotate"    # rotate | translate | cyclic
    amount: float = 30.0      # degrees (rotate) or Å (translate, cyclic)
    axis: tuple = None        # rotation axis / translation direction; None = automatic
    remove: str = ""          # selection present only in a fraction of particles
    present_fraction: float = 0.5
    symmetry: str = "c1"      # Cn / Dn: copies of ``subunit`` moving independently
    subunit: str = ""         # selection copied by the symmetry ("" = the whole model)
    subunit_radius: float = 0.0   # Å from the axis; 0 = automatic (copies barely touch)
    states: tuple = ()        # ((t, fraction), ...): populated conformations (see above)
    state_width: float = 0.06


@dataclass
class SimulationSettings:
    n_particles: int = 1000
    box: int = 64
    apix: float = 1.5
    snr: float = 0.1           # <= 0 or inf: no noise
    defocus_min: float = 5000.0
    defocus_max: float = 15000.0
    astigmatism: float = 1000.0   # max |dU - dV| (Å)
    voltage: float = 300.0
    cs: float = 2.7
    amp_contrast: float = 0.1
    shift_sigma: float = 3.0      # Å, per axis
    atom_sigma: float = 1.0       # Å, width of each atom's Gaussian
    per_stack: int = 1000
    window_pad: int = 2           # simulate on a box this many times larger, then
                                  # cut the centre: CTF-delocalised signal leaves the
                                  # box as it does from a micrograph (1 = periodic)
    seed: int = 0


class Model:
    """Atoms (or Gaussians) with the masks and geometry of the heterogeneity."""

    def __init__(self, source, settings, het):
        if str(source).endswith(".npz"):
            gmm = Gmm.load(source)
            self.params = gmm.params.astype(np.float64)
            self.chains = np.array(["A"] * len(gmm))
            self.resnum = np.arange(1, len(gmm) + 1)
        else:
            xyz, z, self.chains, self.resnum = read_atoms(source)
            if het.subunit:
                keep = select(self.chains, self.resnum, het.subunit)
                xyz, z, self.chains, self.resnum = (xyz[keep], z[keep], self.chains[keep],
                                                    self.resnum[keep])
            xyz = xyz - np.average(xyz, axis=0, weights=z)
            self.params = atoms_to_params(xyz, z, settings.atom_sigma).astype(np.float64)
        self.het = het
        n = len(self.params)
        self.moving = select(self.chains, self.resnum, het.move) if het.move else np.zeros(n, bool)
        self.removable = (select(self.chains, self.resnum, het.remove) if het.remove
                          else np.zeros(n, bool))
        self._setup_motion()

    def _setup_motion(self):
        h, xyz = self.het, self.params[:, :3]
        if not self.moving.any():
            self.pivot = self.direction = None
            return
        moving, rest = xyz[self.moving], xyz[~self.moving]
        c_move = moving.mean(0)
        c_rest = rest.mean(0) if len(rest) else np.zeros(3)
        line = c_move - c_rest
        line /= max(np.linalg.norm(line), 1e-9)
        if h.axis is not None:
            self.direction = np.asarray(h.axis, float) / np.linalg.norm(h.axis)
        elif h.motion == "translate":
            self.direction = line
        else:  # hinge: axis perpendicular to the line joining the two parts
            ref = np.array([0.0, 0.0, 1.0]) if abs(line[2]) < 0.9 else np.array([1.0, 0, 0])
            self.direction = np.cross(line, ref) / np.linalg.norm(np.cross(line, ref))
        # pivot: the moving atoms nearest the rest (the interface)
        if len(rest):
            d = np.linalg.norm(moving - c_rest, axis=1)
            self.pivot = moving[d <= np.quantile(d, 0.1)].mean(0)
        else:
            self.pivot = c_move

    def params_at(self, t, present=True):
        """GMM params (N, 5) for conformation t and composition ``present``."""
        p = self.params.copy()
        h = self.het
        if self.moving.any():
            xyz = p[self.moving, :3]
            if h.motion == "rotate":
                R = axis_angle_matrix(self.direction, t * h.amount)
                xyz = (xyz - self.pivot) @ R.T + self.pivot
            elif h.motion == "translate":
                xyz = xyz + t * h.amount * self.direction
            elif h.motion == "cyclic":
                e1 = self.direction
                e2 = np.cross(e1, [0, 0, 1.0] if abs(e1[2]) < 0.9 else [1.0, 0, 0])
                e2 /= np.linalg.norm(e2)
                e3 = np.cross(e1, e2)
                xyz = xyz + h.amount * (np.cos(2 * np.pi * t) * e2
                                        + np.sin(2 * np.pi * t) * e3 - e2)
            else:
                raise ValueError("unknown motion %r (rotate, translate, cyclic)" % h.motion)
            p[self.moving, :3] = xyz
        if not present:
            p[self.removable, 3] = 0.0
        return p


class SymmetricModel:
    """G copies of one subunit under a point group, each with its own conformation."""

    def __init__(self, source, settings, het):
        from .symmetry import parse_symmetry, symmetry_operators
        self.het = het
        self.ops = symmetry_operators(het.symmetry)
        self.sub = Model(source, settings, het)
        G = len(self.ops)
        direction = np.array([1.0, 0, 0]) if parse_symmetry(het.symmetry)[0] == "c" \
            else np.array([1.0, 1.0, 1.0]) / np.sqrt(3)    # off every 2-fold
        r = het.subunit_radius
        if r <= 0 and G > 1:   # copies side by side: nearest centres 2 extents apart
            extent = np.quantile(np.linalg.norm(self.sub.params[:, :3], axis=1), 0.9)
            r = 2 * extent / np.linalg.norm(self.ops[1:] @ direction - direction, axis=1).min()
        self.offset = r * direction
        self.moving = np.tile(self.sub.moving, G)
        self.removable = np.tile(self.sub.removable, G)
        self.pivot = None if self.sub.pivot is None else self.sub.pivot + self.offset
        self.direction = self.sub.direction
        self.params = self.params_at(0.0)

    @property
    def copies(self):
        return len(self.ops)

    def params_at(self, t, present=True):
        t = np.broadcast_to(np.atleast_1d(np.asarray(t, float)), (self.copies,))
        out = []
        for R, tg in zip(self.ops, t):
            p = self.sub.params_at(tg, present).copy()
            p[:, :3] = (p[:, :3] + self.offset) @ R.T
            out.append(p)
        return np.concatenate(out)


def build_model(source, settings, het):
    """Model or SymmetricModel, as the heterogeneity asks."""
    from .symmetry import symmetry_operators
    if len(symmetry_operators(het.symmetry)) > 1:
        return SymmetricModel(source, settings, het)
    return Model(source, settings, het)


def _write_map(path, vol, apix):
    with mrcfile.new(path, overwrite=True) as m:
        m.set_data(np.asarray(vol, dtype=np.float32))
        m.voxel_size = apix


def _draw_particles(s, het, model, rng):
    """Poses, CTFs and states of every particle, drawn in a fixed order from
    ``rng`` (the seed fixes the whole data set)."""
    n = s.n_particles
    rotations = random_rotations(n, rng)
    shifts = rng.normal(0.0, s.shift_sigma, size=(n, 2)) if s.shift_sigma > 0 else np.zeros((n, 2))
    du = rng.uniform(s.defocus_min, s.defocus_max, n)
    dv = du - rng.uniform(0, s.astigmatism, n)
    ctf = np.column_stack([du, dv, rng.uniform(0, 180, n), np.full(n, s.voltage),
                           np.full(n, s.cs), np.full(n, s.amp_contrast), np.zeros(n)])
    shape = (n, model.copies) if isinstance(model, SymmetricModel) else (n,)
    conformation = rng.uniform(0, 1, shape) if model.moving.any() else np.zeros(shape)
    if het.states and model.moving.any():
        conformation = _populated_states(conformation, het, rng)
    composition = ((rng.uniform(0, 1, n) < het.present_fraction).astype(np.int64)
                   if model.removable.any() else np.ones(n, np.int64))
    return rotations, shifts, ctf, conformation, composition


def _populated_states(uniform, het, rng):
    """Conformations with ``het.states``: each particle joins a state with that
    state's probability (else keeps its uniform t) and then lies near its t."""
    ts, fractions = np.array([s[0] for s in het.states]), np.array([s[1] for s in het.states])
    if fractions.sum() > 1 or (fractions < 0).any() or not ((ts >= 0) & (ts <= 1)).all():
        raise ValueError("states: t in [0, 1] and fractions summing to at most 1")
    pick = rng.uniform(0, 1, uniform.shape)
    which = np.searchsorted(np.cumsum(fractions), pick, side="right")
    near = ts[np.minimum(which, len(ts) - 1)] + rng.normal(0, het.state_width, uniform.shape)
    return np.where(which < len(ts), np.clip(near, 0, 1), uniform)


class _Imager:
    """Noise-free particle images: each particle's model projected at its pose
    in a window ``window_pad`` times the box (so CTF-delocalised signal leaves
    the box, as on a micrograph), multiplied by its CTF, cut to the box."""

    def __init__(self, s, model, draws, device):
        self.s, self.model, self.device = s, model, device
        self.rotations, self.shifts, self.ctf, self.conformation, self.composition = draws
        self.W = s.box * max(1, int(s.window_pad))
        self.ky, self.kx = freq_grid_2d(self.W, s.apix, device)
        self.lo = self.W // 2 - s.box // 2
        self.dynamic = model.moving.any() or model.removable.any()
        self.base = torch.as_tensor(model.params, dtype=torch.float32, device=device)

    def __call__(self, r):
        dev, D, lo = self.device, self.s.box, self.lo
        if self.dynamic:
            params = torch.as_tensor(np.stack([self.model.params_at(self.conformation[i],
                                                                    self.composition[i] == 1)
                                               for i in r]),
                                     dtype=torch.float32, device=dev)
        else:
            params = self.base
        ft = project(params, torch.as_tensor(self.rotations[r], dtype=torch.float32, device=dev),
                     torch.as_tensor(self.shifts[r], dtype=torch.float32, device=dev),
                     self.W, self.s.apix)
        ft = ft * compute_ctf(self.ky, self.kx, torch.as_tensor(self.ctf[r], device=dev))
        return image_ift(ft, self.W)[:, lo:lo + D, lo:lo + D].cpu().numpy()

    def noise_sigma(self, batch_size):
        """σ of the white noise that gives the settings' SNR (0: no noise)."""
        snr, n = self.s.snr, self.s.n_particles
        if not 0 < snr < np.inf:
            return 0.0
        calib = np.arange(min(n, 256))
        var = np.mean(np.concatenate([self(calib[i:i + batch_size]).var(axis=(1, 2))
                                      for i in range(0, len(calib), batch_size)]))
        return float(np.sqrt(var / snr))


def _write_stacks(s, stacks, imager, noise_sigma, noise_rng, batch_size, progress):
    n = s.n_particles
    handles = [mrcfile.new_mmap(p, shape=(min(s.per_stack, n - i * s.per_stack), s.box, s.box),
                                mrc_mode=2, overwrite=True) for i, p in enumerate(stacks)]
    try:
        for start in range(0, n, batch_size):
            r = np.arange(start, min(start + batch_size, n))
            img = imager(r)
            if noise_sigma:
                img = img + noise_rng.normal(0.0, noise_sigma, img.shape)
            for i, im in zip(r, img.astype(np.float32)):
                handles[i // s.per_stack].data[i % s.per_stack] = im
            if progress:
                progress(r[-1] + 1, n)
    finally:
        for h in handles:
            h.voxel_size = s.apix
            h.close()


def _write_truth_maps(out_dir, model, s, device):
    """Maps of the true states: along the motion, and without the removable part."""
    maps = {}
    heterogeneous = model.moving.any()
    if heterogeneous:
        for t in (0.0, 0.25, 0.5, 0.75, 1.0):
            maps["state_t%.2f" % t] = model.params_at(t, True)
    else:
        maps["consensus"] = model.params_at(0.0, True)
    if model.removable.any():
        maps["absent" if not heterogeneous else "absent_t0.50"] = model.params_at(0.5, False)
    for name, params in maps.items():
        with torch.no_grad():
            vol = render_volume_fourier(torch.as_tensor(params, dtype=torch.float64,
                                                        device=device), s.box, s.apix)
        _write_map(os.path.join(out_dir, "maps", name + ".mrc"), vol.cpu().numpy(), s.apix)


def simulate(source, out_dir, settings=None, het=None, device="cpu", batch_size=64,
             progress=None):
    """Run the simulation; returns the path of the written .star file."""
    s = settings or SimulationSettings()
    het = het or Heterogeneity()
    rng = np.random.default_rng(s.seed)
    model = build_model(source, s, het)
    n, D = s.n_particles, s.box
    if n < 1:
        raise ValueError("n_particles must be >= 1")
    draws = _draw_particles(s, het, model, rng)
    rotations, shifts, ctf, conformation, composition = draws
    noise_rng = np.random.default_rng(s.seed + 1)
    os.makedirs(os.path.join(out_dir, "stacks"), exist_ok=True)
    os.makedirs(os.path.join(out_dir, "maps"), exist_ok=True)
    n_stacks = (n + s.per_stack - 1) // s.per_stack
    stacks = [os.path.abspath(os.path.join(out_dir, "stacks", "particles_%03d.mrcs" % i))
              for i in range(n_stacks)]
    imager = _Imager(s, model, draws, device)
    noise_sigma = imager.noise_sigma(batch_size)
    _write_stacks(s, stacks, imager, noise_sigma, noise_rng, batch_size, progress)
    particles = Particles(ids=np.arange(1, n + 1), stacks=stacks,
                          stack_idx=(np.arange(n) // s.per_stack).astype(np.int32),
                          frame=(np.arange(n) % s.per_stack).astype(np.int64),
                          rotations=rotations, shifts=shifts, ctf=ctf, apix=s.apix, box=D)
    star = os.path.join(out_dir, "particles.star")
    write_star(star, particles)
    _write_truth_maps(out_dir, model, s, device)
    np.savez(os.path.join(out_dir, "ground_truth.npz"), ids=particles.ids,
             conformation=conformation, composition=composition, rotations=rotations,
             shifts=shifts, ctf=ctf, noise_sigma=noise_sigma,
             settings=json.dumps(s.__dict__), heterogeneity=json.dumps(
                 {k: (list(v) if isinstance(v, (tuple, np.ndarray)) else v)
                  for k, v in het.__dict__.items()}),
             pivot=model.pivot if model.pivot is not None else np.zeros(3),
             direction=model.direction if model.direction is not None else np.zeros(3))
    return star
