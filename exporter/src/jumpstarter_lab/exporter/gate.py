"""The public side of an exporter's listeners.

gRPC itself listens only on private sockets in a 0700 directory. A Gate accepts
on the public socket, refuses Unix peers of another uid (SO_PEERCRED), and
relays bytes to the private socket from a uniquely named client address, so
every RPC can tell which client connection it came on and the exporter learns
the moment a connection closes (its session then ends). The relay runs in plain
threads: blocking socket I/O never touches the event loop.
"""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import logging
import os
import socket
import struct
import threading
from collections.abc import Callable
from pathlib import Path

logger = logging.getLogger(__name__)

_BUFFER = 256 * 1024


def peer_credentials(conn: socket.socket) -> tuple[int, int, int]:
    """(pid, uid, gid) of the process at the other end of a Unix socket."""
    data = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return struct.unpack("3i", data)


def _pump(src: socket.socket, dst: socket.socket) -> None:
    """Move bytes src -> dst until EOF; through a pipe with splice(2), so they never enter Python."""
    read_end, write_end = os.pipe()
    with contextlib.suppress(OSError):
        fcntl.fcntl(write_end, fcntl.F_SETPIPE_SZ, _BUFFER)
    try:
        while n := os.splice(src.fileno(), write_end, _BUFFER):
            while n:
                n -= os.splice(read_end, dst.fileno(), n)
    except OSError:
        pass
    finally:
        os.close(read_end)
        os.close(write_end)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)


class Gate:
    def __init__(self, listener: socket.socket, backend: Path, private_dir: Path,
                 on_close: Callable[[str], None], same_uid_only: bool):
        self._listener = listener
        self._backend = str(backend)
        self._private_dir = private_dir
        self._on_close = on_close
        self._same_uid_only = same_uid_only
        self._ids = itertools.count()
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._stopping = False
        self._thread = threading.Thread(target=self._accept_loop, name="gate-accept", daemon=True)

    def start(self) -> None:
        self._listener.settimeout(0.2)
        self._thread.start()

    def stop(self) -> None:
        self._stopping = True
        self._thread.join()
        self._listener.close()
        with self._lock:
            for conn in self._open:
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)

    def _accept_loop(self) -> None:
        while not self._stopping:
            try:
                conn, _address = self._listener.accept()
            except (TimeoutError, socket.timeout):
                continue
            except OSError as e:
                if not self._stopping:
                    logger.error("accept failed: %s", e)
                return
            conn.settimeout(None)
            if not self._admit(conn):
                conn.close()
                continue
            threading.Thread(target=self._relay, args=(conn,), name="gate-relay", daemon=True).start()

    def _admit(self, conn: socket.socket) -> bool:
        if conn.family != socket.AF_UNIX or not self._same_uid_only:
            return True
        pid, uid, _gid = peer_credentials(conn)
        if uid != os.geteuid():
            logger.warning("refused a connection from uid %d (pid %d): only uid %d may use this socket",
                           uid, pid, os.geteuid())
            return False
        return True

    def _relay(self, conn: socket.socket) -> None:
        name = self._private_dir / f"c{next(self._ids)}"
        backend = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            backend.bind(str(name))  # gRPC sees this address as the peer: one per connection
            backend.connect(self._backend)
        except OSError as e:
            logger.error("cannot reach the gRPC server: %s", e)
            conn.close()
            backend.close()
            return
        finally:
            with contextlib.suppress(OSError):
                name.unlink()
        peer = f"unix:{name}"
        with self._lock:
            self._open.update((conn, backend))
        upstream = threading.Thread(target=_pump, args=(conn, backend), daemon=True)
        upstream.start()
        _pump(backend, conn)
        upstream.join()
        with self._lock:
            self._open.difference_update((conn, backend))
        conn.close()
        backend.close()
        self._on_close(peer)
