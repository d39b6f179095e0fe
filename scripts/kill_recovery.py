#!/usr/bin/env python3
"""How fast shared memory comes back after the producer is SIGKILLed under load.

Each round: the load tool runs both paths (REST and shared memory) at concurrency 100
over mixed sizes, checking every body; the producer is SIGKILLed in the middle of it and
started again on the same port; once the new producer answers ``/healthz``, single
requests poll ``/api/users-via-shm`` until one serves the right body. The time from
``/healthz`` to that body is the round's recovery. A round fails if any body was ever
wrong, if an error was not a JSON 502/503/504, or if recovery took longer than
``--limit`` (2 s by default).

Run after ``make build``: ``make recovery`` (or ``scripts/kill_recovery.py --kills 20``).
Writes ``results/recovery.json`` and ``results/recovery.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from binaries import add_binary_flags, chosen_binaries

REPO = Path(__file__).resolve().parent.parent
PY = REPO / ".venv" / "bin" / "python"
MAX_COUNT = 10_000
LISTENING = re.compile(rb"rust_gateway listening on (http://\S+)")
ALLOWED_STATUSES = {"502", "503", "504"}

sys.path.insert(0, str(REPO))
from py_producer.users import expected_users_json  # noqa: E402


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("SHMBRIDGE_")}


def fetch(url: str, timeout: float = 5.0) -> tuple[int, bytes]:
    """Status and body; 0 and the reason when nothing answered."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()
    except OSError as error:
        return 0, str(error).encode()


def wait_until(what: str, check: Any, timeout: float) -> float:
    """Polls ``check()`` until true; the seconds it took. Exits after ``timeout``."""
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > timeout:
            sys.exit(f"{what}: not within {timeout} s")
        time.sleep(0.005)
    return time.monotonic() - started


class Producer:
    def __init__(self, port: int, shm_dir: Path, log: Path) -> None:
        self.url = f"http://127.0.0.1:{port}"
        with log.open("ab") as out:
            self.proc = subprocess.Popen(
                [str(PY), "-m", "py_producer", "--port", str(port), "--shm-dir", str(shm_dir),
                 "--max-count", str(MAX_COUNT), "--log-level", "warning"],
                cwd=REPO, env=clean_env(), stdin=subprocess.DEVNULL, stdout=out,
                stderr=subprocess.STDOUT,
            )  # fmt: skip

    def healthy(self) -> bool:
        if self.proc.poll() is not None:
            sys.exit(f"the producer exited during start-up (code {self.proc.returncode})")
        return fetch(f"{self.url}/healthz", timeout=1)[0] == 200

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)


def start_gateway(
    binary: Path, producer_url: str, shm_dir: Path, log: Path
) -> tuple[subprocess.Popen[bytes], str]:
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [str(binary), "--port", "0", "--producer-url", producer_url, "--shm-dir",
             str(shm_dir), "--max-count", str(MAX_COUNT), "--log-level", "warn"],
            cwd=REPO, env=clean_env(), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=out,
        )  # fmt: skip
    assert proc.stdout is not None
    match = LISTENING.search(proc.stdout.readline())
    if match is None:
        sys.exit(f"the gateway did not start; see {log}")
    return proc, match.group(1).decode()


def start_load(
    binary: Path, url: str, users_file: Path, out: Path, seconds: float, seed: int
) -> Any:
    return subprocess.Popen(
        [str(binary), "--url", url, "--paths", "api,shm", "--counts", f"0-{MAX_COUNT}",
         "--concurrency", "100", "--duration-secs", str(seconds), "--seed", str(seed),
         "--users-file", str(users_file), "--json-out", str(out), "--timeout-secs", "60"],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=clean_env(),
    )  # fmt: skip


