"""The scheduling policy on plain data: no database, no clock, no event loop."""

from __future__ import annotations

import ast
import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from helpers import ROOT
from jumpstarter_lab.controller import lease_policy as policy
from jumpstarter_lab.controller.lease_policy import ExporterSeen
from jumpstarter_lab.controller.lease_record import LeaseRecord, LeaseState
from jumpstarter_lab.wire.protocol import common_pb2

T = 1000.0  # "now" in every case


def lease(name: str, selector: str = "", *, at: float = 0.0, priority: int = 0, namespace: str = "default",
          exporter_name: str | None = None, allowed: tuple[str, ...] = (), ttl: float = 30.0,
          duration: float = 600.0) -> LeaseRecord:
    """A queued lease requested at `T - 100 + at`, alive well past T."""
    requested = T - 100 + at
    return LeaseRecord(name=name, namespace=namespace, client=f"client-{name}", selector=selector, exporter=None,
                       state=LeaseState.QUEUED, requested_at=requested, granted_at=None, ended_at=None,
                       duration=duration, ttl=ttl, alive_until=T + ttl, epoch=0, reason="", priority=priority,
                       exporter_name=exporter_name, allowed=allowed)


def online(**labels) -> ExporterSeen:
    return ExporterSeen(labels, online_until=T + 15)


def offline(**labels) -> ExporterSeen:
    return ExporterSeen(labels, online_until=T - 1)


def granted(record: LeaseRecord, exporter: str, at: float = T - 10) -> LeaseRecord:
    return record.granted(exporter, at)


def names(pairs) -> list[tuple[str, str]]:
    return [(record.name, exporter) for record, exporter in pairs]


# --- granting ---------------------------------------------------------------------------------

def test_higher_priority_first_then_first_come_first_served():
    queue = [lease("late", at=3), lease("early", at=1), lease("urgent", at=5, priority=10), lease("middle", at=2)]
    boards = {("default", "b1"): online(), ("default", "b2"): online(), ("default", "b3"): online()}
    assert names(policy.grants(queue, boards, T)) == [("urgent", "b1"), ("early", "b2"), ("middle", "b3")]


def test_each_lease_takes_the_first_free_exporter_it_wants_in_the_order_given():
    queue = [lease("a", "kind=x", at=1), lease("b", "kind=y", at=2)]
    boards = {("default", "y1"): online(kind="y"), ("default", "x1"): online(kind="x"),
              ("default", "x2"): online(kind="x")}
    assert names(policy.grants(queue, boards, T)) == [("a", "x1"), ("b", "y1")]


def test_no_exporter_is_granted_twice_nor_one_a_granted_lease_holds():
    holder = granted(lease("holder", at=0), "b1")
    queue = [holder, *(lease(f"q{i}", at=i + 1) for i in range(4))]
    boards = {("default", "b1"): online(), ("default", "b2"): online()}
    decided = policy.grants(queue, boards, T)
    assert names(decided) == [("q0", "b2")]
    # Applied, and asked again: nothing is left to give.
    after = [holder, *(record.granted(exporter, T) for record, exporter in decided), *queue[2:]]
    assert policy.grants(after, boards, T) == []


def test_offline_exporters_and_other_namespaces_are_not_granted():
    queue = [lease("a", at=1), lease("b", at=2, namespace="lab2")]
    boards = {("default", "gone"): offline(), ("lab2", "there"): online()}
    assert names(policy.grants(queue, boards, T)) == [("b", "there")]


def test_a_lease_for_one_exporter_by_name_waits_for_that_one_only():
    queue = [lease("named", at=1, exporter_name="rack2"), lease("anyone", at=2)]
    boards = {("default", "rack1"): online(), ("default", "rack2"): online()}
    assert names(policy.grants(queue, boards, T)) == [("named", "rack2"), ("anyone", "rack1")]
    busy = [granted(lease("holder"), "rack2"), *queue]
    assert names(policy.grants(busy, boards, T)) == [("anyone", "rack1")]  # not held up behind "named"


def test_capabilities_limit_which_exporters_a_lease_may_get():
    queue = [lease("limited", at=1, allowed=("site=b",)), lease("free", at=2)]
    boards = {("default", "lab1"): online(site="a"), ("default", "lab2"): online(site="b")}
    assert names(policy.grants(queue, boards, T)) == [("limited", "lab2"), ("free", "lab1")]
    only_a = {("default", "lab1"): online(site="a")}
    assert names(policy.grants(queue, only_a, T)) == [("free", "lab1")]
    assert policy.allows((), {"any": "thing"}) and policy.allows(("site=a", "site=b"), {"site": "b"})


