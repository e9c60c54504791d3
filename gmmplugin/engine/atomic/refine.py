"""Atomic model refinement into one map or a series of maps (Chen 2025).

Every non-H atom is a Gaussian. A latent coordinate per map (a constant for
one map) feeds decoders whose moves compose: rigid moves of whole chains and
of ``num_patches`` k-means patches of residues (the first stage; the chain
moves make large domain motions one coherent step instead of 64 separate ones), rigid moves of each residue, and
per-atom shifts (only for atoms the monomer library describes; ligands, waters
and unknown residues move rigidly with their residue and patch). The loss is
1 - FRC between model and map projections (a fixed set of directions per map,
band from 3× to 1× the target resolution in a coarse-to-fine schedule) plus
``w`` × stereochemistry (restraints.py). ``w = 0`` means automatic: the ratio of
the map-score gain to the geometry-score loss over a few unrestrained probe
steps (Chen 2025), scaled so geometry wins locally, and raised 30× over the
last stage; a final L-BFGS polish of each frame's coordinates at that weight
removes the optimiser's jitter. For a series, noise on the latent input makes
decoded models vary smoothly between frames.
"""
from dataclasses import dataclass, field
import copy
import time

import numpy as np
import torch

from ..checks import resolution_within_nyquist
from ..fourier import frc
from ..projection import project
from .decoder import ModelDecoder, assign_patches
from .map_projections import MapTarget, projection_directions
from .peptide_flips import peptide_units, propose_flips
from .restraints import Geometry

STAGES = ("patch", "residue", "atom")
GEOMETRY_RAMP = 30.0
PATCH_WEIGHT = 1e-3
FLIP_ROUNDS = 3       # peptide-flip trials after the polish (each: flip, polish, keep if better)
TERM_WEIGHTS = {"bond": 1.0, "angle": 1.0, "omega": 1.0, "rotamer": 0.1, "chi": 0.1,
                "plane": 1.0,
                "chiral": 1.0, "rama": 1.0, "clash": 3.0}


@dataclass
class RefineConfig:
    resolution: float = 4.0
    stages: tuple = STAGES
    num_patches: int = 64
    geometry_weight: float = 0.0        # 0 = automatic
    steps: tuple = (200, 200, 200)      # per stage
    directions: int = 32                # projections per map
    batch_directions: int = 8
    batch_frames: int = 2
    latent_noise: float = 0.3           # × median spacing of the frames' latents
    learning_rate: float = 2e-3
    hidden: int = 128
    neighbour_every: int = 50
    atom_width: float = 1.0             # Å; FRC is per ring, so only numerics care
    polish: bool = True                 # final L-BFGS of each frame's coordinates
    peptide_flips: bool = True          # after the polish: flip the peptides of
                                        # Ramachandran outliers, keep if better
    seed: int = 0

    def validate(self):
        bad = [s for s in self.stages if s not in STAGES]
        if bad or not self.stages:
            raise ValueError("stages must be a subset of %s, got %s" % (STAGES, self.stages))
        if self.resolution <= 0 or self.num_patches < 1:
            raise ValueError("resolution and number of patches must be positive")
        if self.geometry_weight < 0:
            raise ValueError("geometry weight must be >= 0 (0 = automatic)")


@dataclass
class RefineReport:
    seconds: float = 0.0
    geometry_weight: float = 0.0
    history: list = field(default_factory=list)   # (stage, step, map loss, geometry)
    frc: list = field(default_factory=list)        # final mean FRC per frame
    seconds_polish: float = 0.0
    peptide_flips: int = 0                         # kept flips (all frames)