def load_problems(report: dict[str, Any]) -> list[str]:
    problems = []
    for key in ("total_mismatches", "non_json_errors", "transport_errors"):
        if report[key]:
            problems.append(f"{key}: {report[key]}")
    for path, numbers in report["paths"].items():
        odd = set(numbers["errors_by_status"]) - ALLOWED_STATUSES
        if odd:
            problems.append(f"{path}: statuses {sorted(odd)}: {numbers['error_kinds']}")
    return problems


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--limit", type=float, default=2.0, help="seconds allowed to recover")
    parser.add_argument("--load-secs", type=float, default=8.0, help="load run per round")
    parser.add_argument("--kill-after", type=float, default=1.5, help="seconds into the load")
    parser.add_argument("--out-json", type=Path, default=REPO / "results" / "recovery.json")
    parser.add_argument("--out-md", type=Path, default=REPO / "results" / "recovery.md")
    add_binary_flags(parser)
    args = parser.parse_args()
    gateway_bin, load_bin = chosen_binaries(args)

    work = Path(tempfile.mkdtemp(prefix="shmbridge-recovery-"))
    shm_dir = work / "shm"
    shm_dir.mkdir(mode=0o700)
    users_file = work / "users.jsonl"
    subprocess.run(
        [str(PY), "-m", "py_producer.dump_users", "--count", str(MAX_COUNT), "--out", users_file],
        cwd=REPO, env=clean_env(), check=True,
    )  # fmt: skip
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    producer = Producer(port, shm_dir, work / "producer.log")
    wait_until("first producer start", producer.healthy, 120)
    gateway, url = start_gateway(gateway_bin, producer.url, shm_dir, work / "gateway.log")
    expected = expected_users_json(2)

    def shm_serves() -> bool:
        status, body = fetch(f"{url}/api/users-via-shm?count=2")
        return status == 200 and body == expected

    rounds: list[dict[str, Any]] = []
    failed = False
    try:
        wait_until("shm before the first kill", shm_serves, 60)
        for number in range(1, args.kills + 1):
            out = work / f"load-{number}.json"
            load = start_load(load_bin, url, users_file, out, args.load_secs, seed=number)
            time.sleep(args.kill_after)  # into the load, not a wait for a condition
            producer.kill()
            killed = time.monotonic()
            producer = Producer(port, shm_dir, work / "producer.log")
            start_s = wait_until("producer restart", producer.healthy, 120)
            recovery_s = wait_until("shm after the restart", shm_serves, 60)
            since_kill_s = time.monotonic() - killed
            under_load = load.poll() is None
            stdout, stderr = load.communicate(timeout=300)
            if load.returncode not in (0, 1):
                sys.exit(f"the load tool failed:\n{stdout}\n{stderr}")
            report = json.loads(out.read_text())
            problems = load_problems(report)
            if recovery_s > args.limit:
                problems.append(f"recovery {recovery_s:.3f} s over the {args.limit} s limit")
            if not under_load:
                problems.append("the load had ended before shm recovered (raise --load-secs)")
            failed |= bool(problems)
            row = {
                "kill": number,
                "restart_s": round(start_s, 3),
                "recovery_ms": round(recovery_s * 1000, 1),
                "since_kill_s": round(since_kill_s, 3),
                "ok": report["ok"],
                "errors": report["errors"],
                "mismatches": report["total_mismatches"],
                "problems": problems,
            }
            rounds.append(row)
            print(json.dumps(row), flush=True)
    finally:
        gateway.send_signal(signal.SIGTERM)
        producer.proc.send_signal(signal.SIGTERM)
        for proc in (gateway, producer.proc):
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()

    recoveries = [r["recovery_ms"] for r in rounds]
    summary = {
        "kills": len(rounds),
        "recovery_ms_median": statistics.median(recoveries),
        "recovery_ms_worst": max(recoveries),
        "mismatches": sum(r["mismatches"] for r in rounds),
        "limit_s": args.limit,
        "cpus": os.cpu_count(),
        "failed_rounds": sum(bool(r["problems"]) for r in rounds),
    }
    args.out_json.write_text(json.dumps({"summary": summary, "rounds": rounds}, indent=2) + "\n")
    lines = [
        "# Recovery after SIGKILL under load",
        "",
        f"`scripts/kill_recovery.py --kills {args.kills}`: load at concurrency 100, counts "
        f"0-{MAX_COUNT}, REST and shared memory; the producer SIGKILLed {args.kill_after} s "
        f"into each {args.load_secs} s load run and restarted. Recovery: from the new "
        f"producer's first `/healthz` to the first right body on `/api/users-via-shm`. "
        f"{summary['cpus']} CPUs, shared by the load tool and both services (noisy).",
        "",
        f"Median {summary['recovery_ms_median']} ms, worst {summary['recovery_ms_worst']} ms, "
        f"{summary['mismatches']} wrong bodies, {summary['failed_rounds']} failed rounds.",
        "",
        "| kill | restart (s) | recovery (ms) | kill to shm (s) | ok | errors | wrong bodies "
        "| problems |",
        "|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rounds:
        lines.append(
            f"| {r['kill']} | {r['restart_s']} | {r['recovery_ms']} | {r['since_kill_s']} | "
            f"{r['ok']} | {r['errors']} | {r['mismatches']} | {'; '.join(r['problems']) or '-'} |"
        )
    args.out_md.write_text("\n".join(lines) + "\n")
    print(json.dumps(summary))
    if failed:
        sys.exit(f"some rounds failed; logs in {work}")


if __name__ == "__main__":
    main()
