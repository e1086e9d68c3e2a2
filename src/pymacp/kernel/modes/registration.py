"""The extension-mode registry rules: RegisterExtMode, UnregisterExtMode, PromoteMode, ListModes.

Theory of operation. The runtime owns the live registry and persists it; this module only
decides. The registry is a mapping ``mode name -> ExtModeEntry`` holding the modes added at
run time (the built-ins of :mod:`..catalog` are never in it). Every operation takes the
current mapping and returns a new one, or a :class:`Rejection` saying why not; the input is
never changed.

A registered mode starts as an *extension*: ListExtModes shows it and sessions run it with
the generic passthrough logic. PromoteMode makes it *standards-track*: it moves to ListModes
(and SessionStart treats it strictly), optionally under a new name. Promotion is one-way:
standards-track modes, like built-ins, cannot be unregistered.

    operation           refused when                                         code
    RegisterExtMode     name blank, '*', 'macp.mode.*', built-in or taken     INVALID_REQUEST
                        mode_version blank                                    INVALID_REQUEST
                        no message types, a blank or repeated one             INVALID_REQUEST
                        terminal types other than exactly ['Commitment'],
                        or 'Commitment' not among the message types           INVALID_REQUEST
    UnregisterExtMode   name blank                                            INVALID_REQUEST
                        built-in, or promoted (standards-track)               INVALID_REQUEST
                        not registered                                        MODE_NOT_SUPPORTED
    PromoteMode         name blank, built-in, or already promoted             INVALID_REQUEST
                        not registered                                        MODE_NOT_SUPPORTED
                        new name whitespace-only, '*', 'macp.mode.*',
                        built-in or taken by another mode                     INVALID_REQUEST

An empty ``promoted_mode_name`` (or the mode's own name) keeps the id. After a rename the
old name is gone: sessions opened under it fail with MODE_NOT_SUPPORTED on their next message.

Listing order (macp-protocol.md §2): ListModes gives the five standard modes in their fixed
order, then promoted modes sorted by name; ListExtModes gives ``ext.multi_round.v1`` and the
not-yet-promoted registered modes, all sorted by name.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

from ..catalog import BUILTIN_DESCRIPTORS, EXTENSION_SPECS, STANDARD_SPECS
from ..errors import ErrorCode, Rejection
from .descriptor import ModeDescriptor

RESERVED_MODE_PREFIX = "macp.mode."
WILDCARD = "*"
TERMINAL_MESSAGE_TYPE = "Commitment"


@dataclass(frozen=True, slots=True)
class ExtModeEntry:
    """A mode registered at run time; ``promoted`` once PromoteMode made it standards-track."""

    descriptor: ModeDescriptor
    promoted: bool = False


ExtRegistry = Mapping[str, ExtModeEntry]


def _invalid(message: str) -> Rejection:
    return Rejection(ErrorCode.INVALID_REQUEST, message)


def _unknown(mode: str) -> Rejection:
    return Rejection(ErrorCode.MODE_NOT_SUPPORTED, f"mode {mode!r} is not a registered extension mode")


def _name_problem(registry: ExtRegistry, name: str, what: str) -> Rejection | None:
    """Why ``name`` cannot be taken by a new or renamed mode, or None."""
    if not name.strip():
        return _invalid(f"{what} must not be blank")
    if name == WILDCARD:
        return _invalid(f"{what} '*' is reserved: it is the wildcard mode of governance policies")
    if name.startswith(RESERVED_MODE_PREFIX):
        return _invalid(
            f"{what} {name!r} is in the reserved {RESERVED_MODE_PREFIX}* namespace of RFC-track modes; "
            "name an extension like ext.<name>.v1"
        )
    if name in BUILTIN_DESCRIPTORS:
        return _invalid(f"{what} {name!r} is a built-in mode")
    if name in registry:
        return _invalid(f"{what} {name!r} is already registered; unregister it first or choose another name")
    return None


def _descriptor_problem(descriptor: ModeDescriptor) -> Rejection | None:
    if not descriptor.mode_version.strip():
        return _invalid("mode_version must not be blank (for example 1.0.0)")
    if not descriptor.message_types:
        return _invalid("message_types must list at least one message type, including 'Commitment'")
    seen: set[str] = set()
    for message_type in descriptor.message_types:
        if not message_type.strip():
            return _invalid("message_types must not contain a blank entry")
        if message_type in seen:
            return _invalid(f"message_types lists {message_type!r} more than once")
        seen.add(message_type)
    if tuple(descriptor.terminal_message_types) != (TERMINAL_MESSAGE_TYPE,):
        return _invalid(
            "terminal_message_types must be exactly ['Commitment'] (Commitment, and only Commitment, "
            f"ends a session), got {list(descriptor.terminal_message_types)}"
        )
    if TERMINAL_MESSAGE_TYPE not in seen:
        return _invalid("message_types must include the terminal type 'Commitment'")
    return None


def register_ext_mode(
    registry: ExtRegistry, descriptor: ModeDescriptor
) -> dict[str, ExtModeEntry] | Rejection:
    """RegisterExtMode: add ``descriptor`` as an extension mode."""
    problem = _name_problem(registry, descriptor.mode, "mode name") or _descriptor_problem(descriptor)
    if problem is not None:
        return problem
    updated = dict(registry)
    updated[descriptor.mode] = ExtModeEntry(descriptor)
    return updated


def unregister_ext_mode(registry: ExtRegistry, mode: str) -> dict[str, ExtModeEntry] | Rejection:
    """UnregisterExtMode: remove a registered, not promoted mode."""
    if not mode.strip():
        return _invalid("mode must not be blank")
    if mode in BUILTIN_DESCRIPTORS:
        return _invalid(f"mode {mode!r} is built in and cannot be unregistered")
    entry = registry.get(mode)
    if entry is None:
        return _unknown(mode)
    if entry.promoted:
        return _invalid(f"mode {mode!r} is standards-track (promoted) and cannot be unregistered")
    updated = dict(registry)
    del updated[mode]
    return updated


def promote_mode(
    registry: ExtRegistry, mode: str, promoted_mode_name: str = ""
) -> dict[str, ExtModeEntry] | Rejection:
    """PromoteMode: make ``mode`` standards-track, renamed when ``promoted_mode_name`` is set.

    The promoted mode's name, for the response, is ``promoted_mode_name or mode``.
    """
    if not mode.strip():
        return _invalid("mode must not be blank")
    if mode in BUILTIN_DESCRIPTORS:
        return _invalid(f"mode {mode!r} is built in and cannot be promoted")
    entry = registry.get(mode)
    if entry is None:
        return _unknown(mode)
    if entry.promoted:
        return _invalid(f"mode {mode!r} is already standards-track")
    new_name = promoted_mode_name or mode
    updated = dict(registry)
    if new_name != mode:
        problem = _name_problem(registry, new_name, "promoted_mode_name")
        if problem is not None:
            return problem
        del updated[mode]
    updated[new_name] = ExtModeEntry(replace(entry.descriptor, mode=new_name), promoted=True)
    return updated


# -- queries ------------------------------------------------------------------------------------


def list_modes(registry: ExtRegistry) -> tuple[ModeDescriptor, ...]:
    """ListModes: the five standard modes in fixed order, then promoted modes sorted by name."""
    promoted = sorted(name for name, entry in registry.items() if entry.promoted)
    return tuple(s.descriptor for s in STANDARD_SPECS) + tuple(registry[n].descriptor for n in promoted)


def list_ext_modes(registry: ExtRegistry) -> tuple[ModeDescriptor, ...]:
    """ListExtModes: the built-in extensions and the not-yet-promoted registered modes, sorted."""
    found = {s.name: s.descriptor for s in EXTENSION_SPECS}
    found.update((name, entry.descriptor) for name, entry in registry.items() if not entry.promoted)
    return tuple(found[name] for name in sorted(found))


def descriptors(registry: ExtRegistry) -> dict[str, ModeDescriptor]:
    """Registered descriptors by name, promoted or not (what a SessionStart may bind)."""
    return {name: entry.descriptor for name, entry in registry.items()}


def is_standards_track(registry: ExtRegistry, mode: str) -> bool:
    """True for the modes ListModes lists: the five standard modes and the promoted ones."""
    if mode in BUILTIN_DESCRIPTORS:
        return mode not in {s.name for s in EXTENSION_SPECS}
    entry = registry.get(mode)
    return entry is not None and entry.promoted
