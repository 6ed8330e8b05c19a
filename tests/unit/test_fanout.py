"""The console fan-out the sim and QEMU boards share: every listener gets everything, in order; one that
falls behind loses the oldest output (bounded in bytes), never the others' and never the device's."""

from __future__ import annotations

import asyncio

from jumpstarter_lab.streams import ConsoleStream, Fanout


def test_every_listener_gets_all_output_in_order_in_pieces_of_bounded_size():
    async def scenario():
        fanout = Fanout()
        first, second = fanout.listen(), fanout.listen()
        for i in range(100):
            fanout.publish(b"%03d;" % i)
        expected = b"".join(b"%03d;" % i for i in range(100))
        assert await first.get() == expected  # what waits comes in one piece
        got = b""
        while len(got) < len(expected):
            got += await second.get(most=40)
            assert len(got) % 4 == 0  # pieces are never split
        assert got == expected
        fanout.unlisten(first)
        fanout.publish(b"later")
        assert await second.get() == b"later"

    asyncio.run(scenario())


def test_a_listener_that_falls_behind_loses_the_oldest_bytes_only():
    async def scenario():
        fanout = Fanout(limit=10)
        slow, fast = fanout.listen(), fanout.listen()
        fanout.publish(b"aaaa")
        assert await fast.get() == b"aaaa"
        for piece in (b"bbbb", b"cccc", b"dddd"):
            fanout.publish(piece)
            assert await fast.get() == piece
        assert await slow.get() == b"ccccdddd"  # aaaa and bbbb overran its 10-byte backlog

    asyncio.run(scenario())


def test_a_console_stream_reads_the_fanout_and_writes_to_the_device():
    async def scenario():
        fanout, written = Fanout(), []

        async def write(data: bytes) -> None:
            written.append(data)

        stream = ConsoleStream(fanout, write)
        await stream.send(b"ls\n")
        fanout.publish(b"file\n")
        assert await stream.receive() == b"file\n"
        await stream.send_eof()  # a UART has no end of file: nothing happens
        await stream.aclose()
        fanout.publish(b"after close")
        assert written == [b"ls\n"]
        waiting = asyncio.ensure_future(stream.receive())
        await asyncio.sleep(0.05)
        assert not waiting.done()  # a closed console stream hears nothing more
        waiting.cancel()

    asyncio.run(scenario())
