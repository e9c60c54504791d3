"""``train``: heterogeneity training, particles -> latent vectors; resumable.

Writes ``latents.npz`` (ids, z, zred, per-particle score, latent spread and
confidence), ``training.json``, the checkpoint and the training curve
(``layout.py`` names them).
"""
import os
import time

import numpy as np

from .. import checks, distributed, layout
from .common import load_gmm, load_particles, log

NAME = "train"
HELP = "heterogeneity training: particles -> latents"


def add_args(t):
    t.add_argument("--particles", required=True, help="particles.npz or RELION 3.1 .star")
    t.add_argument("--gmm", required=True, help="neutral GMM (.npz)")
    t.add_argument("--out-dir", required=True)
    t.add_argument("--latent-dim", type=int, default=4)
    t.add_argument("--epochs", type=int, default=20,
                   help="the most epochs to train (with --held-out 0: exactly this many)")
    t.add_argument("--held-out", type=float, default=None,
                   help="fraction of the particles (at most 1000) kept out of the "
                        "gradient steps; the learning rate halves whenever their mean "
                        "score levels off, and the plateau after the third halving ends "
                        "the training (0 = a fixed number of epochs; default: "
                        "TrainConfig's)")
    t.add_argument("--plateau-steps", type=int, default=None,
                   help="a plateau of the held-out score lasts at least this many "
                        "optimiser steps (and 2 epochs) before the rate halves; raise it "
                        "when a weak motion is found late (default: TrainConfig's)")
    t.add_argument("--batch", type=int, default=0,
                   help="particles per optimisation step; 0 = automatic: the most that "
                        "fit in the memory of the device (GPU memory, or RAM), at most "
                        "64. Set it when several jobs share the device, or to repeat a "
                        "run exactly on another machine")
    t.add_argument("--lr", type=float, default=1e-3)
    t.add_argument("--max-res", type=float, default=0.0,
                   help="high end (Å) of the training band; 0 = automatic: the neutral "
                        "GMM's resolution, no finer than 6 Å")
    t.add_argument("--min-res", type=float, default=100.0)
    t.add_argument("--vary-positions", type=int, default=1)
    t.add_argument("--vary-amplitudes", type=int, default=1)
    t.add_argument("--vary-widths", type=int, default=0)
    t.add_argument("--focus-mask", default="", help="only Gaussians inside may vary")
    t.add_argument("--symmetry", default="c1",
                   help="Cn or Dn: symmetry-expand the particles; one asymmetric unit varies")
    t.add_argument("--ctf-mode", default="full", choices=["full", "phase_flip"])
    t.add_argument("--resume", action="store_true", help="continue from out-dir's checkpoint")
    t.add_argument("--continue-from", default="", help="checkpoint of a previous run")
    t.add_argument("--more-epochs", type=int, default=0,
                   help="with --continue-from: train this many epochs more than the "
                        "checkpoint has, with the checkpoint's own settings (the network "
                        "and band options given here are then ignored)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--latent-kl", type=float, default=None,
                   help="weight of the KL term of the variational encoder (0 = fixed "
                        "noise; default: TrainConfig's)")
    t.add_argument("--loss", default=None, choices=["frc", "whitened"],
                   help="frc: mean Fourier ring correlation (the paper); whitened: "
                        "noise-whitened correlation, each Fourier pixel weighted by the "
                        "inverse noise power of its ring (default: TrainConfig's)")
    t.add_argument("--refine-classes", type=int, default=0,
                   help="after training, re-read each latent by masked 3D classification "
                        "against reconstructions of this many classes along the latent "
                        "space (0 = off; -1 = automatic: from the number of particles "
                        "and the memory, off for small sets)")
    t.add_argument("--refine-iterations", type=int, default=4,
                   help="classification rounds of the latent refinement")
    t.add_argument("--likelihood-steps", type=int, default=5,
                   help="Gauss-Newton steps of each particle's latent on its own "
                        "likelihood through the decoder, after the training (and the "
                        "latent refinement); 0 = none")
    t.add_argument("--likelihood-significance", type=float, default=0.0,
                   help="a refined latent replaces the encoder's only when its "
                        "likelihood gain is significant at this level (0 = whenever it "
                        "raises the posterior)")
    t.add_argument("--refine-res", type=float, default=0.0,
                   help="finest resolution (Å) of the latent refinement (0 = --max-res)")


