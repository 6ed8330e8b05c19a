"""Distributed mode with real controller, exporter and client processes on loopback."""

from __future__ import annotations

import asyncio
import base64
import datetime
import hashlib
import hmac
import json
import signal
import subprocess
import time

import pytest
import yaml

from helpers import CLI, ControllerLab, cli, free_port, wait_for
from jumpstarter_lab.client import ClientConfig, ControllerClient, connect_lease
from jumpstarter_lab.wire.errors import AccessDenied, DriverError, ExporterUnavailable, NotAuthenticated


@pytest.fixture
def lab(tmp_path):
    """A controller on SQLite."""
    lab = ControllerLab(tmp_path, str(tmp_path / "controller.db"))
    yield lab
    lab.stop()


def run(coro):
    return asyncio.run(coro)


async def with_client(config: ClientConfig, work):
    client = ControllerClient(config)
    try:
        return await work(client)
    finally:
        await client.close()


def test_lease_call_release_and_fresh_drivers_next_time(lab):
    alice = lab.client("alice")
    lab.exporter("bench1", "board=mock")
    config = str(lab.workdir / "alice.yaml")
    listing = cli("exporters", "list", "--client-config", config)
    assert listing.stdout.split()[:2] == ["bench1", "online"] and "board=mock" in listing.stdout
    script = f"{CLI} call power.on && {CLI} call power.status && echo lease=$JMP_LEASE exporter=$JMP_EXPORTER"
    first = cli("shell", "--client-config", config, "--selector", "board=mock", "--", "sh", "-c", script)
    assert first.returncode == 0, first.stderr
    lines = first.stdout.split()
    assert lines[0] == "on" and lines[2] == "exporter=bench1"  # two connections, one lease session
    lease = lines[1].removeprefix("lease=")
    ended = run(with_client(alice, lambda c: c.get_lease(lease)))
    assert ended.ended and "released by the client" in ended.message
    second = cli("shell", "--client-config", config, "--selector", "board=mock", "--", CLI, "call", "power.status")
    assert second.stdout.strip() == "off"  # a new lease starts with fresh driver instances


def test_queue_positions_and_handover(lab):
    alice, bob = lab.client("alice"), lab.client("bob")
    lab.exporter("bench1", "board=mock")

    async def scenario():
        a, b = ControllerClient(alice), ControllerClient(bob)
        try:
            held = await a.create_lease("board=mock", 600)
            held = await a.wait_ready(held.name, 30)
            waiting = await b.create_lease("board=mock", 600)
            assert not waiting.ready and waiting.message == "waiting, position 1 in the queue"
            third = await a.create_lease("board=mock", 600)
            assert (await a.get_lease(third.name)).message == "waiting, position 2 in the queue"
            await a.release(held.name)
            granted = await b.wait_ready(waiting.name, 30)
            assert granted.exporter == "bench1"
            assert (await a.get_lease(third.name)).message == "waiting, position 1 in the queue"
            with pytest.raises(AccessDenied, match="belongs to another client"):
                await a.release(waiting.name)
            await a.release(third.name)
            await b.release(waiting.name)
        finally:
            await a.close()
            await b.close()

    run(scenario())


def test_lease_expires_when_keepalive_stops(lab):
    alice = lab.client("alice")
    lab.exporter("bench1", "board=mock")

    async def scenario(client: ControllerClient):
        lease = await client.create_lease("board=mock", 600, ttl=2)
        await client.wait_ready(lease.name, 30)
        for _renewal in range(3):  # renewing keeps it
            await asyncio.sleep(1)
            assert (await client.keepalive(lease.name)).ready
        deadline = asyncio.get_running_loop().time() + 15
        while not (status := await client.get_lease(lease.name)).ended:
            assert asyncio.get_running_loop().time() < deadline, "the lease did not expire"
            await asyncio.sleep(0.3)
        assert status.message == "the client stopped renewing the lease"
        with pytest.raises(DriverError, match="has ended"):
            await client.keepalive(lease.name)

    run(with_client(alice, scenario))


