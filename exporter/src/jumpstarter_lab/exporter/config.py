"""ExporterConfig: the YAML an exporter runs from, validated before anything is served.

Errors name the path, what was expected and the file and line, e.g.
`export.serial.config.baudrate: expected integer, got "fast" (exporter.yaml:14)`.
"""

from __future__ import annotations

import dataclasses
import inspect
import logging
import types
import typing
import uuid as uuidlib
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import Any, Literal

from ..driver import Composite, Driver, DriverContext, Proxy
from ..driver.registry import resolve_driver
from ..wire.documents import API_VERSION, Source, parse_yaml, read_document, validate
from ..wire.errors import ConfigError
from . import hooks

logger = logging.getLogger(__name__)

KIND = "ExporterConfig"
# Stable namespace for driver uuids: a driver keeps its uuid across sessions and restarts.
UUID_NAMESPACE = uuidlib.UUID("5d1f6c0e-9b0a-4c3e-8f47-2f1f4a6b7c01")

_ENTRY = {
    "type": "object",
    "properties": {
        "type": {"type": "string", "minLength": 1},
        "ref": {"type": "string", "minLength": 1},
        "description": {"type": ["string", "null"]},
        "methods_description": {"type": "object", "additionalProperties": {"type": "string"}},
        "config": {"type": ["object", "null"]},
        "children": {"type": ["object", "null"], "additionalProperties": {"$ref": "#/$defs/entry"}},
    },
    "additionalProperties": False,
}

SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": ["apiVersion", "kind", "metadata"],
    "properties": {
        "apiVersion": {"const": API_VERSION},
        "kind": {"const": KIND},
        "metadata": {
            "type": "object",
            "required": ["name"],
            "properties": {"name": {"type": "string", "minLength": 1}, "namespace": {"type": "string"}},
        },
        "endpoint": {"type": ["string", "null"]},
        "token": {"type": ["string", "null"]},
        "tls": {
            "type": "object",
            "properties": {"ca": {"type": "string"}, "insecure": {"type": "boolean"}},
            "additionalProperties": False,
        },
        "grpcOptions": {"type": ["object", "null"]},
        "description": {"type": ["string", "null"]},
        "alias": {"type": "string"},
        "hooks": hooks.SCHEMA,  # upstream's beforeLease/afterLease
        "failureDetection": {"type": "object"},
        "export": {"type": ["object", "null"], "additionalProperties": {"$ref": "#/$defs/entry"}},
    },
    "additionalProperties": False,
    "$defs": {"entry": _ENTRY},
}


# --- driver parameters -------------------------------------------------------------

def _schema_for_hint(hint: Any) -> dict:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if hint is Any or hint is inspect.Parameter.empty:
        return {}
    if origin in (typing.Union, types.UnionType):
        return {"anyOf": [_schema_for_hint(a) for a in args]}
    if origin is Literal:
        return {"enum": list(args)}
    if hint is type(None):
        return {"type": "null"}
    simple = {str: "string", bool: "boolean", int: "integer", float: "number"}
    if hint in simple:
        return {"type": simple[hint]}
    if isinstance(hint, type) and issubclass(hint, PurePath):
        return {"type": "string"}
    if hint in (list, tuple) or origin in (list, tuple):
        return {"type": "array", **({"items": _schema_for_hint(args[0])} if args and origin is list else {})}
    if hint is dict or origin is dict:
        return {"type": "object", **({"additionalProperties": _schema_for_hint(args[1])} if len(args) == 2 else {})}
    return {}


def driver_parameters(cls: type[Driver]) -> dict[str, tuple[Any, bool]]:
    """Name -> (type hint, required) of a driver class's config parameters."""
    try:
        hints = typing.get_type_hints(cls)
    except Exception:
        hints = {}
    if dataclasses.is_dataclass(cls):
        params = {}
        for f in dataclasses.fields(cls):
            if not f.init or f.name.startswith("_"):
                continue
            required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
            params[f.name] = (hints.get(f.name, Any), required)
        return params
    signature = inspect.signature(cls.__init__)
    return {
        name: (hints.get(name, p.annotation), p.default is inspect.Parameter.empty)
        for name, p in list(signature.parameters.items())[1:]
        if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD) and not name.startswith("_")
    }


def parameter_schema(cls: type[Driver]) -> dict:
    params = driver_parameters(cls)
    return {
        "type": "object",
        "properties": {name: _schema_for_hint(hint) for name, (hint, _required) in params.items()},
        "required": [name for name, (_hint, required) in params.items() if required],
        "additionalProperties": False,
    }


# --- the config itself -----------------------------------------------------------