def train_config(a, gmm=None, apix=None):
    """The TrainConfig the arguments ask for; with --more-epochs, the continued
    checkpoint's own settings and that many more epochs. A --max-res of 0 is
    chosen from the neutral GMM (``settings.automatic_max_res``)."""
    from ..settings import TrainConfig, automatic_max_res
    if a.more_epochs:
        from ..checkpoint import checkpoint_state
        if not a.continue_from:
            raise ValueError("--more-epochs needs --continue-from")
        checks.positive(a.more_epochs, "--more-epochs")
        done, cfg = checkpoint_state(a.continue_from)
        cfg.epochs = done + a.more_epochs
        return cfg
    max_res = a.max_res
    if max_res <= 0:
        if gmm is None or apix is None:
            raise ValueError("an automatic --max-res needs the neutral GMM and the particles")
        max_res, why = automatic_max_res(gmm.resolution, apix)
        log("training band: %g-%.1f Å (automatic: %s)" % (a.min_res, max_res, why))
    return TrainConfig(latent_dim=a.latent_dim, epochs=a.epochs, batch_size=a.batch,
                       learning_rate=a.lr, max_res=max_res, min_res=a.min_res,
                       vary_positions=bool(a.vary_positions),
                       vary_amplitudes=bool(a.vary_amplitudes),
                       vary_widths=bool(a.vary_widths), ctf_mode=a.ctf_mode, seed=a.seed,
                       **({} if a.latent_kl is None else {"latent_kl": a.latent_kl}),
                       **({} if a.held_out is None else {"held_out": a.held_out}),
                       **({} if a.plateau_steps is None else
                          {"plateau_steps": a.plateau_steps}),
                       **({} if a.loss is None else {"loss": a.loss}))


def automatic_batch(cfg, gmm, particles, device):
    """The batch size for --batch 0 (settings.automatic_batch_size), logged with
    the reason: from the memory the device has free now, the training box and
    the number of Gaussians, shared among the torchrun processes."""
    import torch
    from ..device import available_memory_bytes
    from ..networks import varying_columns
    from ..sampling import crop_box_for
    from ..settings import automatic_batch_size
    from ..train import held_out_rows
    box = crop_box_for(particles.box, particles.apix, cfg.max_res)
    columns = len(varying_columns(cfg.vary_positions, cfg.vary_amplitudes, cfg.vary_widths))
    train_rows = len(held_out_rows(len(particles), cfg.held_out, cfg.seed)[1])
    memory = available_memory_bytes(device)
    if torch.device(device).type == "cpu":     # the processes of a node share its RAM
        memory //= int(os.environ.get("LOCAL_WORLD_SIZE", 1))
    memory = distributed.all_min(memory)      # every rank takes the same batch
    batch, why = automatic_batch_size(box, len(gmm), columns, memory, distributed.world(),
                                      train_rows)
    log("batch size: %d (automatic: %s)" % (batch, why))
    return batch


def refinement_config(a, cfg, particles):
    """The latent-refinement settings (None when off), checked before any
    training so that a bad value or an impossible memory need fails early.
    ``--refine-classes -1``: the number of classes from the particles and the
    memory (settings.automatic_classes)."""
    if not a.refine_classes:
        return None
    from ..device import total_memory_bytes
    from ..sampling import crop_box_for
    from ..settings import RefineLatentsConfig, automatic_classes, memory_bytes
    res = a.refine_res or cfg.max_res
    checks.resolution_within_nyquist(res, particles.apix, "latent refinement resolution")
    classes = a.refine_classes
    if classes < 0:
        classes, why = automatic_classes(len(particles),
                                         crop_box_for(particles.box, particles.apix, res),
                                         total_memory_bytes(a.device_obj))
        log("latent refinement: %s (automatic: %s)"
            % ("%d classes" % classes if classes else "off", why))
        if not classes:
            return None
    rcfg = RefineLatentsConfig(classes=classes, iterations=a.refine_iterations,
                               max_res=res, min_res=cfg.min_res, seed=cfg.seed)
    rcfg.validate(len(particles))
    need = memory_bytes(crop_box_for(particles.box, particles.apix, res), rcfg.classes)
    have = total_memory_bytes(a.device_obj)
    if have and need > 0.6 * have:
        raise ValueError("latent refinement with %d classes at %.1f Å needs about %.1f GB, "
                         "more than this %s can give (%.1f GB): use fewer classes or a "
                         "coarser resolution" % (rcfg.classes, res, need / 1e9,
                                                 a.device_obj, have / 1e9))
    return rcfg


