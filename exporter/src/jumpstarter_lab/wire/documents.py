"""YAML documents read by every side (exporter and client configs), validated against a JSON Schema.

Errors name the path, what was expected and the file and line, e.g.
`export.serial.config.baudrate: expected integer, got "fast" (exporter.yaml:14)`.
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass, field
from typing import Any

import yaml

from .errors import ConfigError

API_VERSION = "jumpstarter.dev/v1alpha1"


MAX_BYTES = 1 << 20  # a lab's config is kilobytes; anything this large is a mistake or an attack
MAX_VALUES = 100_000  # values in the document once YAML aliases are expanded (a "billion laughs" stops here)
MAX_DEPTH = 64  # mappings and lists within each other
_STR = "tag:yaml.org,2002:str"
_MERGE = "tag:yaml.org,2002:merge"


def _lines(root: yaml.Node, name: str) -> dict[tuple, int]:
    """Path -> 1-based line of every value of a composed YAML document, checking on the way that it
    is a tree of bounded size and depth with string keys: ConfigError naming the file and line if not.

    The walk expands aliases as a reader of the data would, so its bounds bound every later walk."""
    out: dict[tuple, int] = {}
    stack: list[tuple[yaml.Node, tuple, tuple]] = [(root, (), ())]  # node, path, ids of the nodes above it
    count = 0
    while stack:
        node, path, above = stack.pop()
        line = node.start_mark.line + 1
        count += 1
        if count > MAX_VALUES:
            raise ConfigError(f"{name}:{line}: the document has more than {MAX_VALUES} values once its YAML aliases "
                              "are expanded")
        if id(node) in above:
            raise ConfigError(f"{name}:{line}: a YAML alias refers to a value that contains it")
        if len(path) > MAX_DEPTH:
            raise ConfigError(f"{name}:{line}: values are nested more than {MAX_DEPTH} deep")
        out.setdefault(path, line)
        inner = above + (id(node),)
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if key.tag == _MERGE:
                    stack.append((value, path, inner))  # `<<: *defaults`: its keys become this mapping's
                    continue
                if not isinstance(key, yaml.ScalarNode) or key.tag != _STR:
                    shown = key.value if isinstance(key, yaml.ScalarNode) else "a " + type(key).__name__[:-4].lower()
                    raise ConfigError(f"{name}:{key.start_mark.line + 1}: keys must be text, not {shown!r} "
                                      "(quote it)")
                out.setdefault(path + (key.value, "__key__"), key.start_mark.line + 1)
                stack.append((value, path + (key.value,), inner))
        elif isinstance(node, yaml.SequenceNode):
            stack.extend((value, path + (index,), inner) for index, value in enumerate(node.value))
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


def decode_text(data: bytes, name: str) -> str:
    """A config file's bytes as text: UTF-8, at most MAX_BYTES; ConfigError naming the file and line if not."""
    if len(data) > MAX_BYTES:
        raise ConfigError(f"{name}: {len(data)} bytes is more than a config may hold ({MAX_BYTES})")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[:e.start].count(b"\n") + 1
        raise ConfigError(f"{name}:{line}: not UTF-8 text (byte {data[e.start]:#04x} at offset {e.start})") from None


def read_document(path, what: str) -> str:
    """The text of a config file; ConfigError saying why it cannot be read."""
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_BYTES + 1)
    except OSError as e:
        raise ConfigError(f"cannot read {what} {path}: {e.strerror}") from None
    return decode_text(data, str(path))


def parse_yaml(text: str, name: str) -> tuple[Any, Source]:
    """The data of a one-document YAML text and where each value stands in it."""
    if len(text) > MAX_BYTES:
        raise ConfigError(f"{name}: {len(text)} characters is more than a config may hold ({MAX_BYTES})")
    loader = None
    try:
        loader = yaml.SafeLoader(text)
        node = loader.get_single_node()
        if node is None:
            return None, Source(name, {})
        lines = _lines(node, name)  # checked before anything walks the data
        data = loader.construct_document(node)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = f":{mark.line + 1}" if mark else ""
        raise ConfigError(f"{name}{line}: invalid YAML: {e.problem or e}") from None
    except yaml.reader.ReaderError as e:
        line = text[:e.position].count("\n") + 1
        raise ConfigError(f"{name}:{line}: invalid YAML: character {e.character:#x} is not allowed") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{name}: invalid YAML: {' '.join(str(e).split())}") from None
    except RecursionError:
        raise ConfigError(f"{name}: values are nested too deeply to read") from None
    finally:
        if loader is not None:
            loader.dispose()
    return data, Source(name, lines)


def _describe(error) -> tuple[tuple, str]:
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
    # Imported here: jsonschema takes ~60 ms to import, paid by every Ansible task's connection (a fresh worker
    # process each) that reads no document.
    import jsonschema

    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(data), key=lambda e: (len(e.absolute_path), list(map(str, e.absolute_path))))
    if errors:
        # The deepest-first error of a oneOf is noise; report the first, most specific one.
        best = jsonschema.exceptions.best_match(errors) if len(errors) > 1 else errors[0]
        path, message = _describe(best)
        raise source.error(prefix + path, message)
