# Copyright (c) jumpstarter.lab contributors
# Apache-2.0
# The work is done by the action plugin of the same name, on the Ansible controller; this file documents it.

from __future__ import annotations

DOCUMENTATION = r"""
module: lease
short_description: Take or give back a lease on a board from a Jumpstarter controller
description:
  - With O(state=present), asks the controller for a lease on the host's exporter (the inventory plugin sets
    C(jumpstarter_exporter)) or on any exporter matching O(selector), waits in the queue until it is granted,
    and sets the fact C(jumpstarter_lease), which the P(jumpstarter.lab.jumpstarter#connection) connection plugin and
    M(jumpstarter.lab.call) use for the rest of the play. A host whose C(jumpstarter_lease) is still granted
    keeps it (no change).
  - With O(state=absent), releases the host's lease (C(jumpstarter_lease), or O(name)); the board's exporter
    then resets its drivers for the next lease.
  - Runs on the Ansible controller, talking to the Jumpstarter controller; nothing runs on the board.
  - A lease lives O(duration) seconds at most, and ends early when nobody renews it for O(ttl) seconds; every
    connection through it renews it.
version_added: 0.1.0
author: jumpstarter.lab developers (@jumpstarter-lab)
extends_documentation_fragment:
  - jumpstarter.lab.action  # first: its membership wins over the empty one of .actiongroups
  - jumpstarter.lab.client_config
  - ansible.builtin.action_common_attributes
  - ansible.builtin.action_common_attributes.actiongroups
  - ansible.builtin.action_common_attributes.flow
  - ansible.builtin.action_common_attributes.facts
options:
  state:
    description: Whether the host should hold a lease.
    type: str
    choices: [present, absent]
    default: present
  exporter:
    description: The exporter to lease, by name. Defaults to the host's C(jumpstarter_exporter) variable.
    type: str
  selector:
    description:
      - Labels the exporter must have, e.g. C(board=rpi4). With neither O(exporter) nor a C(jumpstarter_exporter)
        variable, any exporter matching it is leased.
    type: str
    default: ""
  duration:
    description:
      - Seconds the lease may last at most.
      - Defaults to 1800, the client library's default (C(jumpstarter_lab.wire.defaults.LEASE_DURATION)).
    type: int
  ttl:
    description:
      - Seconds the lease survives without being renewed (at most 3600).
      - Defaults to 600, the client library's default (C(jumpstarter_lab.wire.defaults.LEASE_TTL)).
    type: int
  acquisition_timeout:
    description:
      - Seconds to wait in the queue for the grant before failing (the request is then withdrawn); the CLI's
        C(--acquisition-timeout), upstream's name.
      - Defaults to 300, the client library's default (C(jumpstarter_lab.wire.defaults.LEASE_WAIT)).
    type: int
    aliases: [timeout]
  priority:
    description:
      - The new lease's place in the queue - a higher priority is granted first, then first come, first served.
      - Above 0 only as far as the client's capabilities allow (C(jumpstarter-lab admin create-client --max-priority));
        anyone may go below 0, to wait behind the rest. The CLI's C(--priority).
    type: int
    default: 0
  console_log:
    description:
      - With O(state=absent), save the lease's console log here once it ended (a path on the Ansible controller;
        missing directories are made). It holds what the board's consoles printed during the whole lease, one
        timestamped line at a time, as its exporter recorded it, watched or not.
      - The task waits up to 60 seconds for the exporter to hand it in, and warns if it never does (a board with
        no console has none). The lease is given back either way.
    type: path
  begin_time:
    description:
      - A reservation, upstream's C(begin_time) - the lease is granted no earlier than this time, and queued as if
        asked for then.
      - ISO 8601, e.g. C(2026-12-24T08:00:00Z), or local time without a zone.
      - The task waits for it; O(acquisition_timeout) counts from then.
    type: str
  name:
    description: With O(state=absent), the lease to release. Defaults to the host's C(jumpstarter_lease).
    type: str
  tags:
    description:
      - Tags of yours on a new lease (keys as labels are written, short text values), e.g. the CI job that took
        it; C(jumpstarter-lab lease list --tag-filter ci-job=1234) finds it again. A lease the host keeps is not
        retagged.
    type: dict
    default: {}
attributes:
  check_mode:
    support: full
    details:
      - Reports whether a lease would be taken or released, without asking the controller for one.
      - >-
        The host then holds no lease, so M(jumpstarter.lab.call) and M(jumpstarter.lab.flash) are skipped and
        tasks on the board cannot reach it; a play that must look at the board in check mode runs this task
        (and the release) with C(check_mode: false), as C(playbooks/demo.yml) does.
  diff_mode:
    support: full
    details: The host's lease (name, exporter, latest end) before and after, and the exporter's status before.
  facts:
    support: full
    details: Sets C(jumpstarter_lease), the lease of the host for the tasks that follow.
seealso:
  - plugin: jumpstarter.lab.jumpstarter
    plugin_type: inventory
  - plugin: jumpstarter.lab.jumpstarter
    plugin_type: connection
"""

EXAMPLES = r"""
- name: Work on every board of the inventory, each under its own lease
  hosts: jumpstarter
  gather_facts: false
  tasks:
    - name: Lease this host's board (waits in the queue if someone has it)
      jumpstarter.lab.lease:
        acquisition_timeout: 600

    - name: Power it on (a board comes to a lease powered off)
      jumpstarter.lab.call:
        driver: board.power
        method: "on"

    - name: Runs on the board, through its serial console (waits for its login prompt)
      ansible.builtin.command: uname -a
      changed_when: false

    - name: Give the board back, keeping what its console printed next to the playbook
      jumpstarter.lab.lease:
        state: absent
        console_log: "{{ playbook_dir }}/console-logs/{{ inventory_hostname }}.log"

- name: Any Raspberry Pi 4 will do
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Lease one
      jumpstarter.lab.lease:
        selector: board=rpi4
        client_config: ~/.config/jumpstarter/clients/alice.yaml
      register: pi

    - name: Power it on (the lease and the client config are this host's facts now)
      jumpstarter.lab.call:
        driver: board.power
        method: "on"

    - name: Give it back
      jumpstarter.lab.lease:
        state: absent
"""

RETURN = r"""
lease:
  description: Name of the lease (empty after O(state=absent)).
  returned: always
  type: str
  sample: 0d42efcd-a7f3-467c-93b7-0f21d3c91724
exporter:
  description: The exporter the lease is on.
  returned: when a lease is held
  type: str
  sample: rack1-board3
console_log:
  description: Where the lease's console log was saved.
  returned: when O(console_log) is given and the log arrived
  type: str
  sample: /home/alice/lab/console-logs/rack1-board3.log
console_log_bytes:
  description: The size of that log.
  returned: when O(console_log) is given and the log arrived
  type: int
  sample: 18342
ansible_facts:
  description:
    - C(jumpstarter_lease), the lease for the tasks that follow (empty after O(state=absent)); with O(client_config)
      given, also C(jumpstarter_client_config), so that M(jumpstarter.lab.call), M(jumpstarter.lab.flash) and the
      connection plugin reach the lease on the same host.
  returned: always
  type: dict
  sample: {"jumpstarter_lease": "0d42efcd-a7f3-467c-93b7-0f21d3c91724",
           "jumpstarter_client_config": "/home/alice/.config/jumpstarter/clients/alice.yaml"}
"""
