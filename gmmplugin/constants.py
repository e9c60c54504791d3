"""Names shared by the Scipion layer."""
VERSION = "0.1.0"
GMM_PYTHON = "GMM_PYTHON"          # interpreter for the engine (default: Scipion's)
GMM_NODE_LAUNCHER = "GMM_NODE_LAUNCHER"   # starts one command per node of a queue job
FLEX_PROGRAM = "GMMPLUGIN"        # FlexInfo progName of latent spaces we write
PARTICLES_FILE = "particles.npz"   # engine input written by convert.py
