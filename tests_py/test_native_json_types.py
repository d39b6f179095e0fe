"""The serializer's other types (dates and times, UUIDs, dataclasses, enums,
subclasses), NaN and infinities, and the ``default=`` hook shared by ``dumps``,
``write_json`` and ``publish``: the bytes of ``orjson.dumps``, and clear errors."""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import uuid
import zoneinfo
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import shmbridge
from native_helpers import make_channel, private_dir
from shmbridge import Channel, Reader

UTC = dt.UTC


def offset(seconds: int) -> dt.timezone:
    return dt.timezone(dt.timedelta(seconds=seconds))


DATETIMES: list[Any] = [
    dt.datetime(2020, 1, 2, 3, 4, 5),
    dt.datetime(2020, 1, 2, 3, 4, 5, 6),
    dt.datetime(2020, 1, 2, 3, 4, 5, 999_999),
    dt.datetime(1, 1, 1),
    dt.datetime(9999, 12, 31, 23, 59, 59, 999_999),
    dt.datetime(1, 1, 1, tzinfo=UTC),
    dt.datetime(2020, 6, 1, 12, 30, tzinfo=zoneinfo.ZoneInfo("America/New_York")),
    dt.datetime(2020, 1, 1, 12, 30, tzinfo=zoneinfo.ZoneInfo("Asia/Kolkata")),
    dt.datetime(2020, 1, 1, tzinfo=UTC).replace(fold=1),
    *[
        dt.datetime(2020, 1, 2, 3, 4, 5, 123, tzinfo=offset(seconds))
        for seconds in (
            -19_800,
            3725,
            -3725,
            -5,
            29,
            30,
            -30,
            59,
            150,
            86_398,
            -86_398,
            14 * 3600,
        )
    ],
    dt.date(5, 1, 2),
    dt.date(2024, 2, 29),
    dt.date.max,
    dt.time(0, 0),
    dt.time(1, 2, 3),
    dt.time(1, 2, 3, 40),
    dt.time(23, 59, 59, 999_999),
    uuid.UUID(int=0),
    uuid.UUID(int=12345),
    uuid.UUID(int=2**128 - 1),
    uuid.UUID("12345678-9abc-def0-0fed-cba987654321"),
    uuid.uuid5(uuid.NAMESPACE_DNS, "example.org"),
]


@pytest.mark.parametrize("value", DATETIMES, ids=repr)
def test_dates_times_and_uuids_are_orjsons(value: Any) -> None:
    assert shmbridge.dumps(value) == orjson.dumps(value)
    assert shmbridge.dumps({"k": [value]}) == orjson.dumps({"k": [value]})


class Color(enum.Enum):
    RED = 1
    NAME = "name"
    LIST = [1, 2.5]  # noqa: RUF012 (an enum member, not a mutable class attribute)
    WHEN = dt.date(2020, 1, 1)
    NOTHING = None


class Level(enum.IntEnum):
    LOW = -(2**63)


class Mood(enum.StrEnum):
    HAPPY = 'hap"py'


class Flag(enum.Flag):
    A = 1
    B = 2


@dataclasses.dataclass
class Address:
    street: str
    zip: str
    where: tuple[float, float] = (0.0, -0.0)


@dataclasses.dataclass
class Person:
    name: str
    address: Address
    tags: list[str]
    born: dt.date
    _private: int = 0
    color: Color = Color.RED
    hidden: dataclasses.InitVar[int] = 0

    def __post_init__(self, hidden: int) -> None:
        self.extra = hidden * 2


@dataclasses.dataclass(slots=True)
class Slotted:
    a: int
    _b: int = 2
    c: str = "c"


@dataclasses.dataclass(frozen=True)
class Empty:
    pass


@dataclasses.dataclass
class OwnLookup:
    """Instance attributes through a __getattribute__ of its own."""

    a: int

    def __getattribute__(self, name: str) -> Any:
        if name == "__dict__":
            return {"seen": object.__getattribute__(self, "a")}
        return object.__getattribute__(self, name)


