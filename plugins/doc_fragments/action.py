# Copyright (c) jumpstarter.lab contributors
# Apache-2.0
"""What every module of this collection shares: it runs on the Ansible controller (an action plugin).

The attributes' descriptions come from ansible.builtin.action_common_attributes (and its .actiongroups and
.flow parts), which a module extends beside this; here is only how far this collection supports each."""


class ModuleDocFragment:
    DOCUMENTATION = r"""
attributes:
  action:
    support: full
    details: All of the work is done by the action plugin, on the Ansible controller.
  action_group:
    membership: [jumpstarter.lab.jumpstarter]
  async:
    support: none
  bypass_host_loop:
    support: none
  diff_mode:
    support: none
  platform:
    platforms: all
    details: Nothing runs on the board, so its operating system does not matter.
notes:
  - Runs on the Ansible controller, as an action plugin; needs the C(jumpstarter_lab) Python package there.
  - The group C(jumpstarter.lab.jumpstarter) holds every module of the collection, so
    C(module_defaults) with C(group/jumpstarter.lab.jumpstarter) sets an option they share (O(timeout)) once.
"""
