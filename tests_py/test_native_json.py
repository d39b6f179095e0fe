"""The direct JSON serializer (``Channel.write_json``, ``publish``, ``dumps``).

Its bytes must be those of ``orjson.dumps`` (the gateway serves REST and shared-
memory bodies byte for byte alike) and parse to ``json.loads(json.dumps(obj))``.
"""

from __future__ import annotations

import collections
import datetime
import enum
import json
import math
import os
import platform
import random
import struct
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import shmbridge
from native_helpers import make_channel, private_dir
from shmbridge import Channel, Reader

from py_producer.users import build_users

CONTROL_CHARS = "".join(chr(c) for c in range(0x20))


@pytest.fixture
def channel(tmp_path: Path) -> Iterator[Channel]:
    with make_channel(private_dir(tmp_path), slot_capacity=4 << 20) as ch:
        yield ch


@pytest.fixture
def reader(channel: Channel) -> Reader:
    return Reader(channel.path)


def written(channel: Channel, reader: Reader, value: Any, slot: int = 0) -> bytes:
    receipt = channel.write_json(slot, 1, value)
    data = reader.read_bytes(slot, 1)
    assert receipt.length == len(data)
    return data


REALISTIC: list[Any] = [
    build_users(50),
    {"nested": {"deeper": [{"x": [1, [2, [3, {"y": None}]]]}]}, "empty": {}, "list": []},
    ["ascii", "é", "日本語", "emoji 😀🎉", "mixed \u2028 line \u2029 separators", "\x7f del"],
    {"quotes": 'say "hi"', "backslash": "C:\\path\\to", "slash": "a/b", "tab": "a\tb"},
    {"controls": CONTROL_CHARS, "around": f"x{CONTROL_CHARS}y{CONTROL_CHARS}"},
    [True, False, None, 0, -1, 2**63 - 1, -(2**63), 2**64 - 1, 1.5, -0.0, 0.1, 1e300, 5e-324],
    {"long": "x" * 100_000, "long_escapes": ('ab"c\\d\n' * 5000)},
    [[[[[]]]], {"a": {"b": {"c": {}}}}],
    ("tuples", ("become", "lists")),
    "",
    0,
    None,
    {"": ""},
]


@pytest.mark.parametrize("value", REALISTIC, ids=range(len(REALISTIC)))
def test_bytes_are_orjsons(channel: Channel, reader: Reader, value: Any) -> None:
    assert written(channel, reader, value) == orjson.dumps(value)
    assert shmbridge.dumps(value) == orjson.dumps(value)


def test_every_control_char_is_escaped_like_orjson(channel: Channel, reader: Reader) -> None:
    for code in range(0x20):
        for text in (chr(code), f"ab{chr(code)}cd", f"{chr(code)}" * 9, f"0123456789{chr(code)}"):
            assert shmbridge.dumps(text) == orjson.dumps(text), hex(code)
    assert written(channel, reader, CONTROL_CHARS) == orjson.dumps(CONTROL_CHARS)
    assert shmbridge.dumps("\n\r\t\b\f") == b'"\\n\\r\\t\\b\\f"'
    assert shmbridge.dumps("\x01\x1f") == b'"\\u0001\\u001f"'


def test_escapes_at_every_position_and_length() -> None:
    # Lengths across every fast path of the escape (and its 8, 16, 32, 48, 64-byte boundaries).
    for special in ['"', "\\", "\n", "\x00", "\x1f"]:
        for length in range(0, 80):
            for at in range(length):
                text = "a" * at + special + "é" * (length - at - 1)
                assert shmbridge.dumps(text) == orjson.dumps(text), (special, length, at)
                text = "a" * at + special + "b" * (length - at - 1)
                assert shmbridge.dumps(text) == orjson.dumps(text), (special, length, at)
                assert shmbridge.dumps({text: text}) == orjson.dumps({text: text}), (
                    special,
                    length,
                    at,
                )


def test_clean_and_non_ascii_strings_at_every_length() -> None:
    for length in range(0, 80):
        text = (
            "".join(chr(0x21 + (i * 7) % 90) for i in range(length))
            .replace('"', "#")
            .replace("\\", "/")
        )
        assert shmbridge.dumps(text) == orjson.dumps(text), length
        for at in range(length + 1):
            for char in ["é", "€", "😀", "\x7f"]:
                mixed = text[:at] + char + text[at:]
                assert shmbridge.dumps(mixed) == orjson.dumps(mixed), (length, at, char)


def fresh_str(i: int, at: int, special: str, after: int) -> str:
    """A str made at run time (one reference once stored), `at` ASCII letters, then
    `special`, then `after` more letters."""
    return "".join(["ab"[i % 2] * at, special, "c" * after])


