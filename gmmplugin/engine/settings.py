"""Settings of the engine's steps, as plain dataclasses with their own checks.

Torch-free on purpose: the Scipion protocols validate their forms with the very
checks the engine runs (``TrainConfig.validate``, ``RefineLatentsConfig.validate``)
without loading torch into the GUI.
"""
from dataclasses import dataclass


SCORE_NAMES = {"frc": "FRC", "whitened": "whitened correlation"}   # TrainConfig.loss -> label

FINEST_AUTOMATIC_BAND = 6.0   # Å: the finest training band chosen automatically
UNKNOWN_GMM_BAND = 8.0        # Å: the band when the neutral GMM's resolution is unknown


def automatic_max_res(gmm_resolution, apix):
    """(training band's high end in Å, why) when the user leaves it at 0: the
    resolution the neutral GMM was fitted to (finer detail is not in the model),
    no finer than FINEST_AUTOMATIC_BAND (the cost of an epoch grows with the
    square of 1/resolution, while conformations show at 6–10 Å) nor than the
    particles' Nyquist."""
    if not gmm_resolution or gmm_resolution <= 0:
        res, why = UNKNOWN_GMM_BAND, "the neutral GMM's resolution is not known"
    elif gmm_resolution < FINEST_AUTOMATIC_BAND:
        res, why = FINEST_AUTOMATIC_BAND, ("the neutral GMM was fitted at %.1f Å; capped "
                                           "at %.0f Å for speed" % (gmm_resolution,
                                                                    FINEST_AUTOMATIC_BAND))
    else:
        res, why = float(gmm_resolution), ("the resolution the neutral GMM was fitted at")
    if res < 2 * apix:
        res, why = 2 * apix, why + "; limited to the particles' Nyquist"
    return res, why


@dataclass
class TrainConfig:
    latent_dim: int = 4
    epochs: int = 20               # the cap when held_out > 0
    batch_size: int = 64
    learning_rate: float = 1e-3
    max_res: float = 8.0          # Å: FRC band high end; particles cropped to it
    min_res: float = 100.0        # Å: FRC band low end
    vary_positions: bool = True
    vary_amplitudes: bool = True
    vary_widths: bool = False
    latent_noise: float = 0.05    # σ of the noise added to z (initial σ if latent_kl > 0)
    ctf_mode: str = "full"        # full | phase_flip
    pos_scale: float = 5.0        # Å per unit of decoder output
    seed: int = 0
    warmup_epochs: float = 1.0    # linear warm-up of the learning rate
    held_out: float = 0.05        # fraction of the particles kept out of the gradient steps
                                  # to decide when to stop (engine/schedule.py); 0 = run
                                  # exactly ``epochs`` epochs with a cosine decay
    plateau_gain: float = 0.01    # an epoch is flat when it beats the best held-out score
                                  # by less than this fraction of its gain over the neutral
                                  # model
    plateau_steps: int = 300      # ... for at least this many optimiser steps (and 2
                                  # epochs) before the rate is halved or training stops
    amp_mode: str = "linear"      # decoder amplitude parametrisation: linear | tanh
    latent_kl: float = 5e-3       # > 0: variational encoder (learned σ, starting at
                                  # latent_noise), loss += latent_kl · KL(q(z|x) || N(0, I))
    loss: str = "frc"             # frc: mean FRC over the band (Chen & Ludtke 2021) |
                                  # whitened: noise-whitened correlation (the matched
                                  # filter, the maximum-likelihood score)

    def validate(self):
        if not 1 <= self.latent_dim <= 16:
            raise ValueError("latent dimension must be in 1..16, got %d" % self.latent_dim)
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError("epochs and batch size must be positive")
        if self.max_res >= self.min_res:
            raise ValueError("max resolution (%.1f Å) must be finer than min resolution "
                             "(%.1f Å)" % (self.max_res, self.min_res))
        if not 0 <= self.held_out < 0.5 or self.plateau_gain < 0 or self.plateau_steps < 0:
            raise ValueError("the held-out fraction must be in [0, 0.5) and the plateau "
                             "gain and steps >= 0")
        if self.learning_rate <= 0:
            raise ValueError("the learning rate must be positive, got %g" % self.learning_rate)
        if self.latent_kl < 0 or self.latent_noise < 0:
            raise ValueError("the latent KL weight and noise must be >= 0")
        if self.ctf_mode not in ("full", "phase_flip"):
            raise ValueError("ctf mode must be 'full' or 'phase_flip'")
        for name, allowed in (("amp_mode", ("tanh", "linear")),
                              ("loss", ("frc", "whitened"))):
            if getattr(self, name) not in allowed:
                raise ValueError("%s must be one of %s" % (name.replace("_", " "),
                                                         ", ".join(allowed)))


TOP_CLASSES = 8       # posterior entries kept per particle for its final latent
FEW_PER_CLASS = 60    # particles per class and half set below which class maps are
                      # too noisy to re-read latents from


