"""Environment for headless Scipion runs (tests and the demo).

Must run before pyworkflow is imported: pyworkflow reads these variables at
import time. Everything lives under one root folder (default
``<repo>/.scipion``, or $GMM_SCIPION_ROOT).
"""
import os
import shutil
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def setup_environment(root=None):
    root = os.path.abspath(root or os.environ.get("GMM_SCIPION_ROOT")
                           or os.path.join(REPO, ".scipion"))
    home = os.path.join(root, "home")
    os.makedirs(os.path.join(home, "config"), exist_ok=True)
    hosts = os.path.join(home, "config", "hosts.conf")
    if not os.path.exists(hosts):
        with open(hosts, "w") as f:
            f.write("[localhost]\nPARALLEL_COMMAND = mpirun -np %_(JOB_NODES)d "
                    "--map-by node %_(COMMAND)s\n")
    for sub in ("data", "tests"):
        os.makedirs(os.path.join(root, sub), exist_ok=True)
    os.environ.setdefault("SCIPION_DOMAIN", "pwem")
    # the base protocol tree (scipion-app's, in a full install) is pwem's own,
    # which plugins fill; found without importing pwem
    import importlib.util
    pwem_spec = importlib.util.find_spec("pwem")
    if pwem_spec is not None and pwem_spec.origin:
        os.environ.setdefault("SCIPION_PROTOCOLS", os.path.join(
            os.path.dirname(pwem_spec.origin), "protocols.conf"))
    os.environ.setdefault("SCIPION_HOME", home)
    os.environ.setdefault("SCIPION_HOSTS", hosts)
    os.environ.setdefault("SCIPION_USER_DATA", os.path.join(root, "data"))
    os.environ.setdefault("SCIPION_TESTS", os.path.join(root, "tests"))
    os.environ.setdefault("SCIPION_TEST_NOSYNC", "1")
    os.environ.setdefault("SCIPION_PYTHON", sys.executable)
    os.environ.setdefault("MPLBACKEND", "Agg")
    # scipion-em-relion's protocols (even its export, which runs no RELION
    # program) refuse to start without an existing RELION_HOME: point it at an
    # installed RELION (e.g. Debian's, /usr/bin/relion_*) when there is one
    relion = shutil.which("relion_reconstruct")
    if relion:
        os.environ.setdefault("RELION_HOME", os.path.dirname(os.path.dirname(
            os.path.realpath(relion))))
    # protocols run in a child python: ours (with this package) must come first
    bindir = os.path.dirname(sys.executable)
    if not os.environ.get("PATH", "").startswith(bindir):
        os.environ["PATH"] = bindir + os.pathsep + os.environ.get("PATH", "")
    return root


if __name__ == "__main__":
    # eval "$(python -m gmmplugin.tests.scipion_env)": the same environment for a
    # shell, e.g. before Scipion's own test runner (python -m pyworkflow.apps.pw_run_tests)
    import shlex
    before = dict(os.environ)
    setup_environment()
    for key, value in sorted(os.environ.items()):
        if before.get(key) != value:
            print("export %s=%s" % (key, shlex.quote(value)))
