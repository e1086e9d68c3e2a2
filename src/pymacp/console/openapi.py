"""The OpenAPI 3.1 description of the console's HTTP API, written by hand and served at
``/openapi.json``. A test checks that every route is described and every described route
exists, so this file cannot drift from the router.
"""

from __future__ import annotations

from typing import Any

from .models import RUN_SOURCES, RUN_STATUSES

JSON = "application/json"


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {JSON: {"schema": schema}}}


def _error(description: str) -> dict[str, Any]:
    return _json(_ref("Error"), description)


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": description}


RUN_ID = {"name": "run_id", "in": "path", "required": True, "schema": {"type": "string"}}
COMMON_ERRORS = {
    "400": _error("Invalid input; details name each problem."),
    "401": _error("Missing or wrong API key."),
    "429": _error("Rate limited; see Retry-After."),
}
NOT_FOUND = {"404": _error("No such run.")}
SEQ = {"type": "integer", "minimum": 0, "maximum": 2**53}  # event sequence numbers, as JSON can carry them
HEARTBEAT = _query("heartbeatMs", {"type": "integer", "minimum": 1000, "maximum": 300000}, "Idle heartbeat.")
SSE = {
    # Each frame's data is one JSON document (see the operation's description); OpenAPI 3.1
    # has no way to give a schema per event, so none is given for the stream as a whole.
    "description": "A text/event-stream.",
    "content": {"text/event-stream": {}},
}
GONE = {
    "post": {
        "summary": "Removed: the console only observes; agents send to the runtime themselves.",
        "deprecated": True,
        "parameters": [RUN_ID],
        "responses": {"410": _error("Always: ENDPOINT_REMOVED."), "429": COMMON_ERRORS["429"]},
    }
}

_STRING = {"type": "string"}
_NULLABLE_STRING = {"type": ["string", "null"]}
_INT = {"type": "integer"}

SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "required": ["statusCode", "errorCode", "message"],
        "properties": {
            "statusCode": _INT,
            "errorCode": _STRING,
            "message": _STRING,
            "details": {
                "type": "array",
                "items": {"type": "object", "properties": {"path": _STRING, "message": _STRING}},
            },
        },
    },
    "RunDescriptor": {
        "type": "object",
        "additionalProperties": False,
        "required": ["mode", "runtime", "session"],
        "properties": {
            "mode": {"enum": ["live", "sandbox"]},
            "runtime": {
                "type": "object",
                "additionalProperties": False,
                "required": ["kind"],
                "properties": {"kind": _STRING, "version": _STRING},
            },
            "session": {
                "type": "object",
                "additionalProperties": False,
                "required": ["modeName", "modeVersion", "configurationVersion", "ttlMs", "participants"],
                "properties": {
                    "sessionId": {
                        **_STRING,
                        "description": "UUID v4/v7 or base64url; allocated when absent.",
                    },
                    "modeName": _STRING,
                    "modeVersion": _STRING,
                    "configurationVersion": _STRING,
                    "policyVersion": _STRING,
                    "ttlMs": {"type": "integer", "minimum": 1},
                    "participants": {
                        "type": "array",
                        "minItems": 1,
                        "items": {
                            "type": "object",
                            "additionalProperties": False,
                            "required": ["id"],
                            "properties": {"id": _STRING},
                        },
                    },
                    "metadata": {
                        "type": "object",
                        "description": "Open, except the reserved keys source, sourceRef, environment, "
                        "scenarioRef, cancelCallback {url, bearer?} and cancellationDelegated (boolean).",
                    },
                },
            },
            "execution": {
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    "idempotencyKey": _STRING,
                    "tags": {"type": "array", "items": _STRING},
                    "requester": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {
                            "actorId": _STRING,
                            "actorType": {"enum": ["user", "service", "system"]},
                        },
                    },
                },
            },
        },
    },
    "Accepted": {
        "type": "object",
        "required": ["runId", "sessionId", "status", "created"],
        "properties": {
            "runId": _STRING,
            "sessionId": _STRING,
            "status": _STRING,
            "created": {"type": "boolean"},
        },
    },
    "Run": {
        "type": "object",
        "properties": {
            "runId": _STRING,
            "sessionId": _STRING,
            "status": {"enum": list(RUN_STATUSES)},
            "source": {"enum": list(RUN_SOURCES)},
            "modeName": _NULLABLE_STRING,
            "participants": {"type": "array", "items": _STRING},
            "sessionState": _NULLABLE_STRING,
            "descriptor": {"type": ["object", "null"], "description": "Secrets read '***'."},
            "idempotencyKey": _NULLABLE_STRING,
            "tags": {"type": "array", "items": _STRING},
            "createdAtMs": _INT,
            "updatedAtMs": _INT,
            "endedAtMs": {"type": ["integer", "null"]},
            "lastSeq": _INT,
            "lastOrdinal": _INT,
            "error": _NULLABLE_STRING,
        },
    },
    "RunEvent": {
        "type": "object",
        "description": "One event; identical in GET /runs/{run_id}/events and in the stream.",
        "properties": {
            "runId": _STRING,
            "seq": {"type": "integer", "minimum": 1, "description": "1-based, gapless per run; the SSE id."},
            "type": _STRING,
            "ordinal": {"type": ["integer", "null"]},
            "messageId": _NULLABLE_STRING,
            "messageType": _NULLABLE_STRING,
            "sender": _NULLABLE_STRING,
            "timestampMs": _INT,
            "data": {"type": "object", "description": "The decoded payload."},
        },
    },
    "RunPage": {
        "type": "object",
        "properties": {"data": {"type": "array", "items": _ref("Run")}, "nextCursor": _NULLABLE_STRING},
    },
    "EventPage": {
        "type": "object",
        "properties": {
            "data": {"type": "array", "items": _ref("RunEvent")},
            "nextAfterSeq": _INT,
            "hasMore": {"type": "boolean"},
        },
    },
}

