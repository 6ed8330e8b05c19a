"""What a session gives the drivers of its tree: a private work directory and the streams its
client pushed; and the naming of private directories, so that a killed exporter's are found.

Private directories are named `jumpstarter-lab-PID-KIND-*` in the system's temporary
directory; `sweep_stale_private_dirs` removes those whose process is gone (SIGKILL leaves
them behind).
"""

from __future__ import annotations

import os
import pwd
import shutil
import tempfile
from pathlib import Path

from ..wire.errors import DriverInvalidArgument

PRIVATE_PREFIX = "jumpstarter-lab-"


def private_dir(kind: str) -> Path:
    """A new 0700 directory owned by this process, found by the sweep once the process is gone."""
    return Path(tempfile.mkdtemp(prefix=f"{PRIVATE_PREFIX}{os.getpid()}-{kind}-"))


def sweep_stale_private_dirs() -> None:
    """Remove the private directories of this user's processes that died without cleaning up."""
    me = pwd.getpwuid(os.geteuid()).pw_name
    for candidate in Path(tempfile.gettempdir()).glob(f"{PRIVATE_PREFIX}*-*"):
        pid = candidate.name.removeprefix(PRIVATE_PREFIX).split("-", 1)[0]
        try:
            if not pid.isdigit() or candidate.owner() != me:
                continue
            os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(candidate, ignore_errors=True)
        except (PermissionError, KeyError, FileNotFoundError):
            pass  # alive and someone else's, an owner without a name, or removed meanwhile


class DriverContext:
    """One session's share of the exporter host for its drivers; closed when the session ends."""

    def __init__(self):
        self.resources: dict[str, object] = {}  # handle uuid -> ByteStream a client pushed
        self._workdir: Path | None = None

    @property
    def workdir(self) -> Path:
        """The session's private directory (made on first use, removed with the session)."""
        if self._workdir is None:
            self._workdir = private_dir("session")
        return self._workdir

    def take_resource(self, uuid: str):
        """The stream a client pushed under this handle uuid; each is taken once."""
        stream = self.resources.pop(uuid, None)
        if stream is None:
            raise DriverInvalidArgument(f"no pending client stream {uuid} in this session")
        return stream

    def close(self) -> None:
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None
