"""The built-in modes, and the spec that runs a session of any bound mode descriptor."""

from __future__ import annotations

from typing import Any

from .modes import decision, handoff, multi_round, passthrough, proposal, quorum, task
from .modes.base import ModeSpec
from .modes.descriptor import ModeDescriptor

# ListModes order: the five standards-track modes.
STANDARD_SPECS: tuple[ModeSpec[Any], ...] = (
    decision.SPEC,
    proposal.SPEC,
    task.SPEC,
    handoff.SPEC,
    quorum.SPEC,
)
# Built-in extensions, listed by ListExtModes.
EXTENSION_SPECS: tuple[ModeSpec[Any], ...] = (multi_round.SPEC,)

BUILTIN_SPECS: dict[str, ModeSpec[Any]] = {s.name: s for s in STANDARD_SPECS + EXTENSION_SPECS}
BUILTIN_DESCRIPTORS: dict[str, ModeDescriptor] = {name: s.descriptor for name, s in BUILTIN_SPECS.items()}

_passthrough_cache: dict[tuple[Any, ...], ModeSpec[Any]] = {}


def spec_for(descriptor: ModeDescriptor) -> ModeSpec[Any]:
    """The mode logic for a session bound to ``descriptor``.

    Built-in modes run their own module; any other descriptor (a dynamically registered
    extension, possibly promoted) runs the generic passthrough mode.
    """
    builtin = BUILTIN_SPECS.get(descriptor.mode)
    if builtin is not None:
        return builtin
    key = (descriptor.mode, descriptor.mode_version, descriptor.message_types, descriptor.participant_model)
    cached = _passthrough_cache.get(key)
    if cached is None:
        cached = passthrough.spec(descriptor)
        _passthrough_cache[key] = cached
    return cached
