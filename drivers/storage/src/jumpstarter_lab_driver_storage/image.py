"""Writing a pushed image to a file or block device, reading one back, and remembering what was written.

The record of the last image written to a medium (its sha256 as pushed and as written, sizes,
compression, time) lives beside a regular file as `NAME.flashed.json`, and for a block device
in the exporter's state directory ($STATE_DIRECTORY, as systemd sets it, else
~/.local/state/jumpstarter-lab), so that a later session can tell whether the medium still
holds it. It is removed before a write begins: a failed write leaves no stale record.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import time
import urllib.parse
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


def _record_path(target: Path) -> Path:
    if target.is_relative_to("/dev") or target.is_block_device():  # a device, even while it is switched away
        state = Path(os.environ.get("STATE_DIRECTORY") or "~/.local/state/jumpstarter-lab").expanduser()
        return state / "flashed" / (urllib.parse.quote(str(target), safe="") + ".json")
    return target.with_name(target.name + ".flashed.json")


def forget_image(target: Path) -> None:
    """Drop the record of what `target` holds (a write is about to change it)."""
    _record_path(target).unlink(missing_ok=True)


def remember_image(target: Path, result: dict) -> None:
    """Record what write_image() wrote to `target`."""
    record = _record_path(target)
    record.parent.mkdir(parents=True, exist_ok=True)
    fields = ("sha256", "written_sha256", "bytes_received", "bytes_written", "compression")
    temporary = record.with_name(record.name + ".partial")
    temporary.write_text(json.dumps({**{k: result[k] for k in fields}, "time": time.time()}))
    temporary.replace(record)


def _sha256_of(path: Path, length: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while length > 0 and (data := f.read(min(length, 1 << 20))):
            digest.update(data)
            length -= len(data)
    return digest.hexdigest()


def recorded_image(target: Path) -> dict | None:
    """The record of the last image written to `target`, or None (never written, or the record is unreadable)."""
    try:
        record = json.loads(_record_path(target).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and isinstance(record.get("bytes_written"), int) else None


async def holds_image(readable: Path, record: dict) -> bool:
    """Whether `readable` (the medium's content) is still exactly what `record` says was written: the same
    size for a regular file, and the same sha256 over the bytes written (read back, in a worker thread)."""
    if not readable.is_block_device() and readable.stat().st_size != record["bytes_written"]:
        return False
    return await asyncio.to_thread(_sha256_of, readable, record["bytes_written"]) == record.get("written_sha256")
