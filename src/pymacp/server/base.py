"""What every RPC handler shares: the runtime, per-call authentication, refusals."""

from __future__ import annotations

from typing import Any, TypeAlias

from ..kernel import ErrorCode, Identity, Rejection
from ..runtime.auth import Authenticator, AuthError
from ..runtime.core import Refused, Runtime
from .errors import abort

# grpc ships no type information, so its context type is opaque to the checker.
Context: TypeAlias = Any


class ServiceBase:
    def __init__(self, runtime: Runtime, authenticator: Authenticator) -> None:
        self.runtime = runtime
        self.authenticator = authenticator

    async def identity(self, context: Context) -> Identity:
        """The caller, authenticated from this call's own metadata (one channel, many identities)."""
        try:
            return await self.authenticator.authenticate(tuple(context.invocation_metadata() or ()))
        except AuthError as exc:
            await abort(context, Rejection(ErrorCode.UNAUTHENTICATED, str(exc)))

    async def refuse(self, context: Context, exc: Refused) -> None:
        await abort(context, exc.rejection)