def test_tokens_that_must_be_refused(lab):
    from cryptography.hazmat.primitives import serialization

    from jumpstarter_lab.controller.auth import Authority
    from jumpstarter_lab.controller.store import Store, identities

    alice = lab.client("alice")
    lab.exporter("bench1", "board=mock")
    authority = Authority(Store(f"sqlite:///{lab.workdir / 'controller.db'}"))
    exporter_token = yaml.safe_load((lab.workdir / "bench1.yaml").read_text())["token"]
    stranger = Authority(Store(f"sqlite:///{lab.workdir / 'other.db'}"))
    real_kid = authority._kid
    stranger._kid = real_kid  # claims the controller's key id, signed with another key
    issued = int(time.time())
    claims = {"iss": "jumpstarter-lab", "aud": "jumpstarter-lab:client", "sub": "client:default/alice",
              "kind": "client", "namespace": "default", "name": "alice", "gen": 1, "iat": issued, "exp": issued + 3600}
    public_pem = authority._public_key(real_kid).public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    carol = authority.create("client", "default", "carol")
    with authority.store.transaction() as conn:  # an identity deleted from the database behind the controller's back
        conn.execute(identities.delete().where(identities.c.name == "carol"))
    cases = {
        "not yet valid": (authority._sign(claims | {"iat": issued + 3600, "nbf": issued + 3600, "exp": issued + 7200}),
                          "invalid client token: The token is not yet valid"),
        "alg none": (unsigned_token(claims, "none", b"", real_kid), "invalid client token: The specified alg value "
                                                                    "is not allowed"),
        "HS256 keyed with the public key": (unsigned_token(claims, "HS256", public_pem, real_kid),
                                            "invalid client token: The specified alg value is not allowed"),
        "deleted identity": (carol, "the token of client default/carol was revoked"),
        "unknown key": (Authority(Store(f"sqlite:///{lab.workdir / 'third.db'}")).create("client", "default", "alice"),
                        "token signed by an unknown key"),
        "forged": (stranger.token("client", "default", "alice", 1), "invalid client token: Signature verification failed"),
        "expired": (authority.token("client", "default", "alice", 1, ttl_days=-1), "client token has expired"),
        "wrong kind": (exporter_token, "issued for another audience"),
        "wrong audience": (authority._sign({"iss": "jumpstarter-lab", "aud": "somewhere-else", "sub": "client:default/alice",
                                            "kind": "client", "namespace": "default", "name": "alice", "gen": 1,
                                            "iat": 1, "exp": 2**33}), "issued for another audience"),
    }
    for case, (token, message) in cases.items():
        config = ClientConfig(name="alice", namespace="default", endpoint=lab.endpoint, token=token,
                              tls={"insecure": True})
        with pytest.raises(NotAuthenticated, match=message):
            run(with_client(config, lambda c: c.exporters()))
    assert run(with_client(alice, lambda c: c.exporters()))[0].name.endswith("/bench1")
    assert cli("admin", "revoke", "client", "alice", "--db", lab.db).returncode == 0

    async def refused_within_the_cache_time(client: ControllerClient):
        deadline = asyncio.get_running_loop().time() + 15  # verified tokens are trusted for 5 s
        while asyncio.get_running_loop().time() < deadline:
            try:
                await client.exporters()
            except NotAuthenticated as e:
                return str(e)
            await asyncio.sleep(0.5)
        raise AssertionError("the revoked token kept working")

    assert "was revoked" in run(with_client(alice, refused_within_the_cache_time))


