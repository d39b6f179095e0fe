"""Reliability, issue 4: "never fail, never mix", against the real processes.

Every test starts its own producer and gateway (free ports, a private shm directory in
``tmp_path``) and drives them with real clients: ``httpx`` for single requests and the
Rust load tool ``shmbridge_load`` for load, which checks every body byte for byte
against the users file written by ``python -m py_producer.dump_users``. A 200 whose body
differs from the expected one is a *mismatch*, the one outcome that must never happen;
errors must always be JSON ``{"error", "detail"}`` with a 4xx/5xx status. Every wait is
bounded; nothing asserts how fast something was (measured times are printed: run with
``pytest -s`` to see them).
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from gateway_helpers import NEEDS_SERVICES, gateway_binary
from helpers import REPO_ROOT, clean_env, free_port, run_producer
from load_helpers import (
    NEEDS_LOAD,
    assert_never_mixed,
    error_kinds,
    run_load,
    start_load,
    write_users_file,
)
from reliability_helpers import (
    CHANNEL_FILE,
    MAX_COUNT,
    SLOT_HEADER,
    SLOT_TABLE,
    LateWriteProxy,
    Services,
    first_line,
    gateway_metric,
    get,
    json_error,
    listening_address,
    pwrite,
    requests_killed_in_flight,
    wait_until_served,
)

from py_producer.users import expected_users_json

pytestmark = [pytest.mark.timeout(300), *NEEDS_SERVICES, NEEDS_LOAD]


@pytest.fixture
def services(tmp_path: Path) -> Iterator[Services]:
    shm_dir = tmp_path / "shm"
    shm_dir.mkdir(mode=0o700)
    box = Services(tmp_path, shm_dir)
    try:
        yield box
    finally:
        box.stop_all()


@pytest.fixture(scope="module")
def users_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The users 1..MAX_COUNT as JSON lines, written by the CLI the benchmark uses."""
    return write_users_file(tmp_path_factory.mktemp("users") / "users.jsonl", MAX_COUNT)


# --- the users file ----------------------------------------------------------------------


def test_users_file_lines_join_into_the_expected_bodies(users_file: Path) -> None:
    lines = users_file.read_bytes().split(b"\n")
    assert lines[-1] == b""
    lines = lines[:-1]
    assert len(lines) == MAX_COUNT
    for count in (0, 1, 2, 17, 1000, MAX_COUNT):
        assert b"[" + b",".join(lines[:count]) + b"]" == expected_users_json(count), count


# --- load ------------------------------------------------------------------------------


def test_load_without_loss(services: Services, users_file: Path) -> None:
    """20,000 requests at concurrency 100 over both paths, counts 0..10,000: all correct."""
    producer = services.producer()
    gateway = services.gateway(producer.url)
    started = time.monotonic()
    report = run_load(
        services.tmp_path,
        gateway.url,
        users_file,
        paths="api,shm",
        counts=f"0-{MAX_COUNT}",
        concurrency=100,
        requests=20_000,
    )
    print(f"load without loss: 20000 requests took {time.monotonic() - started:.1f} s")
    assert_never_mixed(report)
    assert report["requests"] == 20_000
    assert report["errors"] == 0, error_kinds(report)
    assert report["ok"] == 20_000
    assert {name: p["ok"] for name, p in report["paths"].items()} == {
        "api": 10_000,
        "shm": 10_000,
    }
    assert gateway.proc.poll() is None