def varying_gaussians(a, gmm, particles):
    """(particles, focus mask or None, expansion arrays): with Cn/Dn symmetry the
    particles are expanded and only one asymmetric unit's Gaussians may vary."""
    from ..gmm import gaussians_in_mask
    from ..symmetry import asu_mask, expand_particles, symmetry_operators
    focus = None
    if a.focus_mask:
        focus = gaussians_in_mask(a.focus_mask, gmm.centers)
        log("focus mask: %d of %d Gaussians may vary" % (focus.sum(), len(gmm)))
    if symmetry_operators(a.symmetry).shape[0] == 1:
        return particles, focus, {}
    particles, source_ids, copies = expand_particles(particles, a.symmetry)
    asu = asu_mask(gmm.centers, gmm.params[:, 3], a.symmetry)
    focus = asu if focus is None else focus & asu
    if not focus.any():
        raise ValueError("no Gaussian of the focus mask lies in the asymmetric unit")
    if distributed.is_main():
        particles.save(layout.path(a.out_dir, "expanded"))
    log("symmetry %s: %d expanded particles; %d of %d Gaussians (one asymmetric unit%s) "
        "may vary" % (a.symmetry, len(particles), focus.sum(), len(gmm),
                      " within the focus mask" if a.focus_mask else ""))
    return particles, focus, {"source_ids": source_ids, "copies": copies}


def _refine(particles, z, rcfg, device):
    """Latents re-read by masked 3D classification: (z, extra arrays, record)."""
    from ..refine_latents import refine_latents
    t0 = time.time()
    z_ref, confidence, history = refine_latents(particles, z, rcfg, device=device, log=log)
    log("latent refinement (%d classes, %d rounds): %.0f s" % (rcfg.classes, rcfg.iterations,
                                                              time.time() - t0))
    return (z_ref, {"z_encoder": z, "class_confidence": confidence},
            dict(rcfg.__dict__, history=history, seconds=time.time() - t0))



def _latent_likelihood(trainer, particles, z, iterations, significance):
    """Each particle's latent through its own likelihood (engine/latent_likelihood.py):
    refined by ``iterations`` steps (0 = not), then its spread and confidence.
    Under torchrun every rank takes its share of the particles and all get the
    whole result. Returns (z, arrays for latents.npz, record for training.json)."""
    from ..latent_likelihood import LatentLikelihood, motion_confidence, motion_tangents, \
        posterior_spread
    t0 = time.time()
    n = len(z)
    mine = distributed.shard(np.arange(n), trainer.cfg.batch_size)
    like = LatentLikelihood(trainer.decoder, particles, trainer.prepare_images(),
                            trainer.box, trainer.apix, trainer.rings, trainer.band,
                            device=trainer.device,
                            phase_flip=trainer.cfg.ctf_mode == "phase_flip",
                            batch_size=trainer.cfg.batch_size)
    like.estimate_noise(z)
    arrays, record = {}, {}
    if iterations > 0:
        z_in = z
        z, gain, moved = like.refine(z, iterations=iterations, significance=significance,
                                     rows=mine, log=log)
        z = distributed.gather_rows(z[mine], n, mine)
        gain = distributed.gather_rows(gain[mine], n, mine)
        moved = distributed.gather_rows(moved[mine].astype(np.int64), n, mine).astype(bool)
        arrays.update(z_before_likelihood=z_in, likelihood_gain=gain)
        shift = np.linalg.norm(z - z_in, axis=1)
        record["refinement"] = {"iterations": iterations, "significance": significance,
                                "moved": float(moved.mean()),
                                "median_shift": float(np.median(shift[moved]))
                                if moved.any() else 0.0, "seconds": time.time() - t0}
        log("latents refined by their own likelihood: %.0f %% moved%s, median move %.3g, "
            "%.0f s" % (100 * moved.mean(), " (2 x gain above the chi-square %.2f level)"
                        % significance if significance > 0 else "",
                        record["refinement"]["median_shift"],
                        record["refinement"]["seconds"]))
    t1 = time.time()
    fisher = like.fisher(z, rows=mine)             # this rank's share only
    motion = motion_tangents(z, mine)
    sd = distributed.gather_rows(posterior_spread(fisher, z)[0], n, mine)
    confidence = distributed.gather_rows(motion_confidence(fisher, z, motion), n, mine)
    arrays.update(latent_sd=sd, confidence=confidence,
                  motion=distributed.gather_rows(motion.astype(np.float32), n, mine))
    record.update(median=float(np.median(confidence)),
                  p10=float(np.percentile(confidence, 10)),
                  p90=float(np.percentile(confidence, 90)), seconds=time.time() - t1)
    log("latent confidence: median %.2f (10th-90th percentile %.2f-%.2f), %.0f s"
        % (record["median"], record["p10"], record["p90"], record["seconds"]))
    return z, arrays, record


