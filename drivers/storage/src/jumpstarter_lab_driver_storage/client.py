"""Client of storage muxes: switching, and flashing with a checksum and progress."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

from jumpstarter_lab.client import DriverClient
from jumpstarter_lab.wire.errors import DriverError
from jumpstarter_lab.streams import FileSink, FileSource

logger = logging.getLogger(__name__)


class StorageMuxClient(DriverClient):
    def host(self) -> None:
        self.call("host")

    def dut(self) -> None:
        self.call("dut")

    def off(self) -> None:
        self.call("off")

    def write_file(self, path: str | Path, progress=None) -> dict:
        """Stream a local image (raw, gzip, xz or zstd) to the storage, which must be on the host side.

        `progress(sent_bytes, total_bytes)` is called as it goes. The exporter's sha256 of what
        it received is checked against the file's.
        """
        path = Path(path)
        digest = hashlib.sha256()
        total = path.stat().st_size

        def seen(chunk: bytes, sent: int) -> None:
            digest.update(chunk)
            if progress:
                progress(sent, total)

        result = self.connection.portal.call(self._push(path, seen))
        if result.get("sha256") != digest.hexdigest() or result.get("bytes_received") != total:
            raise DriverError(f"{self.name}: the exporter received {result.get('bytes_received')} bytes of "
                              f"{path} with sha256 {result.get('sha256')}, expected {total} and {digest.hexdigest()}")
        logger.info("%s: wrote %s (%d bytes, %s)", self.name, path, result["bytes_written"], result["compression"])
        return result

    async def _push(self, path: Path, seen) -> dict:
        source = FileSource(path, on_chunk=seen)
        try:
            async with self.resource_async(source) as handle:
                return await self.call_async("write", handle)
        finally:
            await source.aclose()

    def read_file(self, path: str | Path) -> int:
        """Copy the storage's content into a local file (the storage must be on the host side)."""
        return self.connection.portal.call(self._pull(Path(path)))

    async def _pull(self, path: Path) -> int:
        sink = FileSink(path)
        try:
            async with self.resource_async(sink) as handle:
                result = await self.call_async("read", handle)
        finally:
            await sink.aclose()
        return result["bytes_sent"]

    def flash(self, path: str | Path, progress=None) -> dict:
        """host -> write (verified) -> dut, as upstream's flash does."""
        self.host()
        result = self.write_file(path, progress)
        self.dut()
        return result
