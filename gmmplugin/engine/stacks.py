"""Images of MRC stacks read by explicit file reads.

A pass over 10⁶ particles reads every stack once. Through memory maps (what
``mrcfile.mmap`` gives) each page read stays mapped in the process and counts
in its resident memory, so the pass would grow the process to the size of the
stacks; and a map per stack holds open files, of which a process may have only
about a thousand, while a RELION project has a stack per micrograph. Here the
header is read once per stack and each request opens the file, reads its frames
(consecutive frames in one call) and closes it: memory holds only the images
asked for, whatever the number of stacks.

Any MRC mode mrcfile knows is read, half precision (mode 12) included; the
images come back as float32.
"""
import os

import mrcfile
from mrcfile.utils import data_dtype_from_header, data_shape_from_header
import numpy as np


class MrcStack:
    """One .mrcs/.mrc file of 2D images: its header, then frames on demand."""

    def __init__(self, path):
        if not os.path.exists(path):
            raise FileNotFoundError("particle stack not found: %s" % path)
        try:
            with mrcfile.open(path, header_only=True, permissive=False) as m:
                header = m.header
                self.dtype = data_dtype_from_header(header)
                shape = data_shape_from_header(header)
                self.offset = int(header.nbytes) + int(header.nsymbt)
        except ValueError as e:
            raise ValueError("cannot read particle stack %s: %s" % (path, e))
        if len(shape) == 2:
            shape = (1,) + tuple(shape)
        self.path, self.shape = path, tuple(int(s) for s in shape)
        self.frame_bytes = self.shape[1] * self.shape[2] * self.dtype.itemsize
        need = self.offset + self.shape[0] * self.frame_bytes
        if os.path.getsize(path) < need:
            raise ValueError("cannot read particle stack %s: the file is shorter (%d bytes) "
                             "than its header says (%d)" % (path, os.path.getsize(path), need))

    def __len__(self):
        return self.shape[0]

    def read(self, frames, out):
        """Write frames (0-based, in any order) into ``out`` (len(frames), ny, nx)."""
        frames = np.asarray(frames, dtype=np.int64)
        if not len(frames):
            return out
        if frames.min() < 0 or frames.max() >= self.shape[0]:
            raise ValueError("stack %s has %d images; image %d requested"
                             % (self.path, self.shape[0], frames.max() + 1))
        order = np.argsort(frames, kind="stable")
        s = frames[order]
        cut = np.flatnonzero(np.diff(s) != 1) + 1
        raw = np.empty((len(s),) + self.shape[1:], dtype=self.dtype)
        flat = raw.reshape(-1).view(np.uint8)
        fd = os.open(self.path, os.O_RDONLY)
        try:
            for a, b in zip(np.concatenate([[0], cut]), np.concatenate([cut, [len(s)]])):
                want = (b - a) * self.frame_bytes
                got = os.preadv(fd, [flat[a * self.frame_bytes:b * self.frame_bytes]],
                                self.offset + int(s[a]) * self.frame_bytes)
                if got != want:
                    raise ValueError("cannot read particle stack %s: short read at image %d"
                                     % (self.path, s[a] + 1))
        finally:
            os.close(fd)
        out[order] = raw
        return out
