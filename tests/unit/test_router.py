"""The router's bookkeeping of meetings: one whose first side went away before the other came is
forgotten (it used to stay in memory for the life of the controller); one nobody joins ends at its
deadline, and its dial can no longer be met; a token it did not book, or whose grant has ended,
opens nothing."""

from __future__ import annotations

import asyncio

import pytest

from jumpstarter_lab.controller.router import Router


class _Side:
    def __init__(self, token: str):
        self._token = token

    def invocation_metadata(self):
        return (("authorization", f"Bearer {self._token}"),)

    async def abort(self, code, details):
        raise RuntimeError(details)


def _router(deadline: float, granted: bool = True) -> Router:
    async def still_granted(lease: str, epoch: int) -> bool:
        return granted and (lease, epoch) == ("l1", 1)

    return Router(verify=lambda token: {"jti": token, "lease": "l1", "epoch": 1}, granted=still_granted,
                  deadline=deadline)


async def _refusal(router: Router, token: str) -> str:
    with pytest.raises(RuntimeError) as refused:
        await router.Stream(None, _Side(token))
    return str(refused.value)


def test_a_meeting_whose_first_side_leaves_is_forgotten():
    async def scenario():
        router = _router(30)
        jti = router.expect("l1")
        waiting = asyncio.ensure_future(router.Stream(None, _Side(jti)))
        await asyncio.sleep(0.05)
        assert list(router._meetings) == [jti]
        waiting.cancel()
        await asyncio.gather(waiting, return_exceptions=True)
        return dict(router._meetings), dict(router._expected)

    assert asyncio.run(scenario()) == ({}, {})


def test_a_meeting_nobody_joins_ends_at_its_deadline_and_the_late_side_is_refused():
    async def scenario():
        router = _router(0.1)
        jti = router.expect("l1")
        timed_out = await _refusal(router, jti)
        late = await _refusal(router, jti)
        return timed_out, late, dict(router._meetings), dict(router._expected)

    timed_out, late, meetings, expected = asyncio.run(scenario())
    assert "did not arrive in 0.1s" in timed_out and meetings == {} and expected == {}
    assert "is not expected here" in late


def test_tokens_not_booked_here_or_of_an_ended_grant_open_nothing():
    async def scenario():
        router = _router(30)
        unbooked = await _refusal(router, "never-booked")
        stale = router.expect("l1")
        router._expected[stale] = ("l1", 0.0)  # booked so long ago that its time to meet has passed
        late = await _refusal(router, stale)
        ended = _router(30, granted=False)
        return unbooked, late, await _refusal(ended, ended.expect("l1")), dict(ended._meetings)

    unbooked, late, ended, meetings = asyncio.run(scenario())
    assert "router token for lease l1 is not expected here" in unbooked and "is not expected here" in late
    assert "lease l1 has ended since this router token was issued" in ended and meetings == {}
