"""numpy arrays through a ``shmbridge.Bridge`` and the gateway's ``/api/bridge/{handler}``:
a producer script in its own process returns an array (written raw, one copy) or fills
the slot in place through ``np.frombuffer`` over the ``Out`` reservation; the real
gateway serves the bytes, compared with ``arr.tobytes()``. No transport is mocked."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import httpx
import pytest
from gateway_helpers import NEEDS_SERVICES, GatewayHandle, gateway_binary, start_gateway
from helpers import assert_error, free_port
from native_helpers import private_dir

np = pytest.importorskip("numpy")

pytestmark = [*NEEDS_SERVICES, pytest.mark.timeout(120)]

CHANNEL = "arrays"

PRODUCER = r"""
import sys
import numpy as np
import shmbridge

bridge = shmbridge.Bridge("arrays", sys.argv[1], slot_count=8, slot_capacity=4 << 20)

def matrix(params):
    rows, cols = int(params["rows"]), int(params["cols"])
    return (np.arange(rows * cols) * 0.5).astype(params.get("dtype", "<f8")).reshape(rows, cols)

@bridge.handler("matrix")
def raw_matrix(params):
    return matrix(params)  # any buffer is written raw: no content type given

@bridge.handler("typed")
def typed(params):
    arr = matrix(params)
    return shmbridge.Reply(arr, content_type=f"application/x-ndarray; dtype={arr.dtype.str}")

@bridge.handler("transposed")
def transposed(params):
    return matrix(params).T  # not C-contiguous

@bridge.handler("inplace", writes=True)
def inplace(params, out):
    n = int(params["n"])
    view = out.reserve(n * 8)
    np.frombuffer(view, dtype="<f8")[:] = np.arange(n) * 0.25
    out.content_type = "application/x-f64le"

bridge.serve()
print("ready", flush=True)
sys.stdin.read()  # until the test closes our stdin
bridge.close()
"""


def expected(rows: int, cols: int, dtype: str = "<f8") -> bytes:
    arr = (np.arange(rows * cols) * 0.5).astype(dtype).reshape(rows, cols)
    return bytes(arr.tobytes())


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayHandle]:
    tmp = tmp_path_factory.mktemp("numpy")
    shm_dir = private_dir(tmp)
    proc = subprocess.Popen(
        [sys.executable, "-c", PRODUCER, str(shm_dir)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()  # blocks until the script serves (or died)
    if line.strip() != "ready":
        proc.kill()
        _, err = proc.communicate(timeout=30)
        pytest.fail(f"producer did not start: {line!r} {err[-3000:]}")
    binary = gateway_binary()
    assert binary is not None
    try:
        # No REST producer: the bridge route needs only the channel and its socket.
        with start_gateway(
            binary,
            tmp,
            producer_url=f"http://127.0.0.1:{free_port()}",
            shm_dir=shm_dir,
            extra_args=["--channel", CHANNEL],
        ) as handle:
            yield handle
    finally:
        _, err = proc.communicate(timeout=30)  # closes our end of its stdin first
        assert proc.returncode == 0, err[-3000:]


@pytest.mark.parametrize(("rows", "cols"), [(1, 1), (3, 4), (512, 1000)])
def test_an_array_is_served_as_its_bytes(gateway: GatewayHandle, rows: int, cols: int) -> None:
    response = httpx.get(
        f"{gateway.url}/api/bridge/matrix", params={"rows": rows, "cols": cols}, timeout=30
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/octet-stream"
    assert response.content == expected(rows, cols)
    assert np.array_equal(
        np.frombuffer(response.content, dtype="<f8").reshape(rows, cols),
        np.arange(rows * cols).reshape(rows, cols) * 0.5,
    )


@pytest.mark.parametrize("dtype", ["<f8", "<f4", "<i4", "|u1"])
def test_the_handler_names_the_content_type(gateway: GatewayHandle, dtype: str) -> None:
    response = httpx.get(
        f"{gateway.url}/api/bridge/typed",
        params={"rows": 7, "cols": 9, "dtype": dtype},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == f"application/x-ndarray; dtype={dtype}"
    assert response.content == expected(7, 9, dtype)


def test_a_non_contiguous_array_is_written_in_c_order(gateway: GatewayHandle) -> None:
    response = httpx.get(
        f"{gateway.url}/api/bridge/transposed", params={"rows": 5, "cols": 3}, timeout=30
    )
    assert response.status_code == 200, response.text
    arr = np.arange(15, dtype="<f8").reshape(5, 3) * 0.5
    assert response.content == arr.T.tobytes()


def test_numpy_fills_the_reservation_in_place(gateway: GatewayHandle) -> None:
    for n in (0, 1, 100_000):
        response = httpx.get(f"{gateway.url}/api/bridge/inplace", params={"n": n}, timeout=30)
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == "application/x-f64le"
        assert response.content == (np.arange(n) * 0.25).astype("<f8").tobytes()


def test_a_handler_error_is_a_json_error(gateway: GatewayHandle) -> None:
    response = httpx.get(f"{gateway.url}/api/bridge/matrix", params={"rows": 2}, timeout=30)
    assert_error(response, 404, "not_found", "KeyError", "cols")
