"""Scipion protocols of gmmplugin (one module per protocol)."""
from .protocol_reconstruct import GmmProtReconstruct
from .protocol_fit_neutral import GmmProtFitNeutral
from .protocol_train import GmmProtTrain
from .protocol_analyze import GmmProtAnalyze
from .protocol_select import GmmProtSelectLatent
from .protocol_refine_orientations import GmmProtRefineOrientations
from .protocol_refine_models import GmmProtRefineModels
from .protocol_export import GmmProtExportLatents
