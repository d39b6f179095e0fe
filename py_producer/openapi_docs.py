"""What ``/openapi.json`` says about each endpoint.

The endpoints parse their query strings by hand (for speed, and so every error has the
project's ``{"error", "detail"}`` shape), so FastAPI cannot see their parameters: they
are documented here, as ``openapi_extra`` and ``responses`` of each route, and
``tests_py/test_observability.py`` checks the schema against what the app serves.
"""

from __future__ import annotations

from typing import Any

ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error", "detail"],
    "properties": {
        "error": {"type": "string", "description": "a stable, machine-readable kind"},
        "detail": {"type": "string", "description": "a sentence saying what went wrong"},
    },
}

USER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "id": {"type": "integer", "minimum": 1},
        "first_name": {"type": "string"},
        "last_name": {"type": "string"},
        "email": {"type": "string"},
        "age": {"type": "integer"},
        "address": {"type": "string"},
        "phone": {"type": "string"},
        "company": {"type": "string"},
        "job_title": {"type": "string"},
        "bio": {"type": "string"},
    },
}


def _json(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _error(description: str) -> dict[str, Any]:
    return _json(description, ERROR_SCHEMA)


def _query(name: str, description: str, *, required: bool, minimum: int) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": required,
        "description": description,
        "schema": {"type": "integer", "minimum": minimum},
    }


COUNT = _query(
    "count",
    "how many users, from the first: 0..the number of users the producer holds; "
    "absent: 100 (or all of them, if fewer), as the original service served",
    required=False,
    minimum=0,
)

HEALTHZ: dict[str, Any] = {
    "summary": "Liveness and the channel's state",
    "responses": {
        200: _json(
            "status ok (the channel is open) or degraded (shared memory unavailable)",
            {
                "type": "object",
                "properties": {
                    "status": {"type": "string", "enum": ["ok", "degraded"]},
                    "epoch": {"type": ["integer", "null"]},
                    "channel": {"type": ["string", "null"]},
                    "users": {"type": "integer"},
                    "signal_socket": {"type": ["string", "null"]},
                    "snapshot_generation": {"type": "integer"},
                    "detail": {"type": "string"},
                },
            },
        )
    },
}

METRICS: dict[str, Any] = {
    "summary": "Prometheus metrics (text format 0.0.4)",
    "responses": {
        200: {
            "description": "writes, bytes written and write time by signal; publishes",
            "content": {"text/plain": {"schema": {"type": "string"}}},
        }
    },
}

USERS_GET: dict[str, Any] = {
    "summary": "The first `count` users as JSON (the REST path)",
    "openapi_extra": {"parameters": [COUNT]},
    "responses": {
        200: _json("the users, in id order", {"type": "array", "items": USER_SCHEMA}),
        400: _error("count not an integer, or out of range"),
    },
}

PROFILES_COUNT = _query(
    "count",
    "how many profiles, from the first: 0..5000; absent: 100",
    required=False,
    minimum=0,
)

PROFILES_GET: dict[str, Any] = {
    "summary": "The first `count` profiles as JSON: nested objects, lists and floats",
    "openapi_extra": {"parameters": [PROFILES_COUNT]},
    "responses": {
        200: _json("the profiles, in id order", {"type": "array", "items": {"type": "object"}}),
        400: _error("count not an integer, or out of range"),
    },
}

USERS_POST: dict[str, Any] = {
    "summary": "Add users (changes the data; publishes a snapshot in snapshot mode)",
    "openapi_extra": {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "required": ["count"],
                        "properties": {"count": {"type": "integer", "minimum": 1, "maximum": 1000}},
                    }
                }
            },
        }
    },
    "responses": {
        200: _json(
            "the new total",
            {
                "type": "object",
                "properties": {
                    "total": {"type": "integer"},
                    "added": {"type": "integer"},
                    "data_version": {"type": "integer"},
                },
            },
        ),
        400: _error('the body is not {"count": 1..1000}'),
        409: _error("the user cap would be passed"),
    },
}

WRITE_TO_SHM: dict[str, Any] = {
    "summary": "Write the first `count` users into a channel slot and say where",
    "openapi_extra": {
        "parameters": [
            COUNT,
            _query(
                "slot",
                "the slot to write (the gateway's choice); absent: the last request slot, "
                "reserved for hand calls",
                required=False,
                minimum=0,
            ),
            _query(
                "request_id",
                "the id the slot is written for (1..2^63-1), which the reader checks; "
                "absent: a random one",
                required=False,
                minimum=1,
            ),
            _query(
                "deadline_ms",
                "when the caller stops waiting, in ms since the Unix epoch: a write that "
                "would start later is refused (504)",
                required=False,
                minimum=0,
            ),
        ]
    },
    "responses": {
        200: _json(
            "where the payload was written",
            {
                "type": "object",
                "properties": {
                    "path": {"type": "string"},
                    "epoch": {"type": "integer"},
                    "slot": {"type": "integer"},
                    "request_id": {"type": "integer"},
                    "sequence": {"type": "integer"},
                    "length": {"type": "integer"},
                    "encoding": {"type": "string", "enum": ["json"]},
                    "note": {"type": "string"},
                },
            },
        ),
        400: _error("a parameter is missing, not an integer, or out of range"),
        409: _error("the slot is being written by another request"),
        500: _error("the channel failed"),
        503: _error("shared memory is unavailable on this producer"),
        504: _error("the caller's deadline passed before the write could start"),
        507: _error("the payload is larger than a slot (names the setting that raises it)"),
    },
}
