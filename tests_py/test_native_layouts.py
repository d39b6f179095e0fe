"""Which objects the serializer reads directly, per interpreter and build.

CPython 3.11, 3.12 and 3.13 (with the GIL) read dicts and small ints directly once a
check at import has confirmed their layout (src/python/borrowed.rs); the abi3 build
reads nothing directly. Either way the bytes are the same: the serializer's other
tests run on each (``make test-versions``).
"""

from __future__ import annotations

import sys
import sysconfig

import orjson
import pytest
import shmbridge
from shmbridge import _native

ABI3 = _native.__file__.endswith(".abi3.so")
FREE_THREADED = bool(sysconfig.get_config_var("Py_GIL_DISABLED"))


def test_direct_reads_are_those_of_this_interpreter() -> None:
    direct = _native._direct_reads()
    print(f"\n{sys.version.split()[0]}, {'abi3' if ABI3 else 'version-specific'} module: {direct}")
    if ABI3 or FREE_THREADED or sys.version_info >= (3, 14):
        assert direct == []
    elif sys.version_info[:2] == (3, 11):
        assert direct == ["dict", "int-3.11"]
    else:
        assert direct == ["dict", "int-3.12"]


def test_ints_around_each_digit_boundary_match_orjson() -> None:
    # 30-bit digits: 0, 1 and 2 digits are read directly, 3 and more through the C API.
    values = [0, 1, -1]
    for bits in (29, 30, 31, 59, 60, 61, 62, 63):
        for base in (1 << bits, -(1 << bits)):
            values += [base - 1, base, base + 1]
    values = [v for v in values if -(1 << 63) <= v < (1 << 64)]
    assert shmbridge.dumps(values) == orjson.dumps(values)
    assert shmbridge.dumps({str(v): v for v in values}) == orjson.dumps({str(v): v for v in values})


def test_dicts_of_every_table_kind_match_orjson() -> None:
    class Split:
        def __init__(self, a: int, b: str) -> None:
            self.a = a
            self.b = b

    deleted = {f"k{i}": i for i in range(20)}
    for i in range(0, 20, 3):
        del deleted[f"k{i}"]
    split = Split(1, "x").__dict__  # a split table: its values live apart from its keys
    cases = [{}, {"a": 1}, deleted, split, {"é": [1, {"ü": None}]}, dict.fromkeys("abc", 1.5)]
    for case in cases:
        assert shmbridge.dumps(case) == orjson.dumps(case), case
    # A table of the general kind (a non-str key was inserted) holding str keys only,
    # once the other key is deleted: walked like any other.
    general = {1: "one", "two": 2, "three": [3]}
    del general[1]
    assert shmbridge.dumps(general) == orjson.dumps(general)
    # Non-str keys are refused, as orjson refuses them, naming the key.
    with pytest.raises(shmbridge.NotSerializable, match="dict key must be str"):
        shmbridge.dumps({"two": 2, 3.5: True})