def main(a):
    from ..analyze import reduce
    from ..io import write_json, write_npz
    from ..plots import plot_training
    from ..rundir import remove_stale
    from ..symmetry import symmetry_operators
    from ..train import Trainer
    symmetry_operators(a.symmetry)   # a bad group name fails before any work
    particles = load_particles(a.particles)
    gmm = load_gmm(a.gmm)
    cfg = train_config(a, gmm, particles.apix)
    if not particles.has_ctf and cfg.ctf_mode == "full":
        raise ValueError("the particles have no CTF; use --ctf-mode phase_flip only for "
                         "phase-flipped data, or provide CTF parameters")
    checks.same_extent(gmm.box, gmm.apix, particles.box, particles.apix)
    os.makedirs(a.out_dir, exist_ok=True)
    particles, focus, expansion = varying_gaussians(a, gmm, particles)
    if not cfg.batch_size:
        cfg.batch_size = automatic_batch(cfg, gmm, particles, a.device_obj)
    rcfg = refinement_config(a, cfg, particles)
    if a.likelihood_steps < 0 or not 0 <= a.likelihood_significance < 1:
        raise ValueError("--likelihood-steps must be >= 0 and --likelihood-significance "
                         "in [0, 1)")
    trainer = Trainer(particles, gmm, cfg, layout.path(a.out_dir, "work"),
                      device=a.device_obj, focus_mask=focus, log=log)
    resume = a.continue_from or (trainer.checkpoint_path() if a.resume else "")
    if resume:
        if not os.path.exists(resume):
            raise FileNotFoundError("no checkpoint to continue from: %s" % resume)
        trainer.load_checkpoint(resume, same_run=not a.continue_from)
        log("continuing from epoch %d (%s)" % (trainer.epoch, resume))
    if distributed.is_main():
        remove_stale([layout.path(a.out_dir, k) for k in ("latents", "training",
                                                           "training_curve")], log)
    t0 = time.time()
    z, final_score = trainer.run()
    refined, refinement = {}, None
    if rcfg is not None:
        # the classification runs on rank 0 alone, and the likelihood after it
        if not distributed.main_goes_on_alone():
            return
        z, refined, refinement = _refine(particles, z, rcfg, a.device_obj)
    z, arrays, confidence = _latent_likelihood(trainer, particles, z, a.likelihood_steps,
                                               a.likelihood_significance)
    if not distributed.main_goes_on_alone():
        return      # the files: rank 0 alone
    refined.update(arrays)
    write_npz(layout.path(a.out_dir, "latents"), ids=particles.ids, z=z, zred=reduce(z),
              frc=final_score, neutral_frc=trainer.neutral_frc, run_id=trainer.run_id,
              epoch=trainer.epoch, **expansion, **refined)
    hist = trainer.history
    write_json(layout.path(a.out_dir, "training"), {
        "config": cfg.__dict__, "history": hist, "particles": len(particles),
        "symmetry": a.symmetry.lower(),
        "varying_gaussians": int(len(gmm) if focus is None else focus.sum()),
        "gaussians": len(gmm), "box": trainer.box, "apix": trainer.apix,
        "seconds": time.time() - t0, "checkpoint": os.path.abspath(trainer.checkpoint_path()),
        "stopped_because": trainer.stopped_because, "held_out": len(trainer.held),
        "final_loss": hist[-1]["loss"] if hist else None,
        "particles_per_s": float(np.mean([h["particles_per_s"] for h in hist])) if hist
        else None, "latent_refinement": refinement, "latent_confidence": confidence})
    plot_training(hist, layout.path(a.out_dir, "training_curve"), score=trainer.score_name)
    print("trained %d epochs: final loss %.5f" % (trainer.epoch, hist[-1]["loss"]))