# An exporter as a batch may read it: online or not (by a little or a lot), in service or not, a hook busy or not.
_SEEN = st.builds(lambda board, until, disabled, status: ExporterSeen({"board": board}, online_until=T + until,
                                                                      status=status, disabled=disabled),
                  st.sampled_from("ab"), st.sampled_from([-50.0, -1.0, 0.5, 2.0, 30.0]),
                  st.sampled_from([None, "flaky"]),
                  st.sampled_from([common_pb2.EXPORTER_STATUS_AVAILABLE, common_pb2.EXPORTER_STATUS_BEFORE_LEASE_HOOK]))
_KEYS = st.tuples(st.sampled_from(["default", "lab2"]), st.sampled_from([f"e{i}" for i in range(5)]))


def eager_grants(leases, exporters, t):
    """The policy as first written, every free exporter listed before any is given: the oracle of the lazy one."""
    queued = sorted((lease for lease in leases if lease.state == LeaseState.QUEUED and lease.queued_at <= t),
                    key=policy.queue_order)
    busy = {(lease.namespace, lease.exporter) for lease in leases if lease.state == LeaseState.GRANTED}
    free = [(key, seen.labels) for key, seen in exporters.items() if seen.grantable(t) and key not in busy]
    granted = []
    for lease in queued:
        for index, ((namespace, name), labels) in enumerate(free):
            wanted = policy.wants(lease, name, labels) and policy.allows(lease.allowed, labels)
            if namespace == lease.namespace and wanted:
                granted.append((lease, name))
                del free[index]
                break
    return granted


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(_KEYS, _SEEN), st.lists(st.tuples(st.dictionaries(_KEYS, _SEEN, max_size=3),
                                                         st.sets(_KEYS, max_size=2),
                                                         st.sampled_from([0.0, 0.0, 1.0, 3.0])), max_size=6))
def test_an_exporter_map_grants_what_a_plain_mapping_of_the_same_exporters_grants(first, changes):
    """The map keeps its grantable exporters aside across changes (a reread, one gone, time moving on), and grants
    read free exporters only as far as the queue needs: together they must choose exactly what listing every free
    exporter first chooses, in the same order."""
    queue = [lease("a", at=1), lease("b", "board=b", at=2), lease("c", at=3, namespace="lab2"), lease("d", at=4),
             lease("e", at=5, exporter_name="e3"), lease("f", "board=a", at=6, allowed=("board=b",)),
             lease("g", at=7), granted(lease("held", at=0), "e0")]
    exporters, plain, t = policy.ExporterMap(first), dict(first), T
    for fresh, gone, later in changes:
        assert names(policy.grants(queue, exporters, t)) == names(eager_grants(queue, plain, t))
        exporters, t = exporters.changed(fresh, gone), t + later
        for key in gone - fresh.keys():  # read anew wins over gone, and keeps its place
            plain.pop(key, None)
        plain.update(fresh)
        assert list(exporters.items()) == list(plain.items())
    assert names(policy.grants(queue, exporters, t)) == names(eager_grants(queue, plain, t))


def test_an_exporter_map_grants_by_what_was_read_last():
    """An exporter read anew keeps its place among the grantable ones, with its new labels and its new grace."""
    exporters = policy.ExporterMap({("default", "e1"): online(board="a")})
    want_b = [lease("b", "board=b")]
    assert policy.grants(want_b, exporters, T) == []  # the grantable ones are set aside here
    relabelled = exporters.changed({("default", "e1"): online(board="b")})
    assert names(policy.grants(want_b, relabelled, T)) == [("b", "e1")]
    renewed = exporters.changed({("default", "e1"): ExporterSeen({"board": "a"}, online_until=T + 30)})
    assert names(policy.grants([lease("a")], renewed, T + 20)) == [("a", "e1")]  # past the first read's grace
    assert policy.grants([lease("a")], exporters, T + 20) == []


def test_a_grant_moves_the_record_and_bumps_its_epoch():
    record = lease("a").granted("b1", T)
    assert (record.state, record.exporter, record.granted_at, record.epoch, record.end_time) == \
        (LeaseState.GRANTED, "b1", T, 1, T + 600)


# --- expiry -----------------------------------------------------------------------------------

