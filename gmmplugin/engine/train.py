"""Heterogeneity training: particles -> latent vectors (Chen & Ludtke 2021).

Stages, each resumable from files in ``work_dir``:
1. Images: particles Fourier-cropped so that Nyquist = max_res, a .npy file
   on disk (the raw stack is read once, in batches). It and the features are
   read and written by rows with explicit file I/O (rowfile.py), so memory
   holds a batch of them whatever the number of particles.
2. Features: per-particle gradient of -score(particle, CTF·projection of the
   neutral GMM), the score of stage 3, w.r.t. the varying GMM parameters
   (N × k), computed once, stored as a float16 .npy file after scaling by the
   global standard deviation; recomputed if the band, score, GMM, CTF mode or
   particles differ from the cached ones.
3. Training of encoder + decoder: loss = -score(particle, CTF·projection of
   decoder(z ~ q(z | features))) + β·KL(q || N(0, I)), where the score is by
   default the paper's mean FRC, which gives every ring the same say, and with
   ``loss = "whitened"`` the noise-whitened correlation (the matched filter:
   each Fourier pixel weighted by the inverse noise power of its ring); Adam
   with a linear warm-up, then the rate halved at each plateau of the score of
   held-out particles until the last plateau ends the training
   (engine/schedule.py; a cosine decay over a fixed count without them); a
   checkpoint and a log line per epoch. Choices that make the latent axes line up with
   the conformation:
   * the encoder's linear branch starts as the features' top PCs (its MLP
     branch at zero), so training starts from the linear PCA baseline;
   * q is a diagonal Gaussian with learned σ (a VAE, β = latent_kl): unlike a
     fixed noise + |z|² penalty, which rewards curling the data manifold
     through all latent dimensions (longer arc per unit of spread), the KL
     term charges each dimension by the information it carries, which favours
     few, straighter, axis-like directions;
   * β is small: large enough to switch off dimensions that only carry a
     per-particle nuisance (e.g. how well the neutral model fits), small
     enough to keep weak motions;
   * the learning rate decreases late in training, which stops the latent
     layout from drifting between epochs;
   * with latent_kl = 0 the encoder is deterministic and a fixed noise σ =
     latent_noise is added to z during training.
4. Latents: ids, z (no noise), the final per-particle score.

Data parallel under torchrun (engine/distributed.py): stages 1, 2 and 4 share
the particles among the ranks (each writes its rows of the cache files, which
every rank then reads; latents are gathered in particle order); in stage 3
every rank draws the same particle order, takes its part of each batch and
the networks are wrapped in DistributedDataParallel, the loss scaled so that
the averaged gradient is the whole batch's, so the optimisation is the one
process's with the same batch size. Rank 0 writes the checkpoint, which any
number of ranks can resume from.
"""
from dataclasses import asdict
import hashlib
import json
import os
import time
import uuid

import numpy as np
import torch

from . import distributed
from .checks import resolution_within_nyquist
from .ctf import compute_ctf
from .fourier import (band_mask, crop_images, freq_grid_2d, frc, image_ft,
                      weighted_correlation, whitening_weights)
from .layout import work_path
from .networks import Decoder, Encoder, varying_columns
from .projection import project
from .rowfile import RowFile
from .schedule import CosineSchedule, PlateauSchedule
from .sampling import crop_box_for
from .settings import SCORE_NAMES


