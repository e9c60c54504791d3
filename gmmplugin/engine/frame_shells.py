"""A frame map whose neighbourhood of particles widens shell by shell.

A frame of a volume series averages the particles near its latent point. Few
particles keep their states close to the frame's (sharp where the motion
changes the map) but leave the map noisy; more make it cleaner but spread
the states. Which matters depends on the resolution: at low resolution the
signal is strong and the states' spread limits the map, at high resolution
the noise does. So each Fourier shell takes, from nested neighbourhoods (the
frame's own particles, then 1.5, 2 and 3 times as many), the one of least
predicted error:

    error(k) = |bias(k)|² + noise(k) / n

* **bias**: the decoded GMM's change over the neighbourhood's states, to
  second order. The decoder is expanded at the frame's point along the
  principal axes of the widest neighbourhood's latents (finite differences,
  one standard deviation of the neighbourhood each way), and the
  neighbourhood's states enter by their mean offset and spread along each
  axis. The spread adds each particle's posterior variance along the motion,
  from its latent confidence (engine/latent_likelihood.py): a particle whose
  image pins its place down is counted where its latent says, one whose image
  says little spreads over the population. The frame's own particles come
  first; the others join by their expected squared distance to the frame
  (the squared distance of the latent plus its posterior variance), from the
  particles the series draws on (the whole set along a principal axis, the
  class along its curve, the classes a path runs through).
* **noise**: one particle's signal-to-noise ratio per shell, from the
  half-map FSC of the frame's own particles (SSNR = 2·FSC / (1 − FSC) for a
  half set), against the power of the decoded GMM (the same scale as the
  bias).

A wider neighbourhood is taken only where its predicted error is smaller by
more than SIGNIFICANCE times the shell's own scatter (an error summed over v
Fourier coefficients varies by about 1/√v of itself): the coarsest shells
hold a handful of coefficients, and there a predicted gain is no gain one can
count on. And the chosen neighbourhood never shrinks from one shell to the
next (the smaller of the choices at this shell and any finer one): the
noise grows with resolution faster than the bias, so a wider choice at a
coarse shell than at a finer one is the estimate's own noise. Where a shell keeps the frame's own
particles, the map there is the frame's own map.

Each particle is inserted once: the nested neighbourhoods' maps are read off
one growing reconstruction (engine/reconstruct.nested_reconstructions).
"""
import numpy as np

WIDTHS = (1.0, 1.5, 2.0, 3.0)   # neighbourhoods, in multiples of the frame's particles
SIGNIFICANCE = 3.0              # predicted gain a shell needs, in its error's scatter


def _shell_radius(box):
    """Shell (rounded radius) of each voxel of a box³ map's rfftn, as
    engine/fourier.fsc counts them."""
    f = np.fft.fftfreq(box) * box
    fh = np.fft.rfftfreq(box) * box
    return np.round(np.sqrt(f[:, None, None] ** 2 + f[None, :, None] ** 2
                            + fh[None, None, :] ** 2)).astype(np.int64)