@dataclasses.dataclass
class DictProperty:
    """A __dict__ that is a property, not the instance dict."""

    a: int

    @property
    def __dict__(self) -> dict[str, Any]:  # type: ignore[override]
        return {"made": self.a}


def with_attributes() -> Address:
    """An instance with attributes beyond its fields, private ones among them."""
    address = Address("x", "1")
    address.extra = [1]  # type: ignore[attr-defined]
    address._hidden = 2  # type: ignore[attr-defined]
    return address


class MyStr(str):
    pass


class MyInt(int):
    pass


class MyDict(dict[str, Any]):
    pass


class MyList(list[Any]):
    pass


TYPED: list[Any] = [
    list(Color),
    [Level.LOW, Mood.HAPPY, Flag.A],
    {"mood": Mood.HAPPY},
    Person("Ann", Address("Main St", "12345"), ["a"], dt.date(1990, 5, 6), 7, hidden=3),
    [Slotted(1), Slotted(2, 3, "x")],
    Empty(),
    [OwnLookup(1), OwnLookup(2), DictProperty(3), DictProperty(4)],
    [Address("a", "1"), with_attributes(), Address("b", "2"), [Address("c", "3")]],
    {"s": MyStr("x\n"), "i": MyInt(-5), "d": MyDict(a=MyList([1, MyStr("y")]))},
]


@pytest.mark.parametrize("value", TYPED, ids=range(len(TYPED)))
def test_enums_dataclasses_and_subclasses_are_orjsons(value: Any) -> None:
    assert shmbridge.dumps(value) == orjson.dumps(value)


def test_a_dataclass_changed_or_redefined_between_calls_is_looked_up_again() -> None:
    # Each call after the first finds the class known from the call before:
    # that must not outlive a change to the class, in place or by a new class.
    @dataclasses.dataclass
    class Point:
        x: int
        y: int = 2

    point = Point(1)
    for _ in range(3):
        assert shmbridge.dumps(point) == orjson.dumps(point) == b'{"x":1,"y":2}'
    # An attribute lookup of its own set on the class after the fact, and taken away.
    Point.__getattribute__ = lambda self, name: (  # type: ignore[method-assign]
        {"made": 1} if name == "__dict__" else object.__getattribute__(self, name)
    )
    # (A lookup on the class gives it a new version tag: the check must not
    # rely on the tag being unset after a change.)
    assert Point.y == 2
    assert shmbridge.dumps(point) == orjson.dumps(point) == b'{"made":1}'
    del Point.__getattribute__
    assert Point.y == 2
    for _ in range(2):
        assert shmbridge.dumps([point, point]) == orjson.dumps([point, point])

    # The same in a base class: the change reaches the subclass.
    @dataclasses.dataclass
    class Base:
        a: int

    @dataclasses.dataclass
    class Derived(Base):
        b: int

    derived = Derived(1, 2)
    for _ in range(2):
        assert shmbridge.dumps(derived) == orjson.dumps(derived) == b'{"a":1,"b":2}'
    Base.__getattribute__ = lambda self, name: (  # type: ignore[method-assign]
        {"seen": 1} if name == "__dict__" else object.__getattribute__(self, name)
    )
    assert Derived.__init__ is not None
    assert shmbridge.dumps(derived) == orjson.dumps(derived) == b'{"seen":1}'
    # No longer a dataclass: refused, as orjson refuses it.
    for _ in range(2):
        shmbridge.dumps(point)
    del Point.__dataclass_fields__
    assert Point.y == 2
    with pytest.raises(TypeError):
        orjson.dumps(point)
    with pytest.raises(TypeError):
        shmbridge.dumps(point)
    # Classes made anew, one per round, each of another layout; a freed class's
    # address may be reused by the next one.
    for round_ in range(20):
        slots = round_ % 2 == 1
        namespace: dict[str, Any] = {"__annotations__": {"a": int, "_b": int}, "_b": 0}
        cls = dataclasses.dataclass(slots=slots)(type("Made", (), namespace))
        value = cls(round_)
        if not slots:
            value.extra = round_  # type: ignore[attr-defined]
        for _ in range(2):
            assert shmbridge.dumps(value) == orjson.dumps(value)
        del cls, value


