"""Instructions per request, counted: what the producer or the gateway executes to serve
one request, under callgrind (``make request-cost``).

Requests per second on a small, shared machine move by 20 % or more from run to run;
callgrind's instruction counts do not depend on the load. For each service asked for,
the script starts the producer and the gateway (that one under ``valgrind
--tool=callgrind``), sends one request to warm the path, then ``N1`` requests at
concurrency 1 with the load tool (every body checked), and stops both; then the same
with ``N2`` requests. Start-up and shut-down cost the same both times, so
``(total(N2) - total(N1)) / (N2 - N1)`` is the cost of one request. Both services run
with ``--signal-spin-us 0``, so no instructions are spent polling, and in the
benchmark's "fresh" mode (the producer serializes each request, the gateway validates
each body).

Instruction counts are not time: a cache miss or a system call costs more than its
count says, and the kernel's work is not counted. They are for comparing two builds.
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

from binaries import add_binary_flags, chosen_binaries
from services import Services

SERVICES = ("producer", "gateway")


def total_instructions(callgrind_out: Path) -> int:
    """The program's instruction total from a callgrind output file."""
    text = callgrind_out.read_text(encoding="utf-8", errors="replace")
    found = re.search(r"^(?:summary|totals):\s*(\d+)", text, re.MULTILINE)
    if found is None:
        sys.exit(f"no instruction total in {callgrind_out}")
    return int(found.group(1))


def one_run(which: str, requests: int, args: argparse.Namespace, gateway: Path, load: Path) -> int:
    """Instructions ``which`` executed over start-up, ``requests`` requests and exit."""
    with tempfile.TemporaryDirectory(prefix="shmbridge-cost-") as tmp:
        shm, out = Path(tmp) / "shm", Path(tmp) / "callgrind.out"
        valgrind = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", "-q"]
        # Under callgrind a service starts and stops tens of times slower than natively;
        # leaving on SIGTERM, it writes its totals.
        with Services(
            gateway,
            "fresh",
            shm,
            max_count=1000,
            spin_us=0,
            gateway_args=[],
            wrap={which: valgrind},
            start_timeout=180,
            stop_timeout=120,
        ) as svc:
            base = f"http://127.0.0.1:{svc.gport}"
            warm_url = f"{base}{url_path(args.path)}?count={args.count}"
            with urllib.request.urlopen(warm_url, timeout=60) as warm:
                warm.read()
            subprocess.run(
                [
                    str(load),
                    "--url",
                    base,
                    "--paths",
                    args.path,
                    "--counts",
                    str(args.count),
                    "--concurrency",
                    "1",
                    "--requests",
                    str(requests),
                    "--expected-url",
                    f"http://127.0.0.1:{svc.pport}/api/users",
                ],
                check=True,
                stdout=subprocess.DEVNULL,
            )
        return total_instructions(out)


def url_path(path: str) -> str:
    """The load tool's rule: a path starting with '/' as it is, else /api/users-via-PATH."""
    return path if path.startswith("/") else f"/api/users-via-{path}"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--services", default="producer,gateway", help="which to count: producer, gateway"
    )
    parser.add_argument("--count", type=int, default=2, help="users per request")
    parser.add_argument(
        "--path",
        default="shm-uds",
        help="the path asked: NAME for /api/users-via-NAME (default shm-uds), or a path "
        "starting with '/', such as /api/bridge/users",
    )
    parser.add_argument(
        "--requests", default="200,1200", help="N1,N2: the two runs' request counts"
    )
    parser.add_argument("--repeat", type=int, default=2, help="pairs of runs per service")
    add_binary_flags(parser)
    args = parser.parse_args()
    services = [s for s in args.services.split(",") if s]
    if unknown := set(services) - set(SERVICES):
        parser.error(f"unknown service(s) {sorted(unknown)}: use {', '.join(SERVICES)}")
    n1, n2 = (int(n) for n in args.requests.split(","))
    if not 0 < n1 < n2:
        parser.error("--requests must be N1,N2 with 0 < N1 < N2")
    gateway, load = chosen_binaries(args)

    print(f"instructions per request, {args.count} users, {url_path(args.path)}")
    print()
    print("| service | per request (each pair) | median |")
    print("|---|---|---:|")
    for which in services:
        costs = []
        for _ in range(args.repeat):
            low = one_run(which, n1, args, gateway, load)
            high = one_run(which, n2, args, gateway, load)
            costs.append((high - low) / (n2 - n1))
        shown = " / ".join(f"{c / 1000:.1f}k" for c in costs)
        print(f"| {which} | {shown} | {statistics.median(costs) / 1000:.1f}k |", flush=True)


if __name__ == "__main__":
    main()
