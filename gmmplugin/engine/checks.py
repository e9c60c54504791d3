"""Input checks shared by the command line and the protocols' ``_validate``.

Each check raises ``ValueError`` with a sentence that names the setting and
what to do; the command line prints it as ``ERROR: ...`` before any heavy step,
and the protocols turn it into a form message with :func:`as_message`. Keeping
one copy of each rule is what makes the two agree.

Torch-free, so the Scipion GUI can run the checks without loading torch.
"""
from .sampling import nyquist

EXTENT_TOLERANCE = 0.02   # boxes covering the same Å extent within 2 % are one frame


def resolution_within_nyquist(resolution, apix, what="max resolution",
                              whose="the particles'"):
    """``resolution`` (Å) must not be finer than the sampling's Nyquist."""
    if resolution < nyquist(apix) - 1e-6:
        raise ValueError("%s %.2f Å is finer than %s Nyquist (%.2f Å)"
                         % (what, resolution, whose, nyquist(apix)))


def resolution_band(max_res, min_res, what="max resolution"):
    """The band's high end must be a finer (smaller) resolution than its low end."""
    if max_res <= 0:
        raise ValueError("%s must be positive, got %g" % (what, max_res))
    if max_res >= min_res:
        raise ValueError("%s (%.1f Å) must be finer than the min resolution (%.1f Å)"
                         % (what, max_res, min_res))


def same_extent(box, apix, ref_box, ref_apix, what="the GMM", ref="the particles"):
    """Two boxes (px at Å/px) must cover the same physical extent: a GMM or mask
    made on the consensus map of other particles would sit in another frame."""
    extent, ref_extent = box * apix, ref_box * ref_apix
    if box and abs(extent - ref_extent) > EXTENT_TOLERANCE * ref_extent:
        raise ValueError("%s covers a %.1f Å box but %s cover %.1f Å: use one made "
                         "from the same refinement" % (what, extent, ref, ref_extent))


def positive(value, what, allow_zero=False):
    """A count or rate the user chose must be > 0 (or >= 0)."""
    if value < 0 or (value == 0 and not allow_zero):
        raise ValueError("%s must be %s, got %g" % (what, ">= 0" if allow_zero else
                                                     "positive", value))


def fraction(value, what, upper_open=True):
    """A probability-like setting in [0, 1) (or [0, 1])."""
    if not (0 <= value < 1 if upper_open else 0 <= value <= 1):
        raise ValueError("%s must be in [0, 1%s, got %g" % (what, ")" if upper_open else "]",
                                                        value))


def as_message(error):
    """A check's error as a form message: capitalised, ending with a full stop."""
    text = str(error).strip()
    text = text[:1].upper() + text[1:]
    return text if text.endswith((".", "?", "!")) else text + "."


def problems(*checks):
    """Form messages of the checks (zero-argument callables) that fail."""
    found = []
    for check in checks:
        try:
            check()
        except ValueError as e:
            found.append(as_message(e))
    return found
