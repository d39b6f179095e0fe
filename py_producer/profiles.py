"""Deterministic profiles: the second dataset, shaped like the original service's users.

Where a user row is flat (about 300 bytes), a profile nests: an address with a ``geo``
object of float ``lat``/``lng``, lists of tags and languages, an education list and a
work history of objects with their own lists. One profile is 1.7 to
3.3 KB of compact JSON (2.4 KB on average).

Every field is derived from the profile's id with integer arithmetic over the word lists
of :mod:`py_producer.users`, so any process rebuilds the same rows (and the same bytes).
"""

from __future__ import annotations

from typing import Any

import orjson

from py_producer.users import CITIES, COMPANIES, FIRST_NAMES, JOB_TITLES, LAST_NAMES

Profile = dict[str, Any]

#: The most profiles a request may ask for (``GET /api/profiles``, handler ``profiles``).
MAX_PROFILES = 5000

_TAGS = (
    "python", "rust", "ml", "cloud", "security", "data", "design", "ops",
    "mobile", "web", "embedded", "finance", "health", "games", "audio", "maps",
)  # fmt: skip
_LANGUAGES = ("English", "Français", "Deutsch", "Español", "日本語", "Polski", "Dansk", "Türkçe")
_SCHOOLS = (
    "Université de Lyon", "ETH Zürich", "MIT", "Universidad de Chile", "University of Tokyo",
    "Politechnika Warszawska", "KTH", "University of Nairobi",
)  # fmt: skip
_DEGREES = ("BSc", "MSc", "PhD", "BA", "MBA")
_FIELDS = ("Computer Science", "Mathematics", "Physics", "Economics", "Design", "Biology")
_VERBS = ("Built", "Led", "Shipped", "Maintained", "Designed", "Scaled", "Migrated", "Tuned")
_THINGS = (
    "the billing pipeline", "a search index", "the mobile app", "an on-call rotation",
    "the data warehouse", "a public API", "the build system", "a recommendation model",
)  # fmt: skip


def _mix(value: int) -> int:
    """A 32-bit integer hash (deterministic across processes, unlike ``hash``)."""
    value = (value ^ 0x9E3779B9) * 0x85EBCA6B & 0xFFFFFFFF
    value = (value ^ (value >> 13)) * 0xC2B2AE35 & 0xFFFFFFFF
    return value ^ (value >> 16)


def _pick(seq: tuple[Any, ...], seed: int) -> Any:
    return seq[_mix(seed) % len(seq)]


def build_profile(profile_id: int) -> Profile:
    """Profile ``profile_id`` (1-based); the key order is part of the bytes."""
    seed = profile_id * 7919
    first, first_ascii = _pick(FIRST_NAMES, seed + 1)
    last, last_ascii = _pick(LAST_NAMES, seed + 2)
    city, postcode_prefix, country = _pick(CITIES, seed + 3)
    h = _mix(seed + 4)
    lat = round(-60.0 + (h % 1_200_000) / 10_000.0, 6)
    lng = round(-180.0 + (_mix(seed + 5) % 3_600_000) / 10_000.0, 6)
    education = [
        {
            "school": _pick(_SCHOOLS, seed + 10 + i),
            "degree": _pick(_DEGREES, seed + 20 + i),
            "field": _pick(_FIELDS, seed + 30 + i),
            "year": 1990 + _mix(seed + 40 + i) % 34,
            "gpa": round(2.0 + (_mix(seed + 50 + i) % 200) / 100.0, 2),
        }
        for i in range(1 + _mix(seed + 6) % 2)
    ]
    work = []
    for i in range(4 + _mix(seed + 7) % 4):
        start = 2000 + _mix(seed + 60 + i) % 20
        work.append(
            {
                "company": _pick(COMPANIES, seed + 70 + i),
                "title": _pick(JOB_TITLES, seed + 80 + i),
                "start_year": start,
                "end_year": None if i == 0 else start + 1 + _mix(seed + 90 + i) % 6,
                "remote": _mix(seed + 100 + i) % 3 == 0,
                "rating": round((_mix(seed + 110 + i) % 500) / 100.0, 2),
                "highlights": [
                    f"{_pick(_VERBS, seed + 120 + i * 8 + j)} "
                    f"{_pick(_THINGS, seed + 130 + i * 8 + j)}"
                    f" for {first} ({1 + _mix(seed + 140 + i * 8 + j) % 40} people)"
                    for j in range(3 + _mix(seed + 150 + i) % 3)
                ],
            }
        )
    return {
        "id": profile_id,
        "name": {"first": first, "last": last},
        "email": f"{first_ascii}.{last_ascii}.{profile_id}@example.com",
        "active": h % 5 != 0,
        "score": round((h % 100_000) / 1000.0, 3),
        "address": {
            "street": f"{1 + h % 250} {_pick(LAST_NAMES, seed + 8)[0]} Street",
            "city": city,
            "country": country,
            "postcode": f"{postcode_prefix}{_mix(seed + 9) % 1000:03d}",
            "geo": {"lat": lat, "lng": lng},
        },
        "tags": sorted({_pick(_TAGS, seed + 160 + i) for i in range(2 + h % 5)}),
        "languages": sorted({_pick(_LANGUAGES, seed + 170 + i) for i in range(1 + h % 3)}),
        "education": education,
        "work_history": work,
        "preferences": {
            "newsletter": h % 2 == 0,
            "theme": ("light", "dark", "system")[h % 3],
            "weights": [round((_mix(seed + 180 + i) % 1000) / 997.0, 4) for i in range(8)],
        },
    }


def build_profiles(count: int) -> list[Profile]:
    """Profiles 1..count."""
    return [build_profile(i) for i in range(1, count + 1)]


def expected_profiles_json(count: int) -> bytes:
    """The exact body every path serves for ``count`` profiles."""
    return orjson.dumps(build_profiles(count))
