"""Mode descriptors (RFC-MACP-0002 / ``macp.v1.ModeDescriptor``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from macp.v1 import core_pb2


@dataclass(frozen=True, slots=True)
class ModeDescriptor:
    mode: str
    mode_version: str
    title: str
    description: str
    determinism_class: str
    participant_model: str
    message_types: tuple[str, ...]
    terminal_message_types: tuple[str, ...] = ("Commitment",)
    schema_uris: Mapping[str, str] = field(default_factory=dict)

    def to_proto(self) -> core_pb2.ModeDescriptor:
        return core_pb2.ModeDescriptor(
            mode=self.mode,
            mode_version=self.mode_version,
            title=self.title,
            description=self.description,
            determinism_class=self.determinism_class,
            participant_model=self.participant_model,
            message_types=list(self.message_types),
            terminal_message_types=list(self.terminal_message_types),
            schema_uris=dict(self.schema_uris),
        )

    @classmethod
    def from_proto(cls, msg: core_pb2.ModeDescriptor) -> ModeDescriptor:
        return cls(
            mode=msg.mode,
            mode_version=msg.mode_version,
            title=msg.title,
            description=msg.description,
            determinism_class=msg.determinism_class,
            participant_model=msg.participant_model,
            message_types=tuple(msg.message_types),
            terminal_message_types=tuple(msg.terminal_message_types),
            schema_uris=dict(msg.schema_uris),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "mode_version": self.mode_version,
            "title": self.title,
            "description": self.description,
            "determinism_class": self.determinism_class,
            "participant_model": self.participant_model,
            "message_types": list(self.message_types),
            "terminal_message_types": list(self.terminal_message_types),
            "schema_uris": dict(self.schema_uris),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ModeDescriptor:
        return cls(
            mode=str(data["mode"]),
            mode_version=str(data["mode_version"]),
            title=str(data.get("title", "")),
            description=str(data.get("description", "")),
            determinism_class=str(data.get("determinism_class", "")),
            participant_model=str(data.get("participant_model", "")),
            message_types=tuple(data.get("message_types", ())),
            terminal_message_types=tuple(data.get("terminal_message_types", ("Commitment",))),
            schema_uris=dict(data.get("schema_uris", {})),
        )
