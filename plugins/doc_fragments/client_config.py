# Copyright (c) jumpstarter.lab contributors
# Apache-2.0
"""The client_config option every module has: the one way a task names the controller it reaches."""


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  client_config:
    description:
      - Client config file of the Jumpstarter controller (written by C(jumpstarter-lab admin create-client)), to
        take, read or reach a lease through.
      - Defaults to the host's C(jumpstarter_client_config), else the environment's C(JMP_CLIENT_CONFIG), as for
        the P(jumpstarter.lab.jumpstarter#connection) connection plugin; C(module_defaults) of the
        C(group/jumpstarter.lab.jumpstarter) group sets it for every module of the collection.
    type: path
"""
