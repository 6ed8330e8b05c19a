"""The driver allowlist: which client classes load, and only from the installed code that declares them."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from jumpstarter_lab.client import Allowlist, ClientConfig, provenance
from jumpstarter_lab.wire import entrypoints
from jumpstarter_lab.wire.errors import ClientNotAllowed, ConfigError

POWER_LABEL = "jumpstarter_driver_power.client.PowerClient"
PIN_LABEL = "labpin.client.PinClient"

# Importing this module leaves a mark: a refused class must never run.
MODULE = """
import pathlib
pathlib.Path({mark!r}).write_text("imported")
class {name}:
    pass
"""


def _forget_entry_points():
    entrypoints.group.cache_clear()
    provenance.declared_clients.cache_clear()
    provenance.belongs_to.cache_clear()
    importlib.invalidate_caches()


@pytest.fixture
def path_entry(tmp_path, monkeypatch):
    """A directory first on sys.path; modules imported from it are forgotten afterwards."""
    directory = tmp_path / "path"
    directory.mkdir()
    monkeypatch.syspath_prepend(str(directory))
    before = set(sys.modules)
    _forget_entry_points()
    yield directory
    for name in set(sys.modules) - before:
        sys.modules.pop(name, None)
    monkeypatch.undo()
    _forget_entry_points()


@pytest.fixture(scope="module")
def pinned_dist(tmp_path_factory):
    """A real distribution installed from a wheel build into its own directory, declaring one client."""
    root = tmp_path_factory.mktemp("labpin")
    project = root / "project"
    (project / "labpin_drivers").mkdir(parents=True)
    (project / "labpin_drivers" / "__init__.py").write_text("")
    (project / "labpin_drivers" / "client.py").write_text(
        "from jumpstarter_lab.client import DriverClient\n\nclass PinClient(DriverClient):\n    pass\n")
    (project / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["setuptools"]\nbuild-backend = "setuptools.build_meta"\n'
        '[project]\nname = "labpin-drivers"\nversion = "1.0"\n'
        f'[project.entry-points."jumpstarter_lab.clients"]\n"{PIN_LABEL}" = "labpin_drivers.client:PinClient"\n')
    target = root / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                    "--target", str(target), str(project)], check=True, capture_output=True, timeout=300)
    return target


@pytest.fixture
def installed(pinned_dist, monkeypatch):
    monkeypatch.syspath_prepend(str(pinned_dist))
    _forget_entry_points()
    yield pinned_dist
    for name in [n for n in sys.modules if n.startswith("labpin_drivers")]:
        sys.modules.pop(name)
    monkeypatch.undo()
    _forget_entry_points()


def test_a_stray_module_with_the_projects_prefix_is_refused_and_never_imported(path_entry, tmp_path):
    """The old default pattern `jumpstarter_lab_*` let any such module be imported."""
    mark = tmp_path / "mark"
    (path_entry / "jumpstarter_lab_evil.py").write_text(MODULE.format(mark=str(mark), name="Evil"))
    with pytest.raises(ClientNotAllowed, match="'jumpstarter_lab_evil.Evil' is not in the driver allowlist"):
        Allowlist(from_env=False).load("jumpstarter_lab_evil.Evil")
    assert not mark.exists() and "jumpstarter_lab_evil" not in sys.modules
    # trusting it by name is the user's explicit choice
    assert Allowlist(["jumpstarter_lab_evil"], from_env=False).load("jumpstarter_lab_evil.Evil").__name__ == "Evil"
    assert mark.exists()


def test_a_module_shadowing_an_installed_driver_package_is_refused(path_entry, tmp_path, monkeypatch):
    mark = tmp_path / "mark"
    shadow = path_entry / "jumpstarter_lab_driver_power"
    shadow.mkdir()
    (shadow / "__init__.py").write_text(MODULE.format(mark=str(mark), name="Nothing"))
    (shadow / "client.py").write_text(MODULE.format(mark=str(mark), name="PowerClient"))
    for name in [n for n in sys.modules if n.startswith("jumpstarter_lab_driver_power")]:
        monkeypatch.delitem(sys.modules, name)
    with pytest.raises(ClientNotAllowed, match=r"would be imported from .*jumpstarter_lab_driver_power, which is not "
                                               r"part of the installed distribution 'jumpstarter-lab-driver-power'"):
        Allowlist(from_env=False).load(POWER_LABEL)
    assert not mark.exists()


def test_declared_clients_load_by_default_and_unknown_classes_only_when_unsafe(path_entry, tmp_path):
    assert Allowlist(from_env=False).load(POWER_LABEL).__name__ == "PowerClient"
    (path_entry / "elsewhere.py").write_text(MODULE.format(mark=str(tmp_path / "mark"), name="Other"))
    with pytest.raises(ClientNotAllowed):
        Allowlist(from_env=False).load("elsewhere.Other")
    assert Allowlist(unsafe=True, from_env=False).load("elsewhere.Other").__name__ == "Other"


def test_upstream_unsafe_word_in_the_environment(monkeypatch, path_entry, tmp_path):
    (path_entry / "elsewhere.py").write_text(MODULE.format(mark=str(tmp_path / "mark"), name="Other"))
    monkeypatch.setenv("JMP_DRIVERS_ALLOW", "UNSAFE")
    assert Allowlist().load("elsewhere.Other").__name__ == "Other"


def test_pins_load_a_matching_distribution_and_refuse_the_rest(installed):
    pin = provenance.digest("labpin-drivers")
    assert pin.startswith("sha256:") and pin == provenance.digest("labpin_drivers")  # names compare canonically
    assert "labpin-drivers" in provenance.client_distributions()
    assert Allowlist(pins={"labpin_drivers": pin}, from_env=False).load(PIN_LABEL).__name__ == "PinClient"
    wrong = "sha256:" + "0" * 64
    with pytest.raises(ClientNotAllowed, match=f"'labpin-drivers' does not match its pin: its files hash to {pin}"):
        Allowlist(pins={"labpin-drivers": wrong}, from_env=False).load(PIN_LABEL)
    with pytest.raises(ClientNotAllowed, match="from distribution 'jumpstarter-lab-driver-power', which has no pin"):
        Allowlist(pins={"labpin-drivers": pin}, from_env=False).load(POWER_LABEL)
    # the client's own distribution is the code doing the checking: never asked for a pin
    Allowlist(pins={"labpin-drivers": pin}, from_env=False).load("jumpstarter_driver_composite.client.CompositeClient")


def test_a_changed_or_added_file_changes_the_digest(installed):
    package = Path(installed) / "labpin_drivers"
    before = provenance.digest("labpin-drivers")
    client = package / "client.py"
    original = client.read_text()
    try:
        client.write_text(original + "\nimport os  # tampered\n")
        changed = provenance.digest("labpin-drivers")
        client.write_text(original)
        (package / "extra.py").write_text("x = 1\n")
        added = provenance.digest("labpin-drivers")
    finally:
        client.write_text(original)
        (package / "extra.py").unlink(missing_ok=True)
    assert len({before, changed, added}) == 3
    assert provenance.digest("labpin-drivers") == before
    with pytest.raises(LookupError, match="no installed distribution 'no-such-dist'"):
        provenance.digest("no-such-dist")


def test_pins_in_a_client_config(tmp_path):
    base = {"apiVersion": "jumpstarter.dev/v1alpha1", "kind": "ClientConfig", "metadata": {"name": "c"},
            "endpoint": "localhost:1", "token": "t"}
    good = dict(base, drivers={"allow": [], "pins": {"labpin-drivers": "sha256:" + "a" * 64}})
    path = tmp_path / "client.yaml"
    path.write_text(yaml.safe_dump(good))
    config = ClientConfig.load(path)
    assert config.allowlist().pins == {"labpin-drivers": "sha256:" + "a" * 64}
    assert ClientConfig.load(_written(tmp_path, config.dump())).pins == config.pins  # dump keeps them
    path.write_text(yaml.safe_dump(dict(base, drivers={"pins": {"labpin-drivers": "md5:abc"}})))
    with pytest.raises(ConfigError, match="md5:abc"):
        ClientConfig.load(path)
    path.write_text(yaml.safe_dump(dict(base, drivers={"pinz": {}})))
    with pytest.raises(ConfigError, match="pinz"):
        ClientConfig.load(path)


def _written(directory: Path, text: str) -> Path:
    path = directory / "dumped.yaml"
    path.write_text(text)
    return path


def test_new_client_configs_allow_exactly_the_upstream_interfaces_the_drivers_serve():
    import tomllib

    from jumpstarter_lab.client.allowlist import UPSTREAM_INTERFACES

    root = Path(__file__).resolve().parents[2]
    labels = set()
    for pyproject in [root / "exporter" / "pyproject.toml", *sorted((root / "drivers").glob("*/pyproject.toml"))]:
        declared = tomllib.loads(pyproject.read_text())["project"].get("entry-points", {})
        labels |= set(declared.get("jumpstarter_lab.clients", {}))
    served = {label.split(".", 1)[0] + ".client.*" for label in labels if label.startswith("jumpstarter_driver_")}
    assert set(UPSTREAM_INTERFACES) == served
    config = ClientConfig.issued("alice", "default", "lab:8082", "token", {})
    assert yaml.safe_load(config.dump())["drivers"] == {"allow": list(UPSTREAM_INTERFACES), "unsafe": False}
