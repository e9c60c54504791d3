"""Scipion viewers of gmmplugin; the figures are drawn by ``engine/plots.py``."""
from .viewer_reconstruct import GmmReconstructViewer
from .viewer_fit_neutral import GmmFitNeutralViewer
from .viewer_analyze import GmmAnalyzeViewer, GmmTrainViewer
from .viewer_refine_models import GmmRefineModelsViewer
from .viewer_refine_orientations import GmmRefineOrientationsViewer
from .viewer_select import GmmSelectViewer
