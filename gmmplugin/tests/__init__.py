"""Tests: engine unit tests (fast, no Scipion) and headless Scipion workflows."""
import os

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")


def data_path(name):
    """Bundled test data: PDB entries 1bd2, 1hvr, 5a7u (public domain, copied
    from ../shared/data) and stored cryoDRGN CTF values."""
    return os.path.join(DATA, name)
