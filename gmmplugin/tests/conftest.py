from gmmplugin.tests.scipion_env import setup_environment

setup_environment()