class MyFloat(float):
    pass


class MyDatetime(dt.datetime):
    pass


class MyUUID(uuid.UUID):
    pass


def test_subclasses_orjson_refuses_are_written_as_their_base() -> None:
    assert shmbridge.dumps(MyFloat(2.5)) == b"2.5"
    assert shmbridge.dumps(MyDatetime(2020, 1, 1)) == b'"2020-01-01T00:00:00"'
    assert shmbridge.dumps(MyUUID(int=5)) == orjson.dumps(uuid.UUID(int=5))
    # Keys that are str subclasses (orjson refuses them; they are str).
    assert shmbridge.dumps({Mood.HAPPY: 1, MyStr("k"): 2}) == b'{"hap\\"py":1,"k":2}'


def test_time_microseconds_are_six_digits_where_orjson_drops_one() -> None:
    # orjson 3.13 writes a `time` with 10,000 to 99,999 microseconds one digit short
    # (".10000" for 0.01 s), which reads back as another time; shmbridge writes the
    # six digits that `isoformat` writes, as orjson does for datetimes.
    for microsecond in (10_000, 10_001, 99_999):
        value = dt.time(0, 0, 0, microsecond)
        assert shmbridge.dumps(value) == f'"{value.isoformat()}"'.encode()
        assert dt.time.fromisoformat(orjson.loads(shmbridge.dumps(value))) == value


def test_nan_and_infinities_are_null_like_orjson() -> None:
    value = [float("nan"), float("inf"), -float("inf"), {"x": MyFloat("nan")}]
    assert shmbridge.dumps(value) == b'[null,null,null,{"x":null}]'
    assert shmbridge.dumps(value[:3]) == orjson.dumps(value[:3])


class Point:
    def __init__(self, x: int, y: int) -> None:
        self.x, self.y = x, y


def point_as_dict(value: object) -> Any:
    if isinstance(value, Point):
        return {"x": value.x, "y": value.y}
    if isinstance(value, set):
        return sorted(value)
    raise TypeError(f"no JSON form for {type(value).__name__}")


def test_default_result_is_written_like_orjsons() -> None:
    value = {"points": [Point(1, 2), Point(3, 4)], "tags": {"b", "a"}, "n": 1}
    expected = orjson.dumps(value, default=point_as_dict)
    assert shmbridge.dumps(value, default=point_as_dict) == expected
    # A result that needs the hook again, and a hook returning a dataclass.
    point = Point(1, 2)
    as_address: Callable[[object], Any] = lambda v: Address("s", type(v).__name__)  # noqa: E731
    assert shmbridge.dumps(point, default=as_address) == orjson.dumps(point, default=as_address)
    to_list: Callable[[object], Any] = lambda v: [Point(0, 0)] if isinstance(v, set) else 7  # noqa: E731
    assert shmbridge.dumps({1, 2}, default=to_list) == b"[7]"


@pytest.fixture
def channel(tmp_path: Path) -> Iterator[Channel]:
    with make_channel(private_dir(tmp_path), slot_capacity=1 << 20) as ch:
        yield ch


def test_write_json_and_publish_take_the_same_default(channel: Channel) -> None:
    reader = Reader(channel.path)
    value = [Point(1, 2), dt.date(2020, 1, 1), {"p": Point(5, 6)}]
    channel.write_json(0, 1, value, default=point_as_dict)
    assert reader.read_bytes(0, 1) == orjson.dumps(value, default=point_as_dict)
    channel.publish(value, default=point_as_dict)
    expected = orjson.loads(orjson.dumps(value, default=point_as_dict))
    assert reader.read_snapshot_json()[1] == expected


def test_default_must_be_callable(channel: Channel) -> None:
    with pytest.raises(TypeError, match="default must be callable or None, not int"):
        shmbridge.dumps(1, default=3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="default must be callable"):
        channel.write_json(0, 1, 1, default="x")  # type: ignore[arg-type]
    assert shmbridge.dumps(1, default=None) == b"1"


