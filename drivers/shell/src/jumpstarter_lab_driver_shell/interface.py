"""The shell interface shared by the driver and its client (upstream's method shape)."""

from __future__ import annotations

from abc import ABCMeta, abstractmethod
from collections.abc import AsyncIterator

from jumpstarter_lab.wire import labels


class ShellInterface(metaclass=ABCMeta):
    @classmethod
    def client(cls) -> str:
        return labels.SHELL

    @abstractmethod
    def get_methods(self) -> list[str]:
        """Names of the declared methods."""

    @abstractmethod
    def call_method(self, method: str, env: dict[str, str] | None, *args: str
                    ) -> AsyncIterator[tuple[str, str, int | None]]:
        """Run a declared method: (stdout, stderr, None) chunks as output comes, then ("", "", exit status)."""
