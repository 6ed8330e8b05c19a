"""Runs in upstream Jumpstarter's venv (inside `jmp shell`): its client against its exporter."""

import json
import os
import sys
import time

from jumpstarter.utils.env import env

seconds = float(sys.argv[1])
chunk = os.urandom(65536)
with env() as client:
    for _warmup in range(100):
        client.power.on()
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        client.power.on()
        count += 1
    calls = count / (time.perf_counter() - start)
    with client.echo.stream() as stream:
        moved, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            stream.send(chunk)
            got = 0
            while got < len(chunk):
                got += len(stream.receive())
            moved += len(chunk)
        rate = moved / (time.perf_counter() - start) / 1e6
print(json.dumps({"calls_per_s": calls, "stream_mb_s": rate}))
