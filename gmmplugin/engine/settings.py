"""Settings of the engine's steps, as plain dataclasses with their own checks.

Torch-free on purpose: the Scipion protocols validate their forms with the very
checks the engine runs (``TrainConfig.validate``, ``RefineLatentsConfig.validate``)
without loading torch into the GUI.
"""
from dataclasses import dataclass


SCORE_NAMES = {"frc": "FRC", "whitened": "whitened correlation"}   # TrainConfig.loss -> label


@dataclass
class TrainConfig:
    latent_dim: int = 4
    epochs: int = 10
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
    warmup_epochs: float = 1.0    # linear warm-up of the learning rate, then cosine decay
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


def memory_bytes(box, classes):
    """Peak memory (bytes) of the refinement's maps on the (2·box)³ grid: per class,
    the float64 accumulators of both half sets (48 B per voxel) and their complex64
    references (16 B), plus a few single-map temporaries."""
    return int((classes * 64 + 96) * (2 * box) ** 3)


