"""The ``macp.v1.MACPRuntimeService`` servicer: all 27 RPCs."""

from __future__ import annotations

from macp.v1 import core_pb2_grpc

from .registry_rpcs import RegistryRPCs
from .session_rpcs import SessionRPCs


class MacpService(SessionRPCs, RegistryRPCs, core_pb2_grpc.MACPRuntimeServiceServicer):  # type: ignore[misc]
    """Session RPCs and registry RPCs over one runtime and one authenticator."""
