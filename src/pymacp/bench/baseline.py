"""Baseline servers: they answer the benchmark's calls and do nothing else.

Each runtime figure is divided by one of these, measured in the same run on the same
machine, so a figure says how much of the cost is the runtime's own work rather than
Python, gRPC or the disk. Every baseline runs as its own process::

    python -m pymacp.bench.baseline serve unary  --port P    # no-op Send: echo an ack
    python -m pymacp.bench.baseline serve fanout --port P    # Send pushes to subscribers
    python -m pymacp.bench.baseline serve replay --port P --replay-count N

(The recovery scenario's baseline, reading the store's rows, is :mod:`pymacp.bench.readrows`.)

The servers register the ``macp.v1.MACPRuntimeService`` methods the benchmark calls
(Initialize, Send, StreamSession) with the same gRPC options as the runtime, so the very
same client code drives both. Send answers with a SendResponse of exactly the size of the
runtime's ack (:func:`~pymacp.bench.workload.ack_response`). In ``fanout`` mode it also
records the envelope and pushes it, serialized once, to every subscriber of its session; a
subscribe frame first gets the session's earlier envelopes after ``after_sequence``, like
the runtime's replay. In ``replay`` mode a subscribe frame gets ``--replay-count``
TaskUpdate frames serialized before the server started.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections import defaultdict
from collections.abc import AsyncIterator
from typing import Any

import grpc
from macp.v1 import core_pb2

from .workload import ack_response, new_session_id, update_envelope

SERVICE = "macp.v1.MACPRuntimeService"
MODES = ("unary", "fanout", "replay")
SERVER_OPTIONS = [  # as the runtime's server (pymacp.server.app)
    ("grpc.max_receive_message_length", 1_048_576 + 64 * 1024),
    ("grpc.max_send_message_length", 16 * 1024 * 1024),
    ("grpc.max_concurrent_streams", 128),
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.http2.max_pings_without_data", 0),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.so_reuseport", 0),
]


class BaselineService:
    def __init__(self, mode: str, replay_count: int = 0) -> None:
        self.mode = mode
        self.history: defaultdict[str, list[bytes]] = defaultdict(list)
        self.subscribers: defaultdict[str, set[asyncio.Queue[bytes]]] = defaultdict(set)
        session_id = new_session_id()
        self.replay = [
            core_pb2.StreamSessionResponse(envelope=update_envelope(session_id)).SerializeToString()
            for _ in range(replay_count)
        ]

    async def initialize(self, request: core_pb2.InitializeRequest, context: Any) -> bytes:
        response = core_pb2.InitializeResponse(selected_protocol_version="1.0")
        data: bytes = response.SerializeToString()
        return data

    async def send(self, request: core_pb2.SendRequest, context: Any) -> bytes:
        env = request.envelope
        if self.mode == "fanout":
            frame: bytes = core_pb2.StreamSessionResponse(envelope=env).SerializeToString()
            self.history[env.session_id].append(frame)
            for queue in self.subscribers[env.session_id]:
                queue.put_nowait(frame)
        data: bytes = ack_response(env).SerializeToString()
        return data

    async def stream_session(
        self, frames: AsyncIterator[core_pb2.StreamSessionRequest], context: Any
    ) -> AsyncIterator[bytes]:
        async for frame in frames:
            if frame.subscribe_session_id:
                break
        else:
            return
        if self.mode == "replay":
            for data in self.replay:
                yield data
        else:
            session_id = frame.subscribe_session_id
            queue: asyncio.Queue[bytes] = asyncio.Queue()
            self.subscribers[session_id].add(queue)
            try:
                for data in self.history[session_id][frame.after_sequence :]:
                    yield data
                while True:
                    yield await queue.get()
            finally:
                self.subscribers[session_id].discard(queue)
        async for _ in frames:  # the client ends the call
            pass

    def handler(self) -> grpc.GenericRpcHandler:
        # response_serializer=None: the methods return bytes, serialized (or prepared) by hand.
        return grpc.method_handlers_generic_handler(
            SERVICE,
            {
                "Initialize": grpc.unary_unary_rpc_method_handler(
                    self.initialize, request_deserializer=core_pb2.InitializeRequest.FromString
                ),
                "Send": grpc.unary_unary_rpc_method_handler(
                    self.send, request_deserializer=core_pb2.SendRequest.FromString
                ),
                "StreamSession": grpc.stream_stream_rpc_method_handler(
                    self.stream_session, request_deserializer=core_pb2.StreamSessionRequest.FromString
                ),
            },
        )


async def serve(mode: str, port: int, replay_count: int) -> None:
    service = BaselineService(mode, replay_count)
    server = grpc.aio.server(options=SERVER_OPTIONS)
    server.add_generic_rpc_handlers((service.handler(),))
    if server.add_insecure_port(f"127.0.0.1:{port}") == 0:
        raise OSError(f"could not bind 127.0.0.1:{port}")
    await server.start()
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopping.set)
    await stopping.wait()
    await server.stop(0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pymacp.bench.baseline", description="pymacp benchmark baselines"
    )
    commands = parser.add_subparsers(dest="command", required=True)
    serve_parser = commands.add_parser("serve", help="run a baseline gRPC server until SIGTERM")
    serve_parser.add_argument("mode", choices=MODES)
    serve_parser.add_argument("--port", type=int, required=True)
    serve_parser.add_argument("--replay-count", type=int, default=0)
    args = parser.parse_args(argv)
    asyncio.run(serve(args.mode, args.port, args.replay_count))
    return 0


if __name__ == "__main__":
    sys.exit(main())
