"""deploy/: the Kubernetes manifest and the Dockerfiles, checked against the code.

Static checks read deploy/kubernetes.yaml and the Dockerfiles and compare them with what
the services really accept: the settings and defaults printed by
``python -m py_producer --help`` and by the built gateway's ``rust_gateway --help`` (the
binary the other gateway tests run; without one the checks that need it are skipped),
the producer's FastAPI routes and the gateway's axum routes. Live checks run the pod's
two containers on this host as the manifest configures them, with an "emptyDir" that is
world-writable like a real one, and let cargo load the workspace from each Dockerfile's
build context. The images themselves are never built here (no Docker engine).
"""

from __future__ import annotations

import ast
import importlib.metadata
import importlib.util
import json
import os
import queue
import re
import shlex
import shutil
import stat
import subprocess
import sys
import threading
import time
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import yaml
from gateway_helpers import LISTENING, GatewayHandle, gateway_binary, start_gateway
from help_helpers import (
    Option,
    by_variable,
    gateway_help,
    parse_gateway_help,
    parse_producer_help,
    producer_help,
)
from helpers import REPO_ROOT, SERVICE_LOGS, clean_env, free_port, run_producer, start_producer

DEPLOY = REPO_ROOT / "deploy"
MANIFEST = DEPLOY / "kubernetes.yaml"
GATEWAY_DOCKERFILE = DEPLOY / "Dockerfile.gateway"
PRODUCER_DOCKERFILE = DEPLOY / "Dockerfile.producer"
RUNTIME_REQUIREMENTS = DEPLOY / "requirements-producer.txt"
DEPLOY_README = DEPLOY / "README.md"
#: Pages that name the gateway's endpoints for its users.
ENDPOINT_PAGES = [
    REPO_ROOT / "README.md",
    REPO_ROOT / "docs" / "design.md",
    REPO_ROOT / "docs" / "operations.md",
]
PAGE = 4096
MIB = 1024 * 1024

HAS_NATIVE = importlib.util.find_spec("shmbridge") is not None


# --- what the services accept ------------------------------------------------------------


@pytest.fixture(scope="module")
def producer_settings() -> dict[str, Option]:
    settings = by_variable(parse_producer_help(producer_help()))
    assert {"SHMBRIDGE_PRODUCER_PORT", "SHMBRIDGE_SHM_DIR"} <= settings.keys(), settings
    return settings


@pytest.fixture(scope="module")
def gateway_settings() -> dict[str, Option]:
    settings = by_variable(parse_gateway_help(gateway_help()))
    assert {"SHMBRIDGE_GATEWAY_PORT", "SHMBRIDGE_SHM_DIR"} <= settings.keys(), settings
    return settings


def producer_routes() -> set[tuple[str, str]]:
    """(path, method) of every route of the producer's app."""
    from py_producer.app import create_app
    from py_producer.settings import Settings

    app = create_app(Settings(max_count=1))
    routes: set[tuple[str, str]] = set()
    for route in app.routes:
        path = getattr(route, "path", None)
        for method in getattr(route, "methods", None) or ():
            if isinstance(path, str):
                routes.add((path, str(method)))
    return routes


# --- the manifest ----------------------------------------------------------------------------


@dataclass
class Pod:
    deployment: dict[str, Any]
    service: dict[str, Any]
    spec: dict[str, Any]
    containers: dict[str, dict[str, Any]] = field(default_factory=dict)

    def env(self, name: str) -> dict[str, str]:
        container = self.containers[name]
        assert "envFrom" not in container, f"{name}: envFrom hides which settings are set"
        values: dict[str, str] = {}
        for item in container.get("env", []):
            assert "value" in item, f"{name}: {item['name']} has no literal value"
            values[item["name"]] = str(item["value"])
        return values

    def named_port(self, container: str, port: int | str) -> int:
        if isinstance(port, int):
            return port
        for item in self.containers[container].get("ports", []):
            if item.get("name") == port:
                return int(item["containerPort"])
        raise AssertionError(f"{container} has no port named {port!r}")


@pytest.fixture(scope="module")
def pod() -> Pod:
    documents = [d for d in yaml.safe_load_all(MANIFEST.read_text(encoding="utf-8")) if d]
    kinds = sorted(d["kind"] for d in documents)
    assert kinds == ["Deployment", "Service"], kinds
    deployment = next(d for d in documents if d["kind"] == "Deployment")
    service = next(d for d in documents if d["kind"] == "Service")
    spec = deployment["spec"]["template"]["spec"]
    containers = {c["name"]: c for c in spec["containers"]}
    assert sorted(containers) == ["gateway", "producer"], sorted(containers)
    return Pod(deployment, service, spec, containers)


