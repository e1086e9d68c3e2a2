"""Strict reading of query strings and JSON bodies: every mistake is a 400 that names it.

Unknown query parameters are refused rather than ignored, for the same reason unknown
descriptor fields are: a typo (``?stauts=failed``) must not silently return everything.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from typing import Any

from starlette.requests import Request

from .errors import ApiError

MAX_BODY_BYTES = 1 << 20


def _bad(param: str, message: str) -> ApiError:
    return ApiError(400, "VALIDATION_ERROR", f"{param}: {message}", [{"path": param, "message": message}])


def check_query(request: Request, allowed: Collection[str]) -> None:
    unknown = sorted(set(request.query_params) - set(allowed))
    if unknown:
        known = ", ".join(sorted(allowed)) or "none"
        raise ApiError(
            400,
            "VALIDATION_ERROR",
            f"unknown query parameter(s) {', '.join(unknown)}; this endpoint takes: {known}",
            [{"path": name, "message": "unknown query parameter"} for name in unknown],
        )
    repeated = sorted({name for name in request.query_params if len(request.query_params.getlist(name)) > 1})
    if repeated:
        raise _bad(repeated[0], "give this parameter once")


def int_param(request: Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    return parse_int(name, raw, low, high)


def parse_int(name: str, raw: str, low: int, high: int) -> int:
    text = raw.strip()
    if not text.isdigit() or len(text) > 18:  # isdigit refuses signs; the length bound avoids huge ints
        raise _bad(name, f"must be a whole number between {low} and {high}; got {raw!r}")
    value = int(text)
    if not low <= value <= high:
        raise _bad(name, f"must be between {low} and {high}; got {value}")
    return value


def bool_param(request: Request, name: str, default: bool) -> bool:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in ("true", "1"):
        return True
    if value in ("false", "0"):
        return False
    raise _bad(name, f"must be true or false; got {raw!r}")


def choice_param(request: Request, name: str, options: Collection[str]) -> str | None:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return None
    if raw not in options:
        raise _bad(name, f"must be one of {', '.join(options)}; got {raw!r}")
    return raw


def text_param(request: Request, name: str, limit: int = 256) -> str | None:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return None
    if len(raw) > limit:
        raise _bad(name, f"must be at most {limit} characters")
    return raw


async def json_body(request: Request, *, optional: bool = False) -> Any:
    """The decoded JSON body. ``optional``: an empty body reads as None."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise _too_large()
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise _too_large()
        chunks.append(chunk)
    body = b"".join(chunks)
    if not body.strip():
        if optional:
            return None
        raise ApiError(400, "INVALID_JSON", "the request needs a JSON body")
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type != "application/json":
        raise ApiError(
            415,
            "UNSUPPORTED_MEDIA_TYPE",
            f"send the body as Content-Type: application/json (got {media_type or 'none'})",
        )
    try:
        return json.loads(body, parse_constant=_refuse_constant)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, "INVALID_JSON", f"the body is not valid JSON: {exc}") from None
    except RecursionError:
        raise ApiError(400, "INVALID_JSON", "the body nests too deeply to be a run descriptor") from None


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _too_large() -> ApiError:
    return ApiError(413, "PAYLOAD_TOO_LARGE", f"the body is larger than {MAX_BODY_BYTES} bytes")
