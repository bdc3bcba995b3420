"""Importing pgserver (the embedded PostgreSQL) with a runtime directory of its own.

pgserver keeps a lock shared by every process that starts or stops an
embedded server, and the server's unix socket when the data directory's path
is too long for one, in the user's runtime directory, which it asks
platformdirs for as it is imported. platformdirs takes $XDG_RUNTIME_DIR, set
by a desktop login; a service, a container or `su` have none, and then
platformdirs printed a RuntimeDirWarning on stderr on every command and
chose a fallback itself. The switch names the directory instead: the
caller's $XDG_RUNTIME_DIR when it is one platformdirs accepts (a directory,
not a symlink, of this user, mode 0700), else `medswitch-UID` in the
temporary directory, created that way (and its mode put back to 0700 if
something opened it up), so every medswitch process of one user on one
machine shares one lock, as pgserver intends.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from pathlib import Path
from types import ModuleType


def _owned_directory(path: Path) -> os.stat_result | None:
    """Its status if `path` is a directory of this user (not a symlink), else None."""
    try:
        status = path.lstat()
    except OSError:
        return None
    if not stat.S_ISDIR(status.st_mode) or status.st_uid != os.geteuid():
        return None
    return status


def runtime_dir() -> Path:
    """The private runtime directory pgserver is to use (see the module's docstring)."""
    given = os.environ.get("XDG_RUNTIME_DIR", "")
    if given and os.path.isabs(given):
        status = _owned_directory(Path(given))
        if status is not None and stat.S_IMODE(status.st_mode) == 0o700:
            return Path(given)
    path = Path(tempfile.gettempdir()) / f"medswitch-{os.geteuid()}"
    with contextlib.suppress(FileExistsError):
        path.mkdir(mode=0o700)
    if _owned_directory(path) is None:
        from ledger.db import ConfigError  # a setup mistake: one line, exit 2

        raise ConfigError(
            f"{path} is not a directory of this user: set XDG_RUNTIME_DIR to a private"
            " directory (mode 0700) for the embedded PostgreSQL's lock"
        )
    path.chmod(0o700)
    return path


def import_pgserver() -> ModuleType:
    """The pgserver module, its runtime directory set before its first import."""
    os.environ["XDG_RUNTIME_DIR"] = str(runtime_dir())
    import pgserver

    module: ModuleType = pgserver
    return module