@dataclass
class RefineLatentsConfig:
    classes: int = 36             # K classes along the latent space
    iterations: int = 4           # classification rounds after the initial references
    max_res: float = 6.0          # Å: band of the comparison (images cropped to it)
    min_res: float = 100.0
    smooth: float = 1.2           # neighbour smoothing of references, in units of the
                                  # median distance between neighbouring class centres
    mask_threshold: float = 0.3   # fraction of the largest class-map deviation
    mask_dilation: int = 2        # voxels
    wiener: float = 0.05
    fsc_weight: bool = True       # filter the class deviations by their half-set FSC
    move_centres: bool = True     # each round, a class's centre becomes the mean
                                  # encoder latent of the particles it now holds
    batch_size: int = 64
    seed: int = 0

    def validate(self, n_particles):
        if self.classes < 2:
            raise ValueError("latent refinement needs at least 2 classes (0 switches it "
                             "off), got %d" % self.classes)
        if n_particles < 4 * self.classes:
            raise ValueError("latent refinement with %d classes needs at least %d "
                             "particles, got %d" % (self.classes, 4 * self.classes,
                                                    n_particles))
        if self.iterations < 1:
            raise ValueError("latent refinement needs at least 1 round")
        if self.max_res >= self.min_res:
            raise ValueError("latent refinement: max resolution (%.1f Å) must be finer "
                             "than min resolution (%.1f Å)" % (self.max_res, self.min_res))


AUTOMATIC_CLASSES = (4, 36)   # the range of the automatic number of refinement classes


def automatic_classes(n_particles, box=None, memory=None):
    """(classes, why) of the latent refinement when the user leaves it to us:
    enough particles per class that each half set keeps twice FEW_PER_CLASS,
    at most AUTOMATIC_CLASSES[1] (more classes resolve no more of a motion),
    and fewer when the maps would need more than 60 % of ``memory`` bytes
    (classes 0 = off: too few particles for AUTOMATIC_CLASSES[0])."""
    lo, hi = AUTOMATIC_CLASSES
    k = min(hi, n_particles // (4 * FEW_PER_CLASS))
    if k < lo:
        return 0, ("%d particles are too few for %d classes with %d per class and half "
                   "set" % (n_particles, lo, 2 * FEW_PER_CLASS))
    why = "%d particles" % n_particles
    if box and memory:
        while k > lo and memory_bytes(box, k) > 0.6 * memory:
            k -= 1
        if memory_bytes(box, k) > 0.6 * memory:
            return 0, "the class maps would not fit in memory"
        if k < min(hi, n_particles // (4 * FEW_PER_CLASS)):
            why += ", fewer for memory"
    return k, why


def memory_bytes(box, classes):
    """Peak memory (bytes) of the refinement's maps on the (2·box)³ grid: per class,
    the float64 accumulators of both half sets (48 B per voxel) and their complex64
    references (16 B), plus a few single-map temporaries."""
    return int((classes * 64 + 96) * (2 * box) ** 3)




# -- the automatic batch size of training (batch 0) -----------------------------------
AUTOMATIC_BATCH_MAX = 64      # the batch size the learning rate and the schedule were
                              # tuned at: a larger batch takes fewer steps per epoch
BATCH_MEMORY_SHARE = 0.5      # of the memory available when training starts
PROJECTION_BYTES = 48         # per particle, Gaussian and frequency row/column of the
                              # projection: the complex factors of each Gaussian along
                              # ky (box) and kx (box/2+1) and what autograd keeps of them


def training_bytes_per_particle(box, gaussians, columns):
    """Memory one particle of a batch takes in a training step, in bytes: the
    projection's per-Gaussian factors (PROJECTION_BYTES for each of its box +
    box/2+1 frequencies), its features and decoded parameters (float32, with
    their gradients) and its image, Fourier transform and CTF. The networks and
    the optimiser do not depend on the batch and are not counted."""
    per_gaussian = PROJECTION_BYTES * (box + box // 2 + 1) + 8 * (columns + 5)
    return int(gaussians * per_gaussian + 64 * box * box)


def automatic_batch_size(box, gaussians, columns, memory, processes=1, particles=None):
    """(batch size, why) of training when the user leaves it at 0: the most
    particles whose training step fits BATCH_MEMORY_SHARE of ``memory`` (bytes
    available to each process: free GPU memory, or RAM), at most
    AUTOMATIC_BATCH_MAX; a multiple of ``processes`` (each takes a part of every
    batch) and, given the number of training ``particles``, one whose last
    batch of an epoch can be shared among them too. ``box`` is the training box
    (after the Fourier crop); ``columns`` the varying parameters per Gaussian."""
    per = training_bytes_per_particle(box, gaussians, columns)
    need = "%.1f MB per particle (%d Gaussians, box %d)" % (per / 1e6, gaussians, box)
    if not memory or memory <= 0:
        batch, why = AUTOMATIC_BATCH_MAX, "the available memory is not known"
    else:
        fit = int(BATCH_MEMORY_SHARE * memory // per)
        have = "%.1f GB available%s" % (memory / 1e9,
                                        " per process" if processes > 1 else "")
        if fit >= AUTOMATIC_BATCH_MAX // processes:
            batch, why = AUTOMATIC_BATCH_MAX, ("the largest automatic batch; a step needs "
                                               "%s, %s" % (need, have))
        elif fit >= 1:
            batch, why = fit * processes, ("what fits in %.0f %% of %s at %s"
                                           % (100 * BATCH_MEMORY_SHARE, have, need))
        else:
            batch, why = processes, ("WARNING: even one particle per process needs more "
                                     "than %.0f %% of %s (%s): expect to run out of "
                                     "memory; use fewer Gaussians, a coarser band or a "
                                     "device with more memory"
                                     % (100 * BATCH_MEMORY_SHARE, have, need))
    batch = max(processes, batch - batch % processes)
    if particles:
        batch = max(processes, min(batch, particles - particles % processes))
        while batch > processes and 0 < particles % batch < processes:
            batch -= processes          # the epoch's last batch: a part for each process
    return batch, why