def effective(env: Mapping[str, str], settings: Mapping[str, Option], name: str) -> str:
    """A setting's value in a container: its variable if the manifest sets it, else the default."""
    if name in env:
        return env[name]
    default = settings[name].default
    assert default is not None, f"{name} has no default"
    return default


def test_deployment_runs_two_replicas_of_the_pair(pod: Pod) -> None:
    assert pod.deployment["spec"]["replicas"] == 2
    labels = pod.deployment["spec"]["template"]["metadata"]["labels"]
    assert pod.deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    gateway_version = tomllib.loads(
        (REPO_ROOT / "rust_gateway" / "Cargo.toml").read_text(encoding="utf-8")
    )["package"]["version"]
    producer_version = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))[
        "project"
    ]["version"]
    assert pod.containers["gateway"]["image"] == f"shmbridge/rust-gateway:{gateway_version}"
    assert pod.containers["producer"]["image"] == f"shmbridge/py-producer:{producer_version}"


def test_container_ports_are_the_code_defaults(
    pod: Pod, gateway_settings: dict[str, Option], producer_settings: dict[str, Option]
) -> None:
    gateway_default = int(gateway_settings["SHMBRIDGE_GATEWAY_PORT"].default or 0)
    producer_default = int(producer_settings["SHMBRIDGE_PRODUCER_PORT"].default or 0)
    from py_producer.settings import Settings

    assert (gateway_default, producer_default) == (8080, Settings().port)
    for name, variable, default in (
        ("gateway", "SHMBRIDGE_GATEWAY_PORT", gateway_default),
        ("producer", "SHMBRIDGE_PRODUCER_PORT", producer_default),
    ):
        ports = [p["containerPort"] for p in pod.containers[name]["ports"]]
        assert ports == [default], f"{name}: containerPort {ports}, the code listens on {default}"
        assert int(pod.env(name).get(variable, default)) == default


@pytest.mark.parametrize("container", ["gateway", "producer"])
def test_every_variable_is_a_setting_of_its_service(
    pod: Pod,
    container: str,
    gateway_settings: dict[str, Option],
    producer_settings: dict[str, Option],
) -> None:
    known = gateway_settings if container == "gateway" else producer_settings
    used = {name for name in pod.env(container) if name.startswith("SHMBRIDGE_")}
    assert used, f"{container} sets no SHMBRIDGE_* variable"
    unknown = sorted(used - known.keys())
    assert not unknown, (
        f"{container} sets {unknown}, which it does not read (it reads {sorted(known)})"
    )
    assert not [n for n in pod.env(container) if not n.startswith("SHMBRIDGE_")], pod.env(container)


def test_addresses(
    pod: Pod, gateway_settings: dict[str, Option], producer_settings: dict[str, Option]
) -> None:
    gateway, producer = pod.env("gateway"), pod.env("producer")
    # The gateway's default is loopback, so the manifest must say 0.0.0.0 itself.
    assert gateway_settings["SHMBRIDGE_GATEWAY_HOST"].default == "127.0.0.1"
    assert gateway.get("SHMBRIDGE_GATEWAY_HOST") == "0.0.0.0"
    producer_host = effective(producer, producer_settings, "SHMBRIDGE_PRODUCER_HOST")
    producer_port = effective(producer, producer_settings, "SHMBRIDGE_PRODUCER_PORT")
    assert producer_host == "127.0.0.1", "the producer must stay on the pod's loopback"
    url = urlsplit(effective(gateway, gateway_settings, "SHMBRIDGE_PRODUCER_URL"))
    assert (url.scheme, url.hostname, url.port) == ("http", producer_host, int(producer_port))


