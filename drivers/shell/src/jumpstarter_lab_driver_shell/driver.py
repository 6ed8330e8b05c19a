from __future__ import annotations

import asyncio
import codecs
import contextlib
import fnmatch
import os
import re
import signal
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from jumpstarter_lab.driver import Driver, export
from jumpstarter_lab.driver.processes import kill_process_group
from jumpstarter_lab.wire.errors import ExporterUnavailable

from .interface import ShellInterface

# Variables a client may never set: each lets it change what runs (a preloaded library,
# another program found first on PATH, a startup file the shell sources, an option string).
BLOCKED_ENV = frozenset({
    "PATH", "HOME", "IFS", "ENV", "BASH_ENV", "SHELLOPTS", "BASHOPTS", "PS4", "GLOBIGNORE", "CDPATH",
    "PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PERL5LIB", "PERL5OPT", "PERLLIB", "RUBYLIB", "RUBYOPT",
    "NODE_OPTIONS", "NODE_PATH", "GCONV_PATH", "LOCPATH", "NLSPATH", "HOSTALIASES", "RESOLV_HOST_CONF",
    "KUBECONFIG", "GIT_SSH", "GIT_SSH_COMMAND", "SSH_ASKPASS", "EDITOR", "VISUAL", "PAGER", "TMPDIR",
})
BLOCKED_PREFIXES = ("LD_", "DYLD_", "BASH_FUNC_", "MALLOC_", "GLIBC_")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_METHOD_KEYS = ("command", "description", "timeout", "env")


@dataclass(frozen=True)
class MethodSpec:
    command: str
    description: str | None
    timeout: float | None
    env: dict[str, str]


def _method_spec(name: str, value: Any) -> MethodSpec:
    where = f"methods.{name}"
    if isinstance(value, str):
        value = {"command": value}
    if not isinstance(value, dict):
        raise ValueError(f"{where}: expected a script or a mapping with 'command', got {type(value).__name__}")
    unknown = sorted(set(value) - set(_METHOD_KEYS))
    if unknown:
        raise ValueError(f"{where}: unknown field '{unknown[0]}' (known: {', '.join(_METHOD_KEYS)})")
    command = value.get("command")
    if not isinstance(command, str) or not command.strip():
        raise ValueError(f"{where}.command: expected a non-empty script")
    timeout = value.get("timeout")
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0):
        raise ValueError(f"{where}.timeout: expected a positive number of seconds, got {timeout!r}")
    env = value.get("env") or {}
    if not isinstance(env, dict) or not all(isinstance(k, str) and _NAME.match(k) for k in env):
        raise ValueError(f"{where}.env: expected a mapping of variable names to values")
    return MethodSpec(command=command, description=value.get("description"),
                      timeout=float(timeout) if timeout is not None else None,
                      env={k: str(v) for k, v in env.items()})