def test_dumps_reads_its_arguments_like_its_signature() -> None:
    # `default` whatever string object names it (not only the interned one).
    name = "".join(["defa", "ult"])
    assert shmbridge.dumps({1}, **{name: sorted}) == b"[1]"
    assert shmbridge.dumps({1}, default=sorted) == b"[1]"
    assert shmbridge.dumps([1], **{name: None}) == b"[1]"
    bad_calls: list[tuple[tuple[Any, ...], dict[str, Any], str]] = [
        ((), {}, "dumps() missing 1 required positional argument: 'obj'"),
        ((1, 2), {}, "dumps() takes 1 positional arguments but 2 were given"),
        ((), {"obj": 1}, "positional-only arguments passed as keyword arguments: 'obj'"),
        ((1,), {"x": 2}, "dumps() got an unexpected keyword argument 'x'"),
        ((1,), {"default": None, "x": 2}, "dumps() got an unexpected keyword argument 'x'"),
        ((1,), {name: 3}, "default must be callable or None, not int"),
        ((1, 2), {"default": None}, "dumps() takes 1 positional arguments but 2 were given"),
    ]
    for args, kwargs, message in bad_calls:
        with pytest.raises(TypeError, match=message.replace("(", r"\(").replace(")", r"\)")):
            shmbridge.dumps(*args, **kwargs)
    assert shmbridge.dumps.__text_signature__ == "(obj, /, *, default=None)"  # type: ignore[attr-defined]
    assert shmbridge.dumps.__module__ == "shmbridge._native"


def boom(value: object) -> Any:
    raise ValueError(f"cannot do {type(value).__name__}")


class TzRaises(dt.tzinfo):
    def utcoffset(self, when: dt.datetime | None) -> dt.timedelta:
        raise RuntimeError("no offset today")


def users_with(bad: object) -> list[Any]:
    rows: list[Any] = [{"id": i, "address": {"zip": "1234"}} for i in range(5)]
    rows[3]["address"]["zip"] = bad
    return rows


#: Where `users_with` puts the bad value, as the error names it.
AT = r" \(at \$\[3\]\.address\.zip\)"
NO_HOOK = None
SAME: Callable[[object], Any] = lambda v: v  # noqa: E731
NEW_POINT: Callable[[object], Any] = lambda v: Point(0, 0)  # noqa: E731
WRAPS: Callable[[object], Any] = lambda v: {"deeper": [v]}  # noqa: E731
NESTED_PERSON = Person("a", Address("s", Point(1, 1)), [], dt.date.min)  # type: ignore[arg-type]

BAD: list[tuple[Any, Callable[[object], Any] | None, str]] = [
    (users_with(Point(0, 0)), NO_HOOK, r"Type is not JSON serializable: Point" + AT),
    (users_with(Point(0, 0)), boom, r"raised on a Point: ValueError: cannot do Point" + AT),
    (users_with(Point(0, 0)), SAME, r"default= returned its own argument, a Point.*" + AT),
    (users_with(Point(0, 0)), NEW_POINT, r"called on its own results more than 254 times.*" + AT),
    (users_with(Point(0, 0)), WRAPS, r"nesting deeper than 254 levels"),
    (users_with(dt.time(1, tzinfo=UTC)), NO_HOOK, r"datetime.time must not have tzinfo set" + AT),
    (
        users_with(dt.datetime(2020, 1, 1, tzinfo=TzRaises())),
        NO_HOOK,
        r"utcoffset\(\) raised RuntimeError: no offset today" + AT,
    ),
    (users_with({1: "x"}), NO_HOOK, r"dict key must be str, not int: 1" + AT),
    (users_with(NESTED_PERSON), NO_HOOK, r"Point \(at \$\[3\]\.address\.zip\.address\.zip\)"),
    (users_with(Color), NO_HOOK, r"Type is not JSON serializable: EnumType" + AT),
]


