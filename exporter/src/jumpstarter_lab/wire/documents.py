"""YAML documents read by every side (exporter and client configs), validated against a JSON Schema.

Errors name the path, what was expected and the file and line, e.g.
`export.serial.config.baudrate: expected integer, got "fast" (exporter.yaml:14)`.
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass, field
from typing import Any

import jsonschema
import yaml

from .errors import ConfigError

API_VERSION = "jumpstarter.dev/v1alpha1"


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
