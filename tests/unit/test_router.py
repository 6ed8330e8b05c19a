"""The router forgets a meeting whose first side went away before the other came (it used to stay in
memory for the life of the controller)."""

from __future__ import annotations

import asyncio

from jumpstarter_lab.controller.router import Router


class _Side:
    def __init__(self, token: str):
        self._token = token

    def invocation_metadata(self):
        return (("authorization", f"Bearer {self._token}"),)

    async def abort(self, code, details):
        raise RuntimeError(details)


def test_a_meeting_whose_first_side_leaves_is_forgotten():
    async def scenario():
        router = Router(verify=lambda token: {"jti": token, "lease": "l1"}, deadline=30)
        waiting = asyncio.ensure_future(router.Stream(None, _Side("t1")))
        await asyncio.sleep(0.05)
        assert list(router._meetings) == ["t1"]
        waiting.cancel()
        await asyncio.gather(waiting, return_exceptions=True)
        return dict(router._meetings)

    assert asyncio.run(scenario()) == {}


def test_a_meeting_nobody_joins_ends_at_its_deadline_and_is_forgotten():
    async def scenario():
        router = Router(verify=lambda token: {"jti": token, "lease": "l1"}, deadline=0.1)
        message = "it did not end"
        try:
            await router.Stream(None, _Side("t2"))
        except RuntimeError as e:
            message = str(e)
        return message, dict(router._meetings)

    message, left = asyncio.run(scenario())
    assert "did not arrive in 0.1s" in message and left == {}
