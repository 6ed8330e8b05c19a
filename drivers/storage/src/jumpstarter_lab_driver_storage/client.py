"""Client of storage muxes: switching, and flashing with a checksum and progress."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

from jumpstarter_lab.client import DriverClient
from jumpstarter_lab.wire.errors import DriverError, DriverNotImplemented, MethodNotFound
from jumpstarter_lab.streams import FileSink, FileSource

logger = logging.getLogger(__name__)


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while data := f.read(1 << 20):
            digest.update(data)
    return digest.hexdigest()


class StorageMuxClient(DriverClient):
    def host(self) -> None:
        self.call("host")

    def dut(self) -> None:
        self.call("dut")

    def off(self) -> None:
        self.call("off")

    def status(self) -> str:
        """Which side the storage is on: host, dut or off."""
        return self.call("status")

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

    def flashed_image(self) -> dict | None:
        """The exporter's record of the last image written (sha256 as pushed, written_sha256, sizes, compression,
        time) with `intact`: whether the storage still holds exactly that (None: it cannot be read now). None
        when nothing was recorded, or the driver keeps no record (upstream's storage muxes)."""
        try:
            return self.call("flashed_image")
        except (MethodNotFound, DriverNotImplemented):  # an exporter whose storage keeps no record
            return None

    def flash(self, path: str | Path, progress=None, force: bool = False) -> dict:
        """host -> write (verified) -> dut, as upstream's flash does; `changed` in the result says whether
        anything was written: unless `force`, an image the storage still holds is not written again.
        `previous` is the record it compared with (flashed_image(); None with `force`)."""
        self.host()
        held = None if force else self.flashed_image()
        if held and held.get("intact") and held.get("sha256") == file_sha256(path):
            result = {**held, "bytes_received": 0, "changed": False}
            logger.info("%s: holds %s already (sha256 %s); not written", self.name, path, held.get("sha256"))
        else:
            result = {**self.write_file(path, progress), "changed": True}
        self.dut()
        return {**result, "previous": held}
