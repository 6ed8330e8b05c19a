from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass

from jumpstarter_lab.client import DriverClient


@dataclass(frozen=True)
class ShellResult:
    stdout: str
    stderr: str
    returncode: int


class ShellClient(DriverClient):
    """Client of the Shell driver.

    `run("name", *args, env={...})` captures a method's output; `call_method` streams it.
    As with upstream's client, a declared method is also an attribute:
    `shell.flash("image.bin", BOARD="rpi4")` prints its output as it comes and returns
    the exit status (keyword arguments become environment variables).
    """

    def get_methods(self) -> list[str]:
        methods = self.call("get_methods")
        self.__dict__["_methods"] = methods
        return methods

    def call_method(self, method: str, env: dict[str, str] | None = None,
                    *args: str) -> Iterator[tuple[str, str, int | None]]:
        for stdout, stderr, code in self.streamingcall("call_method", method, env or {}, *args):
            yield stdout, stderr, code

    def run(self, method: str, *args: str, env: dict[str, str] | None = None) -> ShellResult:
        """Run a declared method to its end; its whole output and exit status."""
        stdout, stderr, code = [], [], None
        for out, err, status in self.call_method(method, env, *args):
            stdout.append(out)
            stderr.append(err)
            if status is not None:
                code = status
        if code is None:
            raise EOFError(f"{self._what(method)}: the output ended without an exit status")
        return ShellResult("".join(stdout), "".join(stderr), code)

    def __getattr__(self, name: str):
        if name.startswith("_") or name in self.__dict__.get("children", {}):
            return super().__getattr__(name)
        methods = self.__dict__.get("_methods")
        if methods is None:
            methods = self.get_methods()
        if name not in methods:
            raise AttributeError(f"method {name} not found in {methods}")

        def execute(*args: str, **env: str) -> int:
            code = 0
            for stdout, stderr, status in self.call_method(name, env, *args):
                if stdout:
                    print(stdout, end="", flush=True)
                if stderr:
                    print(stderr, end="", file=sys.stderr, flush=True)
                if status is not None:
                    code = status
            return code

        return execute
