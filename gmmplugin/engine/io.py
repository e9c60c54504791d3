"""Map and result files, written atomically so a crash never leaves half a file."""
import json
import os
import tempfile

import mrcfile
import numpy as np


def write_atomically(path, writer, suffix):
    """Run ``writer(tmp)`` on a temporary file beside ``path``, then rename it into
    place: readers see the old file or the whole new one, never a partial one."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, suffix=suffix)
    os.close(fd)
    try:
        writer(tmp)
        os.chmod(tmp, 0o666 & ~_umask())    # mkstemp makes 0600: follow the user's umask
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def _umask():
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_map(path, vol, apix):
    """Write a float32 MRC map with its voxel size."""
    def w(tmp):
        with mrcfile.new(tmp, overwrite=True) as m:
            m.set_data(np.ascontiguousarray(vol, dtype=np.float32))
            m.voxel_size = apix
    write_atomically(path, w, ".mrc")


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
    write_atomically(path, lambda tmp: np.savez(tmp, **arrays), ".npz")


def write_npy(path, array):
    """``np.save`` to exactly ``path``, atomically."""
    write_atomically(path, lambda tmp: np.save(tmp, array), ".npy")


def write_json(path, data):
    def w(tmp):
        with open(tmp, "w") as f:
            json.dump(data, f, indent=2)
    write_atomically(path, w, ".json")


def write_fsc(path, curve, box, apix):
    """Two columns: spatial frequency (1/Å), FSC."""
    freq = np.arange(len(curve)) / (box * apix)
    def w(tmp):
        np.savetxt(tmp, np.column_stack([freq, curve]), fmt="%.6f",
                   header="frequency_1/A fsc")
    write_atomically(path, w, ".txt")


def read_fsc(path):
    """(spatial frequency 1/Å, FSC) of a curve written by :func:`write_fsc`."""
    data = np.loadtxt(path, ndmin=2)
    return data[:, 0], data[:, 1]


def read_map_origin(path):
    """MRC header origin (Å, xyz): where voxel (0, 0, 0) sits, as model viewers use."""
    with mrcfile.open(path, header_only=True, permissive=True) as m:
        o = m.header.origin
        return np.array([float(o.x), float(o.y), float(o.z)])