def test_channel_volume_is_shared_memory_in_a_private_subdirectory(
    pod: Pod, gateway_settings: dict[str, Option], producer_settings: dict[str, Option]
) -> None:
    volumes = {v["name"]: v for v in pod.spec["volumes"]}
    mounts = {
        name: [m for m in c.get("volumeMounts", []) if m["name"] in volumes]
        for name, c in pod.containers.items()
    }
    assert [len(m) for m in mounts.values()] == [1, 1], mounts
    gateway_mount, producer_mount = mounts["gateway"][0], mounts["producer"][0]
    assert gateway_mount["name"] == producer_mount["name"]
    assert gateway_mount["mountPath"] == producer_mount["mountPath"]
    assert not gateway_mount.get("readOnly"), "the gateway takes the file's lock to probe it"
    volume = volumes[gateway_mount["name"]]
    assert volume["emptyDir"]["medium"] == "Memory"

    gateway_dir = effective(pod.env("gateway"), gateway_settings, "SHMBRIDGE_SHM_DIR")
    producer_dir = effective(pod.env("producer"), producer_settings, "SHMBRIDGE_SHM_DIR")
    assert gateway_dir == producer_dir
    mount = Path(gateway_mount["mountPath"])
    # An emptyDir is mode 0777 and the producer refuses a world-writable directory: the
    # channel lives in a subdirectory the producer creates itself (mode 0700).
    assert Path(producer_dir).parent == mount, (producer_dir, mount)
    assert effective(pod.env("gateway"), gateway_settings, "SHMBRIDGE_CHANNEL") == effective(
        pod.env("producer"), producer_settings, "SHMBRIDGE_CHANNEL"
    )


def _quantity(text: str) -> int:
    match = re.fullmatch(r"([0-9]+)(Ki|Mi|Gi)?", str(text))
    assert match, f"unexpected quantity {text!r}"
    unit = {None: 1, "Ki": 1024, "Mi": MIB, "Gi": 1024 * MIB}[match.group(2)]
    return int(match.group(1)) * unit