def test_short_strs_held_only_by_their_container_at_every_length() -> None:
    # A str of under 8 ASCII bytes that its container alone holds is read from the
    # object with one load that ends at CPython's NUL after the text: every length,
    # each special byte at each place, as list items (first and later), dict values
    # and dict keys.
    for special in ['"', "\\", "\n", "\x00", "\x1f", "\x7f", "é", "a", ""]:
        for length in range(1, 10):
            for at in range(length):
                after = length - at - 1
                items = [fresh_str(i, at, special, after) for i in range(4)]
                rows = [
                    {fresh_str(i, at, special, after): fresh_str(i + 1, at, special, after)}
                    for i in range(3)
                ]
                nested = [[fresh_str(i, at, special, after)] for i in range(2)]
                value = [items, rows, nested]
                assert shmbridge.dumps(value) == orjson.dumps(value), (special, length, at)


def test_random_strings_are_escaped_like_orjson() -> None:
    rng = random.Random(99)
    alphabet = [*"abcXYZ019 /'", '"', "\\", "\x7f", "é", "日", "😀", "\u2028"]
    alphabet += [chr(c) for c in range(0x20)]
    for _ in range(5000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 100)))
        assert shmbridge.dumps(text) == orjson.dumps(text), repr(text)
        assert shmbridge.dumps({text: text}) == orjson.dumps({text: text}), repr(text)


def test_keys_are_escaped_and_cached_correctly() -> None:
    keys = ["plain", 'q"uote', "back\\slash", "ctl\x01", "é", "x" * 200, ""]
    rows = [{k: i for k in keys} for i in range(100)]
    assert shmbridge.dumps(rows) == orjson.dumps(rows)


def test_strs_held_elsewhere_past_the_point_where_lookups_stop() -> None:
    # Strs held twice but written once each miss the value cache, and after a few
    # hundred misses a call stops looking strs up: what follows (clean, escaped, long,
    # non-ASCII, repeated, and in dicts) is written without it, as before the stop.
    texts = [f"t{i}" for i in range(1000)]
    texts += [f'q"{i}\\' for i in range(300)] + ["é" * (i % 40) for i in range(300)]
    texts += [f"{'x' * 40}{i}" for i in range(300)]
    repeated = ["category", 'with "quotes"', "ü" * 5]
    value = {
        "first": texts,
        "again": list(texts),
        "repeated": [repeated[i % 3] for i in range(900)],
        "rows": [{"name": text, "kind": repeated[i % 3]} for i, text in enumerate(texts)],
    }
    assert shmbridge.dumps(value) == orjson.dumps(value)
    # Hits first (the same few strs), then misses: the lookups go on while hits lead.
    value2 = [repeated[i % 3] for i in range(2000)] + list(texts) + [repeated[0]] * 10
    assert shmbridge.dumps(value2) == orjson.dumps(value2)


def test_repeated_string_values_are_cached_correctly() -> None:
    # The same str objects in many rows (found by address after their second sighting),
    # around the cache's length limit, with escapes and non-ASCII.
    shared = [
        "Zoë",
        'q"uote',
        "x" * 36,
        "x" * 37,
        "y" * 38,
        "z" * 39,
        "é" * 19,
        "ctl\x01",
        "",
        "a\\b",
        "\n" * 7,
    ]
    rows = [
        {
            "a": shared[i % len(shared)],
            "b": [shared[(i * 3) % len(shared)], shared[(i * 5) % len(shared)]],
        }
        for i in range(2000)
    ]
    assert shmbridge.dumps(rows) == orjson.dumps(rows)
    # New objects each call, at addresses freed by the previous one.
    for i in range(300):
        text = f"value-{i}-" + "é" * (i % 5)
        assert shmbridge.dumps([text, text, {"k": text}, text]) == orjson.dumps(
            [text, text, {"k": text}, text]
        )


def test_uncached_keys_and_cached_values_across_staging_flushes() -> None:
    # Far more distinct keys than the key cache takes (each written the slow way),
    # each followed by a value copied from the value cache, for several 64 KiB flushes;
    # lists of cached values likewise.
    shared = ["x" * n for n in range(39)]
    value = {f"k{i}": shared[i % len(shared)] for i in range(30_000)}
    assert shmbridge.dumps(value) == orjson.dumps(value)
    # Keys too long once escaped to be cached, and int keys, at every offset from a flush.
    escaped_keys = {"\x01" * (i % 9 + 1) + str(i): shared[i % len(shared)] for i in range(30_000)}
    assert (
        shmbridge.dumps(escaped_keys)
        == json.dumps(escaped_keys, separators=(",", ":"), ensure_ascii=False).encode()
    )
    items = [shared[i % len(shared)] for i in range(50_000)]
    assert shmbridge.dumps(items) == orjson.dumps(items)
    assert shmbridge.dumps([items, value]) == orjson.dumps([items, value])