@pytest.mark.parametrize(("value", "default", "message"), BAD, ids=range(len(BAD)))
def test_failures_name_the_path_and_publish_nothing(
    channel: Channel, value: Any, default: Callable[[object], Any] | None, message: str
) -> None:
    reader = Reader(channel.path)
    with pytest.raises(shmbridge.NotSerializable, match=message):
        shmbridge.dumps(value, default=default)
    channel.write_json(2, 1, {"previous": "content"})
    channel.publish({"snapshot": 1})
    with pytest.raises(shmbridge.NotSerializable, match=message):
        channel.write_json(2, 2, value, default=default)
    with pytest.raises(shmbridge.SlotEmpty):
        reader.read_bytes(2)
    with pytest.raises(shmbridge.NotSerializable, match=message):
        channel.publish(value, default=default)
    assert reader.read_snapshot_json()[1] == {"snapshot": 1}


def test_a_failing_default_is_the_cause() -> None:
    with pytest.raises(shmbridge.NotSerializable) as caught:
        shmbridge.dumps([Point(0, 0)], default=boom)
    assert isinstance(caught.value.__cause__, ValueError)
    assert str(caught.value.__cause__) == "cannot do Point"


def test_a_failed_write_leaves_no_half_payload_after_a_large_prefix(channel: Channel) -> None:
    # Far more than the 64 KiB staging buffer reaches the slot before the failure.
    reader = Reader(channel.path)
    value = [{"row": i, "text": "x" * 100} for i in range(3000)] + [Point(1, 1)]
    with pytest.raises(shmbridge.NotSerializable, match=r"\(at \$\[3000\]\)"):
        channel.write_json(1, 9, value)
    with pytest.raises(shmbridge.SlotEmpty):
        reader.read_bytes(1)
    channel.write_json(1, 10, value, default=point_as_dict)
    assert reader.read_bytes(1, 10) == orjson.dumps(value, default=point_as_dict)


class Mutating:
    """A value whose hook empties the containers being walked, dropping their
    last references: the walk must neither crash nor read freed memory."""

    def __init__(self, victims: list[Any]) -> None:
        self.victims = victims


def mutate(value: object) -> Any:
    assert isinstance(value, Mutating)
    for victim in value.victims:
        victim.clear()
    value.victims.clear()
    return "mutated"


def test_a_default_that_changes_what_is_walked_is_safe() -> None:
    for _ in range(50):
        inner: dict[str, Any] = {"a": [1, 2, 3], "b": {"c": "d"}}
        items: list[Any] = [inner, "x", "y"]
        outer: dict[str, Any] = {"items": items, "after": 1}
        hook = Mutating([items, inner, outer])
        inner["m"] = hook
        inner["z"] = [4, 5]
        items.append({"q": 1})
        del hook
        # Whatever is written, it is valid JSON and the process survives.
        orjson.loads(shmbridge.dumps(outer, default=mutate))
        grows: list[Any] = [1, Mutating([])]

        def grow(value: object, grows: list[Any] = grows) -> Any:
            grows.extend(range(1000))
            return "grown"

        assert orjson.loads(shmbridge.dumps(grows, default=grow))[:3] == [1, "grown", 0]


def test_default_recursion_reenters_dumps() -> None:
    def nested(value: object) -> Any:
        return orjson.loads(shmbridge.dumps({"inner": 1}))

    written = shmbridge.dumps([Point(0, 0), Point(1, 1)], default=nested)
    assert written == b'[{"inner":1},{"inner":1}]'


def test_a_default_that_turns_the_gc_on_does_not_leave_it_on_mid_walk() -> None:
    import gc

    seen: list[bool] = []

    def enables(value: object) -> Any:
        gc.enable()
        return [1]

    def records(value: object) -> Any:
        seen.append(gc.isenabled())
        return 2

    assert gc.isenabled()
    gc.disable()
    try:
        # Paused again after the first hook: the second sees it paused; the state
        # found at the start (off) is the one left.
        assert shmbridge.dumps([Point(0, 0), Point(1, 1)], default=enables) == b"[[1],[1]]"
        assert not gc.isenabled()
        value = [Point(0, 0), {"x": Point(1, 1)}]
        hooks = iter([enables, records])
        assert shmbridge.dumps(value, default=lambda v: next(hooks)(v)) == b'[[1],{"x":2}]'
        assert seen == [False]
    finally:
        gc.enable()
    shmbridge.dumps([Point(0, 0)], default=enables)
    assert gc.isenabled()
