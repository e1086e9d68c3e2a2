"""Register the servicer on a gRPC server, with one change from the generated code.

The generated ``add_MACPRuntimeServiceServicer_to_server`` serializes every response
message itself. StreamSession responses here may instead be ready-made wire bytes (an
envelope as stored, wrapped once): replay and fan-out then never decode and re-encode
envelopes, and one envelope sent to a hundred subscribers is serialized once.
"""

from __future__ import annotations

from typing import Any

import grpc
from google.protobuf import message_factory
from macp.v1 import core_pb2

SERVICE = "macp.v1.MACPRuntimeService"
PASS_THROUGH = frozenset({"StreamSession"})


def _pass_through(response: Any) -> bytes:
    if isinstance(response, bytes):
        return response
    data: bytes = response.SerializeToString()
    return data


def add_service(servicer: Any, server: Any) -> None:
    descriptor = core_pb2.DESCRIPTOR.services_by_name["MACPRuntimeService"]
    handlers: dict[str, Any] = {}
    for method in descriptor.methods:
        request_class = message_factory.GetMessageClass(method.input_type)
        response_class = message_factory.GetMessageClass(method.output_type)
        serializer = _pass_through if method.name in PASS_THROUGH else response_class.SerializeToString
        if method.client_streaming and method.server_streaming:
            make = grpc.stream_stream_rpc_method_handler
        elif method.server_streaming:
            make = grpc.unary_stream_rpc_method_handler
        elif method.client_streaming:
            make = grpc.stream_unary_rpc_method_handler
        else:
            make = grpc.unary_unary_rpc_method_handler
        handlers[method.name] = make(
            getattr(servicer, method.name),
            request_deserializer=request_class.FromString,
            response_serializer=serializer,
        )
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