class Trainer:
    def __init__(self, particles, gmm, cfg, work_dir, device="cpu", focus_mask=None,
                 log=print):
        cfg.validate()
        if len(particles) < 2:
            raise ValueError("at least 2 particles are needed to train")
        distributed.check_particles(len(particles))
        self.held, self.train_rows = held_out_rows(len(particles), cfg.held_out, cfg.seed)
        last = len(self.train_rows) % cfg.batch_size    # the last batch of an epoch
        if cfg.batch_size < distributed.world() or 0 < last < distributed.world():
            raise ValueError("batches of %d particles (the last of %d) cannot be shared among "
                             "%d processes, each needs a part of every batch: choose another "
                             "batch size" % (cfg.batch_size, last or cfg.batch_size,
                                             distributed.world()))
        self.p, self.gmm, self.cfg, self.dir = particles, gmm, cfg, work_dir
        self.device = torch.device(device)
        self.log = log
        os.makedirs(work_dir, exist_ok=True)
        resolution_within_nyquist(cfg.max_res, particles.apix)
        self.box = crop_box_for(particles.box, particles.apix, cfg.max_res)
        self.apix = particles.apix * particles.box / self.box
        self.columns = varying_columns(cfg.vary_positions, cfg.vary_amplitudes,
                                       cfg.vary_widths)
        self.neutral = torch.as_tensor(gmm.params, dtype=torch.float32, device=self.device)
        self.focus = None if focus_mask is None else np.asarray(focus_mask, dtype=bool)
        if self.focus is not None and not self.focus.any():
            raise ValueError("no Gaussian lies inside the focus mask")
        self.ky, self.kx = freq_grid_2d(self.box, self.apix, self.device)
        self.rings, self.band = band_mask(self.box, self.apix, cfg.min_res, cfg.max_res,
                                          self.device)
        self.weights = None
        torch.manual_seed(cfg.seed)
        self.encoder = Encoder(len(gmm) * len(self.columns), cfg.latent_dim,
                               variational=cfg.latent_kl > 0,
                               init_sigma=cfg.latent_noise).to(self.device)
        self.decoder = Decoder(gmm.params, cfg.latent_dim, self.columns, self.focus,
                               cfg.pos_scale, amp_mode=cfg.amp_mode).to(self.device)
        self.opt = torch.optim.Adam(list(self.encoder.parameters())
                                    + list(self.decoder.parameters()), lr=cfg.learning_rate)
        self.epoch, self.history = 0, []
        self.schedule, self._schedule_state, self._restart = None, None, False
        self.stopped_because = ""
        self._pca_done = False
        self.run_id = uuid.uuid4().hex     # this run's networks, latents and record
        self.signature = particles.signature()           # what the caches are made from
        self.rng = np.random.default_rng(cfg.seed)       # particle order, epoch by epoch

    # -- stage 1: cropped image cache ------------------------------------------------
    @property
    def score_name(self):
        return SCORE_NAMES[self.cfg.loss]

    def _images_path(self):
        return work_path(self.dir, "images", box=self.box)

    def prepare_images(self, batch=256):
        path = self._images_path()
        n, d = len(self.p), self.box
        key = {"box": d, "images": self.p.signature(poses=False)}
        if distributed.agree(_cached(path, key)):
            return self._set_weights(RowFile(path))
        if os.path.exists(path + ".done"):
            self.log("images: cached for another particle set; reading them again")
            if distributed.is_main():
                os.remove(path + ".done")
        out = _shared_rows(path, np.float32, (n, d, d))
        mine = self._my_rows(n, batch)
        for start in range(0, len(mine), batch):
            rows = mine[start:start + batch]
            out[rows] = crop_images(torch.from_numpy(self.p.images(rows)).to(self.device),
                                    d).cpu().numpy()
        out.flush()
        del out
        distributed.barrier()                   # every rank's rows are on disk
        if distributed.is_main():
            _mark_cached(path, key)
        return self._set_weights(RowFile(path))

    def _set_weights(self, images, sample=512):
        """Noise-whitening weights of the band (loss "whitened"): at cryo-EM SNRs
        the images' mean power per ring is the noise power."""
        if self.cfg.loss == "whitened":
            rows = np.linspace(0, len(images) - 1, min(sample, len(images))).astype(int)
            data = image_ft(torch.from_numpy(images[rows]).to(self.device))
            self.weights = whitening_weights(data, self.rings, self.band)
        return images

    def _my_rows(self, n, batch):
        """The rows of all n particles that this process computes in stages 1, 2
        and 4 (its share under torchrun, in blocks of ``batch``)."""
        return distributed.shard(np.arange(n), batch)

    def _batch(self, images, rows):
        rows = np.sort(rows)
        img = torch.from_numpy(images[rows]).to(self.device)
        ctf = compute_ctf(self.ky, self.kx, torch.from_numpy(self.p.ctf[rows]).to(self.device))
        if self.cfg.ctf_mode == "phase_flip":
            ctf = ctf.abs()
        rot = torch.from_numpy(self.p.rotations[rows]).float().to(self.device)
        sh = torch.from_numpy(self.p.shifts[rows]).float().to(self.device)
        return rows, image_ft(img), ctf, rot, sh

    def _score(self, params, data_ft, ctf, rot, sh):
        """Per-particle similarity (the training score) of the projected GMM."""
        pred = project(params, rot, sh, self.box, self.apix) * ctf
        if self.cfg.loss == "whitened":
            if self.weights is None:
                raise RuntimeError("prepare_images() sets the whitening weights; call it "
                                   "before computing scores")
            return weighted_correlation(pred, data_ft, self.weights, self.band)
        return frc(pred, data_ft, self.box, self.apix, self.cfg.min_res, self.cfg.max_res)

    # -- stage 2: gradient features -------------------------------------------------
    def _feature_key(self):
        """What the cached features depend on: a resumed run with another band, GMM,
        CTF mode or particle set recomputes them instead of reusing stale ones."""
        c = self.cfg
        return {"box": self.box, "min_res": c.min_res, "max_res": c.max_res,
                "ctf_mode": c.ctf_mode, "loss": c.loss, "columns": list(self.columns),
                "gmm": hashlib.sha1(np.ascontiguousarray(self.gmm.params, dtype=np.float64)
                                    ).hexdigest(),
                "particles": self.signature}

    def prepare_features(self, images):
        path = work_path(self.dir, "features")
        n, N, k = len(self.p), len(self.gmm), len(self.columns)
        key = self._feature_key()
        if distributed.agree(_cached(path, key)):
            self.feature_scale = json.load(open(path + ".json"))["scale"]
            self.neutral_frc = np.load(work_path(self.dir, "neutral_score"))
            return RowFile(path)
        if os.path.exists(path + ".done"):
            self.log("features: cached for other settings or particles; recomputing")
            if distributed.is_main():
                os.remove(path + ".done")
        if distributed.is_main() and os.path.exists(path + ".raw.npy"):
            os.remove(path + ".raw.npy")       # a float32 copy left by an older version
        # Stored as float16 in units of a provisional scale, the RMS of the first
        # batch (the same rows on every rank, so any number of ranks stores the same
        # numbers), then rescaled in place to the RMS over all particles: no float32
        # copy of the features is ever on disk.
        bs = self.cfg.batch_size
        provisional = _rms(self._neutral_gradients(images, np.arange(min(n, bs)))[0])
        feats = _shared_rows(path, np.float16, (n, N, k))
        neutral_frc = np.zeros(n, dtype=np.float32)
        sumsq, t0 = 0.0, time.time()
        mine = self._my_rows(n, bs)
        for start in range(0, len(mine), bs):
            rows = np.sort(mine[start:start + bs])
            g, f = self._neutral_gradients(images, rows)
            feats[rows] = np.clip(g / provisional, -6e4, 6e4)
            sumsq += float((g.astype(np.float64) ** 2).sum())
            neutral_frc[rows] = f
        sumsq = distributed.all_sum(sumsq)
        neutral_frc = distributed.gather_rows(neutral_frc[mine], n, mine)
        scale = float(np.sqrt(sumsq / max(n * N * k, 1))) or 1.0
        ratio = provisional / scale
        for start in range(0, len(mine), 4096):
            rows = np.sort(mine[start:start + 4096])
            feats[rows] = np.clip(feats[rows].astype(np.float32) * ratio, -6e4, 6e4)
        feats.flush()
        del feats
        distributed.barrier()                  # every rank's rows are rescaled
        if distributed.is_main():
            np.save(work_path(self.dir, "neutral_score"), neutral_frc)
            _mark_cached(path, key, scale=scale)
        self.feature_scale, self.neutral_frc = scale, neutral_frc
        self.log("features: %d particles x %d Gaussians x %d parameters in %.1f s "
                 "(mean neutral %s %.4f)" % (n, N, k, time.time() - t0, self.score_name,
                                             neutral_frc.mean()))
        return RowFile(path)

    def _neutral_gradients(self, images, rows):
        """(gradient of -score w.r.t. the varying parameters of the neutral GMM,
        (len(rows), N, k) float32; the neutral score) of the particles ``rows``."""
        rows, data, ctf, rot, sh = self._batch(images, rows)
        params = self.neutral.unsqueeze(0).repeat(len(rows), 1, 1).requires_grad_(True)
        f = self._score(params, data, ctf, rot, sh)
        (-f.sum()).backward()
        return (params.grad[..., self.columns].cpu().numpy(),
                f.detach().cpu().numpy())

    # -- stage 3: training ------------------------------------------------------------
    def checkpoint_path(self):
        return work_path(self.dir, "checkpoint")

    def save_checkpoint(self):
        """Rank 0 writes it (the ranks' networks are the same)."""
        if not distributed.is_main():
            return
        tmp = self.checkpoint_path() + ".tmp"
        torch.save({"encoder": self.encoder.state_dict(), "decoder": self.decoder.state_dict(),
                    "optimizer": self.opt.state_dict(), "epoch": self.epoch,
                    "history": self.history, "config": asdict(self.cfg),
                    "run_id": self.run_id, "particles": self.signature,
                    # random states, so that a resumed run ends where an
                    # uninterrupted one would
                    "order_rng": self.rng.bit_generator.state,
                    "torch_rng": torch.get_rng_state(),
                    "cuda_rng": (torch.cuda.get_rng_state_all()
                                 if torch.cuda.is_available() else None),
                    "schedule": self.schedule.state if self.schedule else None,
                    "columns": self.columns, "box": self.box, "apix": self.apix,
                    "focus": self.focus}, tmp)
        os.replace(tmp, self.checkpoint_path())

    def load_checkpoint(self, path=None, same_run=False):
        """Networks, optimiser and history of a checkpoint. ``same_run``: it is this
        folder's own interrupted run, which must go on with the same particles
        (and keeps its run id); otherwise its networks start a new run."""
        path = path or self.checkpoint_path()
        try:
            ck = torch.load(path, map_location=self.device, weights_only=False)
        except Exception as e:
            raise ValueError("cannot read the checkpoint %s: %s" % (path, e))
        self._check_compatible(ck, path)
        if same_run:
            if ck.get("particles") != self.signature:
                raise ValueError("the checkpoint in %s was trained on another particle set "
                                 "(or other poses or CTFs): use a new output folder, or "
                                 "--continue-from to go on from those networks with these "
                                 "particles" % os.path.dirname(path))
            self.run_id = ck["run_id"]
        self.encoder.load_state_dict(ck["encoder"])
        self.decoder.load_state_dict(ck["decoder"])
        self.opt.load_state_dict(ck["optimizer"])
        self.epoch, self.history = ck["epoch"], ck["history"]
        # the same run goes on with its schedule; a continued one starts a new
        # constant phase from here
        self.schedule, self._schedule_state = None, ck.get("schedule")
        self._restart = not same_run
        self.rng.bit_generator.state = ck["order_rng"]
        torch.set_rng_state(ck["torch_rng"].cpu())
        if ck["cuda_rng"] is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(ck["cuda_rng"])
        return ck

    def _check_compatible(self, ck, path):
        """A clear error instead of a tensor-size error from load_state_dict when
        a checkpoint comes from a run with another network shape (or, silently
        mixing two objectives, with another similarity score)."""
        cfg, diffs = ck.get("config", {}), []
        cfg = dict(cfg, loss=cfg.get("loss", "frc"))    # older checkpoints: the FRC
        for key in ("latent_dim", "vary_positions", "vary_amplitudes", "vary_widths", "loss"):
            if key in cfg and cfg[key] != getattr(self.cfg, key):
                diffs.append("%s %s (now %s)" % (key.replace("_", " "), cfg[key],
                                                 getattr(self.cfg, key)))
        n_ck = ck["decoder"]["neutral"].shape[0] if "decoder" in ck else len(self.gmm)
        if n_ck != len(self.gmm):
            diffs.append("%d Gaussians (now %d)" % (n_ck, len(self.gmm)))
        if diffs:
            raise ValueError("the checkpoint %s comes from a run with different settings: %s"
                             % (path, "; ".join(diffs)))

    def init_encoder_pca(self, feats, max_rows=5000):
        """Set the encoder's linear branch to the top latent_dim principal
        components of the features (scores scaled so that PC1 has unit standard
        deviation; the other PCs keep their relative spread) and zero the MLP's
        output, so z starts as the linear PCA baseline."""
        n, L = len(feats), self.cfg.latent_dim
        rng = np.random.default_rng(self.cfg.seed)
        rows = np.sort(rng.choice(n, min(n, max_rows), replace=False))
        x = torch.from_numpy(np.asarray(feats[rows], dtype=np.float32)).flatten(1)
        mean = x.mean(0)
        torch.manual_seed(self.cfg.seed)
        _, sv, v = torch.svd_lowrank(x - mean, q=min(L + 10, min(x.shape)), niter=4)
        comps, sv = v[:, :L].T, sv[:L]
        # sign convention: the largest |loading| of each component is positive
        sign = torch.sign(comps.gather(1, comps.abs().argmax(1, keepdim=True)))
        comps = comps * sign
        scale = float(sv[0]) / np.sqrt(max(len(rows) - 1, 1))
        self.encoder.init_pca(mean, comps, scale)
        self.encoder.to(self.device)
        self.log("encoder initialised to the features' top %d PCs (explained variance "
                 "%s of PC1)" % (L, ", ".join("%.2f" % (float(s) / float(sv[0])) ** 2
                                             for s in sv)))

    def _make_schedule(self, cap):
        """Plateau stopping on the held-out particles, or a fixed count without
        them; a plateau schedule goes on from this run's state (the previous
        call's, or the checkpoint's)."""
        cfg = self.cfg
        if not len(self.held):
            return CosineSchedule(cfg.learning_rate, cap, cfg.warmup_epochs)
        schedule = PlateauSchedule(cfg.learning_rate, cap,
                                   float(np.mean(self.neutral_frc[self.held])),
                                   cfg.warmup_epochs, flat_gain=cfg.plateau_gain,
                                   patience_steps=cfg.plateau_steps,
                                   steps_per_epoch=self.steps_per_epoch())
        schedule.load(self.schedule.state if self.schedule else self._schedule_state)
        if self._restart:
            schedule.restart(self.epoch)
            self._restart = False
        return schedule

    def steps_per_epoch(self):
        """Optimiser steps in one epoch (one batch per step over all processes)."""
        return (len(self.train_rows) + self.cfg.batch_size - 1) // self.cfg.batch_size

    @torch.no_grad()
    def held_out_score(self, images, feats):
        """Mean score of the held-out particles at their (noise-free) latents."""
        bs = self.cfg.batch_size
        mine = distributed.shard(self.held, bs)
        total = 0.0
        for start in range(0, len(mine), bs):
            rows, data, ctf, rot, sh = self._batch(images, mine[start:start + bs])
            z = self.encoder(self._features(feats, rows))
            total += float(self._score(self.decoder(z), data, ctf, rot, sh).sum())
        return distributed.all_sum(total) / len(self.held)

    def _features(self, feats, rows):
        return torch.from_numpy(np.asarray(feats[np.sort(rows)], dtype=np.float32)
                                ).to(self.device)

    def train(self, images, feats, epochs=None):
        """Epochs until the schedule stops them: at a plateau of the held-out
        score (then a cool-down), or at the cap, cfg.epochs. ``epochs`` ends
        this call earlier (the run can go on) or raises the cap."""
        cfg, n = self.cfg, len(self.train_rows)
        target = epochs or cfg.epochs
        t_start = time.time()
        start_epoch = self.epoch
        if self.epoch == 0 and not self._pca_done:
            self.init_encoder_pca(feats)
            self._pca_done = True
        self.schedule = self._make_schedule(max(cfg.epochs, target))
        if self.schedule.finished(self.epoch):
            return
        if len(self.held) and self.epoch == start_epoch == 0:
            self.log("held out %d particles (not used for gradient steps) to stop training "
                     "at a plateau of their mean %s, within %d epochs"
                     % (len(self.held), self.score_name, target))
        # the same networks on every rank (DDP starts from rank 0's)
        model = distributed.data_parallel(_Networks(self.encoder, self.decoder,
                                                    cfg.latent_noise), self.device)
        steps_per_epoch = self.steps_per_epoch()
        step = self.epoch * steps_per_epoch
        while self.epoch < target:
            t0 = time.time()
            order = self.train_rows[self.rng.permutation(n)]
            tot_loss = tot_frc = 0.0
            for start in range(0, n, cfg.batch_size):
                batch = np.sort(order[start:start + cfg.batch_size])
                # this rank's part of the batch, and of the batch's latent noise:
                # every rank draws the whole batch's from the same random stream, so
                # each particle gets the noise it would get in one process. DDP
                # averages the ranks' gradients, so each rank's sum over its part
                # is divided by the batch size over the number of ranks: the
                # average is the gradient of the whole batch's mean.
                mine = distributed.share(len(batch))
                noise = torch.randn(len(batch), cfg.latent_dim, device=self.device)[mine]
                per_rank = len(batch) / distributed.world()
                rows, data, ctf, rot, sh = self._batch(images, batch[mine])
                z, logvar, params = model(self._features(feats, rows), noise)
                f = self._score(params, data, ctf, rot, sh)
                loss = -f.sum() / per_rank
                if logvar is not None:
                    kl = 0.5 * (z ** 2 + logvar.exp() - logvar - 1).sum(0) / per_rank
                    # ≥ 0 in exact arithmetic; round-off can make it slightly negative
                    kl = torch.clamp(kl, min=0.0).sum()
                    loss = loss + cfg.latent_kl * kl
                for g in self.opt.param_groups:
                    g["lr"] = self.schedule.rate(step, steps_per_epoch)
                step += 1
                self.opt.zero_grad()
                loss.backward()
                self.opt.step()
                tot_loss += loss.item() * per_rank
                tot_frc += f.sum().item()
            tot_loss, tot_frc = distributed.all_sum(tot_loss), distributed.all_sum(tot_frc)
            self.epoch += 1
            entry = {"epoch": self.epoch, "loss": tot_loss / n, "frc": tot_frc / n}
            held = ""
            if len(self.held):
                entry["held_out"] = self.held_out_score(images, feats)
                held = ", held-out %.5f" % entry["held_out"]
            stop, why = self.schedule.end_epoch(self.epoch, entry.get("held_out"))
            entry["learning_rate"] = self.opt.param_groups[0]["lr"]
            dt = time.time() - t0
            entry["particles_per_s"] = (n + len(self.held)) / dt
            self.history.append(entry)
            left = (target - self.epoch) * (time.time() - t_start) / (self.epoch - start_epoch)
            self.log("epoch %d/%d: loss %.5f, mean %s %.5f%s, %.0f particles/s, ETA %s%.0f s"
                     % (self.epoch, target, entry["loss"], self.score_name, entry["frc"],
                        held, entry["particles_per_s"], "at most " if len(self.held) else "",
                        0 if stop else left))
            self.save_checkpoint()
            if why and not stop:
                self.log(why)
            if stop:
                self.stopped_because = why
                self.log("training stopped after %d epochs: %s" % (self.epoch, why))
                break

    def run(self):
        """The whole training on this trainer's particles: cached images and
        features, the remaining epochs, then every particle's latent (no noise)
        and its final score. Returns (z, score)."""
        images = self.prepare_images()
        feats = self.prepare_features(images)
        self.train(images, feats)
        return self.encode_all(images, feats)

    # -- stage 4: latents -------------------------------------------------------------
    @torch.no_grad()
    def encode_all(self, images, feats):
        n, bs = len(self.p), self.cfg.batch_size
        z = np.zeros((n, self.cfg.latent_dim), dtype=np.float32)
        final_frc = np.zeros(n, dtype=np.float32)
        mine = self._my_rows(n, bs)
        for start in range(0, len(mine), bs):
            rows, data, ctf, rot, sh = self._batch(images, mine[start:start + bs])
            zz = self.encoder(self._features(feats, rows))
            z[rows] = zz.cpu().numpy()
            final_frc[rows] = self._score(self.decoder(zz), data, ctf, rot, sh).cpu().numpy()
        return (distributed.gather_rows(z[mine], n, mine),
                distributed.gather_rows(final_frc[mine], n, mine))


