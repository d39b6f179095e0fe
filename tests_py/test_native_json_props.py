"""Property tests: on generated values, ``shmbridge.dumps`` and ``Channel.write_json``
give the bytes ``orjson.dumps`` gives. Derandomized (the same examples every run)
and bounded, so the file takes a few seconds."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import shmbridge
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from native_helpers import make_channel, private_dir
from shmbridge import Channel, Reader

PROPERTY = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

#: Characters that need escapes, or sit at the edges of UTF-8's lengths.
SPECIAL = "".join(chr(c) for c in range(0x20)) + '"\\/\x7f\x80\u07ff\u0800\u2028\u2029\uffff'
texts = st.text() | st.text(
    alphabet=st.sampled_from([*SPECIAL, "a", "é", "日", "😀", "\U0010ffff"])
)

EDGE_INTS = [0, 1, -1, 2**31, -(2**31), 2**32, 2**53 + 1, 2**63 - 1, -(2**63), 2**64 - 1]
ints = st.integers(min_value=-(2**63), max_value=2**64 - 1) | st.sampled_from(EDGE_INTS)

EDGE_FLOATS = [0.0, -0.0, 5e-324, -5e-324, 2.2250738585072014e-308, 1.7976931348623157e308]
EDGE_FLOATS += [1e16, 1e-5, 1e-6, 9999999999999998.0, 0.1, 1 / 3, float("nan"), float("inf")]
floats = (
    st.floats() | st.sampled_from(EDGE_FLOATS) | st.floats(-1e6, 1e6).map(lambda f: round(f, 3))
)

offsets = st.integers(-86_399, 86_399).map(lambda s: dt.timezone(dt.timedelta(seconds=s)))
datetimes = st.datetimes() | st.datetimes(timezones=st.none() | offsets)
# Naive (orjson refuses a time with a tzinfo), and without microseconds 10,000 to
# 99,999, which orjson 3.13 writes with one digit short (`.10000` for 0.01 s; its
# datetimes are right): shmbridge writes `.010000`, as `time.isoformat()` does
# (test_native_json_types.py checks that).
times = st.times().filter(lambda t: not 10_000 <= t.microsecond <= 99_999)

scalars = (
    st.none() | st.booleans() | ints | floats | texts | datetimes | st.dates() | times | st.uuids()
)
values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=8)
        | st.tuples(children, children)
        | st.dictionaries(texts, children, max_size=8)
    ),
    max_leaves=60,
)


@PROPERTY
@given(values)
def test_dumps_is_orjson_dumps(value: Any) -> None:
    assert shmbridge.dumps(value) == orjson.dumps(value)


@settings(PROPERTY, max_examples=80)
@given(st.lists(st.dictionaries(texts, scalars, max_size=6), min_size=1, max_size=40))
def test_rows_of_shared_keys_are_orjsons(rows: list[dict[str, Any]]) -> None:
    # Rows that share key objects (the key cache) and repeat values (the value cache).
    shared = [dict(zip(rows[0].keys(), row.values(), strict=False)) for row in rows] + rows
    assert shmbridge.dumps(shared) == orjson.dumps(shared)


@settings(PROPERTY, max_examples=40)
@given(values)
def test_dumps_past_the_staging_buffer_is_orjson_dumps(value: Any) -> None:
    # Past 64 KiB, dumps writes into the memory of the bytes object it returns,
    # never zeroed first, and grows it a few times, each time at another place
    # in the value: a byte the writers skipped would show there.
    copies = 300_000 // (len(orjson.dumps(value)) + 1) + 1
    repeated = [value] * copies
    assert shmbridge.dumps(repeated) == orjson.dumps(repeated)


# Lists of short lists of floats (coordinate pairs, rows of a table), now and then
# another item among them: one run of floats across rows, ended by any other item.
float_rows = st.lists(st.lists(floats, max_size=18) | scalars, min_size=1, max_size=30)


@settings(PROPERTY, max_examples=150)
@given(float_rows, st.integers(0, 3))
def test_lists_of_float_rows_are_orjsons(rows: list[Any], depth: int) -> None:
    value: Any = rows
    for _ in range(depth):
        value = {"rows": value, "more": [value]}
    assert shmbridge.dumps(value) == orjson.dumps(value)


@settings(PROPERTY, max_examples=150)
@given(st.lists(floats | ints | st.sampled_from([True, None, "s"]), max_size=60))
def test_lists_of_mixed_numbers_are_orjsons(numbers: list[Any]) -> None:
    # Floats and ints in any order (an int ends a float run, and a float that
    # another follows starts one), now and then another scalar.
    assert shmbridge.dumps(numbers) == orjson.dumps(numbers)
    assert shmbridge.dumps([numbers, {"n": numbers}]) == orjson.dumps([numbers, {"n": numbers}])


@pytest.fixture(scope="module")
def channel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Channel]:
    directory = private_dir(tmp_path_factory.mktemp("props"))
    with make_channel(Path(directory), slot_capacity=1 << 20) as ch:
        yield ch


@settings(PROPERTY, max_examples=50)
@given(values)
def test_write_json_is_orjson_dumps(channel: Channel, value: Any) -> None:
    receipt = channel.write_json(0, receipt_id(), value)
    assert Reader(channel.path).read_bytes(0, receipt.request_id) == orjson.dumps(value)


@settings(PROPERTY, max_examples=40)
@given(values | float_rows)
def test_write_json_across_flushes_is_orjson_dumps(channel: Channel, value: Any) -> None:
    # The value again and again in one list, long enough that the 64 KiB staging
    # buffer is flushed a few times, each time at another place in the value.
    copies = 200_000 // (len(orjson.dumps(value)) + 1) + 1
    repeated = [value] * copies
    receipt = channel.write_json(0, receipt_id(), repeated)
    assert Reader(channel.path).read_bytes(0, receipt.request_id) == orjson.dumps(repeated)


_ids = iter(range(1, 1 << 62))


def receipt_id() -> int:
    return next(_ids)
