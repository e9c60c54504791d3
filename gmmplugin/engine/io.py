"""Map and result files, written atomically so a crash never leaves half a file."""
import json
import os
import tempfile

import mrcfile
import numpy as np


def _atomic(path, writer, suffix):
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, suffix=suffix)
    os.close(fd)
    try:
        writer(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def write_map(path, vol, apix):
    """Write a float32 MRC map with its voxel size."""
    def w(tmp):
        with mrcfile.new(tmp, overwrite=True) as m:
            m.set_data(np.ascontiguousarray(vol, dtype=np.float32))
            m.voxel_size = apix
    _atomic(path, w, ".mrc")


def read_map(path):
    """Return (array float32 [z, y, x], voxel size Å). Clear errors for bad files."""
    if not os.path.exists(path):
        raise FileNotFoundError("map not found: %s" % path)
    try:
        with mrcfile.open(path, permissive=False) as m:
            vol = np.asarray(m.data, dtype=np.float32).copy()
            apix = float(m.voxel_size.x)
    except ValueError as e:
        raise ValueError("cannot read map %s: %s" % (path, e))
    if vol.ndim != 3 or len(set(vol.shape)) != 1:
        raise ValueError("map %s must be a cubic 3D volume, got shape %s" % (path, vol.shape))
    if not np.all(np.isfinite(vol)):
        raise ValueError("map %s contains NaN or infinite values" % path)
    return vol, apix


def write_npz(path, **arrays):
    """``np.savez`` to exactly ``path``, atomically."""
    _atomic(path, lambda tmp: np.savez(tmp, **arrays), ".npz")


def write_npy(path, array):
    """``np.save`` to exactly ``path``, atomically."""
    _atomic(path, lambda tmp: np.save(tmp, array), ".npy")


def write_json(path, data):
    def w(tmp):
        with open(tmp, "w") as f:
            json.dump(data, f, indent=2)
    _atomic(path, w, ".json")


def write_fsc(path, curve, box, apix):
    """Two columns: spatial frequency (1/Å), FSC."""
    freq = np.arange(len(curve)) / (box * apix)
    def w(tmp):
        np.savetxt(tmp, np.column_stack([freq, curve]), fmt="%.6f",
                   header="frequency_1/A fsc")
    _atomic(path, w, ".txt")


def read_fsc(path):
    data = np.loadtxt(path)
    return data[:, 0], data[:, 1]