_LIST_FILTERS = [
    _query("status", {"enum": list(RUN_STATUSES)}, "Only runs in this status."),
    _query("mode", _STRING, "Only runs of this mode name."),
    _query("source", {"enum": list(RUN_SOURCES)}, "api (submitted) or discovered."),
    _query("limit", {"type": "integer", "minimum": 1, "maximum": 200, "default": 50}, "Page size."),
]

PATHS: dict[str, Any] = {
    "/runs": {
        "post": {
            "summary": "Submit a RunDescriptor; the console observes the session it names.",
            "requestBody": {"required": True, "content": {JSON: {"schema": _ref("RunDescriptor")}}},
            "responses": {
                "202": _json(_ref("Accepted"), "Accepted for observation."),
                "200": _json(_ref("Accepted"), "The idempotency key matched: the stored run."),
                "413": _error("Body over 1 MiB."),
                "415": _error("Not application/json."),
                **COMMON_ERRORS,
            },
        },
        "get": {
            "summary": "Runs, newest first, with cursor pagination.",
            "parameters": [
                *_LIST_FILTERS,
                _query("sessionId", _STRING, "The run observing this session."),
                _query("cursor", _STRING, "nextCursor of the previous page."),
            ],
            "responses": {"200": _json(_ref("RunPage"), "A page of runs."), **COMMON_ERRORS},
        },
    },
    "/runs/stream": {
        "get": {
            "summary": "SSE: a 'runs' frame (as GET /runs) on every change; 'heartbeat' when idle.",
            "parameters": [*_LIST_FILTERS, HEARTBEAT],
            "responses": {"200": SSE, **COMMON_ERRORS},
        }
    },
    "/runs/{run_id}": {
        "get": {
            "summary": "One run.",
            "parameters": [RUN_ID],
            "responses": {"200": _json(_ref("Run"), "The run."), **NOT_FOUND, **COMMON_ERRORS},
        }
    },
    "/runs/{run_id}/view": {
        "get": {
            "summary": "The run's projection: participants, mode state, policy, commitment.",
            "parameters": [RUN_ID],
            "responses": {
                "200": _json({"type": "object"}, "{runId, view}."),
                **NOT_FOUND,
                **COMMON_ERRORS,
            },
        }
    },
    "/runs/{run_id}/events": {
        "get": {
            "summary": "The run's events in seq order, paged by afterSeq.",
            "parameters": [
                RUN_ID,
                _query("afterSeq", SEQ | {"default": 0}, "Exclusive."),
                _query(
                    "limit", {"type": "integer", "minimum": 1, "maximum": 1000, "default": 200}, "Page size."
                ),
            ],
            "responses": {"200": _json(_ref("EventPage"), "A page of events."), **NOT_FOUND, **COMMON_ERRORS},
        }
    },
    "/runs/{run_id}/stream": {
        "get": {
            "summary": "SSE: snapshot, then 'event' frames with id: seq, 'run' on status changes, "
            "'heartbeat' when idle, 'end' once the run is terminal. Resumes from Last-Event-ID.",
            "parameters": [
                RUN_ID,
                _query("afterSeq", SEQ, "Resume point when no Last-Event-ID."),
                _query("includeSnapshot", {"type": "boolean", "default": True}, "Send the snapshot first."),
                HEARTBEAT,
                {"name": "Last-Event-ID", "in": "header", "required": False, "schema": SEQ},
            ],
            "responses": {"200": SSE, **NOT_FOUND, **COMMON_ERRORS},
        }
    },
    "/runs/{run_id}/cancel": {
        "post": {
            "summary": "Cancel through the descriptor's cancel callback, or CancelSession when delegated.",
            "parameters": [RUN_ID],
            "requestBody": {
                "required": False,
                "content": {
                    JSON: {
                        "schema": {
                            "type": "object",
                            "additionalProperties": False,
                            "properties": {"reason": _STRING},
                        }
                    }
                },
            },
            "responses": {
                "200": _json(_ref("Run"), "The run after the cancel."),
                "409": _error("The run is already finished."),
                "502": _error("The cancel callback or the runtime failed."),
                **NOT_FOUND,
                **COMMON_ERRORS,
            },
        }
    },
    "/runs/{run_id}/messages": GONE,
    "/runs/{run_id}/signal": GONE,
    "/runs/{run_id}/context": GONE,
    "/auth/sse-ticket": {
        "post": {
            "summary": "Set the HttpOnly cookie that authenticates EventSource streams (5 minutes).",
            "responses": {
                "204": {"description": "Cookie set (nothing to do without API keys)."},
                **COMMON_ERRORS,
            },
        }
    },
    "/healthz": {
        "get": {
            "summary": "Liveness; no key needed, never rate limited.",
            "security": [],
            "responses": {"200": _json({"type": "object"}, "{ok, service}.")},
        }
    },
    "/readyz": {
        "get": {
            "summary": "Readiness; 503 while the runtime or the store is unreachable.",
            "security": [],
            "responses": {
                "200": _json({"type": "object"}, "{ok, runtime, store}."),
                "503": _json({"type": "object"}, "Not ready; says which part."),
            },
        }
    },
    "/metrics": {
        "get": {
            "summary": "Prometheus text format; no key needed.",
            "security": [],
            "responses": {"200": {"description": "Metrics.", "content": {"text/plain": {"schema": _STRING}}}},
        }
    },
    "/openapi.json": {
        "get": {
            "summary": "This document.",
            "security": [],
            "responses": {"200": _json({"type": "object"}, "")},
        }
    },
    "/": {
        "get": {
            "summary": "The web UI (assets under /ui/).",
            "security": [],
            "responses": {
                "200": {"description": "HTML.", "content": {"text/html": {"schema": _STRING}}},
                "429": COMMON_ERRORS["429"],
            },
        }
    },
}


def document() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "pymacp console",
            "version": "1",
            "description": "An observer control plane for MACP runtimes. Errors are always "
            "{statusCode, errorCode, message, details?}.",
        },
        "paths": PATHS,
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {"apiKey": {"type": "http", "scheme": "bearer", "description": "An API key."}},
        },
        "security": [{"apiKey": []}],
    }
