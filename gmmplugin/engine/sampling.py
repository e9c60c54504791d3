"""Pixel-size arithmetic shared by every step: Nyquist limits and the box a
particle is Fourier-cropped to so that a resolution becomes its Nyquist.

Torch-free, so the protocols' form checks use the same rules as the engine.
"""
import numpy as np


def nyquist(apix):
    """The finest resolution (Å) a sampling of ``apix`` Å/px can hold."""
    return 2.0 * apix


def crop_box_for(box, apix, resolution):
    """Smallest even box whose Nyquist is at most ``resolution`` (≤ ``box``):
    cropping to it keeps the band of interest and drops the rest, which sets
    the cost of every step that compares images."""
    d = int(np.ceil(box * apix * 2.0 / resolution))
    d += d % 2
    return min(box, max(d, 8))
