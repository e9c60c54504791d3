"""Re-read each particle's latent by 3D classification along the latent space.

Why: the encoder reads a particle's state from one gradient at the neutral
model, a linear view of the motion, and the decoder, trained on those noisy
latents, is shrunk towards the mean. For a small domain moving on a closed
loop both lose phase that the images still hold. Reconstructions of the particles grouped by latent are not shrunk,
so a few rounds of masked 3D classification against them recover part of it:

1. k-means on the latents: K classes, with centres c_k in latent coordinates.
2. Mask: where the class reconstructions differ (standard deviation over the
   classes of the low-passed class maps; the largest connected region,
   dilated). Outside it every reference is the consensus, which keeps the
   reconstruction noise of the static part out of the comparison.
3. Each round, in one pass over the particles: every particle is compared with
   the references of the *other* half set (gold standard: never with a map it
   contributed to), smoothed over neighbouring classes in latent space and
   Wiener-filtered by the half-set FSC of the class deviations, by its
   profile log-likelihood (noise-whitened, at its pose and CTF). Its most
   probable class feeds the next round's references.
4. After each round every class centre moves to the posterior-weighted mean
   encoder latent of its particles (``member_means``), so a class that k-means
   left in the middle of a loop goes where the encoder puts its state, and the
   smoothing follows the moved centres. The particle's new latent is the
   posterior mean ``Σ_k p_k c_k`` of the moved centres: it stays in the
   decoder's coordinates. With moving centres further rounds keep improving the
   latents, where fixed centres stall after two.

Memory: accumulators and a reference per class and half set on a grid padded
twice, about ``64 K (2·box)³`` bytes (``settings.memory_bytes``).
"""

import numpy as np
import torch

from .ctf import compute_ctf
from .fourier import (band_mask, crop_images, freq_grid_2d, image_ft, shell_index,
                      whitening_weights)
from .reconstruct import FourierInserter
from .sampling import crop_box_for
from .settings import FEW_PER_CLASS, TOP_CLASSES


def _distances(centres):
    """(K, K) distances between class centres and the median distance from a
    centre to its nearest neighbour (the unit of smoothing and of centre moves)."""
    d = np.linalg.norm(centres[:, None] - centres[None], axis=-1)
    nn = np.sort(d + np.diag(np.full(len(d), np.inf)), axis=1)[:, 0]
    return d, float(np.median(nn))


def _smoothing(centres, smooth):
    """Row-stochastic (K, K) weights exp(-d² / 2h²) between class centres."""
    d, nn = _distances(centres)
    h = smooth * nn
    if h <= 0:
        return np.eye(len(d))
    w = np.exp(-0.5 * (d / h) ** 2)
    return w / w.sum(1, keepdims=True)


def member_means(centres, mass, moment, min_mass=0.5):
    """(K, d) class centres moved to the posterior-weighted mean encoder latent of
    their particles (``moment / mass``); a class holding less than ``min_mass``
    particles stays put. Also returns the median move in units of the median
    distance between neighbouring centres (the log's convergence figure).

    Why: k-means on a cloud puts some centres where no state is, e.g. in the
    middle of a loop, and a particle given such a class gets a latent with no
    meaningful direction. Once a class's particles share a state, the mean of
    their encoder latents is where the encoder puts that state, and it stays in
    the decoder's coordinates."""
    held = mass > min_mass
    new = centres.clone()
    new[held] = moment[held] / mass[held, None]
    c = centres.cpu().numpy()
    nn = _distances(c)[1]
    moved = np.linalg.norm(new.cpu().numpy() - c, axis=1)
    return new, float(np.median(moved) / max(nn, 1e-12))


def pooled_shell_fsc(a, b, shells):
    """FSC per shell between maps ``a`` and ``b`` (K, N) complex, pooled over the K
    pairs: one curve from many small, noisy class maps."""
    n = int(shells.max()) + 1
    acc = torch.zeros(3, n, dtype=torch.float64, device=a.device)
    for ak, bk in zip(a, b):
        acc[0].index_add_(0, shells, (ak * bk.conj()).real.double())
        acc[1].index_add_(0, shells, (ak.real ** 2 + ak.imag ** 2).double())
        acc[2].index_add_(0, shells, (bk.real ** 2 + bk.imag ** 2).double())
    return acc[0] / (acc[1] * acc[2]).sqrt().clamp_min(1e-30)


