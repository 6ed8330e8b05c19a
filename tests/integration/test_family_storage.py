"""Storage muxes through a real exporter: flashing raw and compressed images, verified; SDWire's tool."""

from __future__ import annotations

import gzip
import lzma
import os
import stat
import subprocess
import sys

import pytest
import zstandard

from jumpstarter_lab.client import connect
from jumpstarter_lab.wire.errors import DriverError, DriverInvalidArgument, DriverNotImplemented, ExporterUnavailable

from helpers import subprocess_env, wait_for

PAYLOAD = os.urandom(200_000) + b"\0" * 300_000  # compresses, but not to nothing


@pytest.fixture
def mock_exporter(make_config, run_exporter, tmp_path):
    image = tmp_path / "medium.img"
    exporter = run_exporter(make_config(f"""
storage:
  type: jumpstarter_driver_opendal.driver.MockStorageMux
  config: {{image: {image}}}
"""))
    exporter.image = image
    return exporter


@pytest.mark.parametrize("kind, pack", [("raw", lambda d: d), ("gzip", gzip.compress), ("xz", lzma.compress),
                                        ("zstd", lambda d: zstandard.ZstdCompressor().compress(d))])
def test_flash_decompresses_and_verifies(kind, pack, mock_exporter, tmp_path):
    source = tmp_path / f"image.{kind}"
    source.write_bytes(pack(PAYLOAD))
    seen = []
    with connect(mock_exporter.address) as root:
        result = root.storage.flash(source, progress=lambda sent, total: seen.append((sent, total)))
        assert result["compression"] == kind and result["bytes_written"] == len(PAYLOAD)
        assert root.storage.call("status") == "dut"
        assert seen and seen[-1] == (source.stat().st_size, source.stat().st_size)
        root.storage.host()
        back = tmp_path / "back.img"
        assert root.storage.read_file(back) == len(PAYLOAD)
        assert back.read_bytes() == PAYLOAD
    assert mock_exporter.image.read_bytes() == PAYLOAD


def test_bad_images_fail_clearly_and_keep_the_old_one(mock_exporter, tmp_path):
    good = tmp_path / "good.img"
    good.write_bytes(b"old image")
    broken = tmp_path / "broken.gz"
    broken.write_bytes(gzip.compress(PAYLOAD)[:1000] + b"garbage" * 100)
    with connect(mock_exporter.address) as root:
        with pytest.raises(DriverInvalidArgument, match=r"call host\(\) before write\(\)"):
            root.storage.write_file(good)
        root.storage.flash(good)
        root.storage.host()
        with pytest.raises(DriverInvalidArgument, match="the gzip image is corrupt or truncated"):
            root.storage.write_file(broken)
    assert mock_exporter.image.read_bytes() == b"old image"
    assert not list(mock_exporter.image.parent.glob("*.partial"))


def test_flashing_what_the_storage_holds_writes_nothing(mock_exporter, tmp_path):
    image = tmp_path / "image.gz"
    image.write_bytes(gzip.compress(PAYLOAD))
    other = tmp_path / "other.img"
    other.write_bytes(b"another image")
    with connect(mock_exporter.address) as root:
        assert root.storage.flashed_image() is None  # never flashed
        first = root.storage.flash(image)
        assert first["changed"] and first["bytes_received"] == image.stat().st_size
    with connect(mock_exporter.address) as root:  # a new session: the record is on the exporter, not in a driver
        held = root.storage.flashed_image()
        assert held["intact"] and held["sha256"] == first["sha256"] and held["bytes_written"] == len(PAYLOAD)
        again = root.storage.flash(image)
        assert not again["changed"] and again["bytes_received"] == 0 and again["sha256"] == first["sha256"]
        assert root.storage.status() == "dut"
        assert root.storage.flash(image, force=True)["changed"]
        mock_exporter.image.write_bytes(PAYLOAD[:-1] + b"x")  # the board wrote to its disk since
        assert root.storage.flashed_image()["intact"] is False
        assert root.storage.flash(image)["changed"]
        assert root.storage.flash(other)["changed"]
        assert root.storage.flashed_image()["bytes_written"] == len(b"another image")
        root.storage.host()
        with pytest.raises(DriverInvalidArgument, match="corrupt or truncated"):
            root.storage.write_file(_truncated_gzip(tmp_path))
        assert root.storage.flashed_image() is None  # a failed write leaves no record to trust
    assert mock_exporter.image.read_bytes() == b"another image"


def _truncated_gzip(tmp_path):
    broken = tmp_path / "cut.gz"
    broken.write_bytes(gzip.compress(PAYLOAD)[:1000])
    return broken