def unsigned_token(claims: dict, alg: str, secret: bytes, kid: str) -> str:
    """A JWT made by hand, as an attacker would: `alg: none` (no signature) or an HMAC keyed with `secret`
    (the classic confusion: the verifier's public key used as an HMAC secret)."""
    def part(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    signed = part(json.dumps({"alg": alg, "typ": "JWT", "kid": kid}).encode()) + "." + part(json.dumps(claims).encode())
    signature = hmac.new(secret, signed.encode(), hashlib.sha256).digest() if alg == "HS256" else b""
    return signed + "." + part(signature)


def test_capabilities_limit_exporters_and_methods(lab):
    lab.client("carol", "--allow-exporters", "board=mock", "--allow-methods", "power.status",
               "--allow-methods", "power.read")
    carol = ClientConfig.load(lab.workdir / "carol.yaml")
    lab.exporter("bench1", "board=mock")
    lab.exporter("secret", "board=prod")
    names = [e.name.rsplit("/", 1)[-1] for e in run(with_client(carol, lambda c: c.exporters()))]
    assert names == ["bench1"]
    config = str(lab.workdir / "carol.yaml")
    allowed = cli("shell", "--client-config", config, "--selector", "board=mock", "--", CLI, "call", "power.status")
    assert allowed.returncode == 0 and allowed.stdout.strip() == "off"
    refused = cli("shell", "--client-config", config, "--selector", "board=mock", "--", CLI, "call", "power.on")
    assert "this lease may not call power.on (allowed: power.status, power.read)" in refused.stderr

    async def refused(client: ControllerClient):  # it could never be granted: refused, not queued forever
        with pytest.raises(AccessDenied, match=r"may not lease an exporter matching 'board=prod' "
                                               r"\(it may lease: board=mock\)"):
            await client.create_lease("board=prod", 60)
        with pytest.raises(AccessDenied, match="may not lease secret"):
            await client.create_lease("", 60, exporter="secret")
        return [lease.name for lease in await client.leases()]

    assert run(with_client(carol, refused)) == []


def test_controller_killed_and_restarted_keeps_leases_and_exporters(lab):
    alice = lab.client("alice")
    lab.exporter("bench1", "board=mock")

    async def take(client: ControllerClient):
        lease = await client.create_lease("board=mock", 600, ttl=60)
        return await client.wait_ready(lease.name, 30)

    lease = run(with_client(alice, take))
    lab.controller_process.stop(signal.SIGKILL)
    lab.controller_process = lab.controller()

    async def still_there(client: ControllerClient):
        status = await client.get_lease(lease.name)
        assert status.ready and status.exporter == "bench1"
        deadline = asyncio.get_running_loop().time() + 30
        while True:  # the exporter reconnects on its own
            exporters = await client.exporters()
            if exporters and exporters[0].online:
                return
            assert asyncio.get_running_loop().time() < deadline, "the exporter did not come back"
            await asyncio.sleep(0.5)

    run(with_client(alice, still_there))
    config = str(lab.workdir / "alice.yaml")
    result = cli("shell", "--client-config", config, "--lease", lease.name, "--", CLI, "call", "power.status")
    assert result.returncode == 0 and result.stdout.strip() == "off", result.stderr


def test_exporter_killed_mid_lease_ends_the_lease(lab):
    alice = lab.client("alice")
    exporter = lab.exporter("bench1", "board=mock")

    async def scenario(client: ControllerClient):
        lease = await client.create_lease("board=mock", 600, ttl=60)
        await client.wait_ready(lease.name, 30)
        exporter.stop(signal.SIGKILL)
        deadline = asyncio.get_running_loop().time() + 20
        while not (status := await client.get_lease(lease.name)).ended:
            assert asyncio.get_running_loop().time() < deadline, "the lease outlived its exporter"
            await asyncio.sleep(0.5)
        assert status.message == "the exporter went offline"

    run(with_client(alice, scenario))


def test_a_call_after_its_lease_ran_out_says_so_and_why(lab):
    """A connection that outlives its lease: the next call fails naming the lease and the controller's reason
    for its end, where gRPC itself says only that the socket closed."""
    alice = lab.client("alice")
    lab.exporter("bench1", "board=mock")

    async def take(client: ControllerClient) -> str:
        return (await client.wait_ready((await client.create_lease("board=mock", 3, ttl=60)).name, 30)).name

    async def ended(client: ControllerClient, name: str) -> None:
        while not (await client.get_lease(name)).ended:
            await asyncio.sleep(0.2)

    name = run(with_client(alice, take))
    with connect_lease(alice, name) as root:
        root.power.on()
        run(with_client(alice, lambda client: asyncio.wait_for(ended(client, name), 20)))
        with pytest.raises(ExporterUnavailable) as refused:
            root.power.call("status")
    assert str(refused.value).startswith("power.status: unavailable: ")
    assert str(refused.value).endswith(f"(lease {name} has ended: the lease duration ran out)")


def test_two_replicas_on_postgres_grant_an_exporter_once(postgres, tmp_path):
    two_replicas_grant_an_exporter_once(ControllerLab(tmp_path, postgres.database("race")), tmp_path)


def test_two_controller_processes_on_one_sqlite_file_grant_an_exporter_once(tmp_path):
    """Two controllers started on the same SQLite file by mistake (or as replicas on one host) are correct:
    the file's write lock orders their grants as PostgreSQL's row lock does."""
    two_replicas_grant_an_exporter_once(ControllerLab(tmp_path, str(tmp_path / "controller.db")), tmp_path)


def two_replicas_grant_an_exporter_once(lab: ControllerLab, tmp_path):
    try:
        second_port = free_port()
        lab.controller(second_port)
        alice = lab.client("alice")
        bob = lab.client("bob", endpoint=f"127.0.0.1:{second_port}")
        lab.exporter("bench1", "board=mock")

        async def race():
            a, b = ControllerClient(alice), ControllerClient(bob)
            try:
                for _round in range(3):
                    leases = await asyncio.gather(a.create_lease("board=mock", 60), b.create_lease("board=mock", 60))
                    await asyncio.sleep(1)  # both replicas' schedulers have run by now
                    states = [await a.get_lease(leases[0].name), await b.get_lease(leases[1].name)]
                    assert sorted(s.ready for s in states) == [False, True], states
                    winner = 0 if states[0].ready else 1
                    assert states[1 - winner].message == "waiting, position 1 in the queue"
                    clients = (a, b)
                    await clients[winner].release(leases[winner].name)
                    loser = await clients[1 - winner].wait_ready(leases[1 - winner].name, 30)
                    assert loser.exporter == "bench1"
                    await clients[1 - winner].release(leases[1 - winner].name)
            finally:
                await a.close()
                await b.close()

        run(race())
        # The exporter listens on the first replica; a lease dialed through the second still reaches it.
        config = str(tmp_path / "bob.yaml")
        result = cli("shell", "--client-config", config, "--selector", "board=mock", "--", CLI, "call", "power.status")
        assert result.returncode == 0 and result.stdout.strip() == "off", result.stderr
    finally:
        lab.stop()


def test_tls_controller_with_a_lab_ca(tmp_path):
    pki = tmp_path / "pki"
    assert cli("admin", "make-ca", "--dir", str(pki)).returncode == 0
    assert cli("admin", "issue-cert", "--dir", str(pki), "--host", "localhost", "--host", "127.0.0.1").returncode == 0
    lab = ControllerLab(tmp_path, str(tmp_path / "controller.db"),
                        serve=("--tls-cert", str(pki / "controller.crt"), "--tls-key", str(pki / "controller.key")),
                        trust=("--ca", str(pki / "ca.crt")))
    try:
        lab.client("alice")
        config = tmp_path / "alice.yaml"
        # The configs carry the CA inline, as upstream's do: they work where the lab's CA file is not.
        assert base64.b64decode(yaml.safe_load(config.read_text())["tls"]["ca"]) == (pki / "ca.crt").read_bytes()
        lab.exporter("bench1", "board=mock")
        (pki / "ca.crt").rename(tmp_path / "ca-elsewhere.crt")
        done = cli("shell", "--client-config", str(config), "--selector", "board=mock", "--", CLI, "call",
                   "power.status")
        assert done.returncode == 0 and done.stdout.strip() == "off", done.stderr
        untrusting = ClientConfig.load(config)
        untrusting.tls = {}  # the system's CAs do not know the lab's CA
        with pytest.raises(DriverError, match="unavailable"):
            run(with_client(untrusting, lambda c: c.exporters()))
    finally:
        lab.stop()


def test_listings_for_scripts_and_durations_as_people_write_them(lab):
    lab.client("alice")
    lab.exporter("bench1", "board=mock", "rack=1")
    config = str(lab.workdir / "alice.yaml")

    def listed(*args: str) -> str:
        result = cli(*args, "--client-config", config)
        assert result.returncode == 0, result.stderr
        return result.stdout

    exporters = json.loads(listed("exporters", "list", "-o", "json"))
    assert exporters == [{"name": "bench1", "online": True, "status": "available", "enabled": True, "message": "",
                          "labels": {"board": "mock", "rack": "1"}}], exporters
    assert yaml.safe_load(listed("exporters", "list", "-o", "yaml")) == exporters
    assert listed("exporters", "list", "-o", "name") == "bench1\n"
    created = json.loads(listed("lease", "create", "-l", "board=mock", "--duration", "30m", "--ttl", "2m",
                                "--acquisition-timeout", "1m", "-o", "json"))
    assert [(lease["state"], lease["exporter"]) for lease in created] == [("ready", "bench1")]
    leases = yaml.safe_load(listed("lease", "list", "-o", "yaml"))
    assert [lease["name"] for lease in leases] == [created[0]["name"]]
    assert listed("lease", "list", "-o", "name") == created[0]["name"] + "\n"
    refused = cli("lease", "create", "-l", "board=mock", "--duration", "half an hour", "--client-config", config)
    assert refused.returncode == 2 and "'half an hour' is not a duration" in refused.stderr
    waited = cli("lease", "create", "-l", "board=mock", "--acquisition-timeout", "1", "--client-config", config)
    assert waited.returncode == 1 and "not granted within 1" in waited.stderr, waited.stderr
    assert listed("lease", "list", "-o", "name") == created[0]["name"] + "\n"  # the request was withdrawn
    assert cli("--version").stdout.startswith("jumpstarter-lab 0.")


def test_an_exporter_out_of_service_is_granted_to_nobody_until_it_is_back(lab):
    lab.client("alice")
    lab.exporter("bench1", "board=mock")
    config = str(lab.workdir / "alice.yaml")

    def admin(*args: str) -> str:
        result = cli("admin", *args, "--db", lab.db)
        assert result.returncode == 0, result.stderr
        return result.stdout

    def exporters() -> dict:
        return {e["name"]: e for e in json.loads(cli("exporters", "list", "-o", "json", "--client-config",
                                                     config).stdout)}

    def lease(wait: str) -> subprocess.CompletedProcess:
        return cli("lease", "create", "-l", "board=mock", "--acquisition-timeout", wait, "-o", "json",
                   "--client-config", config)

    assert "out of service (flaky SD mux)" in admin("disable-exporter", "bench1", "--reason", "flaky SD mux")
    listed = wait_for(lambda: (e := exporters()["bench1"]) and not e["enabled"] and e, 30, "the listing to show it out")
    assert listed["online"] and listed["message"] == "out of service: flaky SD mux", listed
    refused = lease("2")
    assert refused.returncode == 1, refused.stdout
    assert "not granted within 2s (waiting, position 1 in the queue (bench1 is out of service: flaky SD mux))" \
        in refused.stderr, refused.stderr
    assert cli("lease", "list", "-o", "name", "--client-config", config).stdout == ""  # the request was withdrawn
    admin("enable-exporter", "bench1")
    (granted,) = json.loads(lease("30").stdout)
    assert granted["state"] == "ready" and granted["exporter"] == "bench1"
    assert exporters()["bench1"]["message"] == "leased by alice"  # who holds what
    admin("disable-exporter", "bench1", "--reason", "kept running")  # the lease goes on
    (still,) = json.loads(cli("lease", "list", "-o", "json", "--client-config", config).stdout)
    assert still["state"] == "ready", still
    admin("disable-exporter", "bench1", "--reason", "smoke from the PSU", "--end-leases")

    def ended():
        listing = json.loads(cli("lease", "list", "--all", "-o", "json", "--client-config", config).stdout)
        (record,) = [lease for lease in listing if lease["name"] == granted["name"]]
        return record["state"] == "ended" and record

    record = wait_for(ended, 30, "the lease to end")
    assert record["message"] == "the exporter was taken out of service: smoke from the PSU", record
    missing = cli("admin", "disable-exporter", "bench9", "--reason", "x", "--db", lab.db)
    assert missing.returncode == 1 and missing.stderr.strip() == (
        "jumpstarter-lab: error: no exporter default/bench9 in the controller's database"), missing.stderr
    blank = cli("admin", "disable-exporter", "bench1", "--reason", " ", "--db", lab.db)
    assert blank.returncode == 1 and "say why the exporter is out of service" in blank.stderr


def test_leases_carry_their_clients_tags_and_are_found_by_them(lab):
    lab.client("alice")
    for name in ("bench1", "bench2"):
        lab.exporter(name, "board=mock")
    config = str(lab.workdir / "alice.yaml")

    def leases(*args: str) -> list[dict]:
        result = cli("lease", *args, "-o", "json", "--client-config", config)
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)

    (nightly,) = leases("create", "-l", "board=mock", "--tag", "ci-job=1234", "--tag", "team=kernel")
    (manual,) = leases("create", "-l", "board=mock", "--tag", "team=kernel")
    assert nightly["tags"] == {"ci-job": "1234", "team": "kernel"} and manual["state"] == "ready", (nightly, manual)
    assert [lease["name"] for lease in leases("list", "--tag-filter", "ci-job=1234")] == [nightly["name"]]
    kernel = {lease["name"] for lease in leases("list", "--tag-filter", "team=kernel")}
    assert kernel == {nightly["name"], manual["name"]}
    assert [lease["name"] for lease in leases("list", "--tag-filter", "team=kernel,!ci-job")] == [manual["name"]]
    table = cli("lease", "list", "--client-config", config).stdout
    assert "ci-job=1234,team=kernel" in table, table
    bad = cli("lease", "create", "-l", "board=mock", "--tag", "bad key=x", "--client-config", config)
    assert bad.returncode == 1 and "tag key 'bad key' is not valid" in bad.stderr, bad.stderr
    malformed = cli("lease", "list", "--tag-filter", "a=b=c", "--client-config", config)
    assert malformed.returncode == 1 and "invalid label selector term 'a=b=c'" in malformed.stderr, malformed.stderr
    no_value = cli("lease", "create", "-l", "board=mock", "--tag", "team", "--client-config", config)
    assert no_value.returncode == 1 and "tag 'team' should be KEY=VALUE" in no_value.stderr, no_value.stderr