def shell_power(vol):
    """Power of a cubic map in each Fourier shell 0..box//2."""
    a = np.fft.rfftn(np.asarray(vol, dtype=np.float64))
    r = _shell_radius(a.shape[0]).ravel()
    keep = r <= a.shape[0] // 2
    return np.bincount(r[keep], np.abs(a.ravel()[keep]) ** 2, minlength=a.shape[0] // 2 + 1)


def shell_voxels(box):
    """Number of Fourier coefficients (rfftn) in each shell 0..box//2."""
    r = _shell_radius(box).ravel()
    return np.bincount(r[r <= box // 2], minlength=box // 2 + 1)


def posterior_variance(confidence, z, motion):
    """Each particle's posterior variance along its ``motion`` (n, L: the unit
    direction its confidence was measured along, latent_likelihood.
    motion_tangents) from its confidence c = f / (f + p): 1 / (f + p) =
    (1 − c) / p, p the population's precision along that direction."""
    z = np.asarray(z, dtype=np.float64)
    cov = np.atleast_2d(np.cov(z.T))
    cov = cov + np.eye(len(cov)) * 1e-9 * max(np.trace(cov), 1e-12)
    t = np.asarray(motion, dtype=np.float64)
    p = np.einsum("bi,bi->b", t, np.linalg.solve(cov, t.T).T)
    # a particle without a direction: the population's mean precision
    p = np.where(p > 0, p, len(cov) / np.trace(cov))
    return np.clip(1.0 - np.asarray(confidence, dtype=np.float64), 0.0, 1.0) / p


def neighbourhood(z, point, members, population, variance):
    """Rows of the widest neighbourhood, in the order they join: the frame's
    ``members`` (in row order, as the frame's own map inserts them), then the
    rest of ``population`` by expected squared distance to ``point`` (the
    squared distance of the latent plus its posterior ``variance``), up to
    WIDTHS[-1] times the members."""
    members = np.sort(np.asarray(members))
    d2 = ((z - point) ** 2).sum(1) + variance
    rest = np.setdiff1d(np.asarray(population), members)
    rest = rest[np.argsort(d2[rest], kind="stable")]
    return np.concatenate([members, rest])[:int(round(WIDTHS[-1] * len(members)))]


def expansion_axes(offsets, variance, motion, rel=1e-6):
    """(axes (A, L), their standard deviations (A,)): the principal axes of
    the neighbourhood's states: latents ``offsets`` from the frame, each
    spread by its posterior ``variance`` along its ``motion``."""
    cov = np.atleast_2d(np.cov(offsets.T)) if len(offsets) > 1 else \
        np.zeros((offsets.shape[1],) * 2)
    cov = cov + np.einsum("b,bi,bj->ij", variance, motion, motion) / len(offsets)
    w, v = np.linalg.eigh(cov)
    keep = w > rel * max(w.max(), 1e-300)
    return v[:, keep].T, np.sqrt(w[keep])


def neighbourhood_sizes(n_members, n_rows):
    """The nested neighbourhoods' particle counts (WIDTHS × the members, as far
    as ``n_rows`` reach), increasing."""
    return sorted({min(int(round(w * n_members)), n_rows) for w in WIDTHS})


def state_moments(offsets, variance, motion, sizes):
    """(mean offset, spread) (len(sizes), A) of the states of each nested
    neighbourhood on the expansion's axes: ``offsets`` (m, A) the latents
    minus the frame point, ``variance`` (m,) each one's posterior variance
    along its ``motion`` (m, A) on the axes."""
    along = variance[:, None] * motion ** 2
    means = np.array([offsets[:n].mean(0) for n in sizes])
    spreads = np.array([offsets[:n].var(0) + along[:n].mean(0) for n in sizes])
    return means, spreads


def bias_maps(render, point, axes, steps, means, spreads):
    """(decoded map at the point, each neighbourhood's bias map): the mean
    decoded map over the neighbourhood's states minus the frame's, to second
    order along each axis (central differences of ``steps``), accumulated
    axis by axis so that memory stays a few maps whatever the latent size."""
    g0 = np.asarray(render(point), dtype=np.float64)
    biases = [np.zeros_like(g0) for _ in means]
    for j, (u, h) in enumerate(zip(axes, steps)):
        plus = np.asarray(render(point + h * u), dtype=np.float64)
        minus = np.asarray(render(point - h * u), dtype=np.float64)
        first = (plus - minus) / (2 * h)
        second = (plus - 2 * g0 + minus) / (h * h)
        for b, m, s in zip(biases, means[:, j], spreads[:, j]):
            b += m * first + 0.5 * (m * m + s) * second
    return g0, biases


def choose_widths(g0, biases, sizes, fsc_half):
    """Index into ``sizes`` (the nested neighbourhoods, the first being the
    frame's own particles) of the neighbourhood each Fourier shell takes,
    non-decreasing with the shell (see the module docstring): predicted error
    = the power of each neighbourhood's bias map + the noise of its count,
    from ``fsc_half``, the half-map FSC of the frame's own particles, against
    the power of the decoded map ``g0``."""
    f = np.clip(np.asarray(fsc_half, dtype=np.float64), 0.0, 1.0 - 1e-6)
    ssnr = 2.0 * f / (1.0 - f) / sizes[0]                 # one particle's, per shell
    noise = shell_power(g0) / np.maximum(ssnr, 1e-12)
    errors = np.array([shell_power(b) + noise / n for b, n in zip(biases, sizes)])
    # a wider neighbourhood only where its gain stands out of the shell's own
    # scatter: an error summed over v coefficients varies by about 1/√v of it
    margin = 1.0 - SIGNIFICANCE / np.sqrt(np.maximum(shell_voxels(len(g0)), 1))
    errors[1:][errors[1:] > errors[0] * margin] = np.inf
    pick = np.argmin(errors, axis=0)
    # where the decoded map has no power left (finer than its Gaussians),
    # both terms are round-off: such shells take the last choice before them
    power = shell_power(g0)
    for k in np.nonzero(power <= 1e-20 * power.max())[0]:
        pick[k] = pick[k - 1] if k > 0 else 0
    return np.minimum.accumulate(pick[::-1])[::-1]       # never shrinks outwards


def compose_shells(maps, pick):
    """One map whose Fourier shell k (as engine/fourier.fsc counts them;
    beyond the last shell, the last one's choice) is that of
    ``maps[pick[k]]``."""
    fts = [np.fft.rfftn(np.asarray(m, dtype=np.float64)) for m in maps]
    which = np.asarray(pick)[np.minimum(_shell_radius(fts[0].shape[0]), len(pick) - 1)]
    out = np.zeros_like(fts[0])
    for i, ft in enumerate(fts):
        out[which == i] = ft[which == i]
    return np.fft.irfftn(out, s=np.asarray(maps[0]).shape).astype(np.float32)


def widening_frame(z, point, members, population, confidence, motion, render,
                   reconstruct_nested):
    """(Reconstruction, particles in each Fourier shell) of a frame's map whose
    neighbourhood widens with the shell. ``members``: the frame's own
    particles; ``population``: the rows it may draw on; ``confidence`` (n,)
    and ``motion`` (n, L): each row's latent confidence and the direction it
    was measured along; ``render(latent point)``: the decoded map;
    ``reconstruct_nested(rows, sizes)``: the Reconstructions of the first
    ``sizes[i]`` of ``rows`` (engine/reconstruct.py)."""
    from .fourier import fsc, resolution_at
    from .reconstruct import Reconstruction
    z = np.asarray(z, dtype=np.float64)
    variance = posterior_variance(confidence, z, motion)
    rows = neighbourhood(z, point, members, population, variance)
    sizes = neighbourhood_sizes(len(members), len(rows))
    recs = reconstruct_nested(rows[:sizes[-1]], sizes)
    offsets, variance, motion = z[rows] - point, variance[rows], motion[rows]
    axes, steps = expansion_axes(offsets, variance, motion)
    means, spreads = state_moments(offsets @ axes.T, variance, motion @ axes.T, sizes)
    g0, biases = bias_maps(render, point, axes, steps, means, spreads)
    pick = choose_widths(g0, biases, sizes, recs[0].fsc)
    half1 = compose_shells([r.half1 for r in recs], pick)
    half2 = compose_shells([r.half2 for r in recs], pick)
    curve = fsc(half1, half2)
    rec = Reconstruction(full=compose_shells([r.full for r in recs], pick), half1=half1,
                         half2=half2, fsc=curve, apix=recs[0].apix,
                         resolution=resolution_at(curve, half1.shape[0], recs[0].apix))
    return rec, np.asarray(sizes)[pick]
