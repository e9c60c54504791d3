"""gmmplugin: Gaussian-mixture-model heterogeneity analysis for Scipion."""
from setuptools import find_packages, setup

setup(
    name="scipion-em-gmm",
    version="0.1.0",
    description="Deep-learning Gaussian mixture model (e2gmm) heterogeneity analysis "
                "for Scipion",
    long_description=open("README.rst").read(),
    long_description_content_type="text/x-rst",
    license="GPLv3",
    packages=find_packages(include=["gmmplugin", "gmmplugin.*"]),
    package_data={"gmmplugin": ["protocols.conf", "tests/data/*.npz", "tests/data/*.pdb",
                                "engine/atomic/data/*.cif", "engine/atomic/data/*.npz",
                                "engine/atomic/data/*.txt", "templates/*.json.template"]},
    python_requires=">=3.9",
    install_requires=[
        "scipion-pyworkflow>=3.11",
        "scipion-em>=3.11",
        "scipion-em-relion",
        "torch>=2.0",   # the README pins 2.13.0 CPU; any CUDA build works too
        "numpy",
        "mrcfile",
        "gemmi",
        "umap-learn",
        "scikit-learn",
        "networkx",   # graph paths (scipy 1.10.0's dijkstra can loop forever)
        "matplotlib",
        "emtable",
        "pyrama",   # Lovell et al. 2003 Ramachandran tables (model refinement)
    ],
    extras_require={"test": ["pytest"],
                    # cryoSPARC import (ProtImportParticles hands .cs files to this
                    # plugin) and cryosparc-tools (writes .cs test data)
                    "cryosparc": ["scipion-em-cryosparc2", "cryosparc-tools"]},
    entry_points={"pyworkflow.plugin": "gmmplugin = gmmplugin"},
)
