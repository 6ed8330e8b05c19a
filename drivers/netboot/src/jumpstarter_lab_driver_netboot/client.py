from __future__ import annotations

import hashlib
from pathlib import Path

from jumpstarter_lab.client import DriverClient
from jumpstarter_lab.streams import FileSource
from jumpstarter_lab.wire.errors import DriverError


class FileServerClient(DriverClient):
    """Client of the TFTP and HTTP servers: fill the served root, see what it holds, and where boards reach it."""

    def put_file(self, path: str | Path, name: str | None = None, progress=None) -> dict:
        """Serve a local file as `name` (default: its file name); `progress(sent, total)` as it goes. The
        exporter's sha256 of what it stored is checked against the file's."""
        path = Path(path)
        digest, total = hashlib.sha256(), path.stat().st_size

        def seen(chunk: bytes, sent: int) -> None:
            digest.update(chunk)
            if progress:
                progress(sent, total)

        result = self.connection.portal.call(self._push(path, name or path.name, seen))
        if result["sha256"] != digest.hexdigest() or result["bytes"] != total:
            raise DriverError(f"{self.name}: the exporter stored {result['bytes']} bytes of {path} with sha256 "
                              f"{result['sha256']}, expected {total} and {digest.hexdigest()}")
        return result

    async def _push(self, path: Path, name: str, seen) -> dict:
        source = FileSource(path, on_chunk=seen)
        try:
            async with self.resource_async(source) as handle:
                return await self.call_async("put", name, handle)
        finally:
            await source.aclose()

    def list_files(self) -> dict[str, int]:
        return self.call("list_files") or {}  # an empty mapping arrives as null

    def delete_file(self, name: str) -> None:
        self.call("delete_file", name)

    def get_host(self) -> str:
        return self.call("get_host")

    def get_port(self) -> int:
        return self.call("get_port")

    def get_url(self, name: str = "") -> str:
        """Where boards fetch a served file over HTTP (HTTP servers only)."""
        return self.call("get_url", name)
