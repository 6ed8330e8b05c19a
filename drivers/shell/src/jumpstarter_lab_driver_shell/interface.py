"""The shell interface shared by the driver and its client (upstream's method shape)."""

from __future__ import annotations

from jumpstarter_lab.driver import Interface, call, streaming_call
from jumpstarter_lab.wire import labels


class ShellInterface(Interface):
    label = labels.SHELL
    get_methods = call("Names of the declared methods", read_only=True)
    call_method = streaming_call("Run a declared method (method, env, *args): (stdout, stderr, None) chunks as "
                                 "output comes, then ('', '', exit status)")
