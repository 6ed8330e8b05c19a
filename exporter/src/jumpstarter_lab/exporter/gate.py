"""The public side of an exporter's listeners.

gRPC itself listens only on private sockets in a 0700 directory. A Gate accepts
on the public socket, refuses Unix peers of another uid but root (SO_PEERCRED), and
relays bytes to the private socket from a uniquely named client address, so
every RPC can tell which client connection it came on and the exporter learns
the moment a connection closes (its session then ends).

One thread runs every relay: an epoll loop moving bytes with splice(2) through a
pipe per direction, so they never enter Python and a connection costs file
descriptors, not threads. Blocking socket I/O never touches the event loop. The
gate stays up under a flood: connections beyond `max_connections` are closed as
they come, one that sends nothing within `handshake` seconds is closed, and when
the process runs out of file descriptors it stops accepting for a moment and
then goes on.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import itertools
import logging
import os
import pwd
import select
import socket
import struct
import threading
import time
from collections.abc import Callable
from pathlib import Path

logger = logging.getLogger(__name__)

PIPE_SIZE = 256 * 1024
MAX_CONNECTIONS = 256
HANDSHAKE = 10.0  # seconds a new connection has to send its first bytes
_OUT_OF_FDS = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)
_SPLICE = os.SPLICE_F_MOVE | os.SPLICE_F_NONBLOCK
_IN, _OUT = select.EPOLLIN, select.EPOLLOUT
_BROKEN = select.EPOLLERR | select.EPOLLHUP  # reported whatever was asked for: the socket can do no more


def in_group(uid: int, gid: int, group: int) -> bool:
    """Whether a peer (its uid and primary gid) is a member of `group`, by the system's group database."""
    if gid == group:
        return True
    try:
        return group in os.getgrouplist(pwd.getpwuid(uid).pw_name, gid)
    except KeyError:  # a uid without a passwd entry belongs to no further groups
        return False


def peer_credentials(conn: socket.socket) -> tuple[int, int, int]:
    """(pid, uid, gid) of the process at the other end of a Unix socket."""
    data = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return struct.unpack("3i", data)


class _Direction:
    """Bytes from one socket to the other, through a pipe (splice moves them without copying)."""

    def __init__(self, src: socket.socket, dst: socket.socket):
        self.src, self.dst = src, dst
        self.read_end, self.write_end = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        with contextlib.suppress(OSError):
            fcntl.fcntl(self.write_end, fcntl.F_SETPIPE_SZ, PIPE_SIZE)
        self.queued = 0  # bytes in the pipe, not yet written to dst
        self.ended = False  # src sent EOF (or failed)
        self.closed = False  # dst has been told (SHUT_WR)
        self.moved = 0

    def pump(self) -> None:
        """Move what can move now without blocking; OSError when either side failed."""
        while True:
            if self.queued:
                try:
                    written = os.splice(self.read_end, self.dst.fileno(), self.queued, flags=_SPLICE)
                except BlockingIOError:
                    return  # dst is full: wait until it is writable
                self.queued -= written
                continue
            if self.ended:
                if not self.closed:
                    self.closed = True
                    with contextlib.suppress(OSError):
                        self.dst.shutdown(socket.SHUT_WR)
                return
            try:
                read = os.splice(self.src.fileno(), self.write_end, PIPE_SIZE, flags=_SPLICE)
            except BlockingIOError:
                return  # nothing to read now
            if read == 0:
                self.ended = True
            self.queued += read
            self.moved += read

    def close(self) -> None:
        os.close(self.read_end)
        os.close(self.write_end)


class _Relay:
    """One client connection and its connection to the gRPC server."""

    def __init__(self, client: socket.socket, backend: socket.socket, peer: str):
        self.client, self.backend, self.peer = client, backend, peer
        self.up = _Direction(client, backend)
        self.down = _Direction(backend, client)
        self.accepted = time.monotonic()
        self.masks: dict[int, int] = {}  # what epoll waits for on each socket now

    def interest(self, sock: socket.socket) -> int:
        """What to wait for on `sock`: readable while its direction can take more, writable while
        the other direction has bytes queued for it."""
        reading, writing = (self.up, self.down) if sock is self.client else (self.down, self.up)
        mask = 0
        if not reading.ended and not reading.queued:
            mask |= _IN
        if writing.queued:
            mask |= _OUT
        return mask

    @property
    def done(self) -> bool:
        return self.up.closed and self.down.closed

    def close(self) -> None:
        for sock in (self.client, self.backend):
            sock.close()
        self.up.close()
        self.down.close()