@pytest.fixture
def sd_mux_ctrl(tmp_path, monkeypatch):
    """A stand-in for SDWire's control tool on PATH: records its arguments, fails on request."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    log = tmp_path / "sd-mux-ctrl.log"
    tool = bindir / "sd-mux-ctrl"
    tool.write_text(f'#!/bin/sh\necho "$@" >> {log}\n[ "$1" = "--device-serial=broken" ] && '
                    '{ echo "no SDWire with that serial" >&2; exit 3; }\nexit 0\n')
    tool.chmod(tool.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    return log


def test_sdwire_switches_with_its_tool_and_writes_the_device(sd_mux_ctrl, make_config, run_exporter, tmp_path):
    device = tmp_path / "sdcard"  # stands for the card reader's block device
    device.write_bytes(b"")
    exporter = run_exporter(make_config(f"""
sd:
  type: jumpstarter_driver_sdwire.driver.SDWire
  config: {{serial: sdw-0042, storage_device: {device}}}
broken:
  type: jumpstarter_lab_driver_storage.SDWire
  config: {{serial: broken, storage_device: {device}}}
"""))
    source = tmp_path / "image.img"
    source.write_bytes(PAYLOAD)
    with connect(exporter.address) as root:
        root.sd.flash(source)
        with pytest.raises(DriverNotImplemented, match="always attached"):
            root.sd.off()
        with pytest.raises(DriverError, match="sd-mux-ctrl --ts exited 3: no SDWire with that serial"):
            root.broken.host()
    assert device.read_bytes() == PAYLOAD
    assert sd_mux_ctrl.read_text().splitlines()[:2] == ["--device-serial=sdw-0042 --ts", "--device-serial=sdw-0042 --dut"]


def test_sdwire_without_its_tool_says_so(make_config, run_exporter, tmp_path):
    exporter = run_exporter(make_config(f"""
sd:
  type: jumpstarter_driver_sdwire.driver.SDWire
  config: {{serial: x, storage_device: {tmp_path / 'dev'}, control_tool: sd-mux-ctrl-missing}}
"""))
    with connect(exporter.address) as root:
        with pytest.raises(ExporterUnavailable, match="control tool 'sd-mux-ctrl-missing' is not installed"):
            root.sd.host()


def test_a_client_killed_mid_upload_leaves_the_old_image(mock_exporter, tmp_path):
    """An upload cut off by the client's death is an error, not a short image taken for whole."""
    old = tmp_path / "old.img"
    old.write_bytes(b"old image")
    with connect(mock_exporter.address) as root:
        root.storage.flash(old)
    fifo = tmp_path / "upload.fifo"
    os.mkfifo(fifo)
    uploader = subprocess.Popen([sys.executable, "-c", (
        "from jumpstarter_lab.client import connect\n"
        f"with connect({mock_exporter.address!r}) as root:\n"
        "    root.storage.host()\n"
        f"    root.storage.write_file({str(fifo)!r})\n")], env=subprocess_env())
    partial = mock_exporter.image.with_name(mock_exporter.image.name + ".partial")
    try:
        with open(fifo, "wb") as feed:
            feed.write(os.urandom(1 << 20))  # the client reads it from the pipe and pushes it
            feed.flush()
            wait_for(lambda: partial.exists() and partial.stat().st_size > 0, 30, "the upload to reach the exporter")
            uploader.kill()  # mid-upload: the pipe stays open, so the client never saw an end
            uploader.wait(10)
    finally:
        if uploader.poll() is None:
            uploader.kill()
    wait_for(lambda: not partial.exists(), 30, "the exporter to drop the cut-off upload")
    assert mock_exporter.image.read_bytes() == b"old image"
    new = tmp_path / "new.img"
    new.write_bytes(b"new image")
    with connect(mock_exporter.address) as root:  # the exporter goes on serving
        root.storage.flash(new)
    assert mock_exporter.image.read_bytes() == b"new image"


class FailingSource:
    """A ByteStream that gives `good` bytes and then fails, as a disk read error would."""

    def __init__(self, good: int):
        self.left = good

    async def receive(self) -> bytes:
        if self.left <= 0:
            raise OSError(5, "Input/output error")
        self.left -= 65536
        return os.urandom(65536)

    async def send(self, data: bytes) -> None:
        pass

    async def send_eof(self) -> None:
        pass

    async def aclose(self) -> None:
        pass


def test_a_source_failing_mid_upload_is_not_installed(mock_exporter, tmp_path):
    """The client's connection stays up but its image source fails: the exporter must see a
    broken upload (no end-of-stream frame), fail the write, and keep the old image."""
    old = tmp_path / "old.img"
    old.write_bytes(b"old image")
    with connect(mock_exporter.address) as root:
        root.storage.flash(old)
        root.storage.host()

        async def push():
            async with root.storage.resource_async(FailingSource(1 << 20)) as handle:
                return await root.storage.call_async("write", handle)

        with pytest.raises(ExporterUnavailable, match="broke off before its end"):
            root.storage.connection.portal.call(push())
        assert root.storage.call("status") == "host"  # the session is still there
    assert mock_exporter.image.read_bytes() == b"old image"