def test_a_reservation_is_granted_at_its_time_and_queued_as_if_asked_for_then(lab):
    for name in ("alice", "bob", "carol"):
        lab.client(name)
    lab.exporter("bench1", "board=mock")
    lab.exporter("bench2", "board=spare")

    def lease(who: str, *args: str) -> dict:
        result = cli("lease", *args, "-o", "json", "--client-config", str(lab.workdir / f"{who}.yaml"))
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)[0] if args[0] == "create" else json.loads(result.stdout)

    def at(seconds: float) -> str:
        return datetime.datetime.fromtimestamp(seconds, datetime.UTC).isoformat()

    # A reservation of a free board waits for its time, then is granted.
    begin = time.time() + 4
    spare = lease("alice", "create", "-l", "board=spare", "--begin-time", at(begin))
    assert spare["state"] == "waiting" and spare["message"].startswith("reserved from "), spare
    assert abs(spare["begins"] - begin) < 1
    granted = wait_for(lambda: (r := lease("alice", "list")[0])["state"] == "ready" and r, 30, "the reservation")
    assert granted["ends"] - 1800 >= begin - 1  # granted at its time, not before (ends is whole seconds)

    # Held by bob past a reservation's time, the board goes to the reservation before carol, who asked after it.
    begin = time.time() + 3
    reserved = lease("alice", "create", "-l", "board=mock", "--begin-time", at(begin), "--duration", "10m")
    held = lease("bob", "create", "-l", "board=mock")  # not held back for a reservation still to come
    assert held["state"] == "ready" and held["exporter"] == "bench1", held
    wait_for(lambda: time.time() > begin + 0.5, 10, "the reservation's time")
    late = lease("carol", "create", "-l", "board=mock", "--acquisition-timeout", "0")
    assert late["message"] == "waiting, position 2 in the queue", late
    assert cli("lease", "release", held["name"], "--client-config", str(lab.workdir / "bob.yaml")).returncode == 0
    wait_for(lambda: {r["name"]: r["state"] for r in lease("alice", "list")}.get(reserved["name"]) == "ready", 30,
             "the reservation granted")
    assert lease("carol", "list")[0]["message"] == "waiting, position 1 in the queue"
    bad = cli("lease", "create", "-l", "board=mock", "--begin-time", "tomorrow at 8", "--client-config",
              str(lab.workdir / "carol.yaml"))
    assert bad.returncode == 2 and "'tomorrow at 8' is not a date and time" in bad.stderr, bad.stderr


