"""Particle metadata and lazy image access.

``Particles`` holds per-particle arrays; images stay on disk in MRC stacks,
read by explicit file reads when asked for (stacks.py), so a 10⁷-particle set
costs only its metadata in RAM.

File format (``particles.npz``), all arrays of length n unless noted:
  ``ids``        int64   object ids of the source set (Scipion objId), the key
                         used to put results back on the right particle
  ``stacks``     str     (n_stacks,) absolute paths of the .mrcs/.mrc stacks
  ``stack_idx``  int32   which stack each particle is in
  ``frame``      int64   0-based image index inside its stack
  ``rotations``  float64 (n, 3, 3) RELION matrices A (see geometry.py)
  ``shifts``     float64 (n, 2) RELION origin (x, y) in Å
  ``ctf``        float64 (n, 7) columns ctf.CTF_COLUMNS
  ``apix``, ``box`` scalars; ``phase_flipped`` bool; ``has_ctf`` bool
"""
from dataclasses import dataclass, field
import os

import numpy as np


def id_index(ids):
    """{object id: row} of an id array: how results find their particle, by id and
    never by position (a subset's ids are not consecutive)."""
    return {int(i): r for r, i in enumerate(ids)}


def rows_of(ids, wanted, what="the particle set"):
    """Rows of ``ids`` holding each of ``wanted`` (in that order); every wanted id
    must be there, else a ValueError names one that is missing."""
    index = id_index(ids)
    missing = [int(i) for i in wanted if int(i) not in index]
    if missing:
        raise ValueError("%d ids are not in %s (e.g. %d)" % (len(missing), what, missing[0]))
    return np.array([index[int(i)] for i in wanted], dtype=np.int64)


@dataclass
class Particles:
    ids: np.ndarray
    stacks: list
    stack_idx: np.ndarray
    frame: np.ndarray
    rotations: np.ndarray
    shifts: np.ndarray
    ctf: np.ndarray
    apix: float
    box: int
    phase_flipped: bool = False
    has_ctf: bool = True
    _handles: dict = field(default_factory=dict, repr=False, compare=False)

    def __len__(self):
        return len(self.ids)

    def save(self, path):
        from .io import write_npz
        write_npz(path, ids=self.ids, stacks=np.array(self.stacks, dtype=str),
                  stack_idx=self.stack_idx, frame=self.frame, rotations=self.rotations,
                  shifts=self.shifts, ctf=self.ctf, apix=self.apix, box=self.box,
                  phase_flipped=self.phase_flipped, has_ctf=self.has_ctf)

    @classmethod
    def load(cls, path):
        with np.load(path) as f:
            p = cls(ids=f["ids"].astype(np.int64), stacks=[str(s) for s in f["stacks"]],
                    stack_idx=f["stack_idx"].astype(np.int32),
                    frame=f["frame"].astype(np.int64),
                    rotations=f["rotations"].astype(np.float64),
                    shifts=f["shifts"].astype(np.float64), ctf=f["ctf"].astype(np.float64),
                    apix=float(f["apix"]), box=int(f["box"]),
                    phase_flipped=bool(f["phase_flipped"]), has_ctf=bool(f["has_ctf"]))
        p.validate()
        return p

    def validate(self):
        """Raise ValueError with a readable message on inconsistent metadata."""
        n = len(self.ids)
        if n == 0:
            raise ValueError("the particle set is empty")
        for name, arr, shape in (("rotations", self.rotations, (n, 3, 3)),
                                 ("shifts", self.shifts, (n, 2)),
                                 ("ctf", self.ctf, (n, 7)),
                                 ("stack_idx", self.stack_idx, (n,)),
                                 ("frame", self.frame, (n,))):
            if arr.shape != shape:
                raise ValueError("particle %s has shape %s, expected %s"
                                 % (name, arr.shape, shape))
            if not np.all(np.isfinite(arr)):
                raise ValueError("particle %s contain NaN or infinite values" % name)
        if self.apix <= 0 or self.box <= 0:
            raise ValueError("invalid sampling %.4g Å/px or box %d" % (self.apix, self.box))
        if len(np.unique(self.ids)) != n:
            raise ValueError("particle ids are not unique")

    def signature(self, poses=True):
        """A hash of what results computed from these particles depend on: the
        images (ids, stack files with their size and modification time, frames,
        sampling) and, with ``poses``, the poses, CTFs and phase flipping. Caches
        carry it, so a different particle set is never served stale results."""
        import hashlib
        h = hashlib.sha1()
        for path in self.stacks:
            st = os.stat(path) if os.path.exists(path) else None
            h.update(("%s|%s|%s;" % (os.path.abspath(path), st and st.st_size,
                                     st and st.st_mtime_ns)).encode())
        arrays = [self.ids, self.stack_idx, self.frame, np.array([self.apix, self.box])]
        if poses:
            arrays += [self.rotations, self.shifts, self.ctf,
                       np.array([self.phase_flipped, self.has_ctf])]
        for a in arrays:
            h.update(np.ascontiguousarray(a, dtype=np.float64).tobytes())
        return h.hexdigest()

    def subset(self, index):
        """A new Particles with the rows ``index`` (int array or boolean mask)."""
        index = np.asarray(index)
        return Particles(self.ids[index], self.stacks, self.stack_idx[index],
                         self.frame[index], self.rotations[index], self.shifts[index],
                         self.ctf[index], self.apix, self.box, self.phase_flipped,
                         self.has_ctf)

    # -- image access -------------------------------------------------------------
    def _stack(self, i):
        """Stack ``i``'s reader (its header read once; files opened per read)."""
        if i not in self._handles:
            from .stacks import MrcStack
            stack = MrcStack(self.stacks[i])
            if stack.shape[1:] != (self.box, self.box):
                raise ValueError("stack %s has %dx%d images, expected %dx%d"
                                 % (stack.path, stack.shape[2], stack.shape[1],
                                    self.box, self.box))
            self._handles[i] = stack
        return self._handles[i]

    def images(self, rows):
        """Images of the given rows as a float32 numpy array (len(rows), box, box),
        read from their stacks (stacks.py: only these images enter memory)."""
        rows = np.asarray(rows)
        out = np.empty((len(rows), self.box, self.box), dtype=np.float32)
        idx = self.stack_idx[rows]
        for s in np.unique(idx):
            sel = np.nonzero(idx == s)[0]
            out[sel] = self._stack(int(s)).read(self.frame[rows[sel]],
                                                np.empty((len(sel), self.box, self.box),
                                                         dtype=np.float32))
        if not np.all(np.isfinite(out)):
            raise ValueError("particle images contain NaN or infinite values "
                             "(rows %d..%d)" % (rows.min(), rows.max()))
        return out

    def batches(self, batch_size, rows=None, device="cpu", shuffle=False, rng=None):
        """Yield dicts of torch tensors for consecutive batches of ``rows``."""
        import torch     # the only torch use: Particles itself is read by the plugin layer
        rows = np.arange(len(self)) if rows is None else np.asarray(rows)
        if shuffle:
            rows = (rng or np.random.default_rng()).permutation(rows)
        for start in range(0, len(rows), batch_size):
            r = rows[start:start + batch_size]
            yield {
                "rows": r,
                "images": torch.from_numpy(self.images(r)).to(device),
                "rotations": torch.from_numpy(self.rotations[r]).float().to(device),
                "shifts": torch.from_numpy(self.shifts[r]).float().to(device),
                "ctf": torch.from_numpy(self.ctf[r]).to(device),
            }

    def close(self):
        """Forget the stacks' headers (no file stays open between reads)."""
        self._handles.clear()
