# Copyright (c) jumpstarter.lab contributors
# Apache-2.0
# The work is done by the action plugin of the same name, on the Ansible controller; this file documents it.

from __future__ import annotations

DOCUMENTATION = r"""
module: lease_info
short_description: List this client's leases on a Jumpstarter controller
description:
  - Returns the leases of the client whose config is used - those held or waiting in the queue, with O(all)
    also the ended ones, with O(tag_filter) only those whose tags match, or the one named O(name) - each with
    its state, exporter, message (its place in the queue, or why it ended), tags and latest end.
  - Runs on the Ansible controller, talking to the Jumpstarter controller; nothing runs on a board.
version_added: 0.1.0
author: jumpstarter.lab developers (@jumpstarter-lab)
extends_documentation_fragment:
  - jumpstarter.lab.action  # first: its membership wins over the empty one of .actiongroups
  - jumpstarter.lab.client_config
  - jumpstarter.lab.action.controller_timeout
  - ansible.builtin.action_common_attributes
  - ansible.builtin.action_common_attributes.actiongroups
  - ansible.builtin.action_common_attributes.flow
options:
  name:
    description: Only the lease of this name (held, waiting or ended).
    type: str
  all:
    description: Also the leases that have ended.
    type: bool
    default: false
  tag_filter:
    description: A label selector over the leases' tags, e.g. C(ci-job=1234) (see the O(jumpstarter.lab.lease#module:tags) option).
    type: str
    default: ""
attributes:
  check_mode:
    support: full
    details: It only reads, so it runs in check mode too.
seealso:
  - module: jumpstarter.lab.lease
  - module: jumpstarter.lab.exporter_info
"""

EXAMPLES = r"""
- name: Give back what a CI job left behind
  hosts: localhost
  gather_facts: false
  tasks:
    - name: The leases tagged with the job
      jumpstarter.lab.lease_info:
        tag_filter: ci-job=1234
        client_config: ~/.config/jumpstarter/clients/alice.yaml
      register: job

    - name: Release each
      jumpstarter.lab.lease:
        state: absent
        name: "{{ item.name }}"
        client_config: ~/.config/jumpstarter/clients/alice.yaml
      loop: "{{ job.leases }}"
"""

RETURN = r"""
leases:
  description: The leases found, oldest first.
  returned: success
  type: list
  elements: dict
  sample: [{"name": "0d42efcd-a7f3-467c-93b7-0f21d3c91724", "state": "ready", "exporter": "rack1-board1",
            "message": "granted, epoch 1", "tags": {"ci-job": "1234"}, "ends": 1796300000.0,
            "begins": 1796298200.0}]
  contains:
    name:
      description: The lease's name.
      type: str
      sample: 0d42efcd-a7f3-467c-93b7-0f21d3c91724
    state:
      description: C(ready) (granted), C(waiting) (in the queue) or C(ended).
      type: str
      sample: ready
    exporter:
      description: The exporter it is on (null while it waits).
      type: str
      sample: rack1-board1
    message:
      description:
        - Its place in the queue while it waits, C(reserved from TIME) before its reservation begins,
          what its exporter prepares (its beforeLease hook) before it is ready, C(granted, epoch N), or why it ended.
      type: str
      sample: granted, epoch 1
    tags:
      description: The tags its client put on it.
      type: dict
      sample: {"ci-job": "1234"}
    ends:
      description: When it ends at the latest (seconds since the epoch; null while it waits).
      type: float
      sample: 1796300000.0
    begins:
      description: When it may be granted from (seconds since the epoch), when it was asked for, or when its reservation begins.
      type: float
      sample: 1796298200.0
"""
