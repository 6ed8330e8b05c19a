# Copyright (c) jumpstarter.lab contributors
# Apache-2.0
"""Action plugin of jumpstarter.lab.lease: leases are the controller's business, so this runs here."""

from __future__ import annotations

import datetime
import os
import time

from ansible.errors import AnsibleActionFail

from ansible_collections.jumpstarter.lab.plugins.plugin_utils.action import JumpstarterAction
from ansible_collections.jumpstarter.lab.plugins.plugin_utils.controller_client import with_controller
from ansible_collections.jumpstarter.lab.plugins.plugin_utils.exporter_client import require_library, task_options


class ActionModule(JumpstarterAction):
    MODULE = "jumpstarter.lab.lease"
    _supports_check_mode = True

    def act(self, args: dict, task_vars: dict) -> dict:
        require_library(AnsibleActionFail)
        from jumpstarter_lab.wire import defaults

        # left out, duration, ttl and acquisition_timeout are the library's defaults (the module's documentation states them)
        for option, default in (("duration", defaults.LEASE_DURATION), ("ttl", defaults.LEASE_TTL),
                                ("acquisition_timeout", defaults.LEASE_WAIT)):
            if args[option] is None:
                args[option] = default
        host = task_options(self._play_context, task_vars, self._templar)  # the host's exporter options
        config = self.client_config(args, task_vars)
        held = host("jumpstarter_lease") or ""
        if args["state"] == "absent":
            return self._release(config, args["name"] or held, args["console_log"])
        exporter = args["exporter"] or self._templar.template(task_vars.get("jumpstarter_exporter"))
        if not exporter and not args["selector"]:
            raise AnsibleActionFail("lease: name an exporter or a selector (the host has no jumpstarter_exporter "
                                    "variable, which the jumpstarter.lab.jumpstarter inventory plugin sets)")
        if not 0 < args["ttl"] <= defaults.MAX_LEASE_TTL:
            raise AnsibleActionFail(f"lease: ttl must be between 1 and {defaults.MAX_LEASE_TTL:g} seconds, "
                                    f"not {args['ttl']}")
        return self._acquire(config, held, exporter, args)

    def _acquire(self, config: str | None, held: str, exporter: str | None, args: dict) -> dict:
        what = f"leasing {exporter or args['selector']}"
        begin = _time(args["begin_time"]) if args["begin_time"] else None

        async def work(client):
            if held:  # keep a lease this host holds already, if the controller still grants it
                current = await client.get_lease(held)
                if current.ready and (not exporter or current.exporter == exporter):
                    await client.keepalive(held)
                    return {"changed": False, "lease": held, "exporter": current.exporter}
            if self._task.check_mode:  # ask nothing of the scheduler, but still refuse what it would refuse
                from jumpstarter_lab.wire import names

                found = {names.short(e.name) for e in await client.exporters(args["selector"])}
                if exporter and exporter not in found or not found:
                    raise AnsibleActionFail(f"lease: no exporter {exporter or ''} matching "
                                            f"'{args['selector']}' that this client may lease")
                would = {"changed": True, "lease": "", "msg": f"would lease {exporter or args['selector']}"}
                if self._task.diff:
                    would["diff"] = {"before": await self._holding(client, exporter),
                                     "after": f"lease: (not taken in check mode)\nexporter: {exporter or '(any of ' + args['selector'] + ')'}\n"}
                return would
            before = await self._holding(client, exporter) if self._task.diff else ""
            tags = {str(key): str(value) for key, value in args["tags"].items()}
            status = await client.create_lease(args["selector"], args["duration"], args["ttl"], exporter, tags,
                                               begin, args["priority"])
            ahead = max(0.0, begin - time.time()) if begin is not None else 0.0
            try:
                status = await client.wait_ready(status.name, args["acquisition_timeout"] + ahead)
            except BaseException:
                await client.release(status.name)  # do not leave a request waiting in the queue
                raise
            granted = {"changed": True, "lease": status.name, "exporter": status.exporter}
            if self._task.diff:
                granted["diff"] = {"before": before, "after": _held(status)}
            return granted

        outcome = with_controller(config, work, what)
        outcome["ansible_facts"] = {"jumpstarter_lease": outcome["lease"]}
        if args["client_config"]:  # the tasks that follow reach the lease through the same controller
            outcome["ansible_facts"]["jumpstarter_client_config"] = args["client_config"]
        return outcome

    @staticmethod
    async def _holding(client, exporter: str | None) -> str:
        """What the exporter asked for is doing, before the lease (for --diff)."""
        if not exporter:
            return "lease: none\n"
        from jumpstarter_lab.wire import names

        found = [e for e in await client.exporters() if names.short(e.name) == exporter]
        state = names.status_name(found[0].status) if found else "not visible to this client"
        return f"lease: none\nexporter: {exporter} ({state})\n"

    def _release(self, config: str | None, name: str, console_log: str | None) -> dict:
        gone = {"changed": False, "lease": "", "ansible_facts": {"jumpstarter_lease": ""}}
        if not name:
            return gone

        async def work(client):
            current = await client.get_lease(name)
            if not current.ended and not self._task.check_mode:
                await client.release(name)
            if not current.ended and self._task.diff:
                gone["diff"] = {"before": _held(current), "after": "lease: none\n"}
            if console_log and not self._task.check_mode:
                await self._save_console_log(client, name, console_log, gone)
            return not current.ended

        gone["changed"] = with_controller(config, work, f"releasing lease {name}")
        return gone

    @staticmethod
    async def _save_console_log(client, name: str, path: str, result: dict) -> None:
        from jumpstarter_lab.wire.errors import DriverError

        try:
            data = await client.console_log(name, wait=60)
        except DriverError as e:
            result.setdefault("warnings", []).append(f"lease {name} was given back without its console log: {e}")
            return
        target = os.path.expanduser(path)
        os.makedirs(os.path.dirname(os.path.abspath(target)), exist_ok=True)
        with open(target, "wb") as f:
            f.write(data)
        result.update(console_log=target, console_log_bytes=len(data))


def _held(status) -> str:
    """A granted lease as --diff shows it: its name, exporter and latest end."""
    until = "" if status.ends is None else " until " + datetime.datetime.fromtimestamp(
        status.ends, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    return f"lease: {status.name}{until}\nexporter: {status.exporter} (leased by this client)\n"


def _time(text: str) -> float:
    """begin_time, ISO 8601 (local time without a zone), as seconds since the epoch."""
    try:
        return datetime.datetime.fromisoformat(str(text).strip()).timestamp()
    except ValueError:
        raise AnsibleActionFail(f"lease: begin_time '{text}' is not a date and time: write it as ISO 8601, e.g. "
                                "2026-12-24T08:00:00Z") from None
