"""Every file a step writes into its output folder, named once.

The engine writes these names, the protocols find them through Scipion's
filename templates (``GmmProtBase._createFilenameTemplates``), and the viewers
and benchmarks read them, all from this table. Entries with ``%(...)`` fields
are templates: ``path(folder, "class_map", cls=3)`` is ``folder/class_03.mrc``.

Torch-free, so the Scipion layer can import it.
"""
import os

FILES = {
    # conversion (protocols) and pose refinement
    "particles": "particles.npz",               # engine input: metadata + stack paths
    "latents_in": "latents_in.npz",             # the input set's latents (ids, z)
    "particles_refined": "particles_refined.npz",
    "refine_stats": "refine_stats.npz",         # per particle: gain, moved, frc
    "refine_info": "refine.json",
    # reconstruction: one map, its half maps, FSC and summary per name
    "map": "%(name)s.mrc",
    "map_half1": "%(name)s_half1.mrc",
    "map_half2": "%(name)s_half2.mrc",
    "map_fsc": "%(name)s_fsc.txt",
    "map_info": "%(name)s.json",
    # neutral GMM fit
    "gmm": "gmm.npz",
    "gmm_map": "gmm_map.mrc",
    "gmm_points": "gmm_points.cif",
    "gmm_fsc": "gmm_fsc.txt",
    "fit_info": "fit.json",
    "model_map": "model_map.mrc",
    # training
    "latents": "latents.npz",                   # ids, z, zred, frc (+ refinement extras)
    "training": "training.json",
    "training_curve": "training_curve.png",
    "work": "work",                             # the Trainer's folder: WORK_FILES
    "expanded": "particles_expanded.npz",       # symmetry-expanded particles
    # latent analysis
    "analysis": "analysis.npz",
    "analysis_info": "analysis.json",
    "landscape": "landscape.npz",               # population landscape of zRed
    "landscape_png": "landscape.png",
    "class": "class_%(cls)02d",                 # map prefix of class cls (1-based)
    # volume series: "pc1", "pc2" … (principal axes), "class1" … (each class's
    # principal curve), "path" (the path between the user's anchors)
    "frame": "%(series)s_frame_%(frame)02d",    # map prefix of a frame's reconstruction
    "gmm_frame": "%(series)s_gmm_%(frame)02d.mrc",        # decoded GMM map of a frame
    "gmm_frame_params": "%(series)s_gmm_%(frame)02d.npy",  # its (N, 5) Gaussians
    # selection in the latent space
    "selection": "selection.json",              # the polygons and classes that were used
    "selection_info": "selection_info.json",    # how many particles they selected
    # atomic model refinement
    "model_latents": "model_latents.txt",       # one latent row per map (protocol input)
    "models": "models",
    "model": os.path.join("models", "model_%(frame)03d.cif"),
    "start_model": os.path.join("models", "start.cif"),
    "validation": "validation.json",
    "refine_models_info": "refine_models.json",
    "model_decoder": "decoder.pt",
}


# inside a training's work folder (resumable caches and the networks)
WORK_FILES = {
    "checkpoint": "checkpoint.pt",              # networks, optimiser, epoch, settings
    "images": "images_%(box)d.npy",             # particles cropped to the training box
    "features": "features.npy",                 # per-particle gradient features
    "neutral_score": "neutral_frc.npy",         # each particle's score at the neutral GMM
}
FILES["checkpoint"] = os.path.join(FILES["work"], WORK_FILES["checkpoint"])


def work_path(work_dir, key, **fields):
    """A file of a training's work folder."""
    return os.path.join(work_dir, WORK_FILES[key] % fields)


def name(key, **fields):
    """The file name ``key`` in FILES, its template filled by ``fields``."""
    return FILES[key] % fields


def path(folder, key, **fields):
    """``folder``/the file named ``key`` in FILES, its template filled by ``fields``."""
    return os.path.join(folder, name(key, **fields))


def map_files(folder, name):
    """The five files of one reconstruction called ``name``: map, half maps, FSC, info."""
    return {k: path(folder, k, name=name)
            for k in ("map", "map_half1", "map_half2", "map_fsc", "map_info")}
