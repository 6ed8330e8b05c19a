"""A client's config file, in upstream's ClientConfig format: who it is and where the controller is."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ..wire.documents import API_VERSION, parse_yaml, read_document, validate
from ..wire.errors import ConfigError
from .allowlist import UPSTREAM_INTERFACES, Allowlist
from .provenance import PIN_PATTERN

ENV_CLIENT_CONFIG = "JMP_CLIENT_CONFIG"  # the same variable upstream's client reads

CLIENT_SCHEMA = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "endpoint", "token"],
    "properties": {
        "apiVersion": {"const": API_VERSION},
        "kind": {"const": "ClientConfig"},
        "metadata": {"type": "object", "required": ["name"],
                     "properties": {"name": {"type": "string"}, "namespace": {"type": "string"}}},
        "endpoint": {"type": "string", "minLength": 1},
        "token": {"type": "string", "minLength": 1},
        "tls": {"type": "object", "properties": {"ca": {"type": "string"}, "insecure": {"type": "boolean"}},
                "additionalProperties": False},
        "drivers": {"type": "object", "additionalProperties": False, "properties": {
            "allow": {"type": "array", "items": {"type": "string"}},
            "unsafe": {"type": "boolean"},
            "pins": {"type": "object", "additionalProperties": {"type": "string", "pattern": f"^{PIN_PATTERN}$"}},
        }},
        "grpcOptions": {"type": ["object", "null"]},
        "shell": {"type": "object"},
        "leases": {"type": "object"},
        "alias": {"type": "string"},
    },
    "additionalProperties": False,
}


@dataclass
class ClientConfig:
    """A client's config file (upstream's ClientConfig format): who it is and where the controller is."""

    name: str
    namespace: str
    endpoint: str
    token: str
    tls: dict = field(default_factory=dict)
    allow: list[str] = field(default_factory=list)
    unsafe: bool = False
    pins: dict[str, str] = field(default_factory=dict)

    @classmethod
    def issued(cls, name: str, namespace: str, endpoint: str, token: str, tls: dict) -> ClientConfig:
        """The config written for a new client: upstream's client can use it too (UPSTREAM_INTERFACES)."""
        return cls(name=name, namespace=namespace, endpoint=endpoint, token=token, tls=tls,
                   allow=list(UPSTREAM_INTERFACES))

    @classmethod
    def load(cls, path: str | Path) -> ClientConfig:
        data, source = parse_yaml(read_document(path, "client config"), str(path))
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: expected a ClientConfig mapping")
        validate(data, CLIENT_SCHEMA, source)
        drivers = data.get("drivers") or {}
        return cls(name=data["metadata"]["name"], namespace=data["metadata"].get("namespace", "default"),
                   endpoint=data["endpoint"], token=data["token"], tls=data.get("tls") or {},
                   allow=drivers.get("allow") or [], unsafe=bool(drivers.get("unsafe")), pins=drivers.get("pins") or {})

    def allowlist(self, extra: list[str] | None = None, pins: dict[str, str] | None = None) -> Allowlist:
        """The driver allowlist this config asks for, with `extra` patterns and `pins`."""
        return Allowlist([*self.allow, *(extra or [])], pins={**self.pins, **(pins or {})}, unsafe=self.unsafe)

    def dump(self) -> str:
        return yaml.safe_dump({"apiVersion": API_VERSION, "kind": "ClientConfig",
                               "metadata": {"namespace": self.namespace, "name": self.name},
                               "endpoint": self.endpoint, "token": self.token, "tls": self.tls,
                               "drivers": {"allow": self.allow, "unsafe": self.unsafe,
                                           **({"pins": self.pins} if self.pins else {})}}, sort_keys=False)


def load_client_config(path: str | Path | None) -> ClientConfig:
    """The client config at `path`, else at $JMP_CLIENT_CONFIG; ConfigError when neither names one."""
    import os

    path = path or os.environ.get(ENV_CLIENT_CONFIG)
    if not path:
        raise ConfigError(f"no client config: give one (--client-config) or set {ENV_CLIENT_CONFIG}")
    return ClientConfig.load(Path(path).expanduser())