def test_many_distinct_keys() -> None:
    value = {f"key{i}": i for i in range(5000)}
    assert shmbridge.dumps(value) == orjson.dumps(value)


def test_output_larger_than_the_staging_buffer(channel: Channel, reader: Reader) -> None:
    users = build_users(3000)  # about 900 KB, many 64 KiB chunks
    assert written(channel, reader, users) == orjson.dumps(users)


def sized(size: int) -> dict[str, Any]:
    """A value whose JSON is about ``size`` bytes: escapes, non-ASCII, ints."""
    return {"s": [f'é"{i}\n' for i in range(size // 16)], "n": list(range(size // 16))}


def test_dumps_outputs_growing_and_shrinking_from_call_to_call() -> None:
    # Past the 64 KiB staging buffer, dumps writes into the bytes object it
    # returns, made a little larger than the last such output and shrunk when more
    # than half is unused: each size here is smaller or larger than the one before.
    for size in [10, 70_000, 1_000_000, 200_000, 5_000_000, 100, 3_000_000, 65_536]:
        value = sized(size)
        out = shmbridge.dumps(value)
        assert out == orjson.dumps(value)
        assert type(out) is bytes and hash(out) == hash(bytes(bytearray(out)))


def test_dumps_refusing_a_value_after_its_output_grew() -> None:
    big = ["x" * 100] * 20_000  # about 2 MB before the value refused
    with pytest.raises(shmbridge.NotSerializable, match=r"object \(at \$\[20000\]\)"):
        shmbridge.dumps([*big, object()])
    assert shmbridge.dumps(big) == orjson.dumps(big)


def test_dumps_inside_default_while_the_outer_output_is_large() -> None:
    # The hook's own dumps (a second serializer on the thread, with a buffer of
    # its own) makes a large output while the outer one is writing into its bytes.
    inner = sized(300_000)

    def default(obj: object) -> Any:
        return orjson.loads(shmbridge.dumps(inner))

    value = [sized(500_000), object(), sized(100_000), object()]
    assert shmbridge.dumps(value, default=default) == orjson.dumps(value, default=default)


# Run alone, with nothing else in the process allocating: dumps of a text of 1 to
# 1.4 MB, called again and again, and the kernel's minor page faults per call. A call
# whose output took fresh memory each time (glibc maps a request above its threshold,
# which only rises to the size of the mapped blocks freed, and unmaps it at its free)
# faults in every page of it: about 340 here. Reused memory faults in none. The sizes:
# one size throughout, then two that alternate (each call asks for more than the one
# before it freed, unless the larger block is kept).
_FAULTS_SCRIPT = """
import resource, sys, shmbridge
counts = [int(n) for n in sys.argv[1:]]
values = [[f"ascii string number {i}" for i in range(n)] for n in counts]
for i in range(6):
    shmbridge.dumps(values[i % len(values)])
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for i in range(20):
    out = shmbridge.dumps(values[i % len(values)])
    del out
faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
print(faults / 20, min(len(shmbridge.dumps(value)) for value in values))
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's malloc")
@pytest.mark.parametrize("counts", [[50_000], [36_000, 50_000]], ids=["one-size", "two-sizes"])
def test_repeated_large_dumps_reuse_memory_instead_of_faulting_in_fresh_pages(
    counts: list[int],
) -> None:
    script = [sys.executable, "-c", _FAULTS_SCRIPT, *map(str, counts)]
    result = subprocess.run(script, capture_output=True, text=True, check=True, timeout=120)
    faults, size = result.stdout.split()
    pages = int(size) // 4096
    assert pages > 200
    message = f"{faults} page faults per call for outputs of {size} bytes or more"
    assert float(faults) < pages / 8, message


# Run with glibc's malloc filling every block it hands out with 0x5a and serving
# blocks of up to 32 MiB from its heap: the bytes object a large output is written
# into is never zeroed, so a byte the serializer skipped would show as "Z" (or as a
# leftover of an earlier call) instead of happening to match.
_PERTURBED_SCRIPT = """
import orjson, shmbridge
values = [
    {"s": [f'é"{i}\\n日本' for i in range(20_000)], "n": list(range(-20_000, 20_000, 3))},
    [i * 0.37 - 1e3 for i in range(60_000)],
    [{"id": i, "name": f"user {i}", "tags": ["a", "bc"], "ok": i % 2 == 0, "x": None}
     for i in range(20_000)],
    ["x" * 5_000 + str(i) for i in range(100)],
    [[i, -i, 2**63 - i, 2**64 - 1 - i] for i in range(20_000)],
]
try:
    import numpy as np
except ImportError:
    pass
else:
    values.append(np.random.default_rng(1).uniform(-1e3, 1e3, 200_000))
    values.append(np.random.default_rng(2).random((300, 700), dtype=np.float32))
for value in values:
    expected = orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY)
    for _ in range(3):
        assert shmbridge.dumps(value) == expected, type(value)
print("ok", len(values))
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's malloc")
def test_large_outputs_into_memory_filled_with_garbage_are_orjsons() -> None:
    env = {**os.environ, "MALLOC_PERTURB_": "165", "MALLOC_MMAP_THRESHOLD_": str(32 << 20)}
    script = [sys.executable, "-c", _PERTURBED_SCRIPT]
    result = subprocess.run(script, capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.startswith("ok "), result.stdout


def test_random_floats_are_written_like_orjson() -> None:
    rng = random.Random(1234)
    values: list[float] = []
    while len(values) < 20_000:
        (value,) = struct.unpack("<d", rng.getrandbits(64).to_bytes(8, "little"))
        if math.isfinite(value):
            values.append(value)
    values += [rng.uniform(-1e6, 1e6) for _ in range(5000)]
    values += [float(rng.randint(-(10**17), 10**17)) for _ in range(2000)]
    values += [10.0**e for e in range(-320, 309)] + [-(10.0**e) for e in range(-20, 20)]
    for value in values:
        assert shmbridge.dumps(value) == orjson.dumps(value), repr(value)
        assert json.loads(shmbridge.dumps(value)) == value


def test_runs_of_floats_in_a_list_of_any_length_and_end() -> None:
    # A list's floats are written a run at a time, each text copied one float late:
    # runs of odd and even lengths, with and without NaN, ended by every other kind of
    # item or by the list's end.
    floats = [0.5, -1.25, 1e300, float("nan"), 5e-324, -0.0, 123456.789, float("inf")]
    enders: list[Any] = [1, "s", None, True, [2.5], {"k": 0.25}, (1.5,), 2**64 - 1]
    for length in range(9):
        run = floats[:length]
        for ender in enders:
            for value in ([*run, ender], [ender, *run], [*run, ender, *run], run):
                assert shmbridge.dumps(value) == orjson.dumps(value), repr(value)


def test_list_led_by_a_float_then_other_items_at_any_depth() -> None:
    # A list whose first item is a float is written by a loop of its own, which hands
    # the item that ends its float run (and all after it) to the general list walk.
    value: list[Any] = [
        1.5,
        2.5,
        "s",
        3.5,
        [0.25, None, 4.5, {"k": [0.5, 1, 2.0]}],
        True,
        float("nan"),
        [-0.0],
        [1e300, [2e-300, [3.0, "x"]]],
        7,
        {"d": [8.5, False, 9.5, 10.5]},
        (11.5, 12),
        2**63,
        12.5,
    ]
    assert shmbridge.dumps(value) == orjson.dumps(value)
    assert shmbridge.dumps([value, [value], {"v": value}]) == orjson.dumps(
        [value, [value], {"v": value}]
    )


def test_long_run_of_floats_through_a_channel(channel: Channel, reader: Reader) -> None:
    # Many staging-buffer flushes in the middle of one run of floats.
    rng = random.Random(99)
    values: list[Any] = [
        rng.uniform(-1e9, 1e9) * 10.0 ** rng.randint(-300, 290) for _ in range(60_000)
    ]
    values += ["end", *values[:1001]]
    assert written(channel, reader, values) == orjson.dumps(values)
    # The same with ints among the floats, from the second item on.
    mixed: list[Any] = [0] + [v if i % 3 else int(i) for i, v in enumerate(values)]
    assert written(channel, reader, mixed) == orjson.dumps(mixed)


class IntSub(int):
    """An int subclass: written as an int, but not by the fast paths for exact ints."""


def test_runs_of_floats_with_ints_among_them_are_orjsons() -> None:
    # In a list of scalars, a float that another float follows starts the list's
    # float runs: a run ends at any other item (an int of any size, a bool, an int
    # subclass, a str...), which is written between runs, and the next float that
    # another follows starts the next run. Runs from every place, with every ender.
    floats = [0.5, -1.25, 1e300, float("nan"), 5e-324, -0.0, 123456.789, float("inf")]
    ints = [0, 7, -1, 999, 1000, 123456789, 2**63 - 1, -(2**63), 2**64 - 1]
    enders: list[Any] = [True, None, "s", IntSub(3), [1.5], {"k": 2}, (1,), 2**64, -(2**63) - 1]
    mixed = [x for pair in zip(floats, ints, strict=False) for x in pair] + ints[len(floats) :]
    for lead in ([], [1], ["s"], [1, 2, 3], [None, 4]):
        for length in range(len(mixed) + 1):
            run = mixed[:length]
            for ender in enders:
                for value in ([*lead, *run, ender, *run], [*lead, *run], [*lead, *run, ender]):
                    # orjson refuses an int past 64 bits, which shmbridge writes (as
                    # json does): its digits go in the place of a placeholder.
                    big = type(ender) is int and not -(2**63) <= ender < 2**64
                    stand_in = ["BIG" if big and x is ender else x for x in value]
                    expected = orjson.dumps(stand_in).replace(b'"BIG"', str(ender).encode())
                    assert shmbridge.dumps(value) == expected, repr(value)


class Half(float):
    """A float subclass: written as a float (orjson wants a `default` for it), but not
    by the fast paths for exact floats."""


def test_lists_of_short_float_lists_in_any_mix_are_orjsons() -> None:
    # A list whose first item is a short list of floats (a row: 1 to 16 exact floats)
    # writes that row and the rows after it as one run of floats; any other item ends
    # the run and the general walk goes on from it. Rows of every length up to and past
    # the limit, floats of every kind, and every item that can end the run.
    floats = [0.5, -1.25, 1e300, float("nan"), 5e-324, -0.0, 123456.789, float("inf"), 2.5e-7]
    rows = [floats[i % 9 :] + floats[: i % 9] for i in range(9)]
    rows = [(row * 2)[:length] for length in range(1, 19) for row in rows[:2]]
    enders: list[Any] = [
        [], [1.5, 2], [1, 2.5], [Half(1.5)], [1.5, Half(2.5)], 3.5, 4, "s", None, {"k": [0.5]},
        (1.5, 2.5), [[1.5]], floats * 2,
    ]  # fmt: skip
    for count in (1, 2, 3, 4, 5, 9):
        run = rows[:count]
        for ender in enders:
            for value in ([*run, ender], [*run, ender, *run], [ender, *run], run):
                assert shmbridge.dumps(value) == orjson.dumps(value, default=float), repr(value)
                wrapped = {"coords": value, "next": [value, value]}
                assert shmbridge.dumps(wrapped) == orjson.dumps(wrapped, default=float)


def test_rows_of_floats_at_the_nesting_limit() -> None:
    # Rows one level below the outer list: as deep as orjson goes, and one level more.
    def nest(value: Any, levels: int) -> Any:
        for _ in range(levels):
            value = [value]
        return value

    rows = [[1.5, 2.5], [3.5, 4.5]]
    for levels in range(shmbridge.MAX_DEPTH - 4, shmbridge.MAX_DEPTH + 2):
        value = nest(rows, levels)
        try:
            expected = orjson.dumps(value)
        except orjson.JSONEncodeError:
            with pytest.raises(shmbridge.NotSerializable, match="nesting"):
                shmbridge.dumps(value)
        else:
            assert shmbridge.dumps(value) == expected


def test_many_float_pairs_through_a_channel(channel: Channel, reader: Reader) -> None:
    # Coordinate pairs far past the staging buffer: it is flushed into the slot many
    # times in the middle of one run of rows.
    rng = random.Random(7)
    pairs: list[Any] = [[rng.uniform(-180, 180), rng.uniform(-90, 90)] for _ in range(40_000)]
    pairs += [[float(i), i * 0.5, -i * 0.25] for i in range(3000)]
    pairs += ["gap", *pairs[:2000], [0.5] * 17, *pairs[:2000]]
    value = {"type": "LineString", "coordinates": pairs, "bbox": [pairs, "end"]}
    assert written(channel, reader, value) == orjson.dumps(value)


def test_float_pairs_too_large_for_the_slot_publish_nothing(tmp_path: Path) -> None:
    with make_channel(private_dir(tmp_path), slot_capacity=1 << 16) as ch:
        reader = Reader(ch.path)
        pairs = [[i * 0.5, i * 0.25] for i in range(20_000)]
        with pytest.raises(shmbridge.PayloadTooLarge, match="nothing was published"):
            ch.write_json(0, 1, pairs)
        with pytest.raises(shmbridge.SlotEmpty):
            reader.read_bytes(0)
        ch.write_json(0, 2, pairs[:100])
        assert reader.read_bytes(0, 2) == orjson.dumps(pairs[:100])


@pytest.mark.parametrize("value", [0.1, 1e300, -0.0, 5e-324, 1e16, 1e-7, 123456.789, 2.0**70])
def test_floats_parse_back_to_the_same_float(value: float) -> None:
    text = shmbridge.dumps(value)
    parsed = json.loads(text)
    assert parsed == value
    assert math.copysign(1.0, parsed) == math.copysign(1.0, value)
    assert struct.pack("<d", parsed) == struct.pack("<d", value)


SEMANTIC: list[Any] = [
    {"big": 2**64, "bigger": -(2**200), "huge": 10**300},
    [2**64 - 1, 2**64, -(2**63) - 1],
    {"nested": [{"a": (1, 2, (3,))}], "s": 'é\n"\\'},
    collections.OrderedDict([("b", 1), ("a", 2)]),
]


@pytest.mark.parametrize("value", SEMANTIC, ids=range(len(SEMANTIC)))
def test_parses_like_json_dumps(channel: Channel, reader: Reader, value: Any) -> None:
    assert json.loads(written(channel, reader, value)) == json.loads(json.dumps(value))


class Color(enum.IntEnum):
    RED = 1


class Mood(enum.StrEnum):
    HAPPY = "happy"


class MyDict(dict[str, Any]):
    pass


class MyList(list[Any]):
    pass


class MyStr(str):
    pass


class MyFloat(float):
    pass


def test_subclasses_of_supported_types(channel: Channel, reader: Reader) -> None:
    value = {
        "int_enum": Color.RED,
        "str_enum": Mood.HAPPY,
        "dict": MyDict(a=1),
        "list": MyList([1, 2]),
        "str": MyStr("s"),
        "float": MyFloat(2.5),
        "str_enum_key": {Mood.HAPPY: "x"},
    }
    assert json.loads(written(channel, reader, value)) == json.loads(json.dumps(value))


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (
            [0, 1, 2, {"tags": {"a", "b"}}],
            r"Type is not JSON serializable: set \(at \$\[3\]\.tags\)",
        ),
        ({"blob": b"bytes"}, r"Type is not JSON serializable: bytes \(at \$\.blob\)"),
        ({"obj": object()}, r"Type is not JSON serializable: object \(at \$\.obj\)"),
        ({"a b": [complex(1, 2)]}, r'complex \(at \$\["a b"\]\[0\]\)'),
        ({(1, 2): "tuple key"}, r"dict key must be str, not tuple: <tuple> \(at \$\)"),
        ({"a": [{7: "int key"}]}, r"dict key must be str, not int: 7 \(at \$\.a\[0\]\)"),
        ({"a": {None: 1}}, r"dict key must be str, not NoneType: None \(at \$\.a\)"),
        ([{2.5: 1}], r"dict key must be str, not float: 2.5 \(at \$\[0\]\)"),
        ([{True: 1}], r"dict key must be str, not bool: True \(at \$\[0\]\)"),
        ({"s": "lone \ud800 surrogate"}, r"str cannot be encoded as UTF-8.*\(at \$\.s\)"),
    ],
)
def test_unserializable_values_are_refused_and_nothing_is_published(
    channel: Channel, reader: Reader, value: Any, message: str
) -> None:
    channel.write_json(1, 5, {"previous": "content"})
    with pytest.raises(shmbridge.NotSerializable, match=message) as caught:
        channel.write_json(1, 6, value)
    assert isinstance(caught.value, TypeError)
    assert isinstance(caught.value, shmbridge.ShmError)
    # The failed write started on the slot, so the previous content is gone too:
    # the slot reads as empty (abandoned), never as half a payload.
    with pytest.raises(shmbridge.SlotEmpty):
        reader.read_bytes(1)
    # The slot is free again.
    channel.write_json(1, 7, [1])
    assert reader.read_json(1, 7) == [1]


def test_custom_class_is_refused_by_name(channel: Channel) -> None:
    class Point:
        pass

    with pytest.raises(shmbridge.NotSerializable, match=r"Point \(at \$\[1\]\)"):
        channel.write_json(0, 1, [1, Point()])


def test_failed_publish_keeps_the_previous_snapshot(channel: Channel, reader: Reader) -> None:
    channel.publish({"v": 1})
    with pytest.raises(shmbridge.NotSerializable):
        channel.publish({"v": {1, 2}})
    assert reader.read_snapshot_json() == (1, {"v": 1})
    channel.publish({"v": 3})
    generation, value = reader.read_snapshot_json()
    assert value == {"v": 3}
    assert generation > 1


def test_deep_nesting_is_refused_cleanly() -> None:
    ok: Any = []
    for _ in range(shmbridge.MAX_DEPTH - 1):
        ok = [ok]
    assert shmbridge.dumps(ok) == orjson.dumps(ok)  # orjson's limit too
    with pytest.raises(shmbridge.NotSerializable, match="nesting deeper than 254 levels"):
        shmbridge.dumps([ok])
    too_deep: Any = {}
    for _ in range(10_000):
        too_deep = {"a": too_deep}
    with pytest.raises(shmbridge.NotSerializable, match="nesting deeper than 254 levels") as caught:
        shmbridge.dumps(too_deep)
    assert "more levels" in str(caught.value)


def test_cycles_are_refused_cleanly(channel: Channel) -> None:
    cyclic: list[Any] = [1]
    cyclic.append(cyclic)
    with pytest.raises(shmbridge.NotSerializable, match="contains itself"):
        channel.write_json(0, 1, cyclic)
    looped: dict[str, Any] = {}
    looped["self"] = looped
    with pytest.raises(shmbridge.NotSerializable, match="nesting"):
        channel.write_json(0, 1, looped)


def test_payload_over_capacity_is_refused_naming_limit_and_setting(tmp_path: Path) -> None:
    with make_channel(private_dir(tmp_path), slot_capacity=8192) as ch:
        reader = Reader(ch.path)
        ch.write_json(0, 1, "small")
        with pytest.raises(shmbridge.PayloadTooLarge) as caught:
            ch.write_json(0, 2, build_users(200))
        message = str(caught.value)
        assert "the slot capacity is 8192 bytes" in message
        # The library names no setting of the app; the producer adds its own hint.
        assert "--slot-capacity" not in message and "SHMBRIDGE" not in message
        assert "nothing was published" in message
        with pytest.raises(shmbridge.SlotEmpty):
            reader.read_bytes(0)
        with pytest.raises(shmbridge.PayloadTooLarge, match="payload of 9000 bytes"):
            ch.write_bytes(1, 1, b"x" * 9000)
        with pytest.raises(shmbridge.PayloadTooLarge, match="the slot capacity is 8192"):
            ch.publish("y" * 10_000)
        with pytest.raises(shmbridge.PayloadTooLarge, match="payload of 8193 bytes"):
            ch.reserve(2, 1, 8193)
        # Exactly the capacity fits.
        ch.write_bytes(1, 2, b"z" * 8192)
        assert reader.read_bytes(1, 2) == b"z" * 8192


def test_concurrent_write_json_from_threads(channel: Channel, reader: Reader) -> None:
    rounds = 200
    errors: list[BaseException] = []
    barrier = threading.Barrier(channel.slot_count)

    def work(slot: int) -> None:
        try:
            barrier.wait()
            for i in range(rounds):
                value = {"slot": slot, "round": i, "users": build_users(1 + (i % 5))}
                receipt = channel.write_json(slot, i + 1, value)
                assert receipt.slot == slot
                assert reader.read_bytes(slot, i + 1) == orjson.dumps(value)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(slot,)) for slot in range(channel.slot_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    for slot in range(channel.slot_count):
        assert reader.read_json(slot, rounds)["round"] == rounds - 1


def test_dict_changed_by_nothing_while_serializing_keeps_gc_state() -> None:
    import gc

    assert gc.isenabled()
    shmbridge.dumps({"a": [1, 2, 3]})
    assert gc.isenabled()
    gc.disable()
    try:
        shmbridge.dumps({"a": 1})
        assert not gc.isenabled()
    finally:
        gc.enable()


class Slots:
    """An instance whose ``__dict__`` is a split-table dict (keys shared by the class)."""

    def __init__(self, n: int) -> None:
        self.a = n
        self.b = str(n)


def test_objects_read_directly_are_written_like_orjson() -> None:
    """The values the serializer reads straight from CPython's objects (dict entry
    tables, int digits, str data and UTF-8 caches, list items) in their edge cases."""
    ints = [
        sign * magnitude
        for base in (0, 1, 2**30, 2**60, 2**63)
        for magnitude in (base - 1, base, base + 1)
        if magnitude >= 0
        for sign in (1, -1)
    ]
    ints = [i for i in ints if -(2**63) <= i < 2**64]
    with_holes = {f"k{i}": i for i in range(20)}
    for i in range(0, 20, 3):
        del with_holes[f"k{i}"]
    emptied: dict[str, int] = {"a": 1}
    del emptied["a"]
    big = {f"key {i}": i for i in range(70_000)}  # 4-byte index table
    for i in range(0, 70_000, 7):
        del big[f"key {i}"]
    non_ascii = "é" * 10
    no_utf8_cache = "".join(["ü", "x" * 50])  # its UTF-8 is made on first use
    values: list[Any] = [
        ints,
        {str(i): i for i in ints},
        with_holes,
        emptied,
        {"x": 1, "y": [1, 2]} | {"z": 3},
        {f"k{i}": i for i in range(300)},  # 2-byte index table
        big,
        [Slots(i).__dict__ for i in range(3)],
        [non_ascii, non_ascii, no_utf8_cache, "plain", "日本語" * 20],
        [[], [[]], list(range(1000))],
        # Long enough for the walk to prefetch the dicts ahead: dicts of every kind
        # (combined, split, with holes, empty) and other values, mixed.
        [build_users(3)[1], Slots(7).__dict__, 1, "x", with_holes, {}, emptied, [1]] * 5000,
    ]
    for value in values:
        assert shmbridge.dumps(value) == orjson.dumps(value)
    # A general entry table (keys other than str) whose str keys are all that is left.
    general: dict[Any, Any] = {1: "one", "two": 2, 3.5: None}
    del general[1]
    del general[3.5]
    assert shmbridge.dumps(general) == orjson.dumps(general)


def test_dict_walk_going_on_after_its_scalars_at_a_nested_value() -> None:
    """A dict's leading scalars are written by a direct walk of its entries, which
    hands over to the general walk at the first other value, from that entry on:
    with deleted entries before and after it, in a str-keyed table and in a general
    one (three pointers an entry), at every place of the nested value."""
    for at in range(6):
        unicode_keys: dict[Any, Any] = {f"k{i}": i for i in range(8)}
        general: dict[Any, Any] = {0: None} | {f"k{i}": i for i in range(8)}
        del general[0]
        for d in (unicode_keys, general):
            del d["k1"], d["k6"]
            keys = list(d)
            d[keys[at]] = [keys[at], {"in": keys[at]}]
            for value in (d, [d, d], {"outer": d, "after": 1}):
                assert shmbridge.dumps(value) == orjson.dumps(value)


def test_dict_changed_by_default_after_the_direct_walk_handed_over() -> None:
    """A `default=` hook that empties the dict being walked, called for a value
    after its leading scalars: the walk reads the table again and stops."""

    class Marker:
        pass

    def emptying(obj: Any) -> Any:
        row.clear()
        return "m"

    row: dict[str, Any] = {}
    for n in range(1, 5):
        row.clear()
        row.update({f"s{i}": i for i in range(n)} | {"m": Marker(), "t": 1})
        out = shmbridge.dumps(row, default=emptying)
        assert out.startswith(b'{"s0":0') and b'"m":"m"' in out


def test_list_falling_back_at_a_flush(channel: Channel, reader: Reader) -> None:
    """A list whose first item is not a scalar (a tuple here) leaves the scalar
    loop after its `[`, which may already have gone out with a flush of the
    staging buffer: the general walk goes on after it wherever it stands."""
    # Strs of 0 to 12 bytes in between move where each inner list starts.
    value = [item for i in range(20_000) for item in ("x" * (i % 13), [(1,)], [i, (i,)])]
    assert written(channel, reader, value) == orjson.dumps(value)


STAMP = datetime.datetime(2024, 5, 6, 7, 8, 9, 123456)


class Text(str):
    """A str subclass: written as a str, but not by the list loops' scalar step."""


# Lists whose scalar items alternate with items the scalar step does not write,
# long enough to fill the 64 KiB staging buffer many times: each flush may fall
# on such an item, which must go on from where the flush left the buffer.
SCALARS_BETWEEN_OTHERS: dict[str, Any] = {
    "ints and tuples": [x for i in range(30_000) for x in (i, (i,))],
    "strs and datetimes": [x for i in range(30_000) for x in ("s" * (i % 7), STAMP)],
    "ints, then a float list": [[*range(i % 5), 1.5, 2.5] for i in range(30_000)],
    "bools and str subclasses": [x for i in range(30_000) for x in (i % 2 == 0, Text(f"t{i}"))],
    "floats and dicts after ints": [[i, {"k": i}, float(i), [i]] for i in range(20_000)],
}


@pytest.mark.parametrize("name", SCALARS_BETWEEN_OTHERS)
def test_items_after_a_flush_are_written_once(channel: Channel, reader: Reader, name: str) -> None:
    """`write_json` streams through the staging buffer: an item that the list
    loops hand over (not a scalar of an exact type) after the room made for it
    flushed the buffer is written at the buffer's new position, not at the old
    one, which wrote the flushed bytes a second time."""
    value = SCALARS_BETWEEN_OTHERS[name]
    expected = orjson.dumps(value)
    assert len(expected) > 4 * 64 * 1024
    assert written(channel, reader, value) == expected
