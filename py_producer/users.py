"""Deterministic user rows.

Every field of a user is derived from its id with integer arithmetic over small word
lists, so any process (the producer, a test, the benchmark) can rebuild the exact rows,
and ``expected_users_json(count)`` is the exact body that both gateway paths must serve.

Rows are plain dicts whose key order is part of the contract (orjson keeps insertion
order): id, first_name, last_name, email, age, address, phone, company, job_title, bio.
One row is about 250-320 bytes of compact JSON.
"""

from __future__ import annotations

from typing import Any

import orjson

User = dict[str, Any]

#: No more users than this are ever held (``--max-count`` and ``POST /api/users``).
USER_HARD_CAP = 1_000_000

# (display name, ASCII form for the e-mail address). Some names are non-ASCII on purpose.
FIRST_NAMES: tuple[tuple[str, str], ...] = (
    ("Alice", "alice"),
    ("Bruno", "bruno"),
    ("Chloé", "chloe"),
    ("Dmitri", "dmitri"),
    ("Elena", "elena"),
    ("François", "francois"),
    ("Grace", "grace"),
    ("Hiroshi", "hiroshi"),
    ("Inès", "ines"),
    ("José", "jose"),
    ("Kwame", "kwame"),
    ("Łukasz", "lukasz"),
    ("Mei", "mei"),
    ("Noah", "noah"),
    ("Olivia", "olivia"),
    ("Priya", "priya"),
    ("Søren", "soren"),
    ("Zoë", "zoe"),
    ("Tomás", "tomas"),
    ("Yusuf", "yusuf"),
)

LAST_NAMES: tuple[tuple[str, str], ...] = (
    ("Anderson", "anderson"),
    ("Brückner", "bruckner"),
    ("Castillo", "castillo"),
    ("Dubois", "dubois"),
    ("Eriksen", "eriksen"),
    ("Fernández", "fernandez"),
    ("García", "garcia"),
    ("Hansen", "hansen"),
    ("Ivanova", "ivanova"),
    ("Jensen", "jensen"),
    ("Kowalski", "kowalski"),
    ("López", "lopez"),
    ("Müller", "muller"),
    ("Nakamura", "nakamura"),
    ("O'Brien", "obrien"),
    ("Petrović", "petrovic"),
    ("Quinn", "quinn"),
    ("Rossi", "rossi"),
    ("Søndergaard", "sondergaard"),
    ("Wiśniewski", "wisniewski"),
)

EMAIL_DOMAINS: tuple[str, ...] = (
    "example.com",
    "example.org",
    "example.net",
    "example.io",
)

STREETS: tuple[str, ...] = (
    "Maple Street",
    "Oak Avenue",
    "Rue Cler",
    "Königstraße",
    "Calle Mayor",
    "Harbour Road",
    "Station Lane",
    "Via Roma",
    "Nørregade",
    "Elm Court",
    "Hill Crescent",
    "Market Square",
)

# (city, postcode prefix, country)
CITIES: tuple[tuple[str, str, str], ...] = (
    ("Lisbon", "10", "Portugal"),
    ("Kraków", "30", "Poland"),
    ("København", "10", "Denmark"),
    ("München", "80", "Germany"),
    ("Sevilla", "41", "Spain"),
    ("Lyon", "69", "France"),
    ("Dublin", "D0", "Ireland"),
    ("Toronto", "M5", "Canada"),
    ("Osaka", "53", "Japan"),
    ("Accra", "GA", "Ghana"),
    ("Zürich", "80", "Switzerland"),
    ("Austin", "78", "USA"),
)

COMPANIES: tuple[str, ...] = (
    "Acme Analytics",
    "Blue Harbor",
    "Copperleaf",
    "Driftwood",
    "Evergreen",
    "Fjord Software",
    "Granite Finance",
    "Helix Robotics",
    "Ironbark Energy",
    "Juniper Media",
    "Kestrel Air",
    "Lumen Retail",
)

JOB_TITLES: tuple[str, ...] = (
    "Software Engineer",
    "Data Analyst",
    "Product Manager",
    "UX Designer",
    "SRE",
    "Account Manager",
    "Marketing Lead",
    "Controller",
    "Support Lead",
    "Scientist",
    "Ops Manager",
    "Technical Writer",
)

HOBBIES: tuple[str, ...] = (
    "hiking",
    "chess",
    "baking",
    "cycling",
    "birding",
    "jazz piano",
    "climbing",
    "pottery",
    "sailing",
    "film",
    "gardening",
    "running",
)

TOPICS: tuple[str, ...] = (
    "databases",
    "research",
    "supply chains",
    "public health",
    "open source",
    "planning",
    "energy",
    "data privacy",
)


def make_user(user_id: int) -> User:
    """The user with this id (ids start at 1). Pure function of the id."""
    i = user_id
    first, first_ascii = FIRST_NAMES[(i * 7 + 3) % len(FIRST_NAMES)]
    last, last_ascii = LAST_NAMES[(i * 13 + i // 20) % len(LAST_NAMES)]
    city, postcode_prefix, country = CITIES[(i * 5 + i // 12) % len(CITIES)]
    hobby_a = HOBBIES[(i * 11) % len(HOBBIES)]
    hobby_b = HOBBIES[(i * 11 + 1 + i % 5) % len(HOBBIES)]
    return {
        "id": i,
        "first_name": first,
        "last_name": last,
        "email": f"{first_ascii}.{last_ascii}{i}@{EMAIL_DOMAINS[i % len(EMAIL_DOMAINS)]}",
        "age": 18 + (i * 37) % 73,
        "address": (
            f"{1 + (i * 17) % 250} {STREETS[(i * 3 + i // 7) % len(STREETS)]}, {city}, "
            f"{postcode_prefix}{(i * 97) % 1000:03d}, {country}"
        ),
        "phone": f"+1-555-{(i * 7919) % 10000:04d}",
        "company": COMPANIES[(i * 19 + i // 3) % len(COMPANIES)],
        "job_title": JOB_TITLES[(i * 23 + i // 11) % len(JOB_TITLES)],
        "bio": (
            f"Likes {hobby_a} and {hobby_b}; {1 + i % 25} years in "
            f"{TOPICS[(i * 29) % len(TOPICS)]}."
        ),
    }


def extend_users(users: list[User], extra: int) -> None:
    """Append ``extra`` users to ``users``, ids continuing from ``len(users) + 1``."""
    start = len(users) + 1
    users.extend(make_user(i) for i in range(start, start + extra))


def build_users(n: int) -> list[User]:
    """Users with ids 1..n, in order."""
    if n < 0:
        raise ValueError(f"user count must be >= 0, got {n}")
    return [make_user(i) for i in range(1, n + 1)]


def expected_users_json(count: int) -> bytes:
    """The exact body served for ``count`` users: compact JSON as orjson writes it."""
    return orjson.dumps(build_users(count))
