"""A private event loop in a thread, so synchronous callers (Ansible plugins, the CLI)
can use the asyncio client without owning a loop."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Coroutine, Iterator
from typing import Any, TypeVar

T = TypeVar("T")


class Portal:
    def __init__(self):
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="jumpstarter-lab-client", daemon=True)
        self._thread.start()

    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    def iterate(self, agen: AsyncIterator[T]) -> Iterator[T]:
        try:
            while True:
                try:
                    yield self.call(agen.__anext__())
                except StopAsyncIteration:
                    return
        finally:
            self.call(agen.aclose())

    def close(self) -> None:
        if self.loop.is_closed():
            return
        # Let what is still running end (grpc's own call tasks among it) rather than be
        # destroyed pending with the loop.
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(_drain(), self.loop).result(5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join()
        self.loop.close()


async def _drain() -> None:
    tasks = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


@contextlib.contextmanager
def blocking(open_async):
    """The blocking form of an async context manager that yields a client: `open_async(portal)`
    makes the manager, run on a private portal that lives as long as the `with`."""
    portal = Portal()
    try:
        manager = open_async(portal)
        value = portal.call(manager.__aenter__())
        try:
            yield value
        finally:
            portal.call(manager.__aexit__(None, None, None))
    finally:
        portal.close()
