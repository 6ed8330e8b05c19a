"""Decoding an image pushed by a client: raw, or gzip/xz/bzip2/zstd-compressed, decompressed here.

The format comes from the resource's content encoding when the client named one, otherwise
from the data's first bytes. Decompression and writing run in one worker thread that pulls
the stream's chunks from the event loop, so neither the loop nor memory is burdened: output
goes to disk in bounded pieces (runs of zeros become holes), however well the data compresses.
"""

from __future__ import annotations

import asyncio
import bz2
import gzip
import hashlib
import io
import lzma
import os
import struct
import zlib
from pathlib import Path

import zstandard

MAGIC = ((b"\x1f\x8b", "gzip"), (b"\xfd7zXZ\x00", "xz"), (b"\x28\xb5\x2f\xfd", "zstd"), (b"BZh", "bz2"))
ENCODINGS = {"gzip": "gzip", "gz": "gzip", "xz": "xz", "bz2": "bz2", "bzip2": "bz2", "zstd": "zstd", "zst": "zstd",
             "identity": "raw", "raw": "raw"}
PIECE = 1 << 20
IDLE_TIMEOUT = 120.0  # seconds without data before a flash gives up


class ImageError(ValueError):
    """The pushed data is not a complete image in the format it claims."""


class StreamReader(io.RawIOBase):
    """A blocking file over an async ByteStream, for a worker thread; receives run on the loop."""

    def __init__(self, stream, loop: asyncio.AbstractEventLoop, idle_timeout: float = IDLE_TIMEOUT):
        self._stream, self._loop, self._timeout = stream, loop, idle_timeout
        self._pending = b""
        self._eof = False
        self.received = 0
        self.sha256 = hashlib.sha256()  # of the bytes as they arrived, for the client to check
        self.observers: list = []  # called with each chunk as it is read

    def readable(self) -> bool:
        return True

    def _fill(self) -> bool:
        if self._eof:
            return False
        future = asyncio.run_coroutine_threadsafe(self._stream.receive(), self._loop)
        try:
            chunk = future.result(self._timeout)
        except TimeoutError:
            future.cancel()
            raise TimeoutError(f"no image data for {self._timeout:g}s after {self.received} bytes") from None
        if not chunk:
            self._eof = True
            return False
        self.received += len(chunk)
        self.sha256.update(chunk)
        for observe in self.observers:
            observe(chunk)
        self._pending += chunk
        return True

    def watch(self, observer) -> None:
        """Call `observer` with every byte of the stream: what was read ahead already, then each new chunk."""
        if self._pending:
            observer(self._pending)
        self.observers.append(observer)

    def peek(self, size: int) -> bytes:
        while len(self._pending) < size and self._fill():
            pass
        return self._pending[:size]

    def readinto(self, buffer) -> int:
        if not self._pending and not self._fill():
            return 0
        n = min(len(buffer), len(self._pending))
        buffer[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        return n


def detect(head: bytes, encoding: str | None) -> str:
    if encoding:
        try:
            return ENCODINGS[encoding.lower()]
        except KeyError:
            raise ImageError(f"unknown content encoding {encoding!r} (known: {', '.join(sorted(ENCODINGS))})") from None
    return next((kind for magic, kind in MAGIC if head.startswith(magic)), "raw")


class ZstdFrames:
    """Follows zstd frame and block headers (RFC 8878) to tell whether data ended on a frame boundary.

    python-zstandard's stream reader returns what it has when its input stops mid-frame;
    this walker, fed the same compressed bytes, is what notices a truncated image.
    """

    def __init__(self):
        self._buffer = b""
        self._skip = 0
        self._state = "magic"
        self._checksum = False
        self.frames = 0

    def __call__(self, chunk: bytes) -> None:
        data = memoryview(chunk)
        while data:
            if self._skip:
                n = min(self._skip, len(data))
                self._skip -= n
                data = data[n:]
                continue
            need = {"magic": 4, "skippable": 4, "descriptor": 1, "block": 3}[self._state]
            take = need - len(self._buffer)
            self._buffer += bytes(data[:take])
            data = data[take:]
            if len(self._buffer) == need:
                field, self._buffer = self._buffer, b""
                self._step(field)

    def _step(self, field: bytes) -> None:
        if self._state == "magic":
            (magic,) = struct.unpack("<I", field)
            if magic == 0xFD2FB528:
                self._state = "descriptor"
            elif magic & 0xFFFFFFF0 == 0x184D2A50:
                self._state = "skippable"
            else:
                raise ImageError(f"corrupt zstd data: no frame header after {self.frames} frame(s)")
        elif self._state == "skippable":
            self._skip = struct.unpack("<I", field)[0]
            self._state = "magic"
        elif self._state == "descriptor":
            d = field[0]
            single_segment = d >> 5 & 1
            self._checksum = bool(d >> 2 & 1)
            self._skip = (0 if single_segment else 1) + (0, 1, 2, 4)[d & 3] + (single_segment, 2, 4, 8)[d >> 6]
            self._state = "block"
        else:
            header = int.from_bytes(field, "little")
            kind, size = header >> 1 & 3, header >> 3
            if kind == 3:
                raise ImageError("corrupt zstd data (reserved block type)")
            self._skip = 1 if kind == 1 else size
            if header & 1:  # last block of the frame
                self._skip += 4 if self._checksum else 0
                self._state = "magic"
                self.frames += 1

    def complete(self) -> bool:
        return self._state == "magic" and not self._buffer and not self._skip and self.frames > 0


def _decoder(kind: str, source: StreamReader):
    buffered = io.BufferedReader(source, PIECE)
    if kind == "gzip":
        return gzip.GzipFile(fileobj=buffered, mode="rb")
    if kind == "xz":
        return lzma.LZMAFile(buffered)
    if kind == "bz2":
        return bz2.BZ2File(buffered)
    if kind == "zstd":
        return zstandard.ZstdDecompressor().stream_reader(buffered, read_across_frames=True)
    return buffered


def decode_image(source: StreamReader, target: Path, encoding: str | None = None, *, sparse: bool = True) -> dict:
    """Decode `source` into `target` (runs in a worker thread).

    With `sparse`, runs of zeros are skipped over (holes in a regular file); a block device
    gets every byte written. Returns what the storage family's clients check: bytes received
    and written, the sha256 of what was received and of what was written, and the compression.
    """
    kind = detect(source.peek(6), encoding)
    frames = None
    if kind == "zstd":
        frames = ZstdFrames()
        source.watch(frames)
    decoder = _decoder(kind, source)
    size = 0
    written = hashlib.sha256()  # of the decoded bytes: what the storage holds, for a later comparison
    try:
        with open(target, "wb") as out:
            while piece := decoder.read(PIECE):
                written.update(piece)
                if sparse and piece.count(0) == len(piece):
                    out.seek(len(piece), io.SEEK_CUR)  # a hole: sparse files keep disk use low
                else:
                    out.write(piece)
                size += len(piece)
            if sparse:
                out.truncate(size)
            out.flush()
            os.fsync(out.fileno())
    except (TimeoutError, ConnectionError):
        raise  # the stream, not the data
    except (EOFError, OSError, zlib.error, lzma.LZMAError, zstandard.ZstdError) as e:
        if isinstance(e, OSError) and e.errno is not None:
            raise  # the disk, not the data
        raise ImageError(f"the {kind} image is corrupt or truncated after {source.received} bytes: {e}") from None
    if frames is not None and not frames.complete():
        raise ImageError(f"the zstd image is truncated: it ends inside a frame after {source.received} bytes")
    if size == 0:
        raise ImageError("the image is empty")
    return {"bytes_received": source.received, "bytes_written": size, "sha256": source.sha256.hexdigest(),
            "written_sha256": written.hexdigest(), "compression": kind}
