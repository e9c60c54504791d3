"""Command-line entry point of the engine: ``python -m gmmplugin.engine.cli CMD``.

Commands: simulate, reconstruct, fit, train, analyze, refine-poses,
refine-models (atomic/cli_refine.py).

Protocols call it through ``runJob`` (so runs can be queued and use the GPUs
the user chose); it is equally usable outside Scipion on RELION .star files.
Every command checks its inputs first and exits with a one-line error
(status 2) instead of a traceback from deep inside torch.
"""
import argparse
import os
import sys
import time

import numpy as np


def _load_particles(path):
    from .data import Particles
    from .starfile import read_star
    if not os.path.exists(path):
        raise FileNotFoundError("particles file not found: %s" % path)
    return read_star(path) if path.endswith(".star") else Particles.load(path)


def _rows(particles, ids_file):
    """Rows of the particles whose ids are listed in ``ids_file`` (None: all)."""
    if not ids_file:
        return np.arange(len(particles))
    ids = np.loadtxt(ids_file, dtype=np.int64, ndmin=1)
    index = {int(i): r for r, i in enumerate(particles.ids)}
    missing = [int(i) for i in ids if int(i) not in index]
    if missing:
        raise ValueError("%d requested ids are not in the particle set (e.g. %d)"
                         % (len(missing), missing[0]))
    return np.array([index[int(i)] for i in ids], dtype=np.int64)


def cmd_simulate(a):
    from .simulate import Heterogeneity, SimulationSettings, simulate
    s = SimulationSettings(n_particles=a.n, box=a.box, apix=a.apix, snr=a.snr,
                           defocus_min=a.defocus_min, defocus_max=a.defocus_max,
                           astigmatism=a.astigmatism, shift_sigma=a.shift_sigma,
                           atom_sigma=a.atom_sigma, per_stack=a.per_stack, seed=a.seed)
    axis = tuple(float(v) for v in a.axis.split(",")) if a.axis else None
    het = Heterogeneity(move=a.move, motion=a.motion, amount=a.amount, axis=axis,
                        remove=a.remove, present_fraction=a.present_fraction)
    star = simulate(a.model, a.out_dir, s, het, device=a.device_obj,
                    progress=_progress("simulate"))
    print("wrote %s" % star)


def cmd_reconstruct(a):
    from .io import write_fsc, write_json, write_map
    from .reconstruct import reconstruct
    particles = _load_particles(a.particles)
    rows = _rows(particles, a.ids)
    if a.box and (a.box > particles.box or a.box % 2):
        raise ValueError("--box must be even and <= the particle box (%d)" % particles.box)
    t0 = time.time()
    rec = reconstruct(particles, rows, box=a.box or None, batch_size=a.batch,
                      device=a.device_obj, wiener=a.wiener, pad=a.pad, seed=a.seed,
                      progress=_progress("reconstruct"))
    prefix = os.path.join(a.out_dir, a.name)
    write_map(prefix + ".mrc", rec.full, rec.apix)
    write_map(prefix + "_half1.mrc", rec.half1, rec.apix)
    write_map(prefix + "_half2.mrc", rec.half2, rec.apix)
    write_fsc(prefix + "_fsc.txt", rec.fsc, rec.full.shape[0], rec.apix)
    write_json(prefix + ".json", {"particles": int(len(rows)), "apix": rec.apix,
                                  "box": int(rec.full.shape[0]),
                                  "resolution_0143": rec.resolution,
                                  "seconds": time.time() - t0})
    print("reconstructed %d particles: FSC 0.143 at %.2f Å" % (len(rows), rec.resolution))


def _map_origin(path):
    """MRC header origin (Å, xyz): where voxel (0, 0, 0) sits, as model viewers use."""
    import mrcfile
    with mrcfile.open(path, header_only=True, permissive=True) as m:
        o = m.header.origin
        return np.array([float(o.x), float(o.y), float(o.z)])