def test_many_more_clients_than_slots(services: Services, users_file: Path) -> None:
    """64 clients share 2 slots: with a generous slot wait all succeed; with a 1 ms wait
    each gets either its own correct body or a JSON 503 ``no_free_slot``, never a mix."""
    # 3 request slots: the producer keeps the last for hand calls, the gateway pools 2.
    producer = services.producer(slot_count=3)
    patient = services.gateway(producer.url, "--slot-wait-timeout-ms", "60000")
    report = run_load(
        services.tmp_path,
        patient.url,
        users_file,
        paths="shm",
        counts="0-2000",
        concurrency=64,
        requests=3000,
    )
    assert_never_mixed(report)
    assert (report["ok"], report["errors"]) == (3000, 0), error_kinds(report)
    assert patient.stop() == 0

    hurried = services.gateway(producer.url, "--slot-wait-timeout-ms", "1")
    report = run_load(
        services.tmp_path,
        hurried.url,
        users_file,
        paths="shm",
        counts="0-2000",
        concurrency=64,
        requests=2000,
        seed=2,
    )
    assert_never_mixed(report)
    kinds = error_kinds(report)
    assert set(kinds) <= {"503 no_free_slot"}, kinds
    assert report["ok"] + report["errors"] == 2000
    # 64 clients on 2 slots with a 1 ms wait: both outcomes happen.
    assert report["ok"] > 0 and kinds.get("503 no_free_slot", 0) > 0, report
    assert hurried.proc.poll() is None


# --- a slow producer and late writes ----------------------------------------------------


