"""numpy arrays and scalars: ``shmbridge.dumps`` and ``Channel.write_json`` give the
bytes of ``orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY)``, on listed
dtypes and shapes and on generated arrays; what orjson refuses is refused with a
message naming the path, or handed to ``default=``."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
import shmbridge
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from native_helpers import make_channel, private_dir
from shmbridge import Channel, Reader

PROPERTY = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

NUMERIC = [
    "bool",
    "int8",
    "int16",
    "int32",
    "int64",
    "uint8",
    "uint16",
    "uint32",
    "uint64",
    "float16",
    "float32",
    "float64",
]
DATETIME_UNITS = ["Y", "M", "W", "D", "h", "m", "s", "ms", "us", "ns"]


def orjsons(value: Any) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY)


def edge_values(dtype: str) -> np.ndarray[Any, Any]:
    kind = np.dtype(dtype)
    if kind.kind == "b":
        return np.array([True, False, True], dtype=kind)
    if kind.kind in "iu":
        info = np.iinfo(kind)
        return np.array([info.min, info.max, 0, 1, info.max // 3], dtype=kind)
    finfo = np.finfo(kind)
    specials = [0.0, -0.0, 0.1, 1 / 3, float("nan"), float("inf"), -float("inf")]
    return np.array(
        [*specials, finfo.max, finfo.min, finfo.tiny, finfo.smallest_subnormal], dtype=kind
    )


@pytest.mark.parametrize("dtype", NUMERIC)
def test_arrays_and_scalars_of_each_dtype_are_orjsons(dtype: str) -> None:
    values = edge_values(dtype)
    assert shmbridge.dumps(values) == orjsons(values)
    for scalar in values:
        assert shmbridge.dumps(scalar) == orjsons(scalar), repr(scalar)
    assert shmbridge.dumps({"a": [values, values[1:]]}) == orjsons({"a": [values, values[1:]]})


@pytest.mark.parametrize("shape", [(0,), (2, 0), (0, 3), (2, 3), (2, 3, 4), (1, 1, 1, 1), (3, 1)])
def test_shapes_are_nested_lists(shape: tuple[int, ...]) -> None:
    array = np.arange(int(np.prod(shape)), dtype=np.int64).reshape(shape)
    assert shmbridge.dumps(array) == orjsons(array)
    assert shmbridge.dumps(array.astype(np.float32)) == orjsons(array.astype(np.float32))


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_float_lines_of_every_length_past_a_batch_are_orjsons(dtype: str) -> None:
    # Floats go out in batches of 64 after the first, eight at a time, each text
    # copied four texts late, the last few (under eight) made and then copied:
    # lengths around those counts, of [0, 1) floats (text `0.` and digits) and
    # of wide ones.
    rng = np.random.default_rng(7)
    wide = rng.standard_normal(300) * 10.0 ** rng.integers(-30, 30, 300)
    for values in (rng.random(300), wide):
        array = values.astype(dtype)
        for n in [*range(0, 20), *range(60, 76), *range(125, 140), 300]:
            assert shmbridge.dumps(array[:n]) == orjsons(array[:n]), n
        square = array[:289].reshape(17, 17)
        assert shmbridge.dumps(square) == orjsons(square)
        # Read through its strides (orjson refuses an array that is not contiguous).
        assert shmbridge.dumps(square.T) == orjsons(np.ascontiguousarray(square.T))


@pytest.mark.parametrize("unit", DATETIME_UNITS)
def test_datetime64_is_a_naive_datetime_like_orjsons(unit: str) -> None:
    text = ["1970-01-01T00:00:00", "2021-03-04T05:06:07.123456789", "1960-07-08T09:10:11.5"]
    # orjson's range: the year 0 to 9999-12-30T22:00:00 (it refuses later times).
    text += ["0000-01-08", "9999-12-30T21:59:59.999999"]
    values = np.array(text, dtype=f"datetime64[{unit}]")
    if unit == "M":
        # orjson 3.13 fails on months before 1970 (a process abort, not an error).
        early = values[values < np.datetime64("1970-01")]
        expected = [f"{d}-01T00:00:00" for d in early.astype(str)]
        assert shmbridge.dumps(early) == orjson.dumps(expected)
        values = values[values >= np.datetime64("1970-01")]
    assert shmbridge.dumps(values) == orjsons(values)
    assert shmbridge.dumps(values[-1]) == orjsons(values[-1])


@given(
    hnp.arrays(
        dtype=st.sampled_from([np.dtype(d) for d in NUMERIC]),
        shape=hnp.array_shapes(min_dims=1, max_dims=4, min_side=0, max_side=5),
    )
)
@PROPERTY
def test_generated_arrays_are_orjsons(array: np.ndarray[Any, Any]) -> None:
    assert shmbridge.dumps(array) == orjsons(array)
    assert shmbridge.dumps([array, {"k": array}]) == orjsons([array, {"k": array}])


@given(st.integers(-62_167_219_200, 253_402_207_200), st.integers(0, 10**9 - 1))
@PROPERTY
def test_generated_datetime64_are_orjsons(seconds: int, nanos: int) -> None:
    scalars = [np.datetime64(seconds, "s") + np.timedelta64(nanos, "ns")]
    scalars += [np.datetime64(seconds * 1000 + nanos // 10**6, "ms")]
    scalars += [np.datetime64(seconds // 60, "m"), np.datetime64(seconds // 86400, "D")]
    for scalar in scalars:
        assert shmbridge.dumps(scalar) == orjsons(scalar)
        assert shmbridge.dumps(np.array([scalar, scalar])) == orjsons(np.array([scalar, scalar]))


def test_datetime64_past_the_years_0_to_9999_is_refused() -> None:
    for text in ["-0001-12-31", "10000-01-01"]:
        with pytest.raises(shmbridge.NotSerializable, match=r"unrepresentable numpy\.datetime64"):
            shmbridge.dumps(np.datetime64(text, "D"))
    # orjson stops 26 hours short of the end of 9999; shmbridge writes them.
    assert shmbridge.dumps(np.datetime64("9999-12-31T23:59:59", "s")) == b'"9999-12-31T23:59:59"'


def test_arrays_orjson_refuses_are_read_through_their_strides() -> None:
    base = np.arange(24, dtype=np.float64).reshape(4, 6)
    for view in [base[::2], base[:, ::3], base.T, np.asfortranarray(base), base[::-1, ::-2]]:
        with pytest.raises(orjson.JSONEncodeError, match="not C contiguous"):
            orjsons(view)
        assert shmbridge.dumps(view) == orjsons(view.tolist())


def test_a_0d_array_is_its_element() -> None:
    # orjson refuses 0-d arrays ("unsupported datatype"); shmbridge writes the element.
    assert shmbridge.dumps(np.array(2.5, dtype=np.float32)) == b"2.5"
    assert shmbridge.dumps(np.array(7, dtype=np.uint8)) == b"7"
    assert shmbridge.dumps(np.float64(0.1)) == b"0.1"


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (np.array([1 + 2j]), "unsupported datatype in numpy array: <c16"),
        (np.array([object()], dtype=object), "unsupported datatype in numpy array: |O"),
        (np.array(["a"]), "unsupported datatype in numpy array: <U1"),
        (np.zeros(2, dtype=[("a", "i4")]), "unsupported datatype in numpy array"),
        (np.array([1, 2], dtype=">i4"), "not in native byte order: >i4"),
        (np.array(["NaT"], dtype="datetime64[s]"), "unrepresentable numpy.datetime64: NaT"),
        (np.array(["2021-01-01"], dtype="datetime64[ps]"), "unsupported numpy.datetime64 unit"),
        (np.array([1, 2], dtype="timedelta64[s]"), "unsupported datatype in numpy array: <m8"),
        (np.complex64(1), "Type is not JSON serializable: complex64"),
        (np.timedelta64(1, "s"), "Type is not JSON serializable: timedelta64"),
        (np.ma.masked_array([1, 2], mask=[0, 1]), "Type is not JSON serializable: MaskedArray"),
    ],
)
def test_bad_arrays_name_the_path(bad: Any, message: str) -> None:
    value = {"rows": [0, {"data": bad}]}
    with pytest.raises(orjson.JSONEncodeError):
        orjsons(value)
    with pytest.raises(shmbridge.NotSerializable, match="at \\$\\.rows\\[1\\]\\.data") as raised:
        shmbridge.dumps(value)
    assert message in str(raised.value)


def test_a_bad_element_names_its_index() -> None:
    value = {"t": np.array([["2021-01-01", "NaT"]], dtype="datetime64[D]")}
    with pytest.raises(shmbridge.NotSerializable, match=r"NaT \(.*at \$\.t\[0\]\[1\]\)"):
        shmbridge.dumps(value)


def test_default_gets_the_arrays_that_cannot_be_written() -> None:
    def tolist(value: Any) -> Any:
        return value.tolist() if isinstance(value, np.ndarray) else str(value)

    value = [np.array([1 + 2j]), np.array([1, 2], dtype=">i4"), np.complex64(1)]
    option = orjson.OPT_SERIALIZE_NUMPY
    expected = orjson.dumps([[str(1 + 2j)], [1, 2], str(np.complex64(1))], option=option)
    assert shmbridge.dumps(value, default=tolist) == expected


@pytest.fixture
def channel(tmp_path: Path) -> Iterator[Channel]:
    with make_channel(private_dir(tmp_path), slot_capacity=1 << 20) as ch:
        yield ch


def test_write_json_and_publish_write_arrays(channel: Channel) -> None:
    value = {"m": np.arange(12, dtype=np.float32).reshape(3, 4) / 7, "n": np.int16(-3)}
    channel.write_json(0, 5, value)
    channel.publish(value)
    reader = Reader(channel.path)
    assert reader.read_bytes(0, 5) == orjsons(value)
    assert reader.read_snapshot()[1] == orjsons(value)


def test_numpy_is_not_imported_by_the_serializer() -> None:
    code = (
        "import sys, shmbridge\n"
        "assert shmbridge.dumps([1, 2.5]) == b'[1,2.5]'\n"
        "try:\n shmbridge.dumps(object())\nexcept shmbridge.NotSerializable:\n pass\n"
        "assert 'numpy' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