class SeriesRefiner:
    """Refine one starting model into F maps (same box, sampling and frame)."""

    def __init__(self, topology, maps, apix, centre, latents=None, cfg=None, device="cpu",
                 log=print):
        self.cfg = cfg = cfg or RefineConfig()
        cfg.validate()
        self.log, self.device = log, torch.device(device)
        self.top = topology
        maps = [np.asarray(m, dtype=np.float32) for m in maps]
        if not maps:
            raise ValueError("no map to refine into")
        shapes = {m.shape for m in maps}
        if len(shapes) != 1:
            raise ValueError("all maps of a series must have the same box, got %s" % shapes)
        for m in maps:
            if not np.all(np.isfinite(m)):
                raise ValueError("a map contains NaN or infinite values")
            if float(m.std()) == 0:
                raise ValueError("a map is constant")
        resolution_within_nyquist(cfg.resolution, apix, "target resolution", "the maps'")
        F = len(maps)
        if latents is None:
            latents = np.linspace(-1, 1, F)[:, None] if F > 1 else np.zeros((1, 1))
        latents = np.asarray(latents, dtype=np.float32).reshape(F, -1)
        spread = latents.std(0)
        spread[spread == 0] = 1
        self.lat_mean, self.lat_spread = latents.mean(0), spread
        self.latents = torch.as_tensor((latents - self.lat_mean) / spread, device=self.device)
        if F > 1:
            d = torch.cdist(self.latents, self.latents) + 1e9 * torch.eye(F, device=self.device)
            self.noise = cfg.latent_noise * float(d.min(1).values.median())
        else:
            self.noise = 0.0
        torch.manual_seed(cfg.seed)
        # the model in the maps' frame: voxel D//2 at the origin
        self.centre = np.asarray(centre, dtype=np.float64)
        inside = topology.xyz - self.centre
        half = maps[0].shape[0] * apix / 2
        if np.abs(inside[~topology.water]).max() > half:
            outside = np.mean(np.any(np.abs(inside) > half, axis=1))
            if outside > 0.05:
                raise ValueError("%.0f%% of the model's atoms lie outside the map box: "
                                 "is the model in the map's frame?" % (100 * outside))
        t0 = time.time()
        rots = projection_directions(cfg.directions, cfg.seed).to(self.device)
        self.targets = [MapTarget(m, apix, cfg.resolution, rots) for m in maps]
        self.rotations = rots
        self.box, self.apix = self.targets[0].box, self.targets[0].apix
        log("projected %d map(s) along %d directions in %.1f s (comparison box %d, %.2f Å/px)"
            % (F, cfg.directions, time.time() - t0, self.box, self.apix))
        patches = assign_patches(topology, cfg.num_patches, cfg.seed)
        self.decoder = ModelDecoder(inside, topology.residue, topology.residue_anchor
                                    - self.centre, patches, topology.residue_chain,
                                    topology.restrained, self.latents.shape[1],
                                    cfg.hidden).to(self.device)
        self.geometry = Geometry(topology, self.device)
        self.in_map = torch.as_tensor(np.flatnonzero(~topology.water), device=self.device)
        z = topology.atomic_number[~topology.water]
        s = cfg.atom_width
        amp = torch.as_tensor(z / ((2 * np.pi) ** 1.5 * s ** 3), dtype=torch.float32)
        self.amp_width = torch.stack([amp, torch.full_like(amp, s)], 1).to(self.device)
        self.report = RefineReport()

    # -- losses ------------------------------------------------------------------
    def map_loss(self, x, frames, band):
        nb = self.cfg.batch_directions
        dirs = torch.stack([torch.randperm(self.cfg.directions, device=self.device)[:nb]
                            for _ in frames])                         # (fb, nb)
        atoms = x[:, self.in_map]
        params = torch.cat([atoms, self.amp_width.expand(len(frames), -1, -1)], -1)
        params = params.repeat_interleave(nb, 0)                      # (fb*nb, N, 5)
        rot = self.rotations[dirs.flatten()]
        pred = project(params, rot, None, self.box, self.apix)
        data = torch.cat([self.targets[f].ft[d] for f, d in zip(frames, dirs)])
        low = max(3 * self.cfg.resolution, band) * 2.5
        return 1 - frc(pred, data, self.box, self.apix, low, band).mean()

    def geometry_loss(self, x):
        terms = self.geometry.terms(x)
        return sum(TERM_WEIGHTS[k] * v for k, v in terms.items()), terms

    def _latent_batch(self, noisy=True):
        F = len(self.targets)
        frames = torch.randperm(F)[:min(F, self.cfg.batch_frames)].tolist()
        z = self.latents[frames]
        if noisy and self.noise > 0:
            z = z + self.noise * torch.randn_like(z)
        return frames, z

    # -- optimisation ---------------------------------------------------------------
    def _run(self, stage, steps, band_from, band_to, weight, record=True, weight_to=None):
        """Adam on the active decoders; band and geometry weight move
        geometrically from their start to end values over the steps."""
        params = [p for name in self.decoder.active for p in self.decoder.heads[name].parameters()]
        opt = torch.optim.Adam(params, lr=self.cfg.learning_rate)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps, eta_min=0.1 * self.cfg.learning_rate)
        weight_to = weight if weight_to is None else weight_to
        m_val = g_val = 0.0
        for it in range(steps):
            frac = it / max(1, steps - 1)
            band = band_from * (band_to / band_from) ** frac
            w = weight * (weight_to / weight) ** frac if weight > 0 else weight_to * frac
            frames, z = self._latent_batch()
            x = self.decoder(z)
            if it % self.cfg.neighbour_every == 0:
                self.geometry.update_neighbours(x[0].detach())
            m = self.map_loss(x, frames, band)
            g, _ = self.geometry_loss(x)
            loss = m + w * g
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            m_val, g_val = m.item(), g.item()
            if record and (it % 50 == 0 or it == steps - 1):
                self.report.history.append((stage, it, m_val, g_val))
                self.log("%-8s step %4d/%d  band %.1f Å  1-FRC %.4f  geometry %.2f"
                         % (stage, it, steps, band, m_val, g_val))
        return m_val, g_val

    def _auto_weight(self, probe_steps=20):
        """Map gain / geometry loss over unrestrained probe steps (then undone)."""
        state = copy.deepcopy(self.decoder.state_dict())
        r = self.cfg.resolution
        with torch.no_grad():
            frames, z = self._latent_batch(noisy=False)
            x = self.decoder(z)
            self.geometry.update_neighbours(x[0])
            m0 = self.map_loss(x, frames, r).item()
            g0 = self.geometry_loss(x)[0].item()
        m1, g1 = self._run("probe", probe_steps, r, r, 0.0, record=False)
        self.decoder.load_state_dict(state)
        gain, loss = max(m0 - m1, 1e-4), max(g1 - g0, 1e-3)
        # never below the patch stage's hold: when the map is already matched
        # (small gain, e.g. a series started from a good model) the ratio alone
        # would leave the geometry unweighted
        w = max(10.0 * gain / loss, PATCH_WEIGHT)
        self.log("automatic geometry weight: map gain %.4f, geometry loss %.2f -> w = %.3g"
                 % (gain, loss, w))
        return w

    def run(self):
        """Patches with a light geometry hold (rigid moves keep the chemistry
        inside patches; the hold keeps their junctions bonded), then
        residues and atoms with the geometry weight rising from the automatic
        balance to GEOMETRY_RAMP times it, so the final models are held by
        their stereochemistry rather than by the noise of the map."""
        t0 = time.time()
        cfg, r = self.cfg, self.cfg.resolution
        bands = {"patch": (3 * r, 1.5 * r), "residue": (1.5 * r, r), "atom": (r, r)}
        steps = dict(zip(STAGES, cfg.steps))
        weight = cfg.geometry_weight
        for stage in STAGES:
            if stage not in cfg.stages:
                continue
            self.decoder.active.add(stage)
            if stage == "patch":
                self.decoder.active.add("chain")   # whole chains first, with the patches
                # a light hold on the bonds between patches so they move as a body
                self._run(stage, steps[stage], *bands[stage], PATCH_WEIGHT)
                continue
            if weight == 0:
                weight = self._auto_weight()
            final = stage == [s for s in STAGES if s in cfg.stages][-1]
            self._run(stage, steps[stage], *bands[stage], weight,
                      weight_to=weight * (GEOMETRY_RAMP if final else 1.0))
        self.report.geometry_weight = weight
        if "atom" in cfg.stages and cfg.polish:
            self.polish(weight=(weight or PATCH_WEIGHT) * GEOMETRY_RAMP)
        self.report.seconds = time.time() - t0
        self.report.frc = self.final_frc()
        return self.report

    def polish(self, weight, rounds=3, iterations=30, directions=8):
        """L-BFGS on each frame's coordinates directly: map (fixed directions,
        so the objective is deterministic) + a strong geometry weight. Adam
        through the decoders leaves ~0.1 Å of jitter that L-BFGS removes, as
        final geometry regularisation in real-space refinement programs does.
        Frames' models are then these polished coordinates; models decoded
        between frames come from the decoders."""
        t0 = time.time()
        w = weight
        dirs = torch.arange(min(directions, self.cfg.directions), device=self.device)
        polished = []
        units = peptide_units(self.top) if self.cfg.peptide_flips else None
        for f, target in enumerate(self.targets):
            with torch.no_grad():
                x0 = self.decoder(self.latents[f:f + 1])
            x, loss = self._lbfgs(x0, x0, target.ft[dirs], self.rotations[dirs], w, rounds,
                                  iterations)
            for _ in range(FLIP_ROUNDS if units is not None else 0):
                flipped, n = propose_flips(self.geometry, self.top, x[0], units)
                if not n:
                    break
                x2, loss2 = self._lbfgs(x0, flipped[None], target.ft[dirs],
                                        self.rotations[dirs], w, rounds, iterations)
                self.log("frame %d: %d peptide flip(s) for Ramachandran outliers: "
                         "objective %.5f -> %.5f (%s)" % (f, n, loss, loss2,
                                                           "kept" if loss2 < loss
                                                           else "rejected"))
                if loss2 >= loss:
                    break
                x, loss = x2, loss2
                self.report.peptide_flips += n
            polished.append(x[0])
        self.polished = torch.stack(polished)
        self.report.seconds_polish = time.time() - t0
        self.report.frc = self.final_frc()
        self.log("polished %d model(s) in %.0f s" % (len(polished), time.time() - t0))

    def _lbfgs(self, x0, start, data, rot, w, rounds, iterations):
        """L-BFGS of map + w·geometry from ``start`` (1, n, 3); rigid parts stay
        at x0. Returns (coordinates, final objective)."""
        x = start.detach().clone().requires_grad_(True)
        opt = torch.optim.LBFGS([x], lr=1, max_iter=iterations, history_size=20,
                                line_search_fn="strong_wolfe")
        # rigid parts (waters, ligands, unknown residues) keep their decoded place
        fixed = self.decoder.movable[:, 0] == 0

        def objective():
            xr = torch.where(fixed[None, :, None], x0, x)
            params = torch.cat([xr[0, self.in_map], self.amp_width], -1)
            pred = project(params, rot, None, self.box, self.apix)
            m = 1 - frc(pred, data, self.box, self.apix, 3 * self.cfg.resolution * 2.5,
                        self.cfg.resolution).mean()
            return m + w * self.geometry_loss(xr)[0]

        def closure():
            opt.zero_grad()
            loss = objective()
            loss.backward()
            return loss

        for _ in range(rounds):
            self.geometry.update_neighbours(x[0].detach())
            opt.step(closure)
        with torch.no_grad():
            self.geometry.update_neighbours(x[0].detach())
            return torch.where(fixed[None, :, None], x0, x).detach(), float(objective())

    # -- results ----------------------------------------------------------------------
    @torch.no_grad()
    def decode(self, latents):
        """Model coordinates (B, n, 3) Å in the input model's frame at ``latents``
        (in the units of the latents given to the constructor)."""
        lat = np.asarray(latents, np.float32).reshape(-1, len(self.lat_mean))
        z = torch.as_tensor((lat - self.lat_mean) / self.lat_spread, device=self.device)
        return (self.decoder(z).cpu().numpy().astype(np.float64) + self.centre)

    @torch.no_grad()
    def _frame_x(self, f):
        if getattr(self, "polished", None) is not None:
            return self.polished[f:f + 1]
        return self.decoder(self.latents[f:f + 1])

    @torch.no_grad()
    def frame_coordinates(self):
        return np.stack([self._frame_x(f)[0].cpu().numpy()
                         for f in range(len(self.targets))]).astype(np.float64) + self.centre

    @torch.no_grad()
    def final_frc(self):
        out = []
        for f, t in enumerate(self.targets):
            x = self._frame_x(f)
            params = torch.cat([x[:, self.in_map], self.amp_width[None]], -1)
            pred = project(params[0], self.rotations, None, self.box, self.apix)
            out.append(float(frc(pred, t.ft, self.box, self.apix, 3 * self.cfg.resolution * 2.5,
                                 self.cfg.resolution).mean()))
        return out