@dataclass
class DriverSpec:
    """One validated entry of the export tree."""

    path: tuple
    cls: type[Driver]
    config: dict[str, Any]
    children: dict[str, DriverSpec]
    description: str | None
    methods_description: dict[str, str]
    where: str = ""  # file:line, for errors found only once the tree is built

    def build(self, namespace: uuidlib.UUID, context: DriverContext) -> Driver:
        children = _build_all(self.children, namespace, context)
        try:
            driver = self.cls(**self.config)
        except Exception as e:  # a driver's refusal of its config, whatever its type, names the entry
            _close_all(children)
            where = f" ({self.where})" if self.where else ""
            detail = str(e) if isinstance(e, (TypeError, ValueError)) else f"{type(e).__name__}: {e}"
            raise ConfigError(f"export.{'.'.join(self.path)}: {detail}{where}") from None
        driver.bind(uuid=uuidlib.uuid5(namespace, "/".join(self.path)), children=children,
                    description=self.description, methods_description=self.methods_description, context=context)
        driver.config_path, driver.config_where = "export." + ".".join(self.path), self.where
        return driver


@dataclass
class ExporterConfig:
    name: str
    namespace: str
    endpoint: str | None
    token: str | None
    tls: dict[str, Any]
    description: str | None
    export: dict[str, DriverSpec]
    source: str
    hooks: dict[str, hooks.Hook] = dataclasses.field(default_factory=dict)  # by point: beforeLease, afterLease

    @property
    def uuid(self) -> uuidlib.UUID:
        return uuidlib.uuid5(UUID_NAMESPACE, f"{self.namespace}/{self.name}")

    def build(self, context: DriverContext | None = None) -> Driver:
        """A fresh driver tree: called once per session, so sessions never share driver state. Its
        drivers share `context` (the session's; a context of their own when there is no session)."""
        context = context or DriverContext()
        children = _build_all(self.export, self.uuid, context)
        root = Composite().bind(uuid=self.uuid, children=children, description=self.description, context=context)
        for driver, _parent, _name in root.walk():
            if isinstance(driver, Proxy):
                try:
                    driver.resolve(root, driver.config_path)
                except ValueError as e:
                    root.close()
                    raise ConfigError(f"{e} ({driver.config_where})") from None
        return root


def _build_all(specs: dict[str, DriverSpec], namespace: uuidlib.UUID, context: DriverContext) -> dict[str, Driver]:
    """Build siblings in order; when one fails, close those built before it (they may hold files)."""
    built: dict[str, Driver] = {}
    try:
        for name, spec in specs.items():
            built[name] = spec.build(namespace, context)
    except BaseException:
        _close_all(built)
        raise
    return built


def _close_all(drivers: dict[str, Driver]) -> None:
    for driver in drivers.values():
        try:
            driver.close()
        except Exception:  # noqa: BLE001 - cleaning up after a failed build; its error is the one to report
            pass


def _entry(data: dict, path: tuple, source: Source) -> DriverSpec:
    data = data or {}
    if "ref" in data:
        extra = sorted(set(data) - {"ref", "description"})
        if extra:
            raise source.error(path + (extra[0],), "a ref entry takes only 'ref' (and 'description')")
        return DriverSpec(path=tuple(p for p in path if p not in ("children", "export")), cls=Proxy,
                          config={"ref": data["ref"]}, children={}, description=data.get("description"),
                          methods_description={}, where=source.where(path + ("ref",)))
    children = {name: _entry(child, path + ("children", name), source)
                for name, child in (data.get("children") or {}).items()}
    type_name = data.get("type")
    if type_name is None:
        if not children:
            raise source.error(path, "an entry needs a 'type' (or 'children' for a composite)")
        cls = Composite
    else:
        try:
            cls = resolve_driver(type_name)
        except ConfigError as e:
            raise source.error(path + ("type",), str(e)) from None
    config = data.get("config") or {}
    validate(config, parameter_schema(cls), source, path + ("config",))
    return DriverSpec(path=tuple(p for p in path if p != "children" and p != "export"),
                      cls=cls, config=config, children=children, description=data.get("description"),
                      methods_description=data.get("methods_description") or {},
                      where=source.where(path + ("config",) if "config" in data else path))


def load_text(text: str, name: str = "<config>") -> ExporterConfig:
    data, source = parse_yaml(text, name)
    if not isinstance(data, dict):
        raise ConfigError(f"{name}: expected a YAML mapping (an ExporterConfig), got {type(data).__name__}")
    validate(data, SCHEMA, source)
    export = {key: _entry(value, ("export", key), source) for key, value in (data.get("export") or {}).items()}
    metadata = data["metadata"]
    config = ExporterConfig(name=metadata["name"], namespace=metadata.get("namespace", "default"),
                            endpoint=data.get("endpoint"), token=data.get("token"), tls=data.get("tls") or {},
                            description=data.get("description"), export=export, source=name,
                            hooks=hooks.parse(data.get("hooks")))
    config.build().close()  # constructors run once here so bad values fail before serving
    return config


def load(path: str | Path) -> ExporterConfig:
    return load_text(read_document(path, "exporter config"), str(path))
