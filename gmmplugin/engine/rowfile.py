"""Row files: .npy arrays on disk, read and written a set of rows at a time by
explicit file reads and writes.

Training's caches (cropped images, gradient features) are (n, ...) arrays that
outgrow the RAM at 10⁶ particles. Through ``np.memmap`` every page a pass
touches stays mapped in the process and counts in its resident memory until
the map is closed, so one pass over the file grows the process to the file's
size wherever the machine has the RAM to spare, and the memory a job asks a
queue for must cover every cache. Reading and writing rows with
``os.pread``/``os.pwrite`` keeps only the rows in hand in the process; the
kernel's page cache still serves repeated reads, outside the process and given
back under memory pressure.

The files are ordinary .npy files (``np.load`` reads them). Several processes
may write disjoint rows of one file (the ranks of a torchrun job).
"""
import os

import numpy as np


class RowFile:
    """An (n, ...) .npy array on disk, indexed along its first axis.

    ``f[rows]`` (an int, a slice, or an int array in any order) reads those rows
    into a new array; ``f[rows] = values`` writes them (mode "r+"). Consecutive
    rows are read or written with one system call.
    """

    def __init__(self, path, mode="r"):
        if mode not in ("r", "r+"):
            raise ValueError("row file mode must be 'r' or 'r+', got %r" % mode)
        self.path, self.mode = path, mode
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                           else np.lib.format.read_array_header_2_0)
            shape, fortran, dtype = read_header(f)
            self.offset = f.tell()
        if fortran and len(shape) > 1:
            raise ValueError("%s is stored in Fortran order; rows cannot be read from it"
                             % path)
        if dtype.hasobject or not shape:
            raise ValueError("%s is not an array of rows" % path)
        self.shape, self.dtype = tuple(shape), dtype
        self.row_bytes = int(np.prod(shape[1:], dtype=np.int64)) * dtype.itemsize
        self._fd = os.open(path, os.O_RDWR if mode == "r+" else os.O_RDONLY)

    @classmethod
    def create(cls, path, dtype, shape):
        """A new file of zeros (sparse on disk until rows are written)."""
        dtype, shape = np.dtype(dtype), tuple(int(s) for s in shape)
        header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False,
                  "shape": shape}
        with open(path, "wb") as f:
            try:
                np.lib.format.write_array_header_1_0(f, header)
            except ValueError:                    # a header too long for version 1.0
                f.seek(0)
                np.lib.format.write_array_header_2_0(f, header)
            f.truncate(f.tell() + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize)
        return cls(path, mode="r+")

    # -- array-like ------------------------------------------------------------------
    def __len__(self):
        return self.shape[0]

    @property
    def ndim(self):
        return len(self.shape)

    @property
    def size(self):
        return int(np.prod(self.shape, dtype=np.int64))

    def __array__(self, dtype=None, copy=None):
        data = self[:]
        return data if dtype is None else data.astype(dtype, copy=False)

    def _rows(self, index):
        """(rows as an int64 array, whether one row was asked for as an int)."""
        n = self.shape[0]
        if isinstance(index, slice):
            return np.arange(n)[index], False
        if np.ndim(index) == 0 and not isinstance(index, np.ndarray):
            i = int(index)
            if not -n <= i < n:
                raise IndexError("row %d of a file of %d rows" % (i, n))
            return np.array([i % n]), True
        rows = np.asarray(index)
        if rows.dtype == bool:
            if rows.shape != (n,):
                raise IndexError("a boolean index must have one entry per row")
            return np.flatnonzero(rows), False
        rows = rows.astype(np.int64, copy=False).reshape(-1)
        if len(rows) and (rows.min() < -n or rows.max() >= n):
            raise IndexError("rows out of range for a file of %d rows" % n)
        return np.where(rows < 0, rows + n, rows), False

    @staticmethod
    def _runs(rows):
        """Runs of consecutive rows: (order of the rows, starts and ends of each
        run in that order)."""
        order = np.argsort(rows, kind="stable")
        s = rows[order]
        cut = np.flatnonzero(np.diff(s) != 1) + 1
        return order, s, np.concatenate([[0], cut]), np.concatenate([cut, [len(s)]])

    def __getitem__(self, index):
        rows, single = self._rows(index)
        out = np.empty((len(rows),) + self.shape[1:], dtype=self.dtype)
        if len(rows):
            order, s, starts, ends = self._runs(rows)
            buf = np.empty_like(out) if np.any(order != np.arange(len(rows))) else out
            flat = buf.reshape(len(rows), -1).view(np.uint8).reshape(-1)
            for a, b in zip(starts, ends):
                nbytes = (b - a) * self.row_bytes
                got = os.preadv(self._fd, [flat[a * self.row_bytes:b * self.row_bytes]],
                                self.offset + int(s[a]) * self.row_bytes)
                if got != nbytes:
                    raise IOError("%s: short read (%d of %d bytes); the file is truncated"
                                  % (self.path, got, nbytes))
            if buf is not out:
                out[order] = buf
        return out[0] if single else out

    def __setitem__(self, index, values):
        if self.mode != "r+":
            raise ValueError("%s is open read-only" % self.path)
        rows, _ = self._rows(index)
        values = np.broadcast_to(np.asarray(values, dtype=self.dtype),
                                 (len(rows),) + self.shape[1:])
        if not len(rows):
            return
        order, s, starts, ends = self._runs(rows)
        data = np.ascontiguousarray(values[order])
        flat = data.reshape(len(rows), -1).view(np.uint8).reshape(-1)
        for a, b in zip(starts, ends):
            chunk = flat[a * self.row_bytes:b * self.row_bytes]
            pos = self.offset + int(s[a]) * self.row_bytes
            while len(chunk):                     # pwrite may write less than asked
                done = os.pwrite(self._fd, chunk, pos)
                chunk, pos = chunk[done:], pos + done

    def flush(self):
        """Rows written reach the disk (as np.memmap.flush does), for readers on
        other machines of a shared file system."""
        if self.mode == "r+":
            os.fsync(self._fd)

    def close(self):
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
