"""Scipion viewers of gmmplugin; plotting lives in ``plots.py``."""
from .viewer_reconstruct import GmmReconstructViewer
