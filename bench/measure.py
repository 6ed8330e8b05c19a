"""One measuring client, run in its own process by bench/run.py; prints one JSON line.

    measure.py bare|ours|ours-blocking ADDRESS SECONDS
"""

import asyncio
import json
import os
import sys
import time

import grpc

from jumpstarter_lab.client import connect, connect_async

CHUNK = os.urandom(65536)
PAYLOAD = b"x" * 48  # about the size of a DriverCall request


async def timed(seconds: float, step) -> float:
    """Calls of `step` per second, after a warm-up."""
    for _warmup in range(100):
        await step()
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        await step()
        count += 1
    return count / (time.perf_counter() - start)


async def echo_rate(seconds: float, send, receive) -> float:
    """MB/s of 64 KiB chunks sent and read back, one chunk in flight."""

    async def once():
        await send(CHUNK)
        got = 0
        while got < len(CHUNK):
            got += len(await receive())

    return await timed(seconds, once) * len(CHUNK) / 1e6


async def bare(address: str, seconds: float) -> dict:
    async with grpc.aio.insecure_channel(address) as channel:
        unary = channel.unary_unary("/bench.Echo/Unary")
        calls = await timed(seconds, lambda: unary(PAYLOAD))
        call = channel.stream_stream("/bench.Echo/Bidi")()
        rate = await echo_rate(seconds, call.write, call.read)
        call.cancel()
    return {"calls_per_s": calls, "stream_mb_s": rate}


async def ours(address: str, seconds: float) -> dict:
    async with connect_async(address, insecure=True) as root:
        calls = await timed(seconds, lambda: root.power.call_async("on"))
        async with root.echo.stream_async() as stream:
            rate = await echo_rate(seconds, stream.send, stream.receive)
    return {"calls_per_s": calls, "stream_mb_s": rate}


def ours_blocking(address: str, seconds: float) -> dict:
    with connect(address, insecure=True) as root:
        for _warmup in range(100):
            root.power.on()
        count, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            root.power.on()
            count += 1
        return {"calls_per_s": count / (time.perf_counter() - start)}


def main() -> None:
    kind, address, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
    if kind == "bare":
        result = asyncio.run(bare(address, seconds))
    elif kind == "ours":
        result = asyncio.run(ours(address, seconds))
    else:
        result = ours_blocking(address, seconds)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
