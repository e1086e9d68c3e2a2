"""MACP errors on gRPC: status codes plus the ``macp-error-code`` trailer clients branch on."""

from __future__ import annotations

from typing import NoReturn

import grpc

from ..kernel import ErrorCode, Rejection

STATUS: dict[ErrorCode, grpc.StatusCode] = {
    ErrorCode.UNAUTHENTICATED: grpc.StatusCode.UNAUTHENTICATED,
    ErrorCode.FORBIDDEN: grpc.StatusCode.PERMISSION_DENIED,
    ErrorCode.SESSION_NOT_FOUND: grpc.StatusCode.NOT_FOUND,
    ErrorCode.AGENT_NOT_FOUND: grpc.StatusCode.NOT_FOUND,
    ErrorCode.UNKNOWN_POLICY_VERSION: grpc.StatusCode.NOT_FOUND,
    ErrorCode.MODE_NOT_SUPPORTED: grpc.StatusCode.NOT_FOUND,
    ErrorCode.PAYLOAD_TOO_LARGE: grpc.StatusCode.RESOURCE_EXHAUSTED,
    ErrorCode.RATE_LIMITED: grpc.StatusCode.RESOURCE_EXHAUSTED,
    ErrorCode.STREAM_LAGGED: grpc.StatusCode.RESOURCE_EXHAUSTED,
    ErrorCode.INTERNAL_ERROR: grpc.StatusCode.INTERNAL,
    ErrorCode.INVALID_SESSION_ID: grpc.StatusCode.INVALID_ARGUMENT,
    ErrorCode.INVALID_POLICY_DEFINITION: grpc.StatusCode.INVALID_ARGUMENT,
    ErrorCode.INVALID_REQUEST: grpc.StatusCode.INVALID_ARGUMENT,
    ErrorCode.INVALID_ENVELOPE: grpc.StatusCode.INVALID_ARGUMENT,
    ErrorCode.SESSION_ALREADY_EXISTS: grpc.StatusCode.ALREADY_EXISTS,
}
# Everything else (SESSION_NOT_OPEN, POLICY_DENIED, REGISTRY_READ_ONLY, HISTORY_UNAVAILABLE,
# RECEIPT_UNAVAILABLE, UNSUPPORTED_PROTOCOL_VERSION, ...) is FAILED_PRECONDITION.


def status_of(code: ErrorCode) -> grpc.StatusCode:
    return STATUS.get(code, grpc.StatusCode.FAILED_PRECONDITION)


def trailers(rejection: Rejection) -> tuple[tuple[str, str | bytes], ...]:
    return (
        ("macp-error-code", rejection.code.value),
        ("macp-error-details-bin", rejection.details_bytes()),
    )


async def abort(context: grpc.aio.ServicerContext[object, object], rejection: Rejection) -> NoReturn:
    """End the call with the rejection's status, message and trailers."""
    await context.abort(status_of(rejection.code), rejection.message, trailing_metadata=trailers(rejection))
    raise AssertionError("unreachable: context.abort raises")  # pragma: no cover
