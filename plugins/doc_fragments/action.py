# Copyright (c) jumpstarter.lab contributors
# Apache-2.0
"""What every module of this collection shares: it runs on the Ansible controller (an action plugin)."""


class ModuleDocFragment:
    DOCUMENTATION = r"""
attributes:
  diff_mode:
    description: Not supported.
    support: none
notes:
  - Runs on the Ansible controller, as an action plugin; needs the C(jumpstarter_lab) Python package there.
"""