@pytest.mark.parametrize("signal_mode", ["http", "uds"])
def test_a_slow_producer_times_out_and_its_late_writes_are_refused(
    services: Services, signal_mode: str
) -> None:
    """The producer sleeps 1.5 s before each shared-memory write; the gateway waits 300 ms.

    Each shm request gets a 504 naming the timeout and its setting; REST is unaffected.
    The writes the gateway gave up on must never land: the gateway sends its deadline
    with each write (``deadline_ms`` over HTTP, the frame's budget over the socket), and
    the producer refuses a write it reaches after that deadline.
    Without that, these writes would land 1.5 s later, long after the slots' quarantine
    (2 x 300 ms), in slots the gateway may have handed to other requests: the slots are
    read below and must all still be empty.
    """
    shmbridge = pytest.importorskip("shmbridge")
    producer = services.producer(write_delay_ms=1500, slot_count=4)
    gateway = services.gateway(
        producer.url, "--producer-timeout-ms", "300", "--signal", signal_mode
    )

    # Three at once: every slot of the gateway's pool (3 of the 4 request slots).
    started = time.monotonic()
    with httpx.Client(timeout=30) as client:
        results: list[httpx.Response] = []
        threads = [
            threading.Thread(
                target=lambda n=n: results.append(
                    client.get(f"{gateway.url}/api/users-via-shm?count={n}")
                )
            )
            for n in (5, 6, 7)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
    assert len(results) == 3
    for response in results:
        assert response.status_code == 504, response.text
        body = json_error(response)
        assert body["error"] == "producer_timeout"
        assert "300 ms" in body["detail"], body
        assert "--producer-timeout-ms" in body["detail"], body
        assert "SHMBRIDGE_PRODUCER_TIMEOUT_MS" in body["detail"], body
    # REST still serves (retried: its own 300 ms budget can run out on a loaded machine).
    wait_until_served(f"{gateway.url}/api/users-via-api", 5, timeout=30)

    # The producer reaches the three writes 1.5 s after they were asked for.
    time.sleep(max(0.0, started + 2.5 - time.monotonic()))
    if signal_mode == "http":
        deadline = time.monotonic() + 20
        while producer.log_text().count("refused: its deadline passed") < 3:
            assert time.monotonic() < deadline, producer.log_text()[-3000:]
            time.sleep(0.05)
    reader = shmbridge.Reader(services.channel_path)
    for slot in range(3):
        with pytest.raises(shmbridge.SlotEmpty):
            reader.read_bytes(slot)
    assert gateway.proc.poll() is None


def test_a_late_write_in_flight_never_reaches_another_request(
    services: Services, users_file: Path
) -> None:
    """Late writes land while a burst of requests of other counts runs: never a mix.

    Three requests for 7777 users take the gateway's three slots; the proxy holds their
    writes past the gateway's 3 s timeout (504), then writes 7777 users into those slots
    ten times each, 3.5-4.5 s after they were asked for. The gateway keeps a slot whose
    write timed out in quarantine for 2 x 3 s, so the burst (counts 0-3000, six clients
    on three slots, from the 504s on for 4 s) must get every body right and no error at
    all. (The timeout is 3 s, not less, so that no burst request meets it on a loaded
    machine.)

    Why this fails if the protection is broken: validation is off (``--validation none``),
    so only the slot's quarantine, its request id and the length the producer announced
    stand between a burst request and the 7777 users landing in its slot. Without the
    quarantine, burst requests take those slots at once and the late writes land between
    their writes and their reads: the request-id check turns those into 502s (errors,
    asserted 0 here; seen: 10-16 per run with the quarantine disabled); with the
    request-id and length checks disabled too, burst requests serve the 7777 users as
    their body (seen: 10-70 mismatches per run).
    """
    marker = 7777
    producer = services.producer(slot_count=4)
    proxy = LateWriteProxy(producer.url, marker=marker, hold=3.5, replays=10, spacing=0.1)
    try:
        # The proxy sits on the HTTP signal.
        gateway = services.gateway(
            proxy.url, "--producer-timeout-ms", "3000", "--validation", "none", "--signal", "http"
        )
        assert wait_until_served(f"{gateway.url}/api/users-via-shm", 3) >= 0
        with httpx.Client(timeout=30) as client:
            answers: list[httpx.Response] = []
            threads = [
                threading.Thread(
                    target=lambda: answers.append(
                        client.get(f"{gateway.url}/api/users-via-shm?count={marker}")
                    )
                )
                for _ in range(3)
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(timeout=30)
        assert [a.status_code for a in answers] == [504, 504, 504], [a.text for a in answers]
        burst = start_load(
            services.tmp_path,
            gateway.url,
            users_file,
            paths="shm",
            counts="0-3000",
            concurrency=6,
            duration=4.0,
        )
        report = burst.finish()
        deadline = time.monotonic() + 20
        while len(proxy.late_statuses) < 30:
            assert time.monotonic() < deadline, proxy.late_statuses
            time.sleep(0.05)
    finally:
        proxy.close()
    assert proxy.held == 3
    # The late writes did land: the producer wrote 7777 users into the slots 30 times.
    assert proxy.late_statuses == [200] * 30
    assert_never_mixed(report)
    assert report["errors"] == 0, error_kinds(report)
    assert report["ok"] > 0
    assert gateway.proc.poll() is None


def test_writes_into_a_slot_in_use_are_caught_by_the_request_id(
    services: Services, users_file: Path
) -> None:
    """Foreign writes (7777 users, random request ids) hammer the gateway's slots during a
    burst: the burst never serves them. Validation is off, so the request id (and the
    length the producer announced) is what catches them: with those checks disabled the
    burst serves the foreign 7777 users (seen: 38-70 mismatches per run). The rounds
    repeat until at least one foreign write was caught, to prove the case was exercised."""
    producer = services.producer(slot_count=4)
    gateway = services.gateway(producer.url, "--validation", "none")
    rng = random.Random(4)
    caught: dict[str, int] = {}
    for round_number in range(5):
        burst = start_load(
            services.tmp_path,
            gateway.url,
            users_file,
            paths="shm",
            counts="0-3000",
            concurrency=6,
            duration=2.0,
            seed=round_number + 1,
        )
        foreign = 0
        with httpx.Client(timeout=10) as client:
            while burst.proc.poll() is None:
                answer = client.get(
                    f"{producer.url}/api/write-to-shm",
                    params={
                        "count": 7777,
                        "slot": rng.randrange(3),
                        "request_id": rng.randrange(1, 2**62),
                    },
                )
                # 409: the gateway's own write held the slot at that moment.
                assert answer.status_code in (200, 409), answer.text
                foreign += answer.status_code == 200
        report = burst.finish()
        assert_never_mixed(report)
        kinds = error_kinds(report)
        # What a foreign write can cause: a slot holding another request id (invalid
        # payload), the producer refusing the gateway's write to a busy slot, or (rarely:
        # once in CI) a read that gave up because foreign writes kept the slot changing
        # through all its bounded retries (a channel error naming it).
        allowed = {"502 invalid_payload", "502 producer_error", "502 channel_error"}
        assert set(kinds) <= allowed, kinds
        if "502 channel_error" in kinds:
            assert "kept changing while it was read" in gateway.log_text()
        print(f"round {round_number}: {foreign} foreign writes, burst errors {kinds}")
        for kind, n in kinds.items():
            caught[kind] = caught.get(kind, 0) + n
        if caught.get("502 invalid_payload"):
            break
    assert caught.get("502 invalid_payload"), "no foreign write ever landed in a slot in use"
    assert "holds request" in gateway.log_text()
    assert gateway.proc.poll() is None


# --- the producer dies -------------------------------------------------------------------


def test_producer_killed_under_load(services: Services, users_file: Path) -> None:
    """SIGKILL the producer in the middle of load and start a new one: never a wrong body,
    only JSON 502/503/504 errors, the gateway stays up and follows the new producer."""
    producer = services.producer()
    gateway = services.gateway(producer.url)
    load = start_load(
        services.tmp_path,
        gateway.url,
        users_file,
        paths="api,shm",
        counts=f"0-{MAX_COUNT}",
        concurrency=20,
        duration=6.0,
    )
    time.sleep(1.5)
    producer.proc.kill()
    producer.proc.wait(timeout=10)
    assert services.channel_path.exists(), "a killed producer cannot remove its file"
    time.sleep(1.0)
    restart_started = time.monotonic()
    producer = services.restart_producer(producer)
    ready = time.monotonic() - restart_started
    # A bound, not a measure (make recovery measures): the old producer's quarantined
    # slots come back as soon as the gateway opens the new producer's file.
    recovery = {
        path: wait_until_served(f"{gateway.url}{path}", 2, timeout=30)
        for path in ("/api/users-via-shm", "/api/users-via-api")
    }
    print(
        f"producer restart: healthy {ready:.2f} s after start; the gateway then served "
        f"shm after {recovery['/api/users-via-shm'] * 1000:.1f} ms, "
        f"api after {recovery['/api/users-via-api'] * 1000:.1f} ms more"
    )
    report = load.finish()
    assert_never_mixed(report)
    statuses = {status for p in report["paths"].values() for status in p["errors_by_status"]}
    assert statuses <= {"502", "503", "504"}, error_kinds(report)
    assert report["ok"] > 0
    assert gateway.proc.poll() is None, "the gateway must outlive its producer"


@pytest.mark.parametrize("signal_mode", ["http", "uds"])
def test_a_killed_producers_quarantine_ends_with_it(services: Services, signal_mode: str) -> None:
    """Every slot of the pool is in quarantine when the producer is SIGKILLed: the new
    producer is served at once, not after the quarantine (here 2 x 60 s).

    The producer holds each shared-memory write for 3 s (``--write-delay-ms``), so the
    three requests that take the gateway's three slots are in its hands when it is
    killed. Their signals break with the write possibly pending, so the gateway keeps
    the slots in quarantine. That quarantine used to outlive the producer (the slot pool
    outlives a restart), so a restarted producer got 503 ``no_free_slot`` until it ran
    out. Should a request not have reached the producer yet when it is killed (so its
    slot is not quarantined), the round is repeated with a fresh gateway, so the case
    is always exercised.
    """
    producer = services.producer(slot_count=4, write_delay_ms=3000)
    for _round in range(3):
        gateway = services.gateway(
            producer.url, "--producer-timeout-ms", "60000", "--signal", signal_mode
        )
        log_start = len(gateway.log_text())
        url = f"{gateway.url}/api/users-via-shm"
        answers = requests_killed_in_flight(gateway, producer, f"{url}?count=5", 3)
        assert [a.status_code for a in answers] == [502] * 3, [a.text for a in answers]
        quarantined = gateway.log_text()[log_start:].count("slot quarantined")
        if quarantined == 3:
            break
        print(f"round {_round}: {quarantined} of 3 slots quarantined; again")
        gateway.stop()
        producer = services.restart_producer(producer, slot_count=4, write_delay_ms=3000)
    else:
        raise AssertionError("the requests never all reached the producer before it died")
    producer = services.restart_producer(producer, slot_count=4)
    # Were the quarantine kept, no slot would be free for 120 s: far past this wait.
    served_after = wait_until_served(url, 2, timeout=30)
    print(f"{signal_mode}: shm served {served_after * 1000:.0f} ms after the new producer was up")
    assert gateway.proc.poll() is None


def test_a_stale_channel_file_is_replaced(services: Services) -> None:
    shmbridge = pytest.importorskip("shmbridge")
    producer = services.producer()
    gateway = services.gateway(producer.url)
    wait_until_served(f"{gateway.url}/api/users-via-shm", 2)
    old_epoch = shmbridge.Reader(services.channel_path).epoch

    producer.proc.send_signal(signal.SIGKILL)
    producer.proc.wait(timeout=10)
    assert services.channel_path.exists()
    assert not shmbridge.Reader(services.channel_path).producer_alive()
    response = get(f"{gateway.url}/api/users-via-shm?count=2")
    assert response.status_code == 502, response.text
    json_error(response)

    services.restart_producer(producer)
    reader = shmbridge.Reader(services.channel_path)
    assert reader.producer_alive()
    assert reader.epoch != old_epoch
    for path in ("/api/users-via-shm", "/api/users-via-api"):
        wait_until_served(f"{gateway.url}{path}", 1000)
    assert gateway.proc.poll() is None


# --- a corrupt channel file --------------------------------------------------------------


@pytest.mark.parametrize("damage", ["magic", "version", "slot_table", "truncate", "symlink"])
def test_a_corrupt_channel_file_gives_json_errors_and_the_gateway_survives(
    services: Services, users_file: Path, damage: str
) -> None:
    """Damage the channel file under a running gateway and a live producer: every shm
    request is a JSON 5xx (or, where the damage is repaired by the next write, the right
    body), never a wrong body; the gateway never dies; once the file is restored (or the
    producer restarted), shm requests succeed again."""
    slots = 4
    producer = services.producer(slot_count=slots, slot_capacity="1MiB")
    gateway = services.gateway(producer.url)
    shm_url = f"{gateway.url}/api/users-via-shm"
    wait_until_served(shm_url, 2)
    path = services.channel_path
    original = path.read_bytes()
    moved = path.with_name("users.shm.real")

    if damage == "magic":
        pwrite(path, b"NOTMAGIC", 0)
    elif damage == "version":
        pwrite(path, struct.pack("<I", 2), 8)
    elif damage == "slot_table":
        pwrite(path, random.Random(1).randbytes(slots * SLOT_HEADER), SLOT_TABLE)
    elif damage == "truncate":
        # Keeps the header, the slot table and slot 0 (the slot an idle gateway hands out
        # first), so the live producer can still write there; the gateway must refuse
        # to read a file shorter than its header says.
        payload_offset = 8192
        os.truncate(path, payload_offset + 1024 * 1024)
    elif damage == "symlink":
        path.rename(moved)
        path.symlink_to(moved)

    for count in (0, 2, 100, 1000):
        response = get(f"{shm_url}?count={count}")
        if damage == "slot_table" and response.status_code == 200:
            # The producer rewrites a slot's whole header when it writes the slot.
            assert response.content == expected_users_json(count)
        else:
            assert response.status_code >= 500, (damage, response.status_code, response.text)
            json_error(response)
        assert gateway.proc.poll() is None
    response = get(f"{gateway.url}/api/users-via-api?count=2")
    assert response.status_code == 200, "the REST path does not use the file"

    if damage == "slot_table":
        # Scribble over the slot table while a burst runs: still never a wrong body.
        stop = threading.Event()

        def scribble() -> None:
            rng = random.Random(2)
            while not stop.is_set():
                pwrite(
                    path,
                    rng.randbytes(SLOT_HEADER),
                    SLOT_TABLE + SLOT_HEADER * rng.randrange(slots),
                )
                time.sleep(0.001)

        scribbler = threading.Thread(target=scribble, daemon=True)
        scribbler.start()
        try:
            report = run_load(
                services.tmp_path,
                gateway.url,
                users_file,
                paths="shm",
                counts="0-1000",
                concurrency=4,
                duration=2.0,
            )
        finally:
            stop.set()
            scribbler.join(timeout=10)
        assert_never_mixed(report)
        assert all(kind.startswith("5") for kind in error_kinds(report)), error_kinds(report)
        print(f"slot table scribbled during a burst: {report['ok']} ok, {error_kinds(report)}")

    # Restore.
    if damage == "symlink":
        path.unlink()
        moved.rename(path)
    elif producer.proc.poll() is None:
        if damage == "truncate":
            os.truncate(path, len(original))
        pwrite(path, original[: SLOT_TABLE + slots * SLOT_HEADER], 0)
        if damage == "truncate":
            pwrite(path, original[8192 + 1024 * 1024 :], 8192 + 1024 * 1024)
    else:
        # A write beyond the end of a truncated file kills the producer with SIGBUS:
        # allowed (someone cut its file); the gateway must survive it.
        print(f"{damage}: the producer died ({producer.proc.returncode}); restarting it")
        services.restart_producer(producer, slot_count=slots, slot_capacity="1MiB")
    for count in (0, 2, 1000):
        wait_until_served(shm_url, count)
    assert gateway.proc.poll() is None


# --- shutdown ------------------------------------------------------------------------------


def test_gateway_stopped_with_requests_in_flight(services: Services) -> None:
    """SIGTERM the gateway while slow 100,000-user requests are in flight: they finish
    with the right body, the gateway exits 0, the producer keeps serving and nothing is
    left behind in the shm directory but the producer's own files."""
    big = 100_000
    producer = services.producer(
        max_count=big, slot_count=4, slot_capacity="32MiB", write_delay_ms=1000
    )
    gateway = services.gateway(producer.url, max_count=big)
    wait_until_served(f"{gateway.url}/api/users-via-shm", 2)
    before = sorted(p.name for p in services.shm_dir.iterdir())
    assert CHANNEL_FILE in before

    outcomes: dict[str, object] = {}

    def fetch(name: str, path: str) -> None:
        try:
            response = httpx.get(f"{gateway.url}{path}?count={big}", timeout=120)
            outcomes[name] = (response.status_code, response.content)
        except httpx.HTTPError as exc:
            outcomes[name] = exc

    threads = [
        threading.Thread(target=fetch, args=(f"shm-{i}", "/api/users-via-shm")) for i in range(3)
    ]
    threads.append(threading.Thread(target=fetch, args=("api", "/api/users-via-api")))
    for thread in threads:
        thread.start()
    # The producer sleeps 1 s before each shm write: once the three hold their slots,
    # they are in flight (the REST one may or may not have reached the gateway yet).
    deadline = time.monotonic() + 30
    while gateway_metric(gateway, "gateway_slots_in_use") < 3:
        assert time.monotonic() < deadline, "the shm requests never took their slots"
        time.sleep(0.01)
    gateway.proc.send_signal(signal.SIGTERM)
    assert gateway.proc.wait(timeout=60) == 0, gateway.log_text()[-3000:]
    for thread in threads:
        thread.join(timeout=120)

    expected = expected_users_json(big)
    for name, outcome in sorted(outcomes.items()):
        if isinstance(outcome, httpx.HTTPError):
            # Allowed only for a request that had not reached the gateway: a refused
            # connection, or one still in the listen backlog when the gateway closed its
            # socket (the kernel resets it: a ReadError before any byte of an answer).
            allowed = httpx.ConnectError | httpx.RemoteProtocolError | httpx.ReadError
            assert isinstance(outcome, allowed), outcome
            assert name == "api", f"{name} was in flight and must have finished: {outcome}"
            continue
        assert isinstance(outcome, tuple)
        status, body = outcome
        assert status == 200, (name, body[:300])
        assert body == expected, name
    assert len(outcomes) == 4

    # The producer never noticed.
    response = get(f"{producer.url}/api/users?count=2")
    assert response.status_code == 200 and response.content == expected_users_json(2)
    hand = get(f"{producer.url}/api/write-to-shm?count=2")
    assert hand.status_code == 200, hand.text
    assert sorted(p.name for p in services.shm_dir.iterdir()) == before


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_clean_shutdown_of_both_services(services: Services, sig: signal.Signals) -> None:
    producer = services.producer()
    gateway = services.gateway(producer.url)
    wait_until_served(f"{gateway.url}/api/users-via-shm", 2)
    gateway_port = int(gateway.url.rsplit(":", 1)[1])
    assert services.channel_path.exists()

    gateway.proc.send_signal(sig)
    assert gateway.proc.wait(timeout=60) == 0, gateway.log_text()[-3000:]
    assert producer.stop(sig=sig) == 0, producer.log_text()[-3000:]
    assert list(services.shm_dir.iterdir()) == [], "channel file and sockets must be removed"
    for port in (gateway_port, producer.port):
        assert listening_address(port) is None
        with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=2):
            pass
    assert "Traceback" not in producer.log_text()


# --- query strings -------------------------------------------------------------------------


def test_hostile_query_strings_are_refused_alike(services: Services) -> None:
    """What test_e2e does not already cover; both paths, one JSON 400 naming the problem."""
    producer = services.producer()
    gateway = services.gateway(producer.url)
    cases = {
        "count=" + "1" + "0" * 30: "more than the limit of 10000",
        "count=99999999999999999999": "more than the limit",
        "count=%2D1": "without a sign",
        "count=+5": "without a sign",
        "count=%205": "got ' 5'",
        "count=1.5": "got '1.5'",
        "count=0x10": "got '0x10'",
        "count=1e3": "got '1e3'",
        "count=%zz": "percent-encoded",
        "count=%ff": "percent-encoded",
        "count=1&count=1": "given 2 times",
        "count": "is empty",
        "foo=1": "'foo'",
        "count=1&foo=1&bar": "parameters 'foo', 'bar'",
        "count=" + "9" * 5000: "more than the limit",
    }
    for query, needle in cases.items():
        bodies = []
        for path in ("/api/users-via-api", "/api/users-via-shm"):
            response = get(f"{gateway.url}{path}?{query}")
            assert response.status_code == 400, (query, response.text[:300])
            body = json_error(response)
            assert body["error"] == "invalid_query", body
            assert needle in body["detail"], (query, body)
            assert len(body["detail"]) < 400, "client input is quoted shortened"
            bodies.append(response.content)
        assert bodies[0] == bodies[1], query
    assert gateway.proc.poll() is None


# --- security ------------------------------------------------------------------------------


def test_a_world_writable_channel_directory_is_refused(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    done = run_producer("--port", str(free_port()), "--shm-dir", str(shared), "--max-count", "10")
    assert done.returncode == 1, done.stderr
    assert "world-writable" in done.stderr and str(shared) in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
    assert list(shared.iterdir()) == []


def test_a_symlink_at_the_channel_path_is_refused(tmp_path: Path) -> None:
    shm_dir = tmp_path / "shm"
    shm_dir.mkdir(mode=0o700)
    target = tmp_path / "precious"
    target.write_bytes(b"keep me")
    (shm_dir / CHANNEL_FILE).symlink_to(target)
    done = run_producer("--port", str(free_port()), "--shm-dir", str(shm_dir), "--max-count", "10")
    assert done.returncode == 1, done.stderr
    assert "symbolic link" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
    assert target.read_bytes() == b"keep me"
    assert (shm_dir / CHANNEL_FILE).is_symlink()


def test_both_services_bind_loopback_by_default(tmp_path: Path) -> None:
    shm_dir = tmp_path / "shm"
    shm_dir.mkdir(mode=0o700)
    port = free_port()
    binary = gateway_binary()
    assert binary is not None
    commands = {
        "py_producer": [
            sys.executable,
            "-m",
            "py_producer",
            "--port",
            str(port),
            "--shm-dir",
            str(shm_dir),
            "--max-count",
            "10",
        ],
        "rust_gateway": [str(binary), "--port", "0", "--shm-dir", str(shm_dir)],
    }
    for name, command in commands.items():
        proc = subprocess.Popen(
            command,
            cwd=REPO_ROOT,
            env=clean_env({"RUST_LOG": ""}),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        try:
            line = first_line(proc)
            assert f"{name} listening on http://127.0.0.1:" in line, (name, line)
            bound = int(line.split("http://127.0.0.1:", 1)[1].split()[0].rstrip("/"))
            assert listening_address(bound) in (None, "127.0.0.1"), (name, line)
        finally:
            proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=30)
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
            if proc.stdout is not None:
                proc.stdout.close()
        assert proc.returncode == 0, (name, proc.returncode)
