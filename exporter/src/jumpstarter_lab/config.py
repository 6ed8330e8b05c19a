"""ExporterConfig: the YAML an exporter runs from, validated before anything is served.

Errors name the path, what was expected and the file and line, e.g.
`export.serial.config.baudrate: expected integer, got "fast" (exporter.yaml:14)`.
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
import json
import types
import typing
import uuid as uuidlib
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import Any, Literal

import jsonschema
import yaml

from .driver import Composite, Driver, Proxy
from .errors import ConfigError
from .registry import resolve_driver

API_VERSION = "jumpstarter.dev/v1alpha1"
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
        # Accepted so upstream configs load unchanged; lifecycle hooks are not run by this exporter.
        "hooks": {"type": "object"},
        "failureDetection": {"type": "object"},
        "export": {"type": ["object", "null"], "additionalProperties": {"$ref": "#/$defs/entry"}},
    },
    "additionalProperties": False,
    "$defs": {"entry": _ENTRY},
}


# --- YAML with line numbers ------------------------------------------------------

def _lines(node: yaml.Node, path: tuple = (), out: dict | None = None) -> dict[tuple, int]:
    """Path -> 1-based line of every value in a composed YAML document."""
    out = {} if out is None else out
    out[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            _lines(value, path + (key.value,), out)
            out.setdefault(path + (key.value, "__key__"), key.start_mark.line + 1)
    elif isinstance(node, yaml.SequenceNode):
        for index, value in enumerate(node.value):
            _lines(value, path + (index,), out)
    return out


@dataclass
class Source:
    """Where config data came from, to point errors at a file and line."""

    name: str
    lines: dict[tuple, int] = field(default_factory=dict)

    def where(self, path: tuple) -> str:
        path = tuple(path)
        while path and path not in self.lines:
            path = path[:-1]
        line = self.lines.get(path)
        return f"{self.name}:{line}" if line else self.name

    def error(self, path: tuple, message: str) -> ConfigError:
        dotted = ".".join(str(p) for p in path if p != "__key__")
        return ConfigError(f"{dotted + ': ' if dotted else ''}{message} ({self.where(path)})")


def parse_yaml(text: str, name: str) -> tuple[Any, Source]:
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = f":{mark.line + 1}" if mark else ""
        raise ConfigError(f"{name}{line}: invalid YAML: {e.problem or e}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{name}: invalid YAML: {e}") from None
    return data, Source(name, _lines(node) if node is not None else {})


def _describe(error: jsonschema.ValidationError) -> tuple[tuple, str]:
    """A readable message for one schema violation, and the path it is about."""
    path = tuple(error.absolute_path)
    instance = json.dumps(error.instance, default=str)
    match error.validator:
        case "type":
            expected = error.validator_value
            expected = " or ".join(expected) if isinstance(expected, list) else expected
            return path, f"expected {expected}, got {instance}"
        case "required":
            missing = error.message.split("'")[1]
            return path + (missing,), "missing required field"
        case "additionalProperties":
            allowed = list(error.schema.get("properties", {}))
            extra = sorted(set(error.instance) - set(allowed))
            key = extra[0] if extra else "?"
            close = difflib.get_close_matches(key, allowed, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else (f"; known: {', '.join(allowed)}" if allowed else "")
            return path + (key, "__key__"), f"unknown field '{key}'{hint}"
        case "const" | "enum":
            expected = error.validator_value if error.validator == "enum" else [error.validator_value]
            return path, f"expected {' or '.join(json.dumps(v) for v in expected)}, got {instance}"
        case "anyOf" | "oneOf":
            return path, f"expected {_expected({error.validator: error.validator_value})}, got {instance}"
        case _:
            return path, error.message


def _expected(schema: dict) -> str:
    """What a (sub)schema accepts, in words: `integer or null`, `"fast" or "slow"`."""
    if "anyOf" in schema or "oneOf" in schema:
        words = [_expected(sub) for sub in schema.get("anyOf") or schema.get("oneOf")]
        return " or ".join(dict.fromkeys(words))  # in order, once each
    if "enum" in schema or "const" in schema:
        return " or ".join(json.dumps(v) for v in schema.get("enum", [schema.get("const")]))
    kind = schema.get("type")
    if kind:
        return " or ".join(kind) if isinstance(kind, list) else kind
    return "anything"


def validate(data: Any, schema: dict, source: Source, prefix: tuple = ()) -> None:
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(data), key=lambda e: (len(e.absolute_path), list(map(str, e.absolute_path))))
    if errors:
        # The deepest-first error of a oneOf is noise; report the first, most specific one.
        best = jsonschema.exceptions.best_match(errors) if len(errors) > 1 else errors[0]
        path, message = _describe(best)
        raise source.error(prefix + path, message)


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

    def build(self, namespace: uuidlib.UUID) -> Driver:
        children = {name: child.build(namespace) for name, child in self.children.items()}
        try:
            driver = self.cls(**self.config)
        except (TypeError, ValueError) as e:
            where = f" ({self.where})" if self.where else ""
            raise ConfigError(f"export.{'.'.join(self.path)}: {e}{where}") from None
        driver.bind(uuid=uuidlib.uuid5(namespace, "/".join(self.path)), children=children,
                    description=self.description, methods_description=self.methods_description)
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

    @property
    def uuid(self) -> uuidlib.UUID:
        return uuidlib.uuid5(UUID_NAMESPACE, f"{self.namespace}/{self.name}")

    def build(self) -> Driver:
        """A fresh driver tree: called once per session, so sessions never share driver state."""
        children = {name: spec.build(self.uuid) for name, spec in self.export.items()}
        root = Composite().bind(uuid=self.uuid, children=children, description=self.description)
        for driver, _parent, _name in root.walk():
            if isinstance(driver, Proxy):
                try:
                    driver.resolve(root, driver.config_path)
                except ValueError as e:
                    raise ConfigError(f"{e} ({driver.config_where})") from None
        return root


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
                            description=data.get("description"), export=export, source=name)
    config.build().close()  # constructors run once here so bad values fail before serving
    return config


def load(path: str | Path) -> ExporterConfig:
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise ConfigError(f"cannot read exporter config {path}: {e.strerror}") from None
    return load_text(text, str(path))
