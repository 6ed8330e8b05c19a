"""Test-only stdout callback: every task's per-host results and the stats as one JSON document."""

from __future__ import annotations

import json

from ansible.plugins.callback import CallbackBase

DOCUMENTATION = """
name: lab_json
type: stdout
short_description: JSON results for the tests
description: Prints plays, tasks, per-host results and stats as one JSON document at the end of the run.
"""


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "stdout"
    CALLBACK_NAME = "lab_json"

    def __init__(self):
        super().__init__()
        self.plays: list[dict] = []

    def v2_playbook_on_play_start(self, play):
        self.plays.append({"name": play.get_name(), "tasks": []})

    def v2_playbook_on_task_start(self, task, is_conditional):
        if not self.plays:
            self.plays.append({"name": "", "tasks": []})
        self.plays[-1]["tasks"].append({"name": task.get_name(), "hosts": {}})

    def _record(self, result, **flags):
        if not self.plays or not self.plays[-1]["tasks"]:
            self.v2_playbook_on_task_start(result._task, False)
        self.plays[-1]["tasks"][-1]["hosts"][result._host.get_name()] = dict(result._result, **flags)

    def v2_runner_on_ok(self, result):
        self._record(result)

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._record(result, failed=True)

    def v2_runner_on_unreachable(self, result):
        self._record(result, unreachable=True)

    def v2_runner_on_skipped(self, result):
        self._record(result, skipped=True)

    def v2_playbook_on_stats(self, stats):
        summary = {host: stats.summarize(host) for host in sorted(stats.processed)}
        self._display.display(json.dumps({"plays": self.plays, "stats": summary}, default=str))

    # ad-hoc runs end without a stats event when nothing else is printed
    def v2_runner_item_on_ok(self, result):
        self._record(result)
