"""The committed protocol modules are exactly what scripts/gen_proto.py makes from proto/."""

import filecmp
import subprocess
import sys

from helpers import ROOT

GENERATED = ROOT / "exporter" / "src" / "jumpstarter_lab" / "wire" / "protocol"


def test_generated_code_is_fresh(tmp_path):
    subprocess.run([sys.executable, str(ROOT / "scripts" / "gen_proto.py"), str(tmp_path)], check=True)
    fresh = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file())
    assert fresh, "generator produced nothing"
    committed = sorted(p.relative_to(GENERATED) for p in (GENERATED / "jumpstarter").rglob("*")
                       if p.is_file() and "__pycache__" not in p.parts)
    assert [str(p) for p in committed] == [str(p) for p in fresh]
    stale = [str(p) for p in fresh if not filecmp.cmp(tmp_path / p, GENERATED / p, shallow=False)]
    assert not stale, f"regenerate with `make proto`: stale {stale}"


def test_service_method_paths_match_upstream_names():
    from jumpstarter_lab.wire.protocol import client_pb2, jumpstarter_pb2, router_pb2

    exporter = jumpstarter_pb2.DESCRIPTOR.services_by_name["ExporterService"]
    assert exporter.full_name == "jumpstarter.v1.ExporterService"
    expected = ["GetReport", "DriverCall", "StreamingDriverCall", "LogStream", "Reset", "GetStatus", "EndSession"]
    assert [m.name for m in exporter.methods] == expected
    assert router_pb2.DESCRIPTOR.services_by_name["RouterService"].full_name == "jumpstarter.v1.RouterService"
    assert client_pb2.DESCRIPTOR.services_by_name["ClientService"].full_name == "jumpstarter.client.v1.ClientService"
