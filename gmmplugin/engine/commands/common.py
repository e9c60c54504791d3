"""What several commands share: reading particles, progress lines, ids files."""
import os
import time

import numpy as np


def load_particles(path):
    """Particles from the plugin's particles.npz or a RELION .star file."""
    from ..particles import Particles
    from ..starfile import read_star
    if not os.path.exists(path):
        raise FileNotFoundError("particles file not found: %s" % path)
    return read_star(path) if path.endswith(".star") else Particles.load(path)


def require_ctf(particles):
    """The command corrects for each particle's CTF, so it needs CTF parameters."""
    if not particles.has_ctf:
        raise ValueError("the particles have no CTF parameters (no defocus columns): "
                         "estimate the CTF and give the particles with it")


def rows_from_ids_file(particles, ids_file):
    """Rows of the particles whose ids are listed in ``ids_file`` (None: all)."""
    from ..particles import rows_of
    if not ids_file:
        return np.arange(len(particles))
    return rows_of(particles.ids, np.loadtxt(ids_file, dtype=np.int64, ndmin=1),
                   "the particle set")


def load_latents(path):
    """(ids, z, file) of a latents.npz, with its values checked."""
    if not os.path.exists(path):
        raise FileNotFoundError("latents file not found: %s" % path)
    lat = np.load(path)
    z = np.asarray(lat["z"], dtype=np.float64)
    if not np.all(np.isfinite(z)):
        raise ValueError("the latent vectors contain NaN or infinite values")
    return lat["ids"].astype(np.int64), z, lat


def load_gmm(path):
    from ..gmm import Gmm
    if not os.path.exists(path):
        raise FileNotFoundError("GMM file not found: %s" % path)
    return Gmm.load(path)


def log(message):
    print(message, flush=True)


def progress(label, every_s=10.0):
    """A ``report(done, total)`` callback printing at most every ``every_s``."""
    state = {"t": 0.0}

    def report(done, total):
        now = time.time()
        if now - state["t"] > every_s or done == total:
            state["t"] = now
            log("%s: %d / %d" % (label, done, total))
    return report
