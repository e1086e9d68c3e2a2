"""The runtime client of one identity (a pool's participant, or the dispatcher).

The console's :class:`~pymacp.console.runtime_client.RuntimeClient` has everything but
``Send`` (the console never sends, by design); this adds it. Each instance carries exactly
one bearer token, so an envelope can only ever leave under the identity that client was
built for -- which is how a worker is kept to its own participant.
"""

from __future__ import annotations

from macp.v1 import core_pb2, envelope_pb2

from pymacp.console.runtime_client import CallError, RuntimeClient
from pymacp.kernel.envelope import Envelope

__all__ = ["AgentClient", "CallError"]


class AgentClient(RuntimeClient):
    async def send(self, envelope: Envelope) -> envelope_pb2.Ack:
        """Send one envelope; the runtime's Ack (``ok=false`` for a rejection).

        Raises :class:`CallError` when the call itself fails (unreachable, unauthenticated).
        """
        response = await self._unary("Send", core_pb2.SendRequest(envelope=envelope.to_proto()))
        ack: envelope_pb2.Ack = response.ack
        return ack
