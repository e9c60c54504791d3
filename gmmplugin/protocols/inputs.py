"""Turning Scipion volume-like inputs into files the engine reads."""
import os

import numpy as np


def map_file(volume, converted_path):
    """Absolute path of an MRC file with ``volume``'s data; non-MRC formats are
    converted once with Scipion's ImageHandler to ``converted_path``."""
    fn = os.path.abspath(volume.getFileName().split(":")[0])
    if fn.lower().endswith((".mrc", ".map", ".mrcs")):
        return fn
    from pwem.emlib.image import ImageHandler
    ImageHandler().convert(volume, converted_path)
    return os.path.abspath(converted_path)


def read_mask_stats(mask):
    """Number of voxels above 0.5 in a mask (for _validate)."""
    import mrcfile
    fn = mask.getFileName().split(":")[0]
    try:
        with mrcfile.mmap(fn, permissive=True) as m:
            return int(np.count_nonzero(np.asarray(m.data) > 0.5))
    except (ValueError, OSError):
        return -1
