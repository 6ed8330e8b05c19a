"""The action plugins' argument specs are their modules' documentation: the spec module_spec derives for
each module, and the lease module's documented defaults are the client library's."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from helpers import ROOT
from jumpstarter_lab.wire import defaults

# Runs with Ansible's collection loader over a collections path holding this tree, as ansible-playbook does,
# so doc fragments resolve the way they do for the action plugins.
PROBE = """
import json, sys
from ansible.plugins.loader import fragment_loader, init_plugin_loader, module_loader
from ansible.utils.plugin_docs import get_docstring

init_plugin_loader([sys.argv[1]])
from ansible_collections.jumpstarter.lab.plugins.plugin_utils.module_spec import argument_spec

out = {}
for name in ("call", "flash", "lease", "exporter_info", "lease_info", "bootloader"):
    fqcn = "jumpstarter.lab." + name
    doc = get_docstring(module_loader.find_plugin(fqcn), fragment_loader, is_module=True)[0]
    out[name] = {"spec": argument_spec(fqcn), "options": doc["options"]}
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def modules(tmp_path_factory) -> dict:
    path = tmp_path_factory.mktemp("collections")
    (path / "ansible_collections" / "jumpstarter").mkdir(parents=True)
    (path / "ansible_collections" / "jumpstarter" / "lab").symlink_to(ROOT)
    result = subprocess.run([sys.executable, "-c", PROBE, str(path)], capture_output=True, text=True, timeout=120,
                            check=False)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_call_spec_is_its_documentation(modules):
    assert modules["call"]["spec"] == {
        "driver": {"type": "str", "required": True},
        "method": {"type": "str", "required": True},
        "args": {"type": "list", "elements": "raw", "default": []},
        "count": {"type": "int", "default": 100},
        "client_config": {"type": "path"},
        "timeout": {"type": "int", "default": 30},
    }


def test_flash_spec_is_its_documentation(modules):
    assert modules["flash"]["spec"] == {
        "src": {"type": "path", "required": True},
        "storage": {"type": "str"},
        "force": {"type": "bool", "default": False},
        "client_config": {"type": "path"},
        "timeout": {"type": "int", "default": 30},
    }


def test_bootloader_spec_is_its_documentation(modules):
    assert modules["bootloader"]["spec"] == {
        "uboot": {"type": "str"},
        "tftp": {"type": "str", "default": "tftp"},
        "autoboot": {"type": "bool", "default": False},
        "reboot": {"type": "bool", "default": True},
        "env": {"type": "dict", "default": {}},
        "commands": {"type": "list", "elements": "str", "default": []},
        "image": {"type": "path"},
        "device": {"type": "str", "default": "virtio 0"},
        "kernel": {"type": "path"},
        "initrd": {"type": "path"},
        "dtb": {"type": "path"},
        "bootargs": {"type": "str"},
        "boot_method": {"type": "str", "choices": ["zboot", "bootz", "booti", "bootm"]},
        "wait_for": {"type": "str"},
        "boot_timeout": {"type": "int", "default": 300},
        "prompt_timeout": {"type": "int"},
        "transfer_timeout": {"type": "int", "default": 600},
        "client_config": {"type": "path"},
        "timeout": {"type": "int", "default": 30},
    }


def test_lease_spec_is_its_documentation(modules):
    assert modules["lease"]["spec"] == {
        "state": {"type": "str", "choices": ["present", "absent"], "default": "present"},
        "exporter": {"type": "str"},
        "selector": {"type": "str", "default": ""},
        "client_config": {"type": "path"},
        "duration": {"type": "int"},  # None: the library's default
        "ttl": {"type": "int"},
        "acquisition_timeout": {"type": "int", "aliases": ["timeout"]},
        "name": {"type": "str"},
        "tags": {"type": "dict", "default": {}},
        "begin_time": {"type": "str"},
        "console_log": {"type": "path"},
        "priority": {"type": "int", "default": 0},
    }


def test_info_specs_are_their_documentation(modules):
    assert modules["exporter_info"]["spec"] == {
        "selector": {"type": "str", "default": ""},
        "name": {"type": "str"},
        "client_config": {"type": "path"},
        "timeout": {"type": "int", "default": 30},
    }
    assert modules["lease_info"]["spec"] == {
        "name": {"type": "str"},
        "all": {"type": "bool", "default": False},
        "tag_filter": {"type": "str", "default": ""},
        "client_config": {"type": "path"},
        "timeout": {"type": "int", "default": 30},
    }


def test_option_spec_keeps_what_a_spec_means_and_drops_the_prose():
    from helpers import load_plugin_util

    option_spec = load_plugin_util("module_spec").option_spec
    documented = {"description": "A token.", "type": "list", "elements": "str", "aliases": ["tokens"],
                  "no_log": True, "required": False, "version_added": "0.2.0",
                  "options": {"scope": {"description": "Which.", "choices": ["read", "write"], "default": "read"}}}
    assert option_spec(documented) == {
        "type": "list", "elements": "str", "aliases": ["tokens"], "no_log": True, "required": False,
        "options": {"scope": {"type": "str", "choices": ["read", "write"], "default": "read"}}}


@pytest.mark.parametrize("option, value", [("duration", defaults.LEASE_DURATION), ("ttl", defaults.LEASE_TTL),
                                           ("acquisition_timeout", defaults.LEASE_WAIT)])
def test_lease_documents_the_librarys_defaults(modules, option, value):
    documented = modules["lease"]["options"][option]
    assert "default" not in documented  # left out, the action plugin takes the library's
    said = re.search(r"Defaults to (\d+), the client library's default", " ".join(documented["description"]))
    assert said and float(said.group(1)) == value, documented["description"]


def test_lease_documents_the_librarys_longest_ttl(modules):
    said = re.search(r"at most (\d+)", " ".join(modules["lease"]["options"]["ttl"]["description"]))
    assert said and float(said.group(1)) == defaults.MAX_LEASE_TTL
