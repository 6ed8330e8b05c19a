# Copyright (c) jumpstarter.lab contributors
# Apache-2.0
"""An action plugin's argument spec, read from its module's DOCUMENTATION (doc fragments included),
so the options are written once, where ansible-doc and validate-modules read them."""

from __future__ import annotations

import functools

from ansible.errors import AnsibleError
from ansible.plugins.loader import fragment_loader, module_loader
from ansible.utils.plugin_docs import get_docstring

# What an option's documentation says that an argument spec means too; the rest is prose.
SPEC_KEYS = ("type", "required", "default", "choices", "elements", "aliases", "no_log")


@functools.cache
def argument_spec(module: str) -> dict:
    """The argument spec of the module named `module` (e.g. jumpstarter.lab.call), from its documented options."""
    found = module_loader.find_plugin_with_context(module)
    if not found.resolved:
        raise AnsibleError(f"no module {module} to read an argument spec from")
    doc = get_docstring(found.plugin_resolved_path, fragment_loader, is_module=True)[0]
    return {name: option_spec(option) for name, option in (doc.get("options") or {}).items()}


def option_spec(option: dict) -> dict:
    """One documented option as an argument spec entry (suboptions included)."""
    spec = {key: option[key] for key in SPEC_KEYS if key in option}
    spec.setdefault("type", "str")  # as undocumented types are in both
    if option.get("options"):
        spec["options"] = {name: option_spec(sub) for name, sub in option["options"].items()}
    return spec