def channel_file_size(slots: int, snapshot_slots: int, slot_capacity: int) -> int:
    """src/layout.rs: header page, page-rounded table of 64-byte slot headers, payloads."""
    total = slots + snapshot_slots
    table = -(-total * 64 // PAGE) * PAGE
    return PAGE + table + total * (-(-slot_capacity // PAGE) * PAGE)


def _snapshot_ring() -> int:
    import py_producer.app

    ring = getattr(py_producer.app, "SNAPSHOT_RING", None)
    if isinstance(ring, int):
        return ring
    layout = (REPO_ROOT / "src" / "layout.rs").read_text(encoding="utf-8")
    match = re.search(r"DEFAULT_SNAPSHOT_SLOTS:\s*u32\s*=\s*(\d+)", layout)
    assert match
    return int(match.group(1))


@pytest.mark.skipif(not HAS_NATIVE, reason="native module shmbridge not built")
def test_channel_file_size_formula_is_the_real_one(tmp_path: Path) -> None:
    import shmbridge

    with shmbridge.Channel("size", tmp_path, slot_count=3, slot_capacity=5000) as channel:
        real = os.stat(channel.path).st_size
        assert real == channel_file_size(3, channel.snapshot_slots, 5000)


def test_volume_and_memory_fit_the_default_channel(
    pod: Pod, producer_settings: dict[str, Option]
) -> None:
    env = pod.env("producer")
    slots = int(effective(env, producer_settings, "SHMBRIDGE_SLOT_COUNT"))
    from py_producer.settings import parse_size

    capacity = parse_size(effective(env, producer_settings, "SHMBRIDGE_SLOT_CAPACITY"))
    size = channel_file_size(slots, _snapshot_ring(), capacity)
    assert size > 600 * MIB  # (16 + 4) x 32 MiB with the defaults
    volume = next(v for v in pod.spec["volumes"] if "emptyDir" in v)
    limit = _quantity(volume["emptyDir"]["sizeLimit"])
    # Twice: after a producer restart the gateway may still map the old, unlinked file
    # while the new producer allocates the new one.
    assert limit >= 2 * size + MIB, f"sizeLimit {limit} < 2 x channel {size} + 1 MiB"
    # tmpfs pages count against the producer, which allocates the file; the process
    # itself needs room besides (users, ~30 MB payloads).
    producer_limit = _quantity(pod.containers["producer"]["resources"]["limits"]["memory"])
    assert producer_limit >= size + 512 * MIB, (producer_limit, size)


def test_both_containers_run_as_one_non_root_user(pod: Pod) -> None:
    context = pod.spec["securityContext"]
    assert context["runAsNonRoot"] is True
    uid, gid = context["runAsUser"], context["runAsGroup"]
    assert uid > 0 and gid > 0
    for name, container in pod.containers.items():
        own = container.get("securityContext", {})
        assert own.get("runAsUser", uid) == uid, name
        assert own.get("runAsGroup", gid) == gid, name
    for dockerfile in (GATEWAY_DOCKERFILE, PRODUCER_DOCKERFILE):
        user = last(final_stage(dockerfile), "USER")
        assert user == f"{uid}:{gid}", f"{dockerfile.name}: USER {user}, pod runs as {uid}:{gid}"


def test_service_links_are_off(pod: Pod) -> None:
    # Service links would inject e.g. SHMBRIDGE_GATEWAY_PORT=tcp://... for a Service
    # named shmbridge-gateway, which the gateway would read as its port.
    assert pod.spec["enableServiceLinks"] is False


def test_service_targets_the_gateway_port(pod: Pod, gateway_settings: dict[str, Option]) -> None:
    labels = pod.deployment["spec"]["template"]["metadata"]["labels"]
    assert pod.service["spec"]["selector"].items() <= labels.items()
    (port,) = pod.service["spec"]["ports"]
    assert port["port"] == 80
    target = pod.named_port("gateway", port["targetPort"])
    assert target == int(gateway_settings["SHMBRIDGE_GATEWAY_PORT"].default or 0) == 8080


def _probes(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    kinds = ("startupProbe", "readinessProbe", "livenessProbe")
    return {kind: container[kind] for kind in kinds if kind in container}


def test_gateway_probes_use_the_gateway_port(pod: Pod) -> None:
    probes = _probes(pod.containers["gateway"])
    assert {"readinessProbe", "livenessProbe"} <= probes.keys()
    assert probes["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert probes["livenessProbe"]["httpGet"]["path"] == "/healthz"
    for probe in probes.values():
        assert pod.named_port("gateway", probe["httpGet"]["port"]) == 8080


#: A gateway path as deploy/ and the docs write it.
GATEWAY_PATH = re.compile(
    r"/api/(?:users|profiles)-via-[a-z-]*[a-z]|/api/bridge/\{?\w+\}?|/healthz|/readyz|/metrics"
)


def gateway_paths_named() -> list[str]:
    """The gateway paths that the manifest's probes, deploy/README.md and the docs'
    endpoint pages name (a bridge call's ``{handler}`` made a concrete name)."""
    documents = [d for d in yaml.safe_load_all(MANIFEST.read_text(encoding="utf-8")) if d]
    spec = next(d for d in documents if d["kind"] == "Deployment")["spec"]["template"]["spec"]
    gateway = next(c for c in spec["containers"] if c["name"] == "gateway")
    named = {probe["httpGet"]["path"] for probe in _probes(gateway).values()}
    for page in (DEPLOY_README, *ENDPOINT_PAGES):
        named |= set(GATEWAY_PATH.findall(page.read_text(encoding="utf-8")))
    return sorted({re.sub(r"\{\w+\}$", "users", path) for path in named})


@pytest.fixture(scope="module")
def live_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayHandle]:
    """The built gateway, with no producer behind it: every route answers (most with a
    502 or 503), and only a path it does not route answers 404."""
    binary = gateway_binary()
    if binary is None or not binary.is_file():
        pytest.skip("rust_gateway not built (make gateway, or set SHMBRIDGE_GATEWAY_BIN)")
    tmp_path = tmp_path_factory.mktemp("routes")
    shm_dir = tmp_path / "shm"
    shm_dir.mkdir(mode=0o700)
    nobody = f"http://127.0.0.1:{free_port()}"
    with start_gateway(binary, tmp_path, producer_url=nobody, shm_dir=shm_dir) as gateway:
        yield gateway


def test_the_live_gateway_refuses_an_unrouted_path(live_gateway: GatewayHandle) -> None:
    answer = httpx.get(f"{live_gateway.url}/no-such-route", timeout=30)
    assert (answer.status_code, answer.json()["error"]) == (404, "not_found"), answer.text


def test_the_probes_are_among_the_named_paths() -> None:
    named = gateway_paths_named()
    assert {"/healthz", "/readyz", "/metrics", "/api/users-via-shm"} <= set(named), named


@pytest.mark.parametrize("path", gateway_paths_named())
def test_every_named_gateway_path_is_routed(live_gateway: GatewayHandle, path: str) -> None:
    """The binary itself says the path is a route: a GET is answered by a handler (a 502
    or 503 without a producer), not by the router's 404 or 405."""
    answer = httpx.get(f"{live_gateway.url}{path}", timeout=30)
    assert answer.status_code not in (404, 405), f"GET {path}: {answer.status_code} {answer.text}"


def _exec_probe_url(probe: dict[str, Any]) -> tuple[str, int, str]:
    command = " ".join(probe["exec"]["command"])
    match = re.search(r"http://([0-9.]+):([0-9]+)(/[^'\"\s]*)", command)
    assert match, f"no URL in probe command {command!r}"
    return match.group(1), int(match.group(2)), match.group(3)


def test_producer_probes_ask_healthz_on_its_loopback_port(
    pod: Pod, producer_settings: dict[str, Option]
) -> None:
    producer = pod.containers["producer"]
    probes = _probes(producer)
    assert "livenessProbe" in probes
    # The producer listens on 127.0.0.1 only; a kubelet httpGet probe connects to the
    # pod IP and could never reach it. So its probes run inside the container.
    routes = producer_routes()
    env = pod.env("producer")
    for kind, probe in probes.items():
        assert "httpGet" not in probe, f"{kind}: httpGet cannot reach a loopback-only producer"
        host, port, path = _exec_probe_url(probe)
        assert host == effective(env, producer_settings, "SHMBRIDGE_PRODUCER_HOST")
        assert port == int(effective(env, producer_settings, "SHMBRIDGE_PRODUCER_PORT"))
        assert (path, "GET") in routes, f"{kind}: GET {path} is not a producer route"
        assert probe["exec"]["command"][0] == "python"


# --- the pod, run on this host ------------------------------------------------------------


def _mapped(env: Mapping[str, str], mount: str, host_dir: Path) -> dict[str, str]:
    """The container's variables with paths under the volume moved to ``host_dir``."""
    out = {}
    for key, value in env.items():
        if value == mount or value.startswith(mount.rstrip("/") + "/"):
            value = str(host_dir) + value[len(mount.rstrip("/")) :]
        out[key] = value
    return out


def _start_gateway_with_env(binary: Path, tmp_path: Path, env: Mapping[str, str]) -> GatewayHandle:
    log_path = tmp_path / "gateway.log"
    SERVICE_LOGS.append(log_path)
    with log_path.open("ab") as log_file:
        proc = subprocess.Popen(
            [str(binary)],
            cwd=tmp_path,
            env=clean_env({"RUST_LOG": "", **env}),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=log_file,
        )
    lines: queue.Queue[bytes] = queue.Queue()
    assert proc.stdout is not None
    stdout = proc.stdout
    threading.Thread(target=lambda: lines.put(stdout.readline()), daemon=True).start()
    try:
        first = lines.get(timeout=20).decode("utf-8", "replace")
    except queue.Empty:
        first = ""
    match = LISTENING.search(first)
    if match is None:
        proc.kill()
        proc.wait(timeout=10)
        log = log_path.read_text(encoding="utf-8", errors="replace")
        raise AssertionError(f"gateway did not start ({first!r}):\n{log[-4000:]}")
    return GatewayHandle(proc, match.group(1), log_path)


@pytest.fixture
def emptydir(tmp_path: Path) -> Path:
    """A stand-in for the emptyDir: world-writable, as Kubernetes creates it."""
    volume = tmp_path / "emptydir"
    volume.mkdir()
    volume.chmod(0o777)
    return volume


@pytest.mark.skipif(not HAS_NATIVE, reason="native module shmbridge not built")
@pytest.mark.skipif(gateway_binary() is None, reason="rust_gateway not built")
@pytest.mark.timeout(120)
def test_the_pod_works_on_one_host(pod: Pod, tmp_path: Path, emptydir: Path) -> None:
    mount = pod.containers["producer"]["volumeMounts"][0]["mountPath"]
    producer_env = _mapped(pod.env("producer"), mount, emptydir)
    gateway_env = _mapped(pod.env("gateway"), mount, emptydir)
    channel_dir = Path(producer_env["SHMBRIDGE_SHM_DIR"])
    # Kept small here: 1,000 users and 1 MiB slots instead of the 640 MiB default channel.
    producer_env |= {"SHMBRIDGE_MAX_COUNT": "1000", "SHMBRIDGE_SLOT_CAPACITY": "1MiB"}
    binary = gateway_binary()
    assert binary is not None
    with start_producer(
        tmp_path,
        env=producer_env,
        host=producer_env["SHMBRIDGE_PRODUCER_HOST"],
        shm_dir=channel_dir,
    ) as producer:
        assert producer.health()["status"] == "ok", producer.log_text()
        assert stat.S_IMODE(channel_dir.stat().st_mode) == 0o700
        assert stat.S_IMODE(emptydir.stat().st_mode) == 0o777

        # The manifest's probe commands, with this test's interpreter and port.
        for kind, probe in _probes(pod.containers["producer"]).items():
            command = [sys.executable if a == "python" else a for a in probe["exec"]["command"]]
            command = [a.replace(":5000/", f":{producer.port}/") for a in command]
            done = subprocess.run(command, timeout=30, capture_output=True, check=False)
            assert done.returncode == 0, f"producer {kind} failed: {done.stderr!r}"

        # Only the listening address differs from the manifest: loopback and a free port.
        gateway_env |= {
            "SHMBRIDGE_GATEWAY_HOST": "127.0.0.1",
            "SHMBRIDGE_GATEWAY_PORT": "0",
            "SHMBRIDGE_PRODUCER_URL": producer.url,
        }
        with _start_gateway_with_env(binary, tmp_path, gateway_env) as gateway:
            via_api = httpx.get(f"{gateway.url}/api/users-via-api?count=3", timeout=30)
            via_shm = httpx.get(f"{gateway.url}/api/users-via-shm?count=3", timeout=30)
            assert via_api.status_code == 200, via_api.text
            assert via_shm.status_code == 200, f"{via_shm.text}\n{gateway.log_text()[-3000:]}"
            assert via_shm.content == via_api.content
            assert [u["id"] for u in json.loads(via_shm.content)] == [1, 2, 3]

            liveness = pod.containers["gateway"]["livenessProbe"]["httpGet"]["path"]
            assert httpx.get(f"{gateway.url}{liveness}", timeout=10).status_code == 200
            readiness = pod.containers["gateway"]["readinessProbe"]["httpGet"]["path"]
            deadline = time.monotonic() + 10
            while True:
                ready = httpx.get(f"{gateway.url}{readiness}", timeout=10)
                if ready.status_code == 200 or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            assert ready.status_code == 200, f"{readiness}: {ready.status_code} {ready.text}"


@pytest.mark.skipif(not HAS_NATIVE, reason="native module shmbridge not built")
def test_the_emptydir_itself_is_refused_as_channel_directory(emptydir: Path) -> None:
    done = run_producer(
        "--port",
        str(free_port()),
        "--shm-dir",
        str(emptydir),
        "--max-count",
        "10",
        "--slot-capacity",
        "64KiB",
    )
    assert done.returncode != 0
    assert "world-writable" in done.stdout + done.stderr, done.stdout + done.stderr


# --- the Dockerfiles ----------------------------------------------------------------------


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)


def dockerfile_stages(path: Path) -> list[Stage]:
    lines: list[str] = []
    current = ""
    for raw in path.read_text(encoding="utf-8").splitlines():
        text = raw.strip()
        if not text or text.startswith("#"):
            continue
        if text.endswith("\\"):
            current += text[:-1] + " "
            continue
        lines.append(current + text)
        current = ""
    assert not current, f"{path.name} ends inside a continued line"
    stages: list[Stage] = []
    for line in lines:
        keyword, _, args = line.partition(" ")
        keyword, args = keyword.upper(), args.strip()
        if keyword == "FROM":
            words = args.split()
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append(Stage(words[0], name))
        else:
            assert stages, f"{path.name}: {keyword} before FROM"
            stages[-1].instructions.append((keyword, args))
    return stages


def final_stage(path: Path) -> Stage:
    return dockerfile_stages(path)[-1]


def last(stage: Stage, keyword: str) -> str:
    values = [args for key, args in stage.instructions if key == keyword]
    assert values, f"no {keyword} in the stage FROM {stage.base}"
    return values[-1]


def _copies(stage: Stage) -> list[tuple[dict[str, str], list[str], str]]:
    """(flags, sources, destination) of each COPY."""
    out = []
    for keyword, args in stage.instructions:
        if keyword != "COPY":
            continue
        words = shlex.split(args)
        flags = dict(w[2:].split("=", 1) for w in words if w.startswith("--"))
        rest = [w for w in words if not w.startswith("--")]
        out.append((flags, rest[:-1], rest[-1]))
    return out


def _env(stage: Stage) -> dict[str, str]:
    values: dict[str, str] = {}
    for keyword, args in stage.instructions:
        if keyword == "ENV":
            for word in shlex.split(args):
                key, _, value = word.partition("=")
                values[key] = value
    return values


def _runs(path: Path) -> str:
    return "\n".join(a for s in dockerfile_stages(path) for k, a in s.instructions if k == "RUN")


def _workspace_sources() -> set[str]:
    """What a build of the cargo workspace needs copied, by the root Cargo.toml's members."""
    members = tomllib.loads((REPO_ROOT / "Cargo.toml").read_text(encoding="utf-8"))["workspace"][
        "members"
    ]
    needed = {"Cargo.toml", "Cargo.lock"}
    for member in members:
        needed |= {"src"} if member == "." else {member.rstrip("/")}
    return needed


def _allowed_by_dockerignore(dockerfile: Path) -> set[str]:
    ignore = dockerfile.with_name(dockerfile.name + ".dockerignore")
    lines = [x.strip() for x in ignore.read_text(encoding="utf-8").splitlines()]
    assert "*" in lines, f"{ignore.name} is meant as an allow-list starting with '*'"
    return {x[1:].rstrip("/") for x in lines if x.startswith("!")}


@pytest.mark.parametrize(
    "dockerfile", [GATEWAY_DOCKERFILE, PRODUCER_DOCKERFILE], ids=["gw", "prod"]
)
def test_dockerfile_copies_what_exists_and_the_whole_workspace(dockerfile: Path) -> None:
    head = dockerfile.read_text(encoding="utf-8")[:600]
    assert "NOT BUILT" in head, "the header must say the image was never built here"
    allowed = _allowed_by_dockerignore(dockerfile)
    copied: set[str] = set()
    for stage in dockerfile_stages(dockerfile):
        for flags, sources, _ in _copies(stage):
            if "from" in flags:
                continue
            for source in sources:
                assert (REPO_ROOT / source).exists(), f"{dockerfile.name}: COPY {source}: missing"
                assert source.rstrip("/") in allowed, f"{source} is excluded by the .dockerignore"
                copied.add(source.rstrip("/"))
    missing = _workspace_sources() - copied
    assert not missing, f"{dockerfile.name} does not copy {sorted(missing)} (workspace members)"


def _build_context(dockerfile: Path, into: Path) -> Path:
    """The files `docker build .` would send, by the Dockerfile's allow-list .dockerignore."""
    ignore = dockerfile.with_name(dockerfile.name + ".dockerignore")
    lines = [x.strip() for x in ignore.read_text(encoding="utf-8").splitlines()]
    dropped = shutil.ignore_patterns(*[x[3:] for x in lines if x.startswith("**/")])
    for entry in _allowed_by_dockerignore(dockerfile):
        source, target = REPO_ROOT / entry, into / entry
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target, ignore=dropped)
        else:
            shutil.copy2(source, target)
    return into


@pytest.mark.skipif(shutil.which("cargo") is None, reason="cargo not installed")
@pytest.mark.parametrize(
    "dockerfile", [GATEWAY_DOCKERFILE, PRODUCER_DOCKERFILE], ids=["gw", "prod"]
)
def test_build_context_holds_a_complete_locked_workspace(dockerfile: Path, tmp_path: Path) -> None:
    """Cargo can load the workspace from the build context alone, with Cargo.lock as is
    (what `cargo build --locked` / `maturin build --locked` first need in the image)."""
    context = _build_context(dockerfile, tmp_path / "context")
    assert not list(context.rglob("*.so")), "a local extension module would enter the image"
    done = subprocess.run(
        ["cargo", "metadata", "--locked", "--offline", "--format-version", "1"],
        cwd=context,
        env={**os.environ, "CARGO_TARGET_DIR": str(tmp_path / "target")},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    members = {p["name"] for p in json.loads(done.stdout)["packages"] if p["source"] is None}
    assert members == {"shmbridge", "rust_gateway", "shmbridge_tools", "orders_service"}, members


def test_gateway_dockerfile(gateway_settings: dict[str, Option]) -> None:
    stages = dockerfile_stages(GATEWAY_DOCKERFILE)
    builder, runtime = stages[0], stages[-1]
    assert builder.base.startswith("rust:1") and builder.name
    assert runtime.base == "debian:bookworm-slim"
    assert builder.base.endswith("-bookworm"), "build on the runtime's Debian release (glibc)"
    build = _runs(GATEWAY_DOCKERFILE)
    for word in ("cargo build", "--release", "--locked", "-p rust_gateway"):
        assert word in build, f"the builder does not run {word!r}"
    assert last(runtime, "EXPOSE") == gateway_settings["SHMBRIDGE_GATEWAY_PORT"].default
    (entrypoint, *args) = json.loads(last(runtime, "ENTRYPOINT"))
    assert Path(entrypoint).name == "rust_gateway" and not args
    copied = [(f, s, d) for f, s, d in _copies(runtime) if f.get("from") == builder.name]
    assert [d for _, _, d in copied] == [entrypoint], copied
    assert Path(copied[0][1][0]).name == "rust_gateway"
    unknown = {k for k in _env(runtime) if k.startswith("SHMBRIDGE_")} - gateway_settings.keys()
    assert not unknown, unknown


def _requirement_lines(path: Path) -> list[str]:
    lines = [x.split("#", 1)[0].strip() for x in path.read_text(encoding="utf-8").splitlines()]
    return [x for x in lines if x]


def test_producer_dockerfile(producer_settings: dict[str, Option]) -> None:
    stages = dockerfile_stages(PRODUCER_DOCKERFILE)
    runtime = stages[-1]
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    floor = re.fullmatch(r">=\s*3\.(\d+)(,\s*<\s*3\.\d+)?", project["project"]["requires-python"])
    assert floor
    assert re.fullmatch(rf"python:3\.{floor.group(1)}-slim(-\w+)?", runtime.base), runtime.base
    assert json.loads(last(runtime, "CMD")) == ["python", "-m", "py_producer"]
    assert last(runtime, "EXPOSE") == producer_settings["SHMBRIDGE_PRODUCER_PORT"].default
    destinations = {d.rstrip("/") for _, s, d in _copies(runtime) if s == ["py_producer/"]}
    workdir = last(runtime, "WORKDIR")
    assert destinations == {f"{workdir}/py_producer"}, "python -m py_producer runs from WORKDIR"

    runs = _runs(PRODUCER_DOCKERFILE)
    assert re.search(r"maturin build --release\b", runs)
    dev_pins = _requirement_lines(REPO_ROOT / "requirements-dev.txt")
    maturin = next(x for x in dev_pins if x.startswith("maturin=="))
    assert f"pip install {maturin}" in runs, f"the builder must use {maturin}"
    assert re.search(r"pip install --no-index \S*shmbridge-\*\.whl", runs)
    assert "pip install -r /tmp/requirements-producer.txt" in runs
    sources = [s for _, ss, _ in _copies(runtime) for s in ss]
    assert "deploy/requirements-producer.txt" in sources
    unknown = {k for k in _env(runtime) if k.startswith("SHMBRIDGE_")} - producer_settings.keys()
    assert not unknown, unknown


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _installed_closure(requirements: list[str]) -> set[str]:
    """Distributions the requirements pull in, as installed in this environment."""
    todo = list(requirements)
    seen: set[str] = set()
    while todo:
        requirement = todo.pop()
        match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[([^\]]*)\])?", requirement)
        assert match, requirement
        name, extras = _normalize(match.group(1)), match.group(2) or ""
        wanted = {_normalize(e) for e in extras.split(",") if e.strip()}
        key = f"{name}[{','.join(sorted(wanted))}]"
        if key in seen:
            continue
        seen.add(key)
        try:
            requires = importlib.metadata.requires(name) or []
        except importlib.metadata.PackageNotFoundError:
            continue
        for item in requires:
            extra = re.search(r"extra\s*==\s*['\"]([^'\"]+)['\"]", item)
            if extra is None or _normalize(extra.group(1)) in wanted:
                todo.append(item.split(";", 1)[0])
    return {k.split("[", 1)[0] for k in seen}


def test_runtime_requirements_are_dev_pins_and_cover_the_producer() -> None:
    runtime = _requirement_lines(RUNTIME_REQUIREMENTS)
    dev = _requirement_lines(REPO_ROOT / "requirements-dev.txt")
    assert set(runtime) <= set(dev), f"pinned differently from requirements-dev.txt: {runtime}"
    assert all("==" in line for line in runtime), runtime

    imported: set[str] = set()
    for source in (REPO_ROOT / "py_producer").glob("*.py"):
        tree = ast.parse(source.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                imported |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                imported.add(node.module.split(".")[0])
    third_party = imported - set(sys.stdlib_module_names) - {"py_producer", "shmbridge"}
    provided = _installed_closure(runtime)
    owners = importlib.metadata.packages_distributions()
    for module in sorted(third_party):
        dists = {_normalize(d) for d in owners.get(module, [])}
        assert dists & provided, f"py_producer imports {module}, not in {RUNTIME_REQUIREMENTS.name}"


def test_help_parsers_agree_with_the_code(producer_settings: dict[str, Option]) -> None:
    from py_producer.settings import SPECS, Settings

    defaults = Settings()
    assert {s.env for s in SPECS} == producer_settings.keys()
    for spec in SPECS:
        value = getattr(defaults, spec.field)
        shown = ("on" if value else "off") if isinstance(value, bool) else str(value)
        assert producer_settings[spec.env].default == shown, spec.env
    # Every setting clap lists with a variable is read, and the defaults these tests
    # rely on are among them.
    text = gateway_help()
    gateway_settings = by_variable(parse_gateway_help(text))
    assert gateway_settings.keys() == set(re.findall(r"\[env: (SHMBRIDGE_\w+)=", text))
    for name in ("GATEWAY_HOST", "GATEWAY_PORT", "PRODUCER_URL", "SHM_DIR", "CHANNEL"):
        assert gateway_settings[f"SHMBRIDGE_{name}"].default, name
