"""pytest: set up the headless Scipion environment before anything imports
pyworkflow (it reads its configuration at import time). Loads the helper by
path so that importing it does not import gmmplugin (and pwem) first."""
import os
import runpy

runpy.run_path(os.path.join(os.path.dirname(__file__), "gmmplugin", "tests",
                            "scipion_env.py"))["setup_environment"]()
