"""cryoDRGN latent pickles and the ChimeraX series script, without Scipion:
a subset is written as cryoDRGN filters one (the whole space + its rows), and
latents changed after training are written as they are."""
import os

import numpy as np
import pytest

from gmmplugin.engine import export


def _space(n=50, d=3, seed=0):
    rng = np.random.default_rng(seed)
    ids = np.sort(rng.choice(np.arange(1, 10 * n), n, replace=False))
    return ids, rng.normal(size=(n, d)).astype(np.float32)


def test_full_set_round_trips_exactly(tmp_path):
    ids, z = _space()
    paths, rows, n = export.write_cryodrgn(str(tmp_path), ids, z.astype(np.float64), ids, z)
    assert [os.path.basename(p) for p in paths] == ["z.pkl"]
    back = export.read_pkl(paths[0])
    assert back.dtype == np.float32 and np.array_equal(back, z)
    assert (rows, n) == (50, 50)


def test_subset_is_the_whole_space_and_its_rows(tmp_path):
    ids, z = _space()
    keep = np.arange(len(ids)) % 3 == 1
    export.write_cryodrgn(str(tmp_path), ids, z, ids, z)           # a stale full export
    paths, rows, n = export.write_cryodrgn(str(tmp_path), ids[keep], z[keep], ids, z)
    assert [os.path.basename(p) for p in paths] == ["z.pkl", "ind.pkl"]
    full = export.read_pkl(str(tmp_path / "z.pkl"))
    ind = export.read_pkl(str(tmp_path / "ind.pkl"))
    assert ind.dtype == np.int64
    assert np.array_equal(full, z) and np.array_equal(full[ind], z[keep])
    assert np.array_equal(ids[ind], ids[keep])
    assert (rows, n) == (50, keep.sum())
    # the set itself again: no ind.pkl left behind
    paths, _, _ = export.write_cryodrgn(str(tmp_path), ids, z, ids, z)
    assert not (tmp_path / "ind.pkl").exists()


def test_changed_or_foreign_latents_are_written_as_they_are():
    ids, z = _space()
    moved = z[:10] + 1
    rows, ind = export.cryodrgn_latents(ids[:10], moved, ids, z)
    assert ind is None and np.array_equal(rows, moved)
    rows, ind = export.cryodrgn_latents([99999], z[:1], ids, z)     # not in the space
    assert ind is None
    with pytest.raises(ValueError, match="not unique"):
        export.cryodrgn_latents([1, 1], z[:2])
    with pytest.raises(ValueError, match="one row"):
        export.cryodrgn_latents([1, 2], z[:3])


def test_chimerax_script_opens_the_maps_in_order_as_one_series(tmp_path):
    maps = [str(tmp_path / ("frame %d.mrc" % i)) for i in range(3)]
    path = export.chimerax_series_script(str(tmp_path / "s.cxc"), maps)
    lines = open(path).read().splitlines()
    assert lines[0] == "open %s vseries true" % " ".join('"%s"' % m for m in maps)
    assert lines[1].startswith("vseries play #1 loop true")
    with pytest.raises(ValueError):
        export.chimerax_series_script(str(tmp_path / "e.cxc"), [])
