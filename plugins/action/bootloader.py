# Copyright (c) jumpstarter.lab contributors
# Apache-2.0
"""Action plugin of jumpstarter.lab.bootloader: U-Boot on the board's console, files from here over TFTP."""

from __future__ import annotations

import os
import time

from ansible.errors import AnsibleActionFail

from ansible_collections.jumpstarter.lab.plugins.plugin_utils.action import JumpstarterAction
from ansible_collections.jumpstarter.lab.plugins.plugin_utils.exporter_client import (
    driver_at,
    locate_driver,
    task_exporter,
)

UBOOT_LABEL = "jumpstarter_driver_uboot.client.UbootConsoleClient"


class ActionModule(JumpstarterAction):
    MODULE = "jumpstarter.lab.bootloader"
    _supports_check_mode = True

    def act(self, args: dict, task_vars: dict) -> dict:
        files = {key: self._local(args[key], key) for key in ("image", "kernel", "initrd", "dtb") if args[key]}
        if ("initrd" in files or "dtb" in files) and "kernel" not in files:
            raise AnsibleActionFail("bootloader: initrd and dtb are loaded with a kernel; give kernel too")
        if args["autoboot"]:
            given = [key for key in ("env", "commands", "image", "kernel") if args[key]]
            if given or not args["wait_for"]:
                raise AnsibleActionFail(f"bootloader: autoboot lets the board boot by itself and waits for wait_for; "
                                        f"{'give wait_for' if not given else ', '.join(given) + ' need the prompt'}")
        if (unreachable := self.unreachable_in_check_mode(task_vars)) is not None:
            return unreachable
        started = time.monotonic()
        with task_exporter(self._play_context, task_vars, self._templar, float(args["timeout"]),
                           args["client_config"]) as root:
            _path, uboot = locate_driver(root, args["uboot"], UBOOT_LABEL, "uboot", preferred="uboot")
            tftp = driver_at(root, args["tftp"]) if files else None
            if self._task.check_mode:
                served = f" served by {args['tftp']}" if files else ""
                return {"changed": True, "booted": False, "msg": f"would drive U-Boot{served}"}
            try:
                result = _drive(uboot, tftp, files, args)
            except Exception as e:  # the client's errors say which command failed and what U-Boot printed
                raise AnsibleActionFail(f"bootloader: {e}") from None
        result["seconds"] = round(time.monotonic() - started, 1)
        return {"changed": True, **result}

    def _local(self, path: str, option: str) -> str:
        found = self._find_needle("files", path)
        if not os.path.isfile(found):
            raise AnsibleActionFail(f"bootloader: {option} {found} is not a file")
        return found


def _drive(uboot, tftp, files: dict, args: dict) -> dict:
    """Upload, reach the prompt, then env, commands, write, net-boot, wait: what each step did."""
    if args["autoboot"]:
        waited = uboot.autoboot(args["wait_for"], float(args["boot_timeout"]))
        return {"env": {}, "commands": [], "booted": True,
                "msg": f"booted by itself: {args['wait_for']!r} {waited:.1f}s after power-on"}
    served = {key: tftp.put_file(path, os.path.basename(path))["name"] for key, path in files.items()}
    result = {"env": dict(args["env"]), "commands": [], "booted": False}
    done = []
    prompt = float(args["prompt_timeout"]) if args["prompt_timeout"] else None
    at_prompt = uboot.reboot_to_console(prompt) if args["reboot"] else uboot.attach(prompt or 10.0)
    with at_prompt:
        uboot.set_env_dict(args["env"])
        for command in args["commands"]:
            ran = uboot.checked(command, float(args["transfer_timeout"]))
            result["commands"].append({"command": command, "rc": ran.rc, "output": ran.output})
        if not served:
            result["msg"] = f"ran {len(args['commands'])} U-Boot command(s) at the prompt"
            return result
        server = tftp.get_host()
        result["dhcp"] = uboot.setup_dhcp()
        result["loads"] = []
        if "image" in served:
            load, write = uboot.write_image(served["image"], args["device"], server=server,
                                            timeout=float(args["transfer_timeout"]))
            result["loads"].append(_load(served["image"], load))
            result["written"] = {"device": args["device"], "name": served["image"], "bytes": load.bytes,
                                 "seconds": round(write.seconds, 1)}
            done.append(f"wrote {served['image']} to {args['device']} ({load.bytes} bytes loaded in "
                        f"{load.seconds:.1f}s, written in {write.seconds:.1f}s)")
        if "kernel" in served:
            loads = uboot.netboot(served["kernel"], served.get("initrd"), served.get("dtb"), server=server,
                                  bootargs=args["bootargs"], method=args["boot_method"],
                                  timeout=float(args["transfer_timeout"]))
            names = [served[key] for key in ("kernel", "initrd", "dtb") if key in served]
            result["loads"] += [_load(name, load) for name, load in zip(names, loads)]
            result["booted"] = True
            booted = [f"{name} ({load.bytes} bytes in {load.seconds:.1f}s)" for name, load in zip(names, loads)]
            done.append("net-booted " + ", ".join(booted))
            if args["wait_for"]:
                waited = uboot.wait_for(args["wait_for"], float(args["boot_timeout"]))
                done.append(f"{args['wait_for']!r} after {waited:.1f}s")
    result["msg"] = "; ".join(done)
    return result


def _load(name: str, load) -> dict:
    return {"name": name, "bytes": load.bytes, "seconds": round(load.seconds, 1)}
