"""Where the scripts find the release binaries they run (scripts/bench.py,
scripts/kill_recovery.py, run as scripts, import this from their own directory).

The same rule as the tests' for the gateway: a flag, else a variable, else the release
build under ``$CARGO_TARGET_DIR`` (default ``target/`` in the repository).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

#: Binary name -> the variable that overrides where it is.
VARIABLES = {
    "rust_gateway": "SHMBRIDGE_GATEWAY_BIN",
    "shmbridge_load": "SHMBRIDGE_LOAD_BIN",
}


def default_path(name: str) -> Path:
    """``$CARGO_TARGET_DIR/release/NAME``, or ``target/release/NAME`` in the repository."""
    target = os.environ.get("CARGO_TARGET_DIR") or "target"
    return REPO / target / "release" / name


def release_binary(name: str, given: str | None = None) -> Path:
    """The binary ``name``: ``given`` (a flag's value), else its variable, else the
    default path. Exits with a sentence naming `make gateway` if it is not there."""
    variable = VARIABLES[name]
    chosen = given or os.environ.get(variable)
    # A relative path is the caller's, as a shell would read it.
    path = Path(chosen).resolve() if chosen else default_path(name)
    if not path.is_file():
        source = "given" if given else (f"from {variable}" if chosen else "the default")
        raise SystemExit(
            f"{name} not found at {path} ({source}): build it with `make gateway`, "
            f"or point {variable} at it"
        )
    return path


def add_binary_flags(parser: argparse.ArgumentParser) -> None:
    """``--gateway-bin`` and ``--load-bin``, read back by ``chosen_binaries``."""
    parser.add_argument(
        "--gateway-bin",
        help="the gateway binary (default: $SHMBRIDGE_GATEWAY_BIN, else "
        "$CARGO_TARGET_DIR/release/rust_gateway, CARGO_TARGET_DIR defaulting to target)",
    )
    parser.add_argument(
        "--load-bin",
        help="the load tool (default: $SHMBRIDGE_LOAD_BIN, else "
        "$CARGO_TARGET_DIR/release/shmbridge_load)",
    )


def chosen_binaries(args: argparse.Namespace) -> tuple[Path, Path]:
    """The gateway and the load tool that ``add_binary_flags``'s flags chose."""
    return (
        release_binary("rust_gateway", args.gateway_bin),
        release_binary("shmbridge_load", args.load_bin),
    )
