from __future__ import annotations

import asyncio
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from jumpstarter_lab.driver import Driver, export
from jumpstarter_lab.wire.errors import DriverError, ExporterUnavailable
from jumpstarter_lab.wire.handles import ClientStreamHandle

from .image import forget_image, holds_image, read_image, recorded_image, remember_image, write_image
from .interface import StorageMuxInterface


class ImageStorage(StorageMuxInterface, Driver):
    """What storage muxes share: which side the medium is on, and moving images in and out.

    A subclass says where the medium is (`_medium`) and how it switches sides (`_switch`);
    `_flashed` and `_readable` let it act on a new image and say what to read back."""

    side = "dut"

    def _medium(self) -> Path:
        raise NotImplementedError

    async def _switch(self, side: str) -> None:
        """Attach the medium to `side` (host, dut or off)."""
        raise NotImplementedError

    @export
    async def host(self) -> None:
        """Attach the storage to the exporter host"""
        await self._switch("host")

    @export
    async def dut(self) -> None:
        """Attach the storage to the board"""
        await self._switch("dut")

    @export
    async def off(self) -> None:
        """Detach the storage from both sides"""
        await self._switch("off")

    def _require_host(self, what: str) -> None:
        if self.side != "host":
            raise ValueError(f"storage is attached to '{self.side}'; call host() before {what}()")

    def _flashed(self, result: dict) -> None:
        """Called once an image is written whole to the medium."""
        self.logger.info("wrote %d bytes (%s, %d received) to %s", result["bytes_written"], result["compression"],
                         result["bytes_received"], self._medium())

    async def _readable(self) -> Path:
        """The file or device whose bytes are the storage's content."""
        return self._medium()

    @export
    async def write(self, src: dict | str) -> dict:
        """Write an image pushed by the client (raw, gzip, xz, bzip2 or zstd); returns sizes and sha256"""
        self._require_host("write")
        handle = ClientStreamHandle.parse(src)
        forget_image(self._medium())
        async with self.resource(handle) as stream:
            result = await write_image(stream, self._medium(), handle.x_jmp_content_encoding)
        remember_image(self._medium(), result)
        self._flashed(result)
        return result

    @export(read_only=True)
    async def flashed_image(self) -> dict | None:
        """The last image written (sha256, sizes, time) and whether the storage still holds it (intact)"""
        record = recorded_image(self._medium())
        if record is None:
            return None
        if self._medium().is_relative_to("/dev") and (self.side != "host" or not self._medium().exists()):
            return {**record, "intact": None}  # a card switched to the board cannot be read from here
        return {**record, "intact": await holds_image(await self._readable(), record)}

    @export
    async def read(self, dst: dict) -> dict:
        """Send the storage's content to the client"""
        self._require_host("read")
        async with self.resource(dst) as stream:
            return {"bytes_sent": await read_image(await self._readable(), stream)}

    @export(read_only=True)
    def status(self) -> str:
        """Which side the storage is attached to: host, dut or off"""
        return self.side


@dataclass(kw_only=True)
class MockStorageMux(ImageStorage):
    """A storage mux whose medium is an image file on the exporter host"""

    image: str | None = None

    def __post_init__(self):
        self._workdir = None if self.image else Path(tempfile.mkdtemp(prefix="storage-"))
        self._image = Path(self.image) if self.image else self._workdir / "disk.img"

    def _medium(self) -> Path:
        return self._image

    async def _switch(self, side: str) -> None:
        self.side = side

    def close(self) -> None:
        super().close()
        if self._workdir:
            shutil.rmtree(self._workdir, ignore_errors=True)


@dataclass(kw_only=True)
class SDWire(ImageStorage):
    """SDWire SD-card mux, switched with its control tool (sd-mux-ctrl) by serial number"""

    serial: str
    storage_device: str  # the card reader's block device on the exporter host, e.g. /dev/sda
    control_tool: str = "sd-mux-ctrl"
    appear_timeout: float = 10.0
    timeout: float = 20.0
    _side: str = field(default="unknown", init=False, repr=False)

    @property
    def side(self) -> str:
        return self._side

    def _medium(self) -> Path:
        return Path(self.storage_device)

    async def _switch(self, side: str) -> None:
        """host: the test server side, then wait for the card's device; dut: the board. No off position."""
        if side == "off":
            raise NotImplementedError("an SDWire is always attached to the host or the board; use host() or dut()")
        await self._tool("--ts" if side == "host" else "--dut")
        self._side = side
        if side != "host":
            return
        deadline = time.monotonic() + self.appear_timeout
        while not Path(self.storage_device).exists():
            if time.monotonic() > deadline:
                raise ExporterUnavailable(f"SDWire {self.serial}: {self.storage_device} did not appear within "
                                          f"{self.appear_timeout:g}s of switching to the host")
            await asyncio.sleep(0.2)

    async def _tool(self, flag: str) -> None:
        tool = shutil.which(self.control_tool)
        if tool is None:
            raise ExporterUnavailable(f"SDWire {self.serial}: control tool '{self.control_tool}' is not installed")
        process = await asyncio.create_subprocess_exec(tool, f"--device-serial={self.serial}", flag,
                                                       stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        try:
            out, err = await asyncio.wait_for(process.communicate(), self.timeout)
        except asyncio.TimeoutError:
            process.kill()
            await process.wait()
            raise TimeoutError(f"SDWire {self.serial}: {self.control_tool} {flag} took over {self.timeout:g}s") from None
        if process.returncode != 0:
            detail = (err or out).decode(errors="replace").strip()[-300:]
            raise DriverError(f"SDWire {self.serial}: {self.control_tool} {flag} exited {process.returncode}: {detail}")