@dataclass(kw_only=True)
class Shell(ShellInterface, Driver):
    """Scripts declared in the exporter config, run on the exporter host"""

    # name -> script, or name -> {command, description, timeout, env}
    methods: dict[str, str | dict[str, Any]]
    shell: list[str] = field(default_factory=lambda: ["bash", "-c"])
    timeout: float = 300
    cwd: str | None = None
    # fnmatch patterns of the variables a client may set (default: any name not blocked).
    allowed_env: list[str] | None = None
    _specs: dict[str, MethodSpec] = field(init=False, repr=False, default_factory=dict)
    _running: set[asyncio.subprocess.Process] = field(init=False, repr=False, default_factory=set)

    def __post_init__(self):
        if not self.methods:
            raise ValueError("methods: declare at least one method (name: script)")
        for name, value in self.methods.items():
            if not name or name.startswith("_") or any(c.isspace() for c in name):
                raise ValueError(f"methods: {name!r} is not a usable method name")
            self._specs[name] = _method_spec(name, value)
        if not self.shell:
            raise ValueError("shell: name the interpreter and its flag, e.g. [bash, -c]")
        if self.timeout <= 0:
            raise ValueError(f"timeout must be positive, got {self.timeout}")

    def bind(self, **kwargs) -> Shell:
        super().bind(**kwargs)
        declared = {name: spec.description for name, spec in self._specs.items() if spec.description}
        self.methods_description = declared | self.methods_description  # the config entry's own wins
        return self

    def _environment(self, spec: MethodSpec, env: dict[str, Any] | None) -> dict[str, str]:
        combined = {**os.environ, **spec.env}
        for name, value in (env or {}).items():
            if not isinstance(name, str) or not _NAME.match(name):
                raise ValueError(f"invalid environment variable name: {name!r}")
            if name in BLOCKED_ENV or name.startswith(BLOCKED_PREFIXES):
                raise ValueError(f"environment variable '{name}' is blocked for security reasons")
            if name in spec.env:
                raise ValueError(f"environment variable '{name}' is fixed by the exporter config for this method")
            if self.allowed_env is not None and not any(fnmatch.fnmatchcase(name, p) for p in self.allowed_env):
                raise ValueError(f"environment variable '{name}' is not allowed here (allowed: "
                                 f"{', '.join(self.allowed_env) or 'none'})")
            if isinstance(value, (dict, list)) or value is None:
                raise ValueError(f"environment variable '{name}' needs a string value, got {value!r}")
            combined[name] = str(value).lower() if isinstance(value, bool) else str(value)
        return combined

    @export
    def get_methods(self) -> list[str]:
        """Names of the methods declared in the exporter config"""
        return list(self._specs)

    @export
    async def call_method(self, method: str, env: dict[str, str] | None = None,
                          *args: str) -> AsyncIterator[tuple[str, str, int | None]]:
        """Run a declared method, streaming (stdout, stderr, None), then ("", "", exit status)"""
        spec = self._specs.get(method)
        if spec is None:
            raise ValueError(f"Method '{method}' not found in available methods: {list(self._specs)}")
        for arg in args:
            if isinstance(arg, (dict, list)) or arg is None:
                raise ValueError(f"arguments must be strings, got {arg!r}")
        environment = self._environment(spec, env)
        if self.cwd and not os.path.isdir(self.cwd):
            raise ExporterUnavailable(f"shell method '{method}': working directory {self.cwd} does not exist")
        timeout = spec.timeout or self.timeout
        # The script is the -c argument; $0 is the method name and $1... are the client's arguments.
        argv = [*self.shell, spec.command, method, *(str(a) for a in args)]
        self.logger.info("running %s with %d argument(s)", method, len(args))
        try:
            process = await asyncio.create_subprocess_exec(
                *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE, env=environment, cwd=self.cwd or None, start_new_session=True)
        except OSError as e:
            raise ExporterUnavailable(f"shell method '{method}': cannot start {self.shell[0]}: "
                                      f"{e.strerror or e}") from None
        self._running.add(process)
        async for item in self._stream(method, process, timeout):
            yield item

    async def _stream(self, method: str, process: asyncio.subprocess.Process,
                      timeout: float) -> AsyncIterator[tuple[str, str, int | None]]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        queue: asyncio.Queue[tuple[int, str | None]] = asyncio.Queue()
        pumps = [asyncio.ensure_future(_pump(process.stdout, 0, queue)),
                 asyncio.ensure_future(_pump(process.stderr, 1, queue))]
        try:
            open_pipes = 2
            while open_pipes:
                try:
                    index, text = await asyncio.wait_for(queue.get(), max(0.0, deadline - loop.time()))
                except asyncio.TimeoutError:
                    raise self._timed_out(method, timeout) from None
                if text is None:
                    open_pipes -= 1
                else:
                    yield (text, "", None) if index == 0 else ("", text, None)
            try:
                code = await asyncio.wait_for(process.wait(), max(0.0, deadline - loop.time()))
            except asyncio.TimeoutError:
                raise self._timed_out(method, timeout) from None
            if code != 0:
                self.logger.info("%s exited with status %d", method, code)
            yield "", "", code
        finally:
            for pump in pumps:
                pump.cancel()
            if process.returncode is None:  # timed out, or the client went away: the script ends too
                await kill_process_group(process)
            self._running.discard(process)

    @staticmethod
    def _timed_out(method: str, timeout: float) -> TimeoutError:
        return TimeoutError(f"shell method '{method}' did not finish within {timeout:g}s; its processes were killed")

    def close(self) -> None:
        for process in list(self._running):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)
        self._running.clear()
        super().close()


async def _pump(reader: asyncio.StreamReader, index: int, queue: asyncio.Queue) -> None:
    """Decoded chunks of one pipe as they arrive (UTF-8 split across reads is kept whole), then None."""
    decoder = codecs.getincrementaldecoder("utf-8")("replace")
    try:
        while chunk := await reader.read(65536):
            if text := decoder.decode(chunk):
                await queue.put((index, text))
        if tail := decoder.decode(b"", final=True):
            await queue.put((index, tail))
    finally:
        queue.put_nowait((index, None))
