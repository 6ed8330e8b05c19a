"""The storage family's image decoder on in-memory streams: raw, gzip (multi-member), xz,
bzip2 and zstd (multi-frame), the client-named encoding, truncation, bounded memory."""

from __future__ import annotations

import asyncio
import bz2
import gzip
import hashlib
import io
import lzma
import os
import tempfile
import tracemalloc
from pathlib import Path

import pytest
import zstandard

from jumpstarter_lab.streams import memory_pipe
from jumpstarter_lab_driver_storage.decode import ImageError, StreamReader, decode_image


def _payload() -> bytes:
    return os.urandom(300_000) + bytes(3 << 20) + b"JUMPSTARTER_MARKER=compressed\n" + os.urandom(1000)


def _write(data: bytes, encoding: str | None = None, chunk: int = 65536, keep: bool = True) -> tuple[str, bytes | int]:
    async def main(target: Path):
        local, remote = memory_pipe()

        async def push():
            for i in range(0, len(data), chunk):
                await local.send(data[i:i + chunk])
            await local.send_eof()

        pusher = asyncio.ensure_future(push())
        try:
            result = await asyncio.to_thread(decode_image, StreamReader(remote, asyncio.get_running_loop()),
                                             target, encoding)
        finally:
            pusher.cancel()
        assert (result["bytes_received"], result["sha256"]) == (len(data), hashlib.sha256(data).hexdigest())
        return result["compression"], result["bytes_written"]

    with tempfile.TemporaryDirectory() as tmp:
        target = Path(tmp, "disk.img")
        kind, size = asyncio.run(main(target))
        assert size == target.stat().st_size
        assert target.stat().st_blocks * 512 < size  # the zeros became a hole
        return kind, target.read_bytes() if keep else size


@pytest.mark.parametrize("kind, compress", [
    ("raw", lambda d: d),
    ("gzip", lambda d: gzip.compress(d[:1000]) + gzip.compress(d[1000:])),  # two members, as pigz may write
    ("xz", lzma.compress),
    ("bz2", bz2.compress),
    ("zstd", lambda d: zstandard.ZstdCompressor().compress(d[:5000]) + zstandard.ZstdCompressor().compress(d[5000:])),
])
def test_flash_decodes_raw_and_compressed_images(kind, compress):
    data = _payload()
    assert _write(compress(data)) == (kind, data)


def test_flash_follows_the_content_encoding_the_client_names():
    data = _payload()
    assert _write(gzip.compress(data), encoding="gzip") == ("gzip", data)
    with pytest.raises(ImageError, match="unknown content encoding 'lz4'"):
        _write(data, encoding="lz4")


@pytest.mark.parametrize("compress", [gzip.compress, lzma.compress, zstandard.ZstdCompressor().compress],
                         ids=["gzip", "xz", "zstd"])
def test_flash_refuses_a_truncated_image(compress):
    packed = compress(_payload())
    with pytest.raises(ImageError, match="truncated"):
        _write(packed[: len(packed) - 7])


def test_zstd_is_decoded_in_bounded_pieces():
    """A well-compressed image (8 GiB of zeros is a few hundred KiB of zstd) must not be held in memory."""
    source = io.BytesIO()
    zstandard.ZstdCompressor(level=1).copy_stream(io.BytesIO(bytes(64 << 20)), source, size=64 << 20)
    packed = source.getvalue() + zstandard.ZstdCompressor().compress(b"end")
    assert len(packed) < 64 << 10
    tracemalloc.start()
    try:
        kind, size = _write(packed, keep=False)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert (kind, size) == ("zstd", (64 << 20) + 3)
    assert peak < 16 << 20  # bytes: pieces of 1 MiB, not the 64 MiB the data expands to