class _Networks(torch.nn.Module):
    """Encoder and decoder as the one module a training step runs (what
    DistributedDataParallel wraps): (features, standard normal noise) -> (z,
    log σ² or None, the GMM parameters decoded from the noisy z)."""

    def __init__(self, encoder, decoder, latent_noise):
        super().__init__()
        self.encoder, self.decoder, self.latent_noise = encoder, decoder, latent_noise

    def forward(self, features, noise):
        z, logvar = self.encoder.posterior(features)
        if logvar is not None:
            zn = z + torch.exp(0.5 * logvar) * noise
        else:
            zn = z + self.latent_noise * noise
        return z, logvar, self.decoder(zn)


MIN_HELD_OUT, MAX_HELD_OUT = 50, 1000


def held_out_rows(n, fraction, seed):
    """(held-out rows, training rows), each sorted: ``fraction`` of the n particles,
    at most MAX_HELD_OUT (their mean score is already precise), none when that is
    fewer than MIN_HELD_OUT (small sets train for a fixed number of epochs)."""
    count = min(MAX_HELD_OUT, int(round(fraction * n)))
    if count < MIN_HELD_OUT:
        return np.zeros(0, dtype=int), np.arange(n)
    held = np.sort(np.random.default_rng([seed, 7]).choice(n, count, replace=False))
    return held, np.setdiff1d(np.arange(n), held)


def _rms(a):
    """Root mean square of ``a``, or 1 where it is zero."""
    return float(np.sqrt(np.mean(np.square(a, dtype=np.float64)))) or 1.0


def _shared_rows(path, dtype, shape):
    """A new .npy row file at ``path`` that every rank writes its rows into:
    rank 0 makes the file, the others open it once it exists."""
    if distributed.is_main():
        RowFile.create(path, dtype, shape).close()
    distributed.barrier()
    return RowFile(path, mode="r+")


def _cached(path, key):
    """A finished cache at ``path`` made from what ``key`` describes."""
    if not (os.path.exists(path + ".done") and os.path.exists(path + ".json")):
        return False
    with open(path + ".json") as f:
        return json.load(f).get("key") == key


def _mark_cached(path, key, **extra):
    """Record what the cache at ``path`` was made from, then mark it finished."""
    with open(path + ".json", "w") as f:
        json.dump(dict(extra, key=key), f)
    open(path + ".done", "w").close()