def test_priority_goes_ahead_in_the_queue_as_far_as_the_client_may(lab):
    lab.client("alice")
    lab.client("bob")
    lab.client("carol", "--max-priority", "5")
    lab.exporter("bench1", "board=mock")

    def lease(who: str, *args: str) -> subprocess.CompletedProcess:
        return cli("lease", *args, "-o", "json", "--client-config", str(lab.workdir / f"{who}.yaml"))

    (held,) = json.loads(lease("alice", "create", "-l", "board=mock").stdout)
    (normal,) = json.loads(lease("bob", "create", "-l", "board=mock", "--acquisition-timeout", "0").stdout)
    (urgent,) = json.loads(lease("carol", "create", "-l", "board=mock", "--priority", "5",
                                 "--acquisition-timeout", "0").stdout)
    (background,) = json.loads(lease("alice", "create", "-l", "board=mock", "--priority", "-10",
                                     "--acquisition-timeout", "0").stdout)
    assert urgent["message"] == "waiting, position 1 in the queue", urgent  # ahead of bob, who came first
    assert json.loads(lease("bob", "list").stdout)[0]["message"] == "waiting, position 2 in the queue"
    assert background["message"] == "waiting, position 3 in the queue", background
    refused = lease("bob", "create", "-l", "board=mock", "--priority", "1")
    assert refused.returncode == 1 and ("this client may ask for a priority of at most 0, not 1 (an admin allows "
                                        "more: admin create-client --max-priority)") in refused.stderr, refused.stderr
    too_much = lease("carol", "create", "-l", "board=mock", "--priority", "6")
    assert too_much.returncode == 1 and "at most 5, not 6" in too_much.stderr
    assert cli("lease", "release", held["name"], "--client-config", str(lab.workdir / "alice.yaml")).returncode == 0
    wait_for(lambda: json.loads(lease("carol", "list").stdout)[0]["state"] == "ready", 30, "carol's grant")
    assert json.loads(lease("bob", "list").stdout)[0]["state"] == "waiting"
    assert normal["name"] != urgent["name"]