class _Slicer:
    """Central slices of padded 3D transforms at the data's band pixels."""

    def __init__(self, box, apix, min_res, max_res, device):
        self.box, self.P = box, 2 * box
        ky, kx = freq_grid_2d(box, apix, device)
        self.rings, self.sel = band_mask(box, apix, min_res, max_res, device)
        shape = (box, box // 2 + 1)
        self.ky, self.kx = ky.expand(shape)[self.sel], kx.expand(shape)[self.sel]
        jy = torch.fft.fftfreq(box, d=1.0 / box, device=device)[:, None].expand(shape)
        jx = torch.fft.rfftfreq(box, d=1.0 / box, device=device)[None, :].expand(shape)
        self.jy, self.jx = 2 * jy[self.sel], 2 * jx[self.sel]   # padded-grid units

    def __call__(self, refs, rotations):
        """(K, B, M) slices of ``refs`` (K, P³) at each particle's orientation."""
        P = self.P
        q = (self.jx[None, :, None] * rotations[:, None, 0, :]
             + self.jy[None, :, None] * rotations[:, None, 1, :])     # (B, M, 3) xyz
        q0 = torch.floor(q)
        f = q - q0
        q0 = q0.long()
        out = 0
        for dz in (0, 1):
            for dy in (0, 1):
                for dx in (0, 1):
                    w = ((f[..., 2] if dz else 1 - f[..., 2])
                         * (f[..., 1] if dy else 1 - f[..., 1])
                         * (f[..., 0] if dx else 1 - f[..., 0]))
                    idx = ((((q0[..., 2] + dz) % P) * P + (q0[..., 1] + dy) % P) * P
                           + (q0[..., 0] + dx) % P)
                    out = out + refs[:, idx] * w
        return out


class LatentRefiner:
    def __init__(self, particles, z, cfg, device="cpu", log=print):
        cfg.validate(len(particles))
        self.p, self.cfg, self.log = particles, cfg, log
        per_class = len(particles) / (2 * cfg.classes)
        if per_class < FEW_PER_CLASS:
            log("WARNING: latent refinement with %.0f particles per class and half set; "
                "below %d the class maps are too noisy to gain from (use fewer classes)"
                % (per_class, FEW_PER_CLASS))
        self.device = torch.device(device)
        self.z = np.asarray(z, dtype=np.float64)
        self.box = crop_box_for(particles.box, particles.apix, cfg.max_res)
        self.apix = particles.apix * particles.box / self.box
        self.slicer = _Slicer(self.box, self.apix, cfg.min_res, cfg.max_res, self.device)
        K = cfg.classes
        from sklearn.cluster import KMeans
        km = KMeans(K, n_init=4, random_state=cfg.seed).fit(self.z)
        self.centres, self.labels = km.cluster_centers_, km.labels_.astype(np.int64)
        self.halves = np.random.default_rng(cfg.seed).permutation(len(particles)) % 2
        self._set_smoothing(self.centres)
        self.mask, self.mask_fraction = None, 1.0    # no mask: the whole box
        self.weights = None

    # -- references ---------------------------------------------------------------
    def _inserter(self):
        return FourierInserter(self.box, self.apix, n_maps=2 * self.cfg.classes, pad=2,
                               device=self.device)

    def _batches(self):
        for b in self.p.batches(self.cfg.batch_size, device=self.device):
            b["images"] = crop_images(b["images"], self.box).float()
            yield b

    def _insert(self, ins, b, labels):
        rows = b["rows"]
        which = torch.as_tensor(self.halves[rows] * self.cfg.classes + labels,
                                device=self.device)
        ins.insert(b["images"], b["rotations"], b["shifts"], b["ctf"], which=which,
                   phase_flipped=self.p.phase_flipped)

    def _references(self, ins):
        """(2, K, P³) complex64 references, each smoothed over neighbouring classes
        and equal to its half set's consensus outside the mask. Built one class at a
        time, so the only full-size arrays are the accumulators and the result.

        Each reference is its half set's consensus plus its class's deviation from
        it. With ``fsc_weight`` the deviations are Wiener-filtered by their half-set
        FSC (pooled over the classes): E[signal | noisy map] = FSC · map per shell,
        so the comparison uses each class's signal only as far as it is measured."""
        P, K, cfg = 2 * self.box, self.cfg.classes, self.cfg
        out = torch.empty(2, K, P ** 3, dtype=torch.complex64, device=self.device)
        cons_ft = []
        for half in (0, 1):
            sl = slice(half * K, (half + 1) * K)
            num_re, num_im, den = ins.num_re[sl], ins.num_im[sl], ins.den[sl]
            dtot = den.sum(0)
            cons = torch.complex(num_re.sum(0), num_im.sum(0)) / (
                dtot + cfg.wiener * ins.shell_mean(dtot) + 1e-12)
            cons_real = (torch.fft.ifftn(cons.reshape(P, P, P))
                         if self.mask is not None else None)
            cons_ft.append(cons.to(torch.complex64))
            del dtot
            for k in range(K):
                w = self.smooth[k]
                d = w @ den
                r = torch.complex(w @ num_re, w @ num_im) / (
                    d + cfg.wiener * ins.shell_mean(d) + 1e-12)
                if self.mask is None:      # linear: stay in Fourier space
                    out[half, k] = r - cons
                else:
                    dev = self.mask * (torch.fft.ifftn(r.reshape(P, P, P)) - cons_real)
                    out[half, k] = torch.fft.fftn(dev).flatten()
        if cfg.fsc_weight:
            fsc = self._deviation_fsc(out)
            out *= fsc[shell_index(P, self.device)].to(out.dtype)
        out += torch.stack(cons_ft)[:, None]
        return out

    def _deviation_fsc(self, dev):
        """Per-shell FSC of the two half sets' deviations, clipped to [0, 1] for
        use as a filter; logs where it falls below 0.143."""
        P = 2 * self.box
        fsc = pooled_shell_fsc(dev[0], dev[1], shell_index(P, self.device)).clamp(0, 1)
        inside = fsc.cpu().numpy()[:P // 2 + 1]       # shells up to the data's Nyquist
        low = np.flatnonzero(inside[1:] < 0.143)
        if len(low):
            self.log("latent refinement: class-specific signal (half-set FSC of the "
                     "deviations 0.143) to %.1f Å" % (P * self.apix / (low[0] + 1)))
        else:
            self.log("latent refinement: class-specific signal up to the band's edge "
                     "(%.1f Å): a finer resolution may help" % (2 * self.apix))
        return fsc.float()

    def _make_mask(self, ins):
        """Where the class maps differ; None (no mask) when nothing stands out."""
        import scipy.ndimage as ndi
        K, cfg = self.cfg.classes, self.cfg
        maps = []
        for k in range(K):
            v = ins.volume([k, K + k], cfg.wiener)
            maps.append(ndi.gaussian_filter(v, 1.5))
        maps = np.stack(maps)
        sd = (maps - maps.mean(0)).std(0)
        m = sd > cfg.mask_threshold * sd.max() if sd.max() > 0 else np.zeros_like(sd, bool)
        lab, n = ndi.label(m)
        if n == 0:
            self.log("latent refinement: the class maps do not differ; no mask")
            return None
        sizes = ndi.sum(m, lab, range(1, n + 1))
        m = ndi.binary_dilation(lab == 1 + int(np.argmax(sizes)), iterations=cfg.mask_dilation)
        m = ndi.gaussian_filter(m.astype(np.float64), 1.0)
        self.mask_fraction = float((m > 0.5).mean())
        self.log("latent refinement: mask of the varying region, %.1f %% of the box"
                 % (100 * self.mask_fraction))
        P, lo = 2 * self.box, self.box // 2
        pad = np.zeros((P, P, P))
        pad[lo:lo + self.box, lo:lo + self.box, lo:lo + self.box] = m
        return torch.fft.ifftshift(torch.as_tensor(pad, device=self.device))

    # -- scores -------------------------------------------------------------------
    def _loglik(self, refs, b):
        """(B, K) profile log-likelihoods against each class's reference."""
        s = self.slicer
        data = image_ft(b["images"])[:, s.sel]
        pred = s(refs, b["rotations"])                                  # (K, B, M)
        c = compute_ctf(s.ky, s.kx, b["ctf"]).float()
        if self.p.phase_flipped:
            c = c.abs()
        sh = b["shifts"]
        phase = torch.polar(torch.ones_like(c), 2 * np.pi * (sh[:, :1] * s.kx
                                                             + sh[:, 1:] * s.ky))
        pred = pred * (c * phase)[None]
        cross = ((pred * data.conj()[None]).real * self.weights).sum(-1)
        pp = (pred.real ** 2 + pred.imag ** 2).mul(self.weights).sum(-1)
        return (cross.clamp_min(0) ** 2 / pp.clamp_min(1e-30)).T

    def _set_smoothing(self, centres):
        self.smooth = torch.as_tensor(_smoothing(np.asarray(centres), self.cfg.smooth),
                                      dtype=torch.float64, device=self.device)

    def _move_centres(self, centres, mass, moment):
        """Class centres moved to their members' mean encoder latent
        (``member_means``); the neighbour smoothing follows them."""
        new, shift = member_means(centres, mass, moment)
        self._set_smoothing(new.cpu().numpy())
        return new, shift

    # -- the whole refinement -----------------------------------------------------
    def run(self):
        """Refined latents (n, d), the posterior's largest probability per particle,
        and a per-round history."""
        cfg, n = self.cfg, len(self.p)
        ins, sample = self._inserter(), []
        for b in self._batches():
            self._insert(ins, b, self.labels[b["rows"]])
            if sum(len(x) for x in sample) < 512:   # noise power per ring
                sample.append(image_ft(b["images"]))
        self.weights = whitening_weights(torch.cat(sample), self.slicer.rings,
                                         self.slicer.sel)
        self.mask = self._make_mask(ins)
        confidence = np.zeros(n)
        history = []
        top = min(TOP_CLASSES, cfg.classes)
        top_k = np.zeros((n, top), dtype=np.int32)       # 64 bytes per particle
        top_p = np.zeros((n, top), dtype=np.float32)
        centres = torch.as_tensor(self.centres, dtype=torch.float64, device=self.device)
        for it in range(cfg.iterations):
            refs = self._references(ins)
            last = it == cfg.iterations - 1
            ins = None      # free the accumulators before the next ones
            ins = None if last else self._inserter()
            new_labels = np.empty(n, dtype=np.int64)
            mass = torch.zeros(cfg.classes, dtype=torch.float64, device=self.device)
            moment = torch.zeros_like(centres)
            for b in self._batches():
                rows = b["rows"]
                ll = torch.empty(len(rows), cfg.classes, device=self.device)
                for half in (0, 1):
                    sel = np.flatnonzero(self.halves[rows] == half)
                    if len(sel):
                        sub = {k: (v[sel] if torch.is_tensor(v) else v)
                               for k, v in b.items()}
                        ll[sel] = self._loglik(refs[1 - half], sub)
                post = torch.softmax((ll - ll.max(1, keepdim=True).values).double(), 1)
                mass += post.sum(0)
                moment += post.T @ torch.as_tensor(self.z[rows], device=self.device)
                p_top, k_top = post.topk(top, dim=1)
                top_p[rows] = p_top.cpu().numpy()
                top_k[rows] = k_top.cpu().numpy()
                confidence[rows] = p_top[:, 0].cpu().numpy()
                new_labels[rows] = k_top[:, 0].cpu().numpy()
                if not last:
                    self._insert(ins, b, new_labels[rows])
            changed = float((new_labels != self.labels).mean())
            self.labels = new_labels
            record = {"iteration": it + 1, "changed_class": changed,
                      "mean_confidence": float(confidence.mean())}
            if cfg.move_centres:
                centres, record["centre_shift"] = self._move_centres(centres, mass, moment)
            history.append(record)
            self.log("latent refinement round %d/%d: %.1f %% of particles changed class, "
                     "mean posterior of the best class %.2f%s"
                     % (it + 1, cfg.iterations, 100 * changed, confidence.mean(),
                        ", class centres moved by %.2f neighbour distances"
                        % record["centre_shift"] if cfg.move_centres else ""))
            del refs
        self.centres = centres.cpu().numpy()
        # the posterior mean over each particle's TOP_CLASSES most probable classes;
        # the history records the posterior mass they hold
        history[-1]["posterior_kept"] = float(top_p.sum(1).mean())
        weights = top_p.astype(np.float64) / top_p.sum(1, keepdims=True)
        z_new = np.einsum("nt,ntd->nd", weights, self.centres[top_k])
        return z_new.astype(np.float32), confidence.astype(np.float32), history


def refine_latents(particles, z, cfg, device="cpu", log=print):
    """Convenience wrapper: see the module docstring."""
    return LatentRefiner(particles, z, cfg, device, log).run()
