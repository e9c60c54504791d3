"""One process at a time in an output folder.

Two runs writing into one folder would mix their files (one run's latents under
the other's name); a run that is resumed after a crash must not leave the
previous attempt's results beside its new checkpoint. A command that writes a
folder therefore holds its lock (a file with the owner's host and pid) for as
long as it runs; a lock whose owner is gone (killed, crashed) is taken over.
"""
import contextlib
import os
import socket

LOCK = ".gmmplugin.lock"


def _owner_alive(text):
    try:
        host, pid = text.split()
        pid = int(pid)
    except ValueError:
        return False
    if host != socket.gethostname():
        return True            # another machine's process: cannot tell, assume alive
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def owned(folder, log=print):
    """Hold ``folder`` for the duration of the block; a clear error if another
    live process holds it."""
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, LOCK)
    me = "%s %d" % (socket.gethostname(), os.getpid())
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            with open(path) as f:
                owner = f.read().strip()
            if _owner_alive(owner):
                raise ValueError("another run (%s) is writing into %s; wait for it or use "
                                 "another output folder" % (owner, folder))
            log("taking over %s from a run that ended without releasing it (%s)"
                % (folder, owner))
            os.remove(path)
            continue
        with os.fdopen(fd, "w") as f:
            f.write(me)
        break
    try:
        yield folder
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)


def remove_stale(paths, log=print):
    """Delete results of an earlier run that this run will write anew, so none
    of them can be read together with this run's newer files."""
    for path in paths:
        if os.path.exists(path):
            os.remove(path)
            log("removed the earlier run's %s" % os.path.basename(path))
