# Copyright (c) jumpstarter.lab contributors
# Apache-2.0
"""Action plugin of jumpstarter.lab.flash: the image goes from here to the board's storage."""

from __future__ import annotations

import datetime
import os

from ansible.errors import AnsibleActionFail

from ansible_collections.jumpstarter.lab.plugins.plugin_utils.action import JumpstarterAction
from ansible_collections.jumpstarter.lab.plugins.plugin_utils.exporter_client import locate_driver, task_exporter

RESULT = ("bytes_received", "bytes_written", "sha256", "compression")  # what RETURN documents of the outcome


class ActionModule(JumpstarterAction):
    MODULE = "jumpstarter.lab.flash"
    _supports_check_mode = True
    _supports_async = True  # as a job on the Ansible controller (JumpstarterAction._start_job)

    def act(self, args: dict, task_vars: dict) -> dict:
        src = self._find_needle("files", args["src"])
        if not os.path.isfile(src):
            raise AnsibleActionFail(f"flash: {src} is not a file")
        if (unreachable := self.unreachable_in_check_mode(task_vars)) is not None:
            return unreachable
        with task_exporter(self._play_context, task_vars, self._templar, float(args["timeout"]),
                           args["client_config"]) as root:
            from jumpstarter_lab.wire import labels  # task_exporter made sure the library is there
            from jumpstarter_lab_driver_storage.client import file_sha256

            name, storage = locate_driver(root, args["storage"], labels.STORAGE_MUX, "storage", preferred="storage")
            result = {"src": src, "storage": name}
            try:
                if self._task.check_mode:
                    held, digest = storage.flashed_image(), file_sha256(src)
                    if self._task.diff:
                        result["diff"] = _diff(name, held, src, digest)
                    same = bool(held and held.get("intact") and held.get("sha256") == digest and not args["force"])
                    return {**result, "changed": not same, "sha256": digest,
                            "msg": f"{name} holds {src} already" if same else f"would flash {src} to {name}"}
                # flash() reads the storage's record and hashes the image itself; only a forced write's diff
                # needs the record beforehand
                forced_held = storage.flashed_image() if self._task.diff and args["force"] else None
                outcome = storage.flash(src, force=args["force"])
            except Exception as e:  # the library's errors say what the exporter refused and why
                raise AnsibleActionFail(f"flash {src} to {name}: {e}") from None
        if self._task.diff:
            held = forced_held if args["force"] else outcome["previous"]
            result["diff"] = _diff(name, held, src, outcome["sha256"])
        return {**result, "changed": outcome["changed"], **{key: outcome[key] for key in RESULT}}


def _diff(storage: str, held: dict | None, src: str, digest: str) -> dict:
    """The image the storage holds against the one to write, by sha256."""
    if held is None:
        before, header = "(no image recorded)\n", storage
    else:
        when = datetime.datetime.fromtimestamp(held["time"], datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
        state = {True: "", False: ", changed since", None: ", not readable now"}[held.get("intact")]
        before, header = f"sha256: {held['sha256']}\n", f"{storage} (written {when}{state})"
    return {"before": before, "after": f"sha256: {digest}\n", "before_header": header, "after_header": src}
