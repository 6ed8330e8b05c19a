"""Fixtures shared by every suite; the helpers they use live in helpers.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers import ExporterProcess, exporter_config


@pytest.fixture
def make_config(tmp_path):
    def make(export: str, name: str = "test", filename: str = "exporter.yaml") -> Path:
        path = tmp_path / filename
        path.write_text(exporter_config(export, name))
        return path

    return make


@pytest.fixture
def run_exporter(tmp_path):
    started: list[ExporterProcess] = []

    def run(config: Path, *args: str) -> ExporterProcess:
        if not args:
            args = ("--socket", str(tmp_path / f"exporter{len(started)}.sock"))
        exporter = ExporterProcess(["--config", str(config), *args], tmp_path / f"exporter{len(started)}.log")
        started.append(exporter)
        return exporter

    yield run
    for exporter in started:
        if exporter.process.poll() is None:
            exporter.stop()


@pytest.fixture(scope="session")
def postgres():
    from helpers import Postgres

    server = Postgres()
    yield server
    server.stop()
