"""A selection of particles in the 2-D latent view (zRed): polygons drawn by the
user, and/or whole classes. Torch-free: the selection protocol and its
interactive window use it in the Scipion process.

Polygons are written ``"x,y x,y x,y; x,y x,y x,y"`` (one polygon per ``;``,
vertices in zRed coordinates), the form in which the protocol stores them; a
selection file is JSON ``{"polygons": [[[x, y], ...], ...], "classes": [...]}``.
"""
import json

import numpy as np


def parse_polygons(text):
    """List of (k, 2) vertex arrays from ``"x,y x,y x,y; ..."``; each needs 3 or
    more vertices. Raises ValueError with the offending polygon."""
    polygons = []
    for i, chunk in enumerate(p for p in (text or "").split(";") if p.strip()):
        try:
            xy = np.array([[float(v) for v in pair.split(",")]
                           for pair in chunk.split()], dtype=np.float64)
        except ValueError:
            raise ValueError("polygon %d is not a list of 'x,y' vertices: %r"
                             % (i + 1, chunk.strip()))
        if xy.ndim != 2 or xy.shape[1] != 2 or len(xy) < 3:
            raise ValueError("polygon %d needs at least 3 'x,y' vertices, got %r"
                             % (i + 1, chunk.strip()))
        if not np.all(np.isfinite(xy)):
            raise ValueError("polygon %d has a non-finite vertex" % (i + 1))
        polygons.append(xy)
    return polygons


def format_polygons(polygons):
    """The text form of ``polygons`` (inverse of :func:`parse_polygons`): each
    coordinate in its shortest exact form, so a vertex that is a particle's
    position stays exactly on it."""
    return "; ".join(" ".join("%r,%r" % (float(x), float(y)) for x, y in np.asarray(p))
                     for p in polygons)


def parse_classes(text):
    """Class ids from ``"1, 3 4"`` (positive integers)."""
    try:
        ids = [int(v) for v in (text or "").replace(",", " ").split()]
    except ValueError:
        raise ValueError("class ids must be whole numbers, e.g. '1 3', got %r" % text)
    if any(i < 1 for i in ids):
        raise ValueError("class ids start at 1, got %r" % text)
    return ids


def inside_polygons(zred, polygons):
    """Boolean (n,): zRed points inside any polygon (edges included)."""
    from matplotlib.path import Path
    zred = np.asarray(zred, dtype=np.float64)[:, :2]
    keep = np.zeros(len(zred), bool)
    for p in polygons:
        path = Path(np.vstack([p, p[:1]]), closed=True)
        span = float(np.ptp(p, axis=0).max()) or 1.0
        keep |= path.contains_points(zred, radius=1e-9 * span)
        keep |= path.contains_points(zred, radius=-1e-9 * span)   # either orientation
    return keep


def select(zred, polygons=(), classes=None, class_ids=()):
    """Boolean (n,): particles inside any polygon or in any of ``class_ids``
    (``classes`` (n,) holds each particle's class, 0 for none)."""
    keep = inside_polygons(zred, polygons) if len(polygons) else np.zeros(len(zred), bool)
    if len(class_ids):
        if classes is None:
            raise ValueError("these particles carry no class: select by polygon, or use "
                             "the Particles output of 'analyze latent space'")
        keep |= np.isin(np.asarray(classes), list(class_ids))
    return keep


def confident(confidence, min_confidence):
    """Boolean (n,): particles whose latent confidence reaches ``min_confidence``
    (all when it is 0)."""
    if not 0 <= min_confidence < 1:
        raise ValueError("the minimum latent confidence must be in [0, 1), not %g"
                         % min_confidence)
    if min_confidence == 0:
        return np.ones(len(confidence), dtype=bool)
    return np.asarray(confidence) >= min_confidence


def write_selection(path, polygons=(), class_ids=(), min_confidence=0.0):
    from .io import write_json
    write_json(path, {"polygons": [np.asarray(p).tolist() for p in polygons],
                      "classes": [int(c) for c in class_ids],
                      "min_confidence": float(min_confidence)})


def read_min_confidence(path):
    """The minimum latent confidence a selection file asks for (0 = none)."""
    with open(path) as f:
        return float(json.load(f).get("min_confidence", 0.0))


def read_selection(path):
    """(polygons, class ids) of a selection file, checked like typed ones."""
    with open(path) as f:
        data = json.load(f)
    if not isinstance(data, dict):
        raise ValueError("%s is not a selection file" % path)
    polygons = parse_polygons(format_polygons(data.get("polygons", [])))
    return polygons, parse_classes(" ".join(str(c) for c in data.get("classes", [])))
