"""Writing a pushed image to a file or block device, and reading one back."""

from __future__ import annotations

import asyncio
from pathlib import Path

from .decode import StreamReader, decode_image


async def write_image(stream, target: Path, encoding: str | None = None) -> dict:
    """Decode a ByteStream into `target`; returns sizes, the sha256 of what arrived and the compression.

    A regular file is written beside the target and renamed over it at the end, so a
    failed transfer leaves the old image; a block device is written in place.
    """
    block_device = target.exists() and target.is_block_device()
    partial = target if block_device else target.with_name(target.name + ".partial")
    reader = StreamReader(stream, asyncio.get_running_loop())
    try:
        result = await asyncio.to_thread(decode_image, reader, partial, encoding, sparse=not block_device)
    except BaseException:
        if not block_device:
            partial.unlink(missing_ok=True)
        raise
    if not block_device:
        partial.replace(target)
    return result


async def read_image(source: Path, stream, chunk: int = 256 * 1024) -> int:
    """Send a file or device through a ByteStream; returns the bytes sent."""
    sent = 0
    with open(source, "rb") as f:
        while data := await asyncio.to_thread(f.read, chunk):
            await stream.send(data)
            sent += len(data)
    await stream.send_eof()
    return sent
