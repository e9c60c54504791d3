"""Files other programs read: cryoDRGN's latent pickles and a ChimeraX script.

cryoDRGN keeps a latent space as ``z.pkl`` (a pickled float32 array, one row
per particle in the order of its particle stack) and a subset as ``ind.pkl``
(a pickled int64 array of 0-based rows into that order), so its analysis
commands (``cryodrgn analyze_landscape``, ``eval_vol --zfile``, the notebooks)
pick a subset with ``z[ind]``. Exporting a subset the same way keeps it
comparable with the full space it came from.

Torch-free (numpy and pickle only), so the Scipion layer can import it.
"""
import os
import pickle

import numpy as np

Z_PKL, IND_PKL, SERIES_CXC = "z.pkl", "ind.pkl", "series.cxc"


def write_pkl(path, array):
    """Pickle ``array`` as cryoDRGN's ``utils.save_pkl`` does."""
    with open(path, "wb") as f:
        pickle.dump(array, f)
    return path


def read_pkl(path):
    with open(path, "rb") as f:
        return pickle.load(f)


def cryodrgn_latents(ids, z, full_ids=None, full_z=None):
    """(z rows to write, ind rows or None) for particles ``ids`` with latents ``z``.

    With the latent space the particles come from (``full_ids``, ``full_z``, rows
    in its particle order), a strict subset is written as that whole space and
    the subset's rows into it, as cryoDRGN stores a filtered selection. The
    subset's own latents must be the space's rows (to float32 precision);
    otherwise they were changed after training, and only they are written.
    Raises ValueError for duplicate ids or a ragged latent array.
    """
    ids = np.asarray(ids, dtype=np.int64)
    z = np.asarray(z, dtype=np.float32)
    if z.ndim != 2 or len(z) != len(ids):
        raise ValueError("latents must be one row of equal length per particle")
    if len(np.unique(ids)) != len(ids):
        raise ValueError("particle ids are not unique")
    if full_ids is None or full_z is None:
        return z, None
    full_ids = np.asarray(full_ids, dtype=np.int64)
    full_z = np.asarray(full_z, dtype=np.float32)
    row = {int(i): r for r, i in enumerate(full_ids)}
    if len(full_ids) <= len(ids) or any(int(i) not in row for i in ids) \
            or full_z.shape[1:] != z.shape[1:]:
        return z, None
    ind = np.array([row[int(i)] for i in ids], dtype=np.int64)
    if not np.array_equal(full_z[ind], z):
        return z, None
    return full_z, ind


def write_cryodrgn(folder, ids, z, full_ids=None, full_z=None):
    """Write ``z.pkl`` (and ``ind.pkl`` for a subset, see :func:`cryodrgn_latents`)
    into ``folder``; returns (paths written, rows of z.pkl, subset size)."""
    os.makedirs(folder, exist_ok=True)
    rows, ind = cryodrgn_latents(ids, z, full_ids, full_z)
    paths = [write_pkl(os.path.join(folder, Z_PKL), rows)]
    if ind is not None:
        paths.append(write_pkl(os.path.join(folder, IND_PKL), ind))
    elif os.path.exists(os.path.join(folder, IND_PKL)):
        os.remove(os.path.join(folder, IND_PKL))     # a stale subset would mislead
    return paths, len(rows), len(ids)


def _quoted(path):
    path = os.path.abspath(path)
    return '"%s"' % path if any(c.isspace() for c in path) else path


def chimerax_series_script(path, maps, fps=4):
    """A ChimeraX command script that opens ``maps`` (in order) as one volume
    series and plays it in a loop; ``chimerax path`` or File > Open runs it.
    Paths are absolute, so the script works from any folder."""
    if not maps:
        raise ValueError("no maps to put in the series")
    with open(path, "w") as f:
        f.write("open %s vseries true\n" % " ".join(_quoted(m) for m in maps))
        f.write("vseries play #1 loop true maxFrameRate %d\n" % fps)
    return path
