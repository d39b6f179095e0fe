"""The deterministic users: same rows every time, fixed field order, sized as designed."""

from __future__ import annotations

import time

import orjson
import pytest

from py_producer.users import (
    USER_HARD_CAP,
    build_users,
    expected_users_json,
    extend_users,
    make_user,
)

FIELDS = [
    "id",
    "first_name",
    "last_name",
    "email",
    "age",
    "address",
    "phone",
    "company",
    "job_title",
    "bio",
]


def test_build_is_deterministic() -> None:
    assert build_users(300) == build_users(300)
    assert orjson.dumps(build_users(300)) == orjson.dumps(build_users(300))
    users = build_users(300)
    assert [u["id"] for u in users] == list(range(1, 301))
    assert all(users[i - 1] == make_user(i) for i in (1, 2, 17, 300))


def test_first_users_are_pinned() -> None:
    # Pins the exact rows, so any change to the data is a visible, deliberate change.
    pinned = (
        '[{"id":1,"first_name":"Kwame","last_name":"Nakamura",'
        '"email":"kwame.nakamura1@example.org","age":55,'
        '"address":"18 Königstraße, Lyon, 69097, France","phone":"+1-555-7919",'
        '"company":"Helix Robotics","job_title":"Technical Writer",'
        '"bio":"Likes running and chess; 2 years in planning."}]'
    )
    assert expected_users_json(1) == pinned.encode()


def test_prefixes_agree() -> None:
    assert build_users(1000)[:10] == build_users(10)
    assert build_users(0) == []


def test_extend_continues_ids() -> None:
    users = build_users(10)
    extend_users(users, 5)
    assert users == build_users(15)


def test_negative_count_rejected() -> None:
    with pytest.raises(ValueError):
        build_users(-1)


def test_field_order_and_types() -> None:
    for user in build_users(500):
        assert list(user) == FIELDS
        assert type(user["id"]) is int
        assert type(user["age"]) is int
        assert 18 <= user["age"] <= 90
        for name in FIELDS[1:]:
            if name != "age":
                assert isinstance(user[name], str) and user[name]


def test_ages_span_the_range() -> None:
    ages = {u["age"] for u in build_users(2000)}
    assert min(ages) == 18 and max(ages) == 90


def test_size_per_user() -> None:
    users = build_users(100_000)
    sizes = [len(orjson.dumps(u)) for u in users]
    assert min(sizes) >= 250, min(sizes)
    assert max(sizes) <= 320, max(sizes)
    assert 270 <= sum(sizes) / len(sizes) <= 310
    # 1,000 users is about the original 251 KB load test; 100,000 is about 30 MB.
    assert 250_000 <= len(expected_users_json(1000)) <= 320_000
    assert 25_000_000 <= len(orjson.dumps(users)) <= 32_000_000


def test_largest_ids_still_fit() -> None:
    sizes = [len(orjson.dumps(make_user(i))) for i in range(USER_HARD_CAP - 2000, USER_HARD_CAP)]
    assert max(sizes) <= 325


def test_unicode_present() -> None:
    users = build_users(400)
    names = {u["first_name"] for u in users} | {u["last_name"] for u in users}
    for name in ("José", "Zoë", "Łukasz", "Søren"):
        assert name in names
    assert any(not u["address"].isascii() for u in users)
    body = expected_users_json(2)
    assert not body.isascii()  # orjson writes UTF-8, not \\u escapes
    assert "Zoë".encode() in body


def test_emails_are_unique_ascii() -> None:
    users = build_users(20_000)
    emails = [u["email"] for u in users]
    assert len(set(emails)) == len(emails)
    assert all(e.isascii() and "@" in e for e in emails)


@pytest.mark.parametrize("count", [0, 1, 2, 1000])
def test_expected_users_json(count: int) -> None:
    assert expected_users_json(count) == orjson.dumps(build_users(count))
    assert orjson.loads(expected_users_json(count)) == build_users(count)


def test_build_is_fast() -> None:
    start = time.perf_counter()
    build_users(100_000)
    elapsed = time.perf_counter() - start
    # A loose bound, so that a busy CI machine does not flake.
    assert elapsed < 5.0, f"building 100,000 users took {elapsed:.2f} s"
