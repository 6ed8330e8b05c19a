"""`jumpstarter-lab admin apply`: make the controller's clients and exporters what a file declares.

Idempotent, for provisioning: an identity is created or its labels and capabilities updated in
place (no new token), and its config file (0600, with a token) is written only when it is new,
missing, names another endpoint or TLS, or holds a token the controller no longer accepts.
Identities marked `state: absent` are revoked and their configs removed. Prints what changed as
JSON, for Ansible's changed_when.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ..client.config import ClientConfig
from ..wire import names
from ..wire.documents import API_VERSION, parse_yaml, read_document, validate
from ..wire.channels import inline_ca
from ..wire.errors import ConfigError, JumpstarterLabError

_IDENTITY = {
    "type": "object",
    "required": ["name"],
    "additionalProperties": False,
    "properties": {
        "name": {"type": "string"},
        "namespace": {"type": "string"},
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        "state": {"enum": ["present", "absent"]},
        "exporters": {"type": "array", "items": {"type": "string"}},  # clients: selectors they may lease
        "methods": {"type": "array", "items": {"type": "string"}},  # clients: DRIVER.METHOD patterns
        "priority": {"type": "integer", "minimum": 0},  # clients: the highest lease priority they may ask for
    },
}

CAPABILITIES = ("exporters", "methods", "priority")  # a client's, as the controller stores them

SCHEMA = {
    "type": "object",
    "required": ["endpoint"],
    "additionalProperties": False,
    "properties": {
        "endpoint": {"type": "string", "minLength": 1},
        "tls": {"type": "object", "additionalProperties": False,
                "properties": {"ca": {"type": "string"}, "insecure": {"type": "boolean"}}},
        "days": {"type": "number", "exclusiveMinimum": 0},
        "clients": {"type": "array", "items": _IDENTITY},
        "exporters": {"type": "array", "items": {**_IDENTITY, "properties": {
            key: value for key, value in _IDENTITY["properties"].items() if key not in CAPABILITIES}}},
    },
}


@dataclass
class Declared:
    kind: str
    namespace: str
    name: str
    labels: dict = field(default_factory=dict)
    capabilities: dict = field(default_factory=dict)
    present: bool = True

    @property
    def key(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}"


def load_declaration(path: str) -> tuple[dict, list[Declared]]:
    data, source = parse_yaml(read_document(path, "identities file"), str(path))
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping with endpoint, clients and exporters")
    validate(data, SCHEMA, source)
    declared = []
    for kind in ("client", "exporter"):
        for item in data.get(f"{kind}s") or []:
            namespace = item.get("namespace", "default")
            names.check(namespace, "namespace")
            names.check(item["name"], f"{kind} name")
            capabilities = {k: item[k] for k in CAPABILITIES if item.get(k)}
            declared.append(Declared(kind, namespace, item["name"], dict(item.get("labels") or {}), capabilities,
                                     item.get("state", "present") == "present"))
    seen = [d.key for d in declared]
    if len(seen) != len(set(seen)):
        raise ConfigError(f"{path}: declared twice: {', '.join(sorted({k for k in seen if seen.count(k) > 1}))}")
    return data, declared


def config_path(out_dir: Path, identity: Declared) -> Path:
    return out_dir / f"{identity.kind}s" / identity.namespace / f"{identity.name}.yaml"


def _config_text(identity: Declared, endpoint: str, tls: dict, token: str) -> str:
    if identity.kind == "client":
        return ClientConfig.issued(identity.name, identity.namespace, endpoint, token, tls).dump()
    return yaml.safe_dump({"apiVersion": API_VERSION, "kind": "ExporterConfig",
                           "metadata": {"namespace": identity.namespace, "name": identity.name},
                           "endpoint": endpoint, "token": token, "tls": tls, "export": {}}, sort_keys=False)


def _current(path: Path, authority, identity: Declared, endpoint: str, tls: dict) -> bool:
    """Whether the config at `path` still reaches the controller as this identity."""
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return False
    if not isinstance(data, dict) or data.get("endpoint") != endpoint or (data.get("tls") or {}) != tls:
        return False
    try:
        found = authority.verify(str(data.get("token", "")), identity.kind)
    except JumpstarterLabError:
        return False
    return (found.namespace, found.name) == (identity.namespace, identity.name)


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    partial = path.with_suffix(".partial")
    partial.touch(mode=0o600)
    partial.chmod(0o600)  # it holds a token
    partial.write_text(text)
    partial.replace(path)


def apply(authority, path: str, out_dir: Path) -> dict:
    data, declared = load_declaration(path)
    endpoint = data["endpoint"]
    tls = dict(data.get("tls") or {})
    if tls.get("ca"):  # inline, so that the configs work on any machine (and with upstream's tools)
        tls["ca"] = inline_ca(tls["ca"])
    days = float(data.get("days", 365))
    report: dict[str, list[str]] = {"created": [], "updated": [], "written": [], "revoked": []}
    for identity in declared:
        target = config_path(out_dir, identity)
        if not identity.present:
            if authority.exists(identity.kind, identity.namespace, identity.name):
                authority.revoke(identity.kind, identity.namespace, identity.name)
                report["revoked"].append(identity.key)
            target.unlink(missing_ok=True)
            continue
        outcome, generation = authority.declare(identity.kind, identity.namespace, identity.name, identity.labels,
                                                identity.capabilities)
        if outcome != "unchanged":
            report[outcome].append(identity.key)
        if outcome == "created" or not _current(target, authority, identity, endpoint, tls):
            token = authority.token(identity.kind, identity.namespace, identity.name, generation, days)
            _write(target, _config_text(identity, endpoint, tls, token))
            report["written"].append(str(target))
    return {"changed": any(report.values()), **report}


def cmd_admin_apply(args, authority) -> int:
    print(json.dumps(apply(authority, args.file, Path(args.out_dir))))
    return 0