def test_a_lease_is_extended_shortened_and_handed_to_another_client(lab):
    lab.client("alice")
    lab.client("bob")
    lab.client("carol", "--allow-exporters", "board=other")
    lab.exporter("bench1", "board=mock")
    alice, bob = str(lab.workdir / "alice.yaml"), str(lab.workdir / "bob.yaml")

    def lease(config: str, *args: str) -> subprocess.CompletedProcess:
        return cli("lease", *args, "--client-config", config)

    created = lease(alice, "create", "-l", "board=mock", "--duration", "10m", "-o", "json")
    (record,) = json.loads(created.stdout)
    name = record["name"]
    (longer,) = json.loads(lease(alice, "update", name, "--duration", "2h", "-o", "json").stdout)
    (shorter,) = json.loads(lease(alice, "update", name, "--duration", "5m", "-o", "json").stdout)
    assert round(longer["ends"] - record["ends"]) == 7200 - 600 and round(record["ends"] - shorter["ends"]) == 300
    past = lease(alice, "update", name, "--duration", "0.5")
    assert past.returncode == 1 and "would end it in the past (release it instead)" in past.stderr, past.stderr
    nothing = lease(alice, "update", name)
    assert nothing.returncode == 1 and "say what to change in the lease" in nothing.stderr, nothing.stderr
    stranger = lease(alice, "update", name, "--to-client", "dave")
    assert stranger.returncode == 1 and "no client dave in namespace default" in stranger.stderr, stranger.stderr
    forbidden = lease(alice, "update", name, "--to-client", "carol")
    assert forbidden.returncode == 1 and "client carol may not take lease" in forbidden.stderr, forbidden.stderr
    assert lease(alice, "update", name, "--to-client", "bob").returncode == 0
    assert lease(alice, "list", "-o", "name").stdout == ""  # alice holds nothing now
    assert lease(bob, "list", "-o", "name").stdout == name + "\n"
    taken_back = lease(alice, "update", name, "--duration", "1h")
    assert taken_back.returncode == 1 and "belongs to another client" in taken_back.stderr, taken_back.stderr
    assert lease(bob, "release", name).returncode == 0