def test_expiry_by_ttl_duration_and_exporter_offline():
    boards = {("default", "up"): online(), ("default", "down"): offline()}
    lapsed = dataclasses.replace(lease("lapsed"), alive_until=T - 1)
    ran_out = granted(lease("ran-out", duration=5), "up", at=T - 6)
    lost = granted(lease("lost"), "down")
    vanished = granted(lease("vanished"), "unregistered")
    healthy = granted(lease("healthy"), "up")
    waiting = lease("waiting", "board=down")  # queued leases do not depend on an exporter being online
    ended = policy.expiries([lapsed, ran_out, lost, vanished, healthy, waiting], boards, T)
    assert [(record.name, reason) for record, reason in ended] == [
        ("lapsed", policy.TTL_LAPSED), ("ran-out", policy.DURATION_ENDED),
        ("lost", policy.EXPORTER_OFFLINE), ("vanished", policy.EXPORTER_OFFLINE)]


def test_a_lapsed_ttl_is_the_reason_before_anything_else():
    boards = {("default", "down"): offline()}
    both = dataclasses.replace(granted(lease("both", duration=1), "down", at=T - 50), alive_until=T - 1)
    assert policy.expiry(both, boards, T) == policy.TTL_LAPSED


def test_ended_leases_do_not_expire_again():
    ended = lease("done").ended(LeaseState.RELEASED, T - 50, "released by the client")
    assert policy.expiries([dataclasses.replace(ended, alive_until=0.0)], {}, T) == []


def test_a_record_only_makes_the_moves_of_the_state_machine():
    released = lease("a").ended(LeaseState.RELEASED, T, "released by the client")
    with pytest.raises(RuntimeError, match="released -> granted"):
        released.granted("b1", T)
    with pytest.raises(RuntimeError, match="expired -> released"):
        lease("b").ended(LeaseState.EXPIRED, T, "x").ended(LeaseState.RELEASED, T, "y")


# --- the queue --------------------------------------------------------------------------------

def test_positions_count_the_queued_leases_ahead_that_want_the_same_exporters():
    boards = {("default", "x1"): online(kind="x"), ("default", "y1"): online(kind="y")}
    first, second = lease("first", "kind=x", at=1), lease("second", "kind=x", at=2)
    elsewhere = lease("elsewhere", "kind=y", at=0)  # earlier, but for another exporter
    urgent = lease("urgent", "kind=x", at=3, priority=5)
    other_ns = lease("other-ns", "kind=x", at=0, namespace="lab2")
    holder = granted(lease("holder", "kind=x"), "x1")
    queue = [holder, first, second, elsewhere, urgent, other_ns]
    positions = {record.name: policy.shown(record, queue, boards).position for record in queue}
    assert positions == {"holder": None, "urgent": 1, "first": 2, "second": 3, "elsewhere": 1, "other-ns": 1}


def test_a_lease_for_one_exporter_by_name_is_ahead_only_of_leases_that_could_take_that_one():
    boards = {("default", "rack1"): online(kind="x"), ("default", "rack2"): online(kind="x")}
    named = lease("named", "kind=x", at=1, exporter_name="rack2")
    anyone = lease("anyone", "kind=x", at=2)
    wants_rack1 = lease("rack1-only", "kind=x", at=3, exporter_name="rack1")
    queue = [named, anyone, wants_rack1]
    assert [policy.position(record, queue, boards) for record in queue] == [1, 2, 2]


# --- exporters --------------------------------------------------------------------------------

def test_one_rule_says_online_and_the_status_clients_see():
    up = ExporterSeen({}, online_until=T)
    down = ExporterSeen({}, online_until=T - 0.001, status=common_pb2.EXPORTER_STATUS_AVAILABLE)
    busy = ExporterSeen({}, online_until=T + 5, status=common_pb2.EXPORTER_STATUS_BEFORE_LEASE_HOOK)
    assert up.online(T) and not down.online(T)
    assert up.status_at(T, leased=False) == common_pb2.EXPORTER_STATUS_AVAILABLE  # reported nothing
    assert up.status_at(T, leased=True) == common_pb2.EXPORTER_STATUS_LEASE_READY
    assert down.status_at(T, leased=True) == common_pb2.EXPORTER_STATUS_OFFLINE
    assert busy.status_at(T, leased=False) == common_pb2.EXPORTER_STATUS_BEFORE_LEASE_HOOK


def test_the_policy_and_the_record_stand_on_plain_data():
    """Nothing they import does I/O: no database, no event loop, no store."""
    controller = ROOT / "exporter" / "src" / "jumpstarter_lab" / "controller"
    plain = {"__future__", "collections.abc", "dataclasses", "enum", "functools", "re",
             "..wire.errors", "..wire.protocol", ".", ".lease_record", ".selectors"}
    for module in ("lease_policy.py", "lease_record.py", "selectors.py"):
        tree = ast.parse((controller / module).read_text())
        imported = {"." * node.level + (node.module or "") if isinstance(node, ast.ImportFrom) else alias.name
                    for node in ast.walk(tree) if isinstance(node, (ast.Import, ast.ImportFrom))
                    for alias in node.names}
        assert imported <= plain, f"{module} imports {sorted(imported - plain)}"


