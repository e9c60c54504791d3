"""Tests: engine unit tests (fast, no Scipion) and headless Scipion workflows."""
import os

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")


def data_path(name):
    """Bundled test data: PDB entries 1bd2, 1hvr, 5a7u (public domain, copied
    from ../shared/data) and stored cryoDRGN CTF values."""
    return os.path.join(DATA, name)


def import_simulated_particles(test_cls, star, apix, label=None):
    """Launch Scipion's RELION importer on a simulator .star (the simulator's
    acquisition: 300 kV, Cs 2.7 mm, amplitude contrast 0.1, not phase-flipped)."""
    from pwem.protocols import ProtImportParticles
    kwargs = {"objLabel": label} if label else {}
    prot = test_cls.newProtocol(ProtImportParticles,
                                importFrom=ProtImportParticles.IMPORT_FROM_RELION,
                                starFile=star, samplingRate=apix, magnification=50000,
                                haveDataBeenPhaseFlipped=False, voltage=300,
                                sphericalAberration=2.7, amplitudeContrast=0.1, **kwargs)
    test_cls.launchProtocol(prot)
    return prot
