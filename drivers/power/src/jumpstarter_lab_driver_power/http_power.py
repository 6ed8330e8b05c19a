"""Smart plugs and PDUs with an HTTP API (Shelly, Tasmota, a lab PDU's REST endpoint).

The config is upstream's `HttpPower`: one endpoint (url, method, data) per action,
optional basic auth, and for `read` the dotted JSON paths of voltage and current.
A Shelly Gen2 plug, for example:

    power_on:   {url: "http://plug/rpc/Switch.Set?id=0&on=true"}
    power_off:  {url: "http://plug/rpc/Switch.Set?id=0&on=false"}
    power_read: {url: "http://plug/rpc/Switch.GetStatus?id=0", voltage_path: voltage, current_path: current}
"""

from __future__ import annotations

import base64
import json
import socket
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field, fields
from typing import Any

from jumpstarter_lab.driver import Driver, export
from jumpstarter_lab.wire.errors import DriverError, ExporterUnavailable

from .interface import PowerInterface, PowerReading

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
# Plugs sit on the lab network: requests go straight to them, whatever *_proxy variables say.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass(frozen=True, kw_only=True)
class Endpoint:
    url: str
    method: str = "GET"
    data: str | None = None
    voltage_path: str | None = None
    current_path: str | None = None

    @classmethod
    def parse(cls, name: str, value: Any) -> Endpoint:
        if not isinstance(value, dict):
            raise ValueError(f"{name}: expected a mapping with at least 'url', got {type(value).__name__}")
        known = [f.name for f in fields(cls)]
        unknown = sorted(set(value) - set(known))
        if unknown:
            raise ValueError(f"{name}: unknown field '{unknown[0]}' (known: {', '.join(known)})")
        if not value.get("url"):
            raise ValueError(f"{name}: missing required field 'url'")
        endpoint = cls(**value)
        scheme = urllib.parse.urlsplit(endpoint.url).scheme
        if scheme not in ("http", "https"):
            raise ValueError(f"{name}.url: expected an http:// or https:// URL, got {endpoint.url!r}")
        if endpoint.method.upper() not in METHODS:
            raise ValueError(f"{name}.method: expected one of {', '.join(METHODS)}, got {endpoint.method!r}")
        return cls(**{**value, "method": endpoint.method.upper()})

    def shown(self) -> str:
        """The URL without credentials: what is requested, and what messages and logs show."""
        parts = urllib.parse.urlsplit(self.url)
        netloc = parts.netloc.rpartition("@")[2]
        return urllib.parse.urlunsplit(parts._replace(netloc=netloc))

    def authorization(self) -> str | None:
        """Basic auth from credentials written in the URL (http://user:pass@plug/...), if any."""
        parts = urllib.parse.urlsplit(self.url)
        if parts.username is None:
            return None
        token = f"{urllib.parse.unquote(parts.username)}:{urllib.parse.unquote(parts.password or '')}"
        return "Basic " + base64.b64encode(token.encode()).decode("ascii")


@dataclass(kw_only=True)
class HttpPower(PowerInterface, Driver):
    """Power switched through HTTP requests to a smart plug or PDU"""

    name: str = "device"
    power_on: dict[str, Any]
    power_off: dict[str, Any]
    power_read: dict[str, Any] | None = None
    auth: dict[str, Any] | None = None
    timeout: float = 10.0
    _endpoints: dict[str, Endpoint] = field(init=False, repr=False, default_factory=dict)
    _authorization: str | None = field(init=False, repr=False, default=None)

    def __post_init__(self):
        for key in ("power_on", "power_off", "power_read"):
            if getattr(self, key) is not None:
                self._endpoints[key] = Endpoint.parse(key, getattr(self, key))
        if self.auth:
            unknown = sorted(set(self.auth) - {"basic"})
            if unknown:
                raise ValueError(f"auth: unknown field '{unknown[0]}' (known: basic)")
            basic = self.auth.get("basic")
            if basic:
                unknown = sorted(set(basic) - {"user", "password"})
                if unknown:
                    raise ValueError(f"auth.basic: unknown field '{unknown[0]}' (known: user, password)")
                token = f"{basic.get('user', '')}:{basic.get('password', '')}".encode()
                self._authorization = "Basic " + base64.b64encode(token).decode("ascii")
        if self.timeout <= 0:
            raise ValueError(f"timeout must be positive, got {self.timeout}")

    def _request(self, action: str, key: str) -> str:
        endpoint = self._endpoints[key]
        what = f"{self.name} {action}: {endpoint.method} {endpoint.shown()}"
        body = endpoint.data.encode() if endpoint.data is not None and endpoint.method != "GET" else None
        request = urllib.request.Request(endpoint.shown(), data=body, method=endpoint.method)
        authorization = self._authorization or endpoint.authorization()  # the auth block wins over the URL's
        if authorization:
            request.add_header("Authorization", authorization)
        self.logger.debug("%s", what)
        try:
            with _OPENER.open(request, timeout=self.timeout) as response:
                return response.read().decode(errors="replace")
        except urllib.error.HTTPError as e:
            detail = e.read(200).decode(errors="replace").strip()
            message = f"{what} answered {e.code} {e.reason}" + (f": {detail}" if detail else "")
            if e.code in (401, 403):
                raise PermissionError(message + " (check auth in the exporter config)") from None
            raise DriverError(message) from None
        except (TimeoutError, socket.timeout):
            raise TimeoutError(f"{what}: no answer within {self.timeout:g}s") from None
        except urllib.error.URLError as e:
            reason = e.reason.strerror if isinstance(e.reason, OSError) and e.reason.strerror else e.reason
            if isinstance(e.reason, (TimeoutError, socket.timeout)):
                raise TimeoutError(f"{what}: no answer within {self.timeout:g}s") from None
            raise ExporterUnavailable(f"{what}: cannot reach the device: {reason}") from None
        except OSError as e:
            raise ExporterUnavailable(f"{what}: cannot reach the device: {e.strerror or e}") from None

    @export
    def on(self) -> None:
        """Power on through the power_on request"""
        self._request("power on", "power_on")
        self.logger.info("%s on", self.name)

    @export
    def off(self) -> None:
        """Power off through the power_off request"""
        self._request("power off", "power_off")
        self.logger.info("%s off", self.name)

    @export
    def read(self) -> Iterator[PowerReading]:
        """Read voltage and current through the power_read request"""
        if "power_read" not in self._endpoints:
            raise ValueError("power_read endpoint is not configured")
        text = self._request("power read", "power_read")
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(f"{self.name} power read: the answer is not JSON ({e}): {text[:80]!r}") from None
        endpoint = self._endpoints["power_read"]
        yield PowerReading(voltage=_reading(data, endpoint.voltage_path, "voltage"),
                           current=_reading(data, endpoint.current_path, "current"))


def _json_path(data: Any, path: str) -> Any:
    for part in path.split("."):
        data = data[int(part)] if isinstance(data, list) else data[part]
    return data


def _reading(data: Any, path: str | None, default_key: str) -> float:
    """A configured path must be there; a device that lacks the default key reports 0."""
    try:
        value = _json_path(data, path or default_key)
    except (KeyError, IndexError, TypeError, ValueError):
        if path is not None:
            raise ValueError(f"configured path {path!r} not found in the read answer") from None
        return 0.0
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValueError(f"value at {path or default_key!r} is not a number: {value!r}") from None