class Gate:
    def __init__(self, listener: socket.socket, backend: Path, private_dir: Path,
                 on_close: Callable[[str], None], same_uid_only: bool, *, peer_group: int | None = None,
                 max_connections: int = MAX_CONNECTIONS, handshake: float = HANDSHAKE):
        self._listener = listener
        self._backend = str(backend)
        self._private_dir = private_dir
        self._on_close = on_close
        self._same_uid_only = same_uid_only
        self._peer_group = peer_group  # with same_uid_only: members of this group are admitted too
        self._max, self._handshake = max_connections, handshake
        self._ids = itertools.count()
        self._relays: dict[int, _Relay] = {}  # by each of its two sockets' fds
        self._count = 0
        self._stopping = False
        self._wake_read, self._wake_write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._epoll = select.epoll()
        self._accepting_again = 0.0  # while out of file descriptors: when to try accepting again
        self._refused_at = 0.0
        self._next_sweep = 0.0
        self._thread = threading.Thread(target=self._run, name="gate", daemon=True)

    def start(self) -> None:
        self._listener.setblocking(False)
        self._epoll.register(self._listener.fileno(), _IN)
        self._epoll.register(self._wake_read, _IN)
        self._thread.start()

    def stop(self) -> None:
        self._stopping = True
        with contextlib.suppress(OSError):
            os.write(self._wake_write, b"x")
        self._thread.join()
        self._listener.close()
        for relay in {id(r): r for r in self._relays.values()}.values():
            self._end(relay)
        self._epoll.close()
        os.close(self._wake_read)
        os.close(self._wake_write)

    # --- the loop ---------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stopping:
            now = time.monotonic()
            if self._accepting_again and now >= self._accepting_again:
                self._accepting_again = 0.0
                self._epoll.register(self._listener.fileno(), _IN)
            try:
                events = self._epoll.poll(self._timeout(now))
            except InterruptedError:
                continue
            for fd, mask in events:
                if fd == self._listener.fileno():
                    self._accept()
                elif fd == self._wake_read:
                    with contextlib.suppress(OSError):
                        os.read(self._wake_read, 64)
                elif (relay := self._relays.get(fd)) is not None:
                    self._move(relay, broken=bool(mask & _BROKEN))
            if now >= self._next_sweep:
                self._next_sweep = now + 1.0
                self._expire_handshakes()

    def _timeout(self, now: float) -> float:
        deadlines = [1.0]
        if self._accepting_again:
            deadlines.append(self._accepting_again - now)
        return max(0.0, min(deadlines))

    def _accept(self) -> None:
        while True:
            try:
                conn, _address = self._listener.accept()
            except BlockingIOError:
                return
            except OSError as e:
                if e.errno in _OUT_OF_FDS:  # stop looking for a moment: the pending one would spin the loop
                    logger.error("accepting a connection failed: %s; trying again in 0.5 s", e.strerror)
                    self._epoll.unregister(self._listener.fileno())
                    self._accepting_again = time.monotonic() + 0.5
                    return
                if e.errno in (errno.ECONNABORTED, errno.EPROTO, errno.EINTR):
                    continue
                if not self._stopping:
                    logger.error("accept failed: %s", e)
                return
            if not self._admit(conn):
                conn.close()
                continue
            try:
                self._open(conn)
            except OSError as e:
                logger.error("cannot relay a new connection: %s", e.strerror or e)
                conn.close()

    def _admit(self, conn: socket.socket) -> bool:
        if self._count >= self._max:
            now = time.monotonic()
            if now - self._refused_at > 10:
                self._refused_at = now
                logger.warning("refusing connections: %d are open, the most this exporter serves", self._count)
            return False
        if conn.family != socket.AF_UNIX or not self._same_uid_only:
            return True
        pid, uid, gid = peer_credentials(conn)
        # root passes as it passes file modes: it could read the exporter's config and memory anyway
        if uid in (os.geteuid(), 0) or (self._peer_group is not None and in_group(uid, gid, self._peer_group)):
            return True
        allowed = f"uid {os.geteuid()}"
        if self._peer_group is not None:
            allowed += f" and members of group {self._peer_group}"
        logger.warning("refused a connection from uid %d (pid %d): only %s may use this socket", uid, pid, allowed)
        return False

    def _open(self, conn: socket.socket) -> None:
        name = self._private_dir / f"c{next(self._ids)}"
        backend = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            backend.bind(str(name))  # gRPC sees this address as the peer: one per connection
            backend.connect(self._backend)
        except OSError:
            backend.close()
            raise
        finally:
            with contextlib.suppress(OSError):
                name.unlink()
        try:
            relay = _Relay(conn, backend, f"unix:{name}")
        except OSError:
            backend.close()
            raise
        conn.setblocking(False)
        backend.setblocking(False)
        if conn.family != socket.AF_UNIX:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._relays[conn.fileno()] = self._relays[backend.fileno()] = relay
        self._count += 1
        for sock in (conn, backend):
            relay.masks[sock.fileno()] = relay.interest(sock)
            self._epoll.register(sock.fileno(), relay.masks[sock.fileno()])

    def _move(self, relay: _Relay, broken: bool = False) -> None:
        try:
            relay.up.pump()
            relay.down.pump()
        except OSError:  # reset, broken pipe: the connection is over
            self._end(relay)
            return
        if relay.done or broken:  # a socket that hung up or failed: what is left cannot be delivered
            self._end(relay)
            return
        for sock in (relay.client, relay.backend):
            fd, mask = sock.fileno(), relay.interest(sock)
            if relay.masks[fd] != mask:
                relay.masks[fd] = mask
                self._epoll.modify(fd, mask)

    def _expire_handshakes(self) -> None:
        """Close connections that have sent nothing within the handshake time (idle floods)."""
        limit = time.monotonic() - self._handshake
        stale = {id(r): r for r in self._relays.values() if not r.up.moved and r.accepted < limit}
        for relay in stale.values():
            self._end(relay)

    def _end(self, relay: _Relay) -> None:
        if self._relays.pop(relay.client.fileno(), None) is None:
            return
        self._relays.pop(relay.backend.fileno(), None)
        self._count -= 1
        for sock in (relay.client, relay.backend):
            with contextlib.suppress(OSError, ValueError):
                self._epoll.unregister(sock.fileno())
        relay.close()
        self._on_close(relay.peer)