def test_an_exporter_out_of_service_is_never_granted_and_ends_its_lease_only_when_asked():
    out = dataclasses.replace(online(board="a"), disabled="flaky mux")
    exporters = {("default", "e1"): out, ("default", "e2"): online(board="b")}
    waiting = lease("l1", "board=a")
    assert policy.grants([waiting], exporters, T) == []
    assert policy.shown(waiting, [waiting], exporters).reason == "e1 is out of service: flaky mux"
    assert policy.shown(lease("l2", ""), [], exporters).reason == ""  # e2 is still in service
    held = granted(lease("l3", "board=a"), "e1")
    assert policy.expiry(held, exporters, T) is None  # its lease goes on by default
    ending = {("default", "e1"): dataclasses.replace(out, disabled_ends_leases=True)}
    assert policy.expiry(held, ending, T) == "the exporter was taken out of service: flaky mux"
    assert out.online(T) and not out.grantable(T)


def test_an_exporter_whose_hook_runs_or_failed_is_not_granted_and_its_lease_not_ready_while_it_prepares():
    def seen(status: int, message: str = "") -> ExporterSeen:
        return dataclasses.replace(online(), status=status, status_message=message)

    s = common_pb2
    for status in (s.EXPORTER_STATUS_BEFORE_LEASE_HOOK, s.EXPORTER_STATUS_AFTER_LEASE_HOOK,
                   s.EXPORTER_STATUS_AFTER_LEASE_HOOK_FAILED, s.EXPORTER_STATUS_BEFORE_LEASE_HOOK_FAILED):
        assert not seen(status).grantable(T), s.ExporterStatus.Name(status)
        assert policy.grants([lease("l1")], {("default", "e1"): seen(status)}, T) == []
        assert seen(status).status_at(T, leased=False) == status  # shown as it is
    for status in (s.EXPORTER_STATUS_AVAILABLE, s.EXPORTER_STATUS_LEASE_READY, s.EXPORTER_STATUS_UNSPECIFIED):
        assert seen(status).grantable(T)  # a lease's LEASE_READY, reported late, keeps no one waiting
        assert seen(status).status_at(T, leased=False) == s.EXPORTER_STATUS_AVAILABLE

    held = granted(lease("l2"), "e1")
    preparing = {("default", "e1"): seen(s.EXPORTER_STATUS_BEFORE_LEASE_HOOK, "running the beforeLease hook")}
    assert policy.shown(held, [held], preparing).waiting == "exporter e1: running the beforeLease hook"
    assert preparing["default", "e1"].status_at(T, leased=True) == s.EXPORTER_STATUS_BEFORE_LEASE_HOOK
    ready = {("default", "e1"): seen(s.EXPORTER_STATUS_LEASE_READY)}
    assert policy.shown(held, [held], ready).waiting == ""
    assert ready["default", "e1"].status_at(T, leased=True) == s.EXPORTER_STATUS_LEASE_READY
    # An exporter that hangs in its hook never keeps the lease from ending: the clock rules as ever.
    assert policy.expiry(held.renewed(T + 690), preparing, T + 700) == policy.DURATION_ENDED
    assert held.ended(LeaseState.EXPIRED, T, "x").waiting == ""


def test_a_reservation_waits_for_its_time_and_then_queues_as_if_asked_for_then():
    board = {("default", "b1"): ExporterSeen({}, online_until=T + 1000)}
    reservation = dataclasses.replace(lease("reserved", at=0), begin_at=T + 60)
    assert policy.grants([reservation], board, T) == []  # the board stays free for others meanwhile
    assert names(policy.grants([reservation, lease("now", at=50)], board, T)) == [("now", "b1")]
    at_its_time = T + 60
    asked_before = lease("before", at=150)  # asked for at T + 50, before the reservation's time
    asked_after = lease("after", at=170)  # at T + 70, after it
    assert names(policy.grants([asked_after, reservation, asked_before], board, at_its_time + 20)) == [
        ("before", "b1")]
    assert names(policy.grants([asked_after, reservation], board, at_its_time + 20)) == [("reserved", "b1")]
    # It lives for its ttl from its beginning, however early it was made, and renewing keeps that.
    assert reservation.renewed(T).alive_until == T + 60 + reservation.ttl
    assert reservation.renewed(T + 100).alive_until == T + 100 + reservation.ttl