def cmd_fit(a):
    """Neutral GMM from a map, a model, or a map seeded by a model."""
    from .atoms import read_atoms
    from .fit_neutral import fit_neutral, map_from_atoms
    from .io import read_map, write_fsc, write_json, write_map
    if not a.map and not a.model:
        raise ValueError("give --map, --model or both")
    if a.resolution <= 0:
        raise ValueError("--resolution must be positive")
    seeds = weights = None
    if a.map:
        target, apix = read_map(a.map)
        origin = _map_origin(a.map)
        if a.apix:
            apix = a.apix
        if a.model:
            xyz, z, _, _ = read_atoms(a.model)
            seeds = xyz - origin - (target.shape[0] // 2) * apix
            weights = z
    else:
        xyz, z, _, _ = read_atoms(a.model)
        target, apix, box, centre, seeds = map_from_atoms(xyz, z, a.resolution,
                                                          device=a.device_obj)
        weights = z
        origin = centre - (box // 2) * apix
        write_map(os.path.join(a.out_dir, "model_map.mrc"), target, apix)
    mask = None
    if a.mask:
        m, mapix = read_map(a.mask)
        if m.shape != target.shape:
            raise ValueError("mask box %s differs from the map box %s" % (m.shape, target.shape))
        if abs(mapix - apix) > 1e-3 * apix:
            raise ValueError("mask sampling %.4f Å/px differs from the map's %.4f Å/px"
                             % (mapix, apix))
        mask = m > 0.5
        if not mask.any():
            raise ValueError("the mask is empty (no voxel above 0.5)")
    if a.resolution < 2 * apix - 1e-6:
        raise ValueError("target resolution %.2f Å is finer than Nyquist (%.2f Å)"
                         % (a.resolution, 2 * apix))

    def progress(res, it, n, loss):
        if it % 50 == 0 or it == n - 1:
            print("fit at %.1f Å: iteration %d/%d, loss %.5f" % (res, it, n, loss), flush=True)

    gmm, rep, rendered = fit_neutral(target, apix, a.resolution, a.n, mask=mask, seeds=seeds,
                                     seed_weights=weights, device=a.device_obj,
                                     progress=progress, seed=a.seed)
    out = a.out_dir
    os.makedirs(out, exist_ok=True)
    gmm.save(os.path.join(out, "gmm.npz"))
    write_map(os.path.join(out, "gmm_map.mrc"), rendered, apix)
    gmm.write_points(os.path.join(out, "gmm_points.cif"), origin=origin)
    write_fsc(os.path.join(out, "gmm_fsc.txt"), rep.fsc, target.shape[0], apix)
    write_json(os.path.join(out, "fit.json"), {
        "n_gaussians": rep.n_gaussians, "resolution": rep.resolution,
        "seconds": rep.seconds, "fsc_05": rep.fsc_05, "fsc_0143": rep.fsc_0143,
        "fit_box": rep.fit_box, "fit_apix": rep.fit_apix, "apix": apix,
        "box": int(target.shape[0]), "origin": [float(v) for v in origin],
        "source": "map+model" if (a.map and a.model) else ("map" if a.map else "model")})
    print("fitted %d Gaussians in %.0f s: FSC(GMM map, input) 0.5 at %.2f Å, 0.143 at %.2f Å"
          % (rep.n_gaussians, rep.seconds, rep.fsc_05, rep.fsc_0143))


def check_gmm_box(gmm, particles):
    """The GMM must be in the particles' frame: fitted to a map of the same extent."""
    extent_p, extent_g = particles.box * particles.apix, gmm.box * gmm.apix
    if gmm.box and abs(extent_p - extent_g) > 0.02 * extent_p:
        raise ValueError("the GMM was fitted to a %.1f Å box but the particles' box is "
                         "%.1f Å: use a map from the same refinement" % (extent_g, extent_p))


def gaussians_in_mask(mask_path, centers):
    """Boolean (N,): Gaussian centres (Å, origin at voxel D // 2) inside a mask
    (> 0.5); centres outside the mask's box are outside."""
    from .io import read_map
    m, mapix = read_map(mask_path)
    idx = np.round(np.asarray(centers) / mapix + m.shape[0] // 2).astype(int)
    inside = np.all((idx >= 0) & (idx < np.array(m.shape[::-1])), axis=1)
    idx = np.clip(idx, 0, np.array(m.shape[::-1]) - 1)
    return inside & (m[idx[:, 2], idx[:, 1], idx[:, 0]] > 0.5)


def _refine_latents_config(a, cfg, particles):
    """The latent-refinement settings of ``train`` (None when off), checked before
    any training so that a bad value or an impossible memory need fails early."""
    if not a.refine_classes:
        return None
    from .device import total_memory_bytes
    from .fit_neutral import fit_box_for
    from .refine_latents import RefineLatentsConfig, memory_bytes
    res = a.refine_res or cfg.max_res
    if res < 2 * particles.apix - 1e-6:
        raise ValueError("latent refinement resolution %.2f Å is finer than the particles' "
                         "Nyquist (%.2f Å)" % (res, 2 * particles.apix))
    rcfg = RefineLatentsConfig(classes=a.refine_classes, iterations=a.refine_iterations,
                               max_res=res, min_res=cfg.min_res, seed=cfg.seed)
    rcfg.validate(len(particles))
    need = memory_bytes(fit_box_for(particles.box, particles.apix, res), rcfg.classes)
    have = total_memory_bytes(a.device_obj)
    if have and need > 0.6 * have:
        raise ValueError("latent refinement with %d classes at %.1f Å needs about %.1f GB, "
                         "more than this %s can give (%.1f GB): use fewer classes or a "
                         "coarser resolution" % (rcfg.classes, res, need / 1e9,
                                                 a.device_obj, have / 1e9))
    return rcfg


def cmd_train(a):
    """Heterogeneity training; resumable (--continue) from the last checkpoint."""
    from .gmm import Gmm
    from .io import write_json, write_npz
    from .symmetry import asu_mask, expand_particles, symmetry_operators
    from .train import TrainConfig, Trainer
    symmetry_operators(a.symmetry)   # a bad group name fails before any work
    particles = _load_particles(a.particles)
    if not os.path.exists(a.gmm):
        raise FileNotFoundError("GMM file not found: %s" % a.gmm)
    gmm = Gmm.load(a.gmm)
    if not particles.has_ctf and a.ctf_mode == "full":
        raise ValueError("the particles have no CTF; use --ctf-mode phase_flip only for "
                         "phase-flipped data, or provide CTF parameters")
    check_gmm_box(gmm, particles)
    focus = None
    if a.focus_mask:
        focus = gaussians_in_mask(a.focus_mask, gmm.centers)
        print("focus mask: %d of %d Gaussians may vary" % (focus.sum(), len(gmm)))
    source_ids = copies = None
    if symmetry_operators(a.symmetry).shape[0] > 1:
        particles, source_ids, copies = expand_particles(particles, a.symmetry)
        asu = asu_mask(gmm.centers, gmm.params[:, 3], a.symmetry)
        focus = asu if focus is None else focus & asu
        if not focus.any():
            raise ValueError("no Gaussian of the focus mask lies in the asymmetric unit")
        os.makedirs(a.out_dir, exist_ok=True)
        particles.save(os.path.join(a.out_dir, "particles_expanded.npz"))
        print("symmetry %s: %d expanded particles; %d of %d Gaussians (one asymmetric "
              "unit%s) may vary" % (a.symmetry, len(particles), focus.sum(), len(gmm),
                                    " within the focus mask" if a.focus_mask else ""))
    cfg = TrainConfig(latent_dim=a.latent_dim, epochs=a.epochs, batch_size=a.batch,
                      learning_rate=a.lr, max_res=a.max_res, min_res=a.min_res,
                      vary_positions=bool(a.vary_positions),
                      vary_amplitudes=bool(a.vary_amplitudes),
                      vary_widths=bool(a.vary_widths), ctf_mode=a.ctf_mode, seed=a.seed,
                      **({} if a.latent_kl is None else {"latent_kl": a.latent_kl}),
                      **({} if a.loss is None else {"loss": a.loss}))
    rcfg = _refine_latents_config(a, cfg, particles)
    work = os.path.join(a.out_dir, "work")
    trainer = Trainer(particles, gmm, cfg, work, device=a.device_obj, focus_mask=focus,
                      log=lambda m: print(m, flush=True))
    resume = a.continue_from or (trainer.checkpoint_path() if a.resume else "")
    if resume:
        if not os.path.exists(resume):
            raise FileNotFoundError("no checkpoint to continue from: %s" % resume)
        trainer.load_checkpoint(resume)
        print("continuing from epoch %d (%s)" % (trainer.epoch, resume), flush=True)
    t0 = time.time()
    images = trainer.prepare_images()
    feats = trainer.prepare_features(images)
    trainer.train(images, feats)
    z, final_frc = trainer.encode_all(images, feats)
    expansion = {} if source_ids is None else {"source_ids": source_ids, "copies": copies}
    refined, refinement = {}, None
    if rcfg is not None:
        from .refine_latents import refine_latents
        t1 = time.time()
        z_ref, confidence, rhist = refine_latents(particles, z, rcfg, device=a.device_obj,
                                                  log=lambda m: print(m, flush=True))
        refined = {"z_encoder": z, "class_confidence": confidence}
        refinement = dict(rcfg.__dict__, history=rhist, seconds=time.time() - t1)
        z = z_ref
    write_npz(os.path.join(a.out_dir, "latents.npz"), ids=particles.ids, z=z,
              frc=final_frc, neutral_frc=trainer.neutral_frc, **expansion, **refined)
    hist = trainer.history
    write_json(os.path.join(a.out_dir, "training.json"), {
        "config": cfg.__dict__, "history": hist, "particles": len(particles),
        "symmetry": a.symmetry.lower(), "varying_gaussians": int(len(gmm) if focus is None
                                                                 else focus.sum()),
        "gaussians": len(gmm), "box": trainer.box, "apix": trainer.apix,
        "seconds": time.time() - t0, "checkpoint": os.path.abspath(trainer.checkpoint_path()),
        "final_loss": hist[-1]["loss"] if hist else None,
        "particles_per_s": float(np.mean([h["particles_per_s"] for h in hist])) if hist
        else None, "latent_refinement": refinement})
    try:
        from ..viewers.plots import plot_training
        plot_training(hist, os.path.join(a.out_dir, "training_curve.png"),
                      score=trainer.score_name)
    except ImportError:
        pass
    print("trained %d epochs: final loss %.5f" % (trainer.epoch, hist[-1]["loss"]))


def cmd_analyze(a):
    """Classes, trajectories (decoded and reconstructed) and outliers."""
    import torch
    from .analyze import choose_k, classify, find_outliers, reduce, trajectories
    from .gmm import Gmm, render_volume_fourier
    from .io import write_fsc, write_json, write_map, write_npy, write_npz
    from .reconstruct import reconstruct
    from .train import load_decoder
    particles = _load_particles(a.particles)
    lat = np.load(a.latents)
    index = {int(i): r for r, i in enumerate(particles.ids)}
    missing = [int(i) for i in lat["ids"] if int(i) not in index]
    if missing:
        raise ValueError("%d latent ids are not in the particles (e.g. %d)"
                         % (len(missing), missing[0]))
    rows = np.array([index[int(i)] for i in lat["ids"]], dtype=np.int64)
    z = np.asarray(lat["z"], dtype=np.float64)
    if not np.all(np.isfinite(z)):
        raise ValueError("the latent vectors contain NaN or infinite values")
    if len(z) < 4:
        raise ValueError("too few particles to analyse (%d)" % len(z))
    frc = lat["frc"] if "frc" in lat.files else None
    os.makedirs(a.out_dir, exist_ok=True)
    box = a.box or particles.box
    apix = particles.apix * particles.box / box

    k = a.num_classes if a.num_classes > 0 else choose_k(z, seed=a.seed)
    labels, centres = classify(z, k, seed=a.seed)
    outlier, score = find_outliers(z, frc, a.outlier_fraction, a.outlier_threshold)
    zred = reduce(z, a.reduction, seed=a.seed)
    print("%d classes (%s); %d outliers" % (k, "given" if a.num_classes > 0 else
                                            "chosen by silhouette", outlier.sum()), flush=True)

    def recon(sel, prefix):
        if len(sel) < 2:
            return None
        rec = reconstruct(particles, rows[sel], box=box, device=a.device_obj, pad=a.pad,
                          seed=a.seed)
        write_map(prefix + ".mrc", rec.full, rec.apix)
        write_map(prefix + "_half1.mrc", rec.half1, rec.apix)
        write_map(prefix + "_half2.mrc", rec.half2, rec.apix)
        write_fsc(prefix + "_fsc.txt", rec.fsc, box, rec.apix)
        return rec.resolution

    classes = []
    for c in range(k):
        sel = np.nonzero(labels == c)[0]
        res = recon(sel, os.path.join(a.out_dir, "class_%02d" % (c + 1)))
        classes.append({"class": c + 1, "size": int(len(sel)), "resolution": res,
                        "centre": centres[c].tolist()})
        print("class %d: %d particles, FSC 0.143 at %s Å" % (c + 1, len(sel), res), flush=True)

    decoder = None
    if a.checkpoint and a.gmm:
        decoder = load_decoder(a.checkpoint, Gmm.load(a.gmm).params, a.device_obj)
    trajs, _ = trajectories(z, a.num_pcs, a.num_frames, a.per_frame)
    frames = []
    for t in trajs:
        for f, (point, members) in enumerate(zip(t.points, t.members)):
            prefix = os.path.join(a.out_dir, "pc%d_frame_%02d" % (t.pc, f + 1))
            res = recon(members, prefix)
            entry = {"pc": t.pc, "frame": f + 1, "score": float(t.scores[f]),
                     "latent": point.tolist(), "resolution": res,
                     "particles": int(len(members))}
            if decoder is not None:
                with torch.no_grad():
                    params = decoder(torch.tensor(point[None], dtype=torch.float32,
                                                  device=a.device_obj))[0]
                    vol = render_volume_fourier(params.double(), box, apix).cpu().numpy()
                write_map(os.path.join(a.out_dir, "pc%d_gmm_%02d.mrc" % (t.pc, f + 1)),
                          vol, apix)
                write_npy(os.path.join(a.out_dir, "pc%d_gmm_%02d.npy" % (t.pc, f + 1)),
                          params.cpu().numpy())
            frames.append(entry)
        print("trajectory along PC%d: %d frames" % (t.pc, len(t.points)), flush=True)
    write_npz(os.path.join(a.out_dir, "analysis.npz"), ids=lat["ids"], labels=labels,
              zred=zred, outlier=outlier, score=score, z=z,
              frame_members=np.array([[int(lat["ids"][m]) for m in members]
                                      for t in trajs for members in t.members]))
    write_json(os.path.join(a.out_dir, "analysis.json"), {
        "num_classes": k, "k_chosen_automatically": a.num_classes <= 0,
        "classes": classes, "frames": frames, "outliers": int(outlier.sum()),
        "apix": apix, "box": box, "reduction": a.reduction, "decoded": decoder is not None})


def cmd_refine_poses(a):
    """Pose refinement against the decoded (or neutral) GMM of each particle."""
    import torch
    from .gmm import Gmm
    from .io import write_json, write_npz
    from .refine_poses import refine_poses, rotation_angle_deg
    from .train import load_decoder
    particles = _load_particles(a.particles)
    if not os.path.exists(a.gmm):
        raise FileNotFoundError("GMM file not found: %s" % a.gmm)
    gmm = Gmm.load(a.gmm)
    check_gmm_box(gmm, particles)
    dev = a.device_obj
    if a.checkpoint:
        if not a.latents:
            raise ValueError("--checkpoint needs --latents (the particles' latent vectors)")
        lat = np.load(a.latents)
        index = {int(i): r for r, i in enumerate(lat["ids"])}
        missing = [int(i) for i in particles.ids if int(i) not in index]
        if missing:
            raise ValueError("%d particles have no latent vector (e.g. id %d)"
                             % (len(missing), missing[0]))
        z = torch.tensor(lat["z"][[index[int(i)] for i in particles.ids]], dtype=torch.float32)
        decoder = load_decoder(a.checkpoint, gmm.params, dev)

        def params_fn(rows):
            with torch.no_grad():
                return decoder(z[rows].to(dev))
        source = "decoded"
    else:
        neutral = torch.as_tensor(gmm.params, dtype=torch.float32)

        def params_fn(rows):
            return neutral
        source = "neutral"
    if a.max_res < 2 * particles.apix - 1e-6:
        raise ValueError("--max-res %.2f Å is finer than the particles' Nyquist (%.2f Å)"
                         % (a.max_res, 2 * particles.apix))
    focus = None
    if a.focus_mask:
        focus = gaussians_in_mask(a.focus_mask, gmm.centers)
        if not focus.any():
            raise ValueError("no Gaussian lies inside the focus mask")
    t0 = time.time()
    if not 0 <= a.significance < 1:
        raise ValueError("--significance must be in [0, 1), got %g" % a.significance)
    r = refine_poses(particles, params_fn, a.max_res, a.min_res, a.max_angle,
                     a.max_shift, a.iterations, batch_size=a.batch, device=dev,
                     focus=focus, objective=a.objective, significance=a.significance,
                     log=lambda m: print(m, flush=True))
    dang = rotation_angle_deg(particles.rotations, r.rotations)
    dsh = np.linalg.norm(r.shifts - particles.shifts, axis=1)
    refined = particles.subset(np.arange(len(particles)))
    refined.rotations, refined.shifts = r.rotations, r.shifts
    os.makedirs(a.out_dir, exist_ok=True)
    refined.save(os.path.join(a.out_dir, "particles_refined.npz"))
    write_npz(os.path.join(a.out_dir, "refine_stats.npz"), ids=particles.ids, gain=r.gain,
              moved=r.moved, frc=r.frc)
    write_json(os.path.join(a.out_dir, "refine.json"), {
        "particles": len(particles), "source": source, "iterations": a.iterations,
        "objective": a.objective, "significance": a.significance,
        "moved_fraction": float(r.moved.mean()),
        "median_angle_change": float(np.median(dang)),
        "median_shift_change_A": float(np.median(dsh)), "mean_frc": float(r.frc.mean()),
        "particles_per_s": r.rate, "particle_iterations_per_s": r.rate * a.iterations,
        "seconds": time.time() - t0})
    print("refined %d particles (%s GMM): %.1f%% moved significantly; median change "
          "%.2f deg, %.2f Å; %.1f particles/s" % (len(particles), source, 100 * r.moved.mean(),
                                                 np.median(dang), np.median(dsh), r.rate))


def _progress(label):
    state = {"t": 0.0}
    def report(done, total):
        now = time.time()
        if now - state["t"] > 10 or done == total:
            state["t"] = now
            print("%s: %d / %d" % (label, done, total), flush=True)
    return report


def build_parser():
    p = argparse.ArgumentParser(prog="gmmplugin.engine.cli", description=__doc__.split("\n")[0])
    p.add_argument("--device", default="auto",
                   help="auto (GPU if visible, else CPU), cpu, or a CUDA index")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for torch")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("simulate", help="simulate particles with ground truth")
    s.add_argument("--model", required=True, help="atomic model (.pdb/.cif) or GMM (.npz)")
    s.add_argument("--out-dir", required=True)
    s.add_argument("--n", type=int, default=1000)
    s.add_argument("--box", type=int, default=64)
    s.add_argument("--apix", type=float, default=1.5)
    s.add_argument("--snr", type=float, default=0.1, help="0 = no noise")
    s.add_argument("--defocus-min", type=float, default=5000.0)
    s.add_argument("--defocus-max", type=float, default=15000.0)
    s.add_argument("--astigmatism", type=float, default=1000.0)
    s.add_argument("--shift-sigma", type=float, default=3.0)
    s.add_argument("--atom-sigma", type=float, default=1.0)
    s.add_argument("--per-stack", type=int, default=1000)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--move", default="", help='moving selection: "D,E" or "A:10-50"')
    s.add_argument("--motion", default="rotate", choices=["rotate", "translate", "cyclic"])
    s.add_argument("--amount", type=float, default=30.0, help="degrees or Å")
    s.add_argument("--axis", default="", help="x,y,z axis/direction (default automatic)")
    s.add_argument("--remove", default="", help="selection present in a fraction only")
    s.add_argument("--present-fraction", type=float, default=0.5)
    s.set_defaults(func=cmd_simulate)

    r = sub.add_parser("reconstruct", help="direct Fourier inversion with CTF correction")
    r.add_argument("--particles", required=True, help="particles.npz or RELION 3.1 .star")
    r.add_argument("--out-dir", required=True)
    r.add_argument("--name", default="map", help="output file prefix")
    r.add_argument("--ids", default="", help="text file of particle ids to use (default all)")
    r.add_argument("--box", type=int, default=0, help="Fourier-crop to this box first")
    r.add_argument("--wiener", type=float, default=0.05)
    r.add_argument("--pad", type=int, default=2)
    r.add_argument("--batch", type=int, default=64)
    r.add_argument("--seed", type=int, default=0, help="half-set split seed")
    r.set_defaults(func=cmd_reconstruct)
    f = sub.add_parser("fit", help="fit the neutral GMM to a map and/or an atomic model")
    f.add_argument("--map", default="", help="consensus map (.mrc)")
    f.add_argument("--model", default="", help="atomic model (.pdb/.cif): seeds, or the "
                   "only source when no map is given")
    f.add_argument("--mask", default="", help="mask (.mrc, same box): Gaussians outside "
                   "are dropped")
    f.add_argument("--resolution", type=float, required=True, help="target resolution (Å)")
    f.add_argument("--n", type=int, default=0, help="number of Gaussians (0 = automatic)")
    f.add_argument("--apix", type=float, default=0.0, help="override the map's pixel size")
    f.add_argument("--out-dir", required=True)
    f.add_argument("--seed", type=int, default=0)
    f.set_defaults(func=cmd_fit)
    t = sub.add_parser("train", help="heterogeneity training: particles -> latents")
    t.add_argument("--particles", required=True, help="particles.npz or RELION 3.1 .star")
    t.add_argument("--gmm", required=True, help="neutral GMM (.npz)")
    t.add_argument("--out-dir", required=True)
    t.add_argument("--latent-dim", type=int, default=4)
    t.add_argument("--epochs", type=int, default=10)
    t.add_argument("--batch", type=int, default=64)
    t.add_argument("--lr", type=float, default=1e-3)
    t.add_argument("--max-res", type=float, default=8.0)
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
                        "space (0 = off; see engine/refine_latents.py)")
    t.add_argument("--refine-iterations", type=int, default=4,
                   help="classification rounds of the latent refinement")
    t.add_argument("--refine-res", type=float, default=0.0,
                   help="finest resolution (Å) of the latent refinement (0 = --max-res)")
    t.set_defaults(func=cmd_train)
    n = sub.add_parser("analyze", help="classes, trajectories and outliers of latents")
    n.add_argument("--particles", required=True, help="particles.npz or .star")
    n.add_argument("--latents", required=True, help="latents.npz (ids, z[, frc])")
    n.add_argument("--checkpoint", default="", help="trained networks (to decode frames)")
    n.add_argument("--gmm", default="", help="neutral GMM (to decode frames)")
    n.add_argument("--out-dir", required=True)
    n.add_argument("--num-classes", type=int, default=0, help="0 = automatic")
    n.add_argument("--reduction", default="pca", choices=["pca", "umap"])
    n.add_argument("--num-pcs", type=int, default=2)
    n.add_argument("--num-frames", type=int, default=7)
    n.add_argument("--per-frame", type=int, default=500)
    n.add_argument("--outlier-fraction", type=float, default=0.0,
                   help="if > 0: this fraction of highest outlier scores are outliers")
    n.add_argument("--outlier-threshold", type=float, default=3.5,
                   help="robust z-score above which a particle is an outlier (used when "
                        "the fraction is 0; 0 = no outliers)")
    n.add_argument("--box", type=int, default=0, help="reconstruction box (Fourier crop)")
    n.add_argument("--pad", type=int, default=2)
    n.add_argument("--seed", type=int, default=0)
    n.set_defaults(func=cmd_analyze)
    o = sub.add_parser("refine-poses", help="refine poses against each particle's GMM")
    o.add_argument("--particles", required=True, help="particles.npz or .star")
    o.add_argument("--gmm", required=True, help="neutral GMM (.npz)")
    o.add_argument("--checkpoint", default="", help="trained networks (decoded GMMs)")
    o.add_argument("--latents", default="", help="latents.npz (with --checkpoint)")
    o.add_argument("--out-dir", required=True)
    o.add_argument("--max-res", type=float, default=8.0)
    o.add_argument("--min-res", type=float, default=100.0)
    o.add_argument("--max-angle", type=float, default=10.0, help="degrees")
    o.add_argument("--max-shift", type=float, default=5.0, help="Å")
    o.add_argument("--iterations", type=int, default=60)
    o.add_argument("--batch", type=int, default=64)
    o.add_argument("--focus-mask", default="", help="align on the masked Gaussians only")
    o.add_argument("--objective", default="ml", choices=["ml", "frc"],
                   help="ml: noise-whitened correlation (maximum likelihood); frc: mean FRC")
    o.add_argument("--significance", type=float, default=0.05,
                   help="keep a refined pose only if it beats the input pose at this level "
                        "(likelihood-ratio test); 0 keeps every refined pose")
    o.set_defaults(func=cmd_refine_poses)
    from .atomic.cli_refine import add_parser as add_refine_models
    add_refine_models(sub)
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    from .device import pick_device, set_cpu_threads
    set_cpu_threads(args.threads)
    args.device_obj = pick_device(args.device)
    try:
        args.func(args)
    except (ValueError, FileNotFoundError, KeyError) as e:
        print("ERROR: %s" % e, file=sys.stderr, flush=True)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
