"""Writing a pushed image to a file or block device, decompressing gzip, xz and zstd as it streams."""

from __future__ import annotations

import asyncio
import hashlib
import lzma
import os
import zlib
from pathlib import Path

import zstandard

MAGIC = {b"\x1f\x8b": "gzip", b"\xfd7zXZ\x00": "xz", b"\x28\xb5\x2f\xfd": "zstd"}


def _decompressor(head: bytes):
    for magic, kind in MAGIC.items():
        if head.startswith(magic):
            if kind == "gzip":
                return kind, zlib.decompressobj(wbits=47)  # a gzip (or zlib) header
            if kind == "xz":
                return kind, lzma.LZMADecompressor()
            return kind, zstandard.ZstdDecompressor().decompressobj()
    return "raw", None


async def write_image(stream, target: Path) -> dict:
    """Copy a ByteStream to `target`; returns sizes, the sha256 of what arrived and the compression.

    A regular file is written beside the target and renamed over it at the end, so a
    failed transfer leaves the old image; a block device is written in place.
    """
    block_device = target.exists() and target.is_block_device()
    partial = target if block_device else target.with_name(target.name + ".partial")
    received = hashlib.sha256()
    sizes = {"received": 0, "written": 0}
    kind, decompressor = "raw", None
    fd = await asyncio.to_thread(os.open, partial, os.O_WRONLY | os.O_CREAT | (0 if block_device else os.O_TRUNC), 0o644)
    try:
        first = True
        while chunk := await stream.receive():
            received.update(chunk)
            sizes["received"] += len(chunk)
            if first:
                kind, decompressor = _decompressor(chunk)
                first = False
            try:
                data = decompressor.decompress(chunk) if decompressor else chunk
            except (zlib.error, lzma.LZMAError, zstandard.ZstdError) as e:
                raise ValueError(f"the image is not valid {kind} data: {e}") from None
            if data:
                await asyncio.to_thread(_write_all, fd, data)
                sizes["written"] += len(data)
        if decompressor is not None:
            tail = decompressor.flush() if hasattr(decompressor, "flush") else b""
            if tail:
                await asyncio.to_thread(_write_all, fd, tail)
                sizes["written"] += len(tail)
            if not getattr(decompressor, "eof", True):
                raise ValueError(f"the image is not valid {kind} data: it ends before its {kind} stream does "
                                 "(truncated?)")
        await asyncio.to_thread(os.fsync, fd)
    except BaseException:
        os.close(fd)
        if not block_device:
            partial.unlink(missing_ok=True)
        raise
    os.close(fd)
    if not block_device:
        partial.replace(target)
    return {"bytes_received": sizes["received"], "bytes_written": sizes["written"],
            "sha256": received.hexdigest(), "compression": kind}


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


async def read_image(source: Path, stream, chunk: int = 256 * 1024) -> int:
    """Send a file or device through a ByteStream; returns the bytes sent."""
    sent = 0
    with open(source, "rb") as f:
        while data := await asyncio.to_thread(f.read, chunk):
            await stream.send(data)
            sent += len(data)
    await stream.send_eof()
    return sent
