"""Client of storage mux drivers (upstream's StorageMux label): host/dut/off and flashing."""

from __future__ import annotations

from pathlib import Path

from jumpstarter_lab.client import DriverClient
from jumpstarter_lab.streams import FileSource


class StorageClient(DriverClient):
    def host(self) -> None:
        self.call("host")

    def dut(self) -> None:
        self.call("dut")

    def off(self) -> None:
        self.call("off")

    def write_file(self, path: str | Path) -> None:
        """Stream a local file to the storage (which must be attached to the host)."""
        self.connection.portal.call(self._write_file(Path(path)))

    async def _write_file(self, path: Path) -> None:
        source = FileSource(path)
        try:
            async with self.resource_async(source) as handle:
                await self.call_async("write", handle)
        finally:
            await source.aclose()

    def flash(self, path: str | Path) -> None:
        """host → write → dut, as upstream's flash does."""
        self.host()
        self.write_file(path)
        self.dut()
