"""The extension-mode registry rules: register, unregister, promote, list."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from pymacp.kernel.catalog import BUILTIN_DESCRIPTORS
from pymacp.kernel.errors import ErrorCode, Rejection
from pymacp.kernel.modes.descriptor import ModeDescriptor
from pymacp.kernel.modes.registration import (
    ExtModeEntry,
    descriptors,
    is_standards_track,
    list_ext_modes,
    list_modes,
    promote_mode,
    register_ext_mode,
    unregister_ext_mode,
)

STANDARD_ORDER = [
    "macp.mode.decision.v1",
    "macp.mode.proposal.v1",
    "macp.mode.task.v1",
    "macp.mode.handoff.v1",
    "macp.mode.quorum.v1",
]


def _mode(name: str = "ext.vote.v1", **overrides: Any) -> ModeDescriptor:
    fields: dict[str, Any] = {
        "mode": name,
        "mode_version": "1.0.0",
        "title": "Vote",
        "description": "a test extension",
        "determinism_class": "semantic-deterministic",
        "participant_model": "declared",
        "message_types": ("Ballot", "Commitment"),
        "terminal_message_types": ("Commitment",),
    }
    fields.update(overrides)
    return ModeDescriptor(**fields)


def _registered(*names: str) -> dict[str, ExtModeEntry]:
    registry: dict[str, ExtModeEntry] = {}
    for name in names:
        result = register_ext_mode(registry, _mode(name))
        assert isinstance(result, dict), result
        registry = result
    return registry


def _promoted(registry: dict[str, ExtModeEntry], mode: str, new_name: str = "") -> dict[str, ExtModeEntry]:
    result = promote_mode(registry, mode, new_name)
    assert isinstance(result, dict), result
    return result


def _refused(result: object, code: ErrorCode = ErrorCode.INVALID_REQUEST) -> str:
    assert isinstance(result, Rejection), f"expected a refusal, got {result!r}"
    assert result.code is code, result
    return result.message


def _names(found: tuple[ModeDescriptor, ...]) -> list[str]:
    return [d.mode for d in found]


# -- RegisterExtMode ----------------------------------------------------------------------------


def test_register_adds_an_extension_entry_without_touching_the_input() -> None:
    registry: dict[str, ExtModeEntry] = {}
    result = register_ext_mode(registry, _mode())
    assert result == {"ext.vote.v1": ExtModeEntry(_mode(), promoted=False)}
    assert registry == {}


@pytest.mark.parametrize(
    ("descriptor", "expected"),
    [
        (_mode(""), "mode name must not be blank"),
        (_mode(" \t"), "mode name must not be blank"),
        (_mode("*"), "mode name '*' is reserved"),
        (_mode("macp.mode.vote.v1"), "is in the reserved macp.mode.* namespace"),
        (_mode("ext.multi_round.v1"), "mode name 'ext.multi_round.v1' is a built-in mode"),
        (_mode(mode_version=""), "mode_version must not be blank"),
        (_mode(mode_version="  "), "mode_version must not be blank"),
        (_mode(message_types=()), "message_types must list at least one message type"),
        (_mode(message_types=("Ballot", " ", "Commitment")), "message_types must not contain a blank entry"),
        (
            _mode(message_types=("Ballot", "Ballot", "Commitment")),
            "message_types lists 'Ballot' more than once",
        ),
        (_mode(terminal_message_types=()), "terminal_message_types must be exactly ['Commitment']"),
        (_mode(terminal_message_types=("Ballot",)), "got ['Ballot']"),
        (_mode(terminal_message_types=("Commitment", "Ballot")), "got ['Commitment', 'Ballot']"),
        (_mode(terminal_message_types=("Commitment", "Commitment")), "must be exactly ['Commitment']"),
        (_mode(message_types=("Ballot",)), "message_types must include the terminal type 'Commitment'"),
    ],
)
def test_register_refusals(descriptor: ModeDescriptor, expected: str) -> None:
    message = _refused(register_ext_mode({}, descriptor))
    assert expected in message, message


@pytest.mark.parametrize("name", list(BUILTIN_DESCRIPTORS))
def test_register_refuses_every_builtin_name(name: str) -> None:
    _refused(register_ext_mode({}, _mode(name)))


def test_register_refuses_a_taken_name() -> None:
    registry = _registered("ext.vote.v1")
    message = _refused(register_ext_mode(registry, _mode(mode_version="2.0.0")))
    assert "mode name 'ext.vote.v1' is already registered" in message
    assert registry["ext.vote.v1"].descriptor.mode_version == "1.0.0"


def test_register_refuses_the_name_of_a_promoted_mode() -> None:
    registry = _promoted(_registered("ext.vote.v1"), "ext.vote.v1", "org.vote.v1")
    _refused(register_ext_mode(registry, _mode("org.vote.v1")))
    assert isinstance(register_ext_mode(registry, _mode("ext.vote.v1")), dict)  # the old name is free


# -- UnregisterExtMode --------------------------------------------------------------------------


def test_unregister_removes_the_mode() -> None:
    registry = _registered("ext.a.v1", "ext.b.v1")
    result = unregister_ext_mode(registry, "ext.a.v1")
    assert isinstance(result, dict)
    assert list(result) == ["ext.b.v1"]
    assert "ext.a.v1" in registry


@pytest.mark.parametrize("name", list(BUILTIN_DESCRIPTORS))
def test_unregister_refuses_builtins(name: str) -> None:
    message = _refused(unregister_ext_mode({}, name))
    assert message == f"mode {name!r} is built in and cannot be unregistered"


def test_unregister_refuses_a_blank_name() -> None:
    assert _refused(unregister_ext_mode({}, "")) == "mode must not be blank"


def test_unregister_unknown_mode() -> None:
    message = _refused(unregister_ext_mode({}, "ext.none.v1"), ErrorCode.MODE_NOT_SUPPORTED)
    assert message == "mode 'ext.none.v1' is not a registered extension mode"


def test_unregister_refuses_a_promoted_mode() -> None:
    registry = _promoted(_registered("ext.vote.v1"), "ext.vote.v1")
    message = _refused(unregister_ext_mode(registry, "ext.vote.v1"))
    assert "is standards-track (promoted) and cannot be unregistered" in message


# -- PromoteMode --------------------------------------------------------------------------------


def test_promote_keeps_the_id_when_no_new_name_is_given() -> None:
    registry = _registered("ext.vote.v1")
    result = _promoted(registry, "ext.vote.v1")
    assert result == {"ext.vote.v1": ExtModeEntry(_mode(), promoted=True)}
    assert registry["ext.vote.v1"].promoted is False


def test_promote_to_its_own_name_is_a_plain_promotion() -> None:
    result = _promoted(_registered("ext.vote.v1"), "ext.vote.v1", "ext.vote.v1")
    assert result == {"ext.vote.v1": ExtModeEntry(_mode(), promoted=True)}


def test_promote_with_a_rename_moves_the_descriptor() -> None:
    result = _promoted(_registered("ext.vote.v1", "ext.other.v1"), "ext.vote.v1", "org.vote.v1")
    assert sorted(result) == ["ext.other.v1", "org.vote.v1"]
    assert result["org.vote.v1"] == ExtModeEntry(replace(_mode(), mode="org.vote.v1"), promoted=True)
    assert result["ext.other.v1"].promoted is False


@pytest.mark.parametrize(
    ("mode", "new_name", "code", "expected"),
    [
        ("", "", ErrorCode.INVALID_REQUEST, "mode must not be blank"),
        ("macp.mode.decision.v1", "", ErrorCode.INVALID_REQUEST, "is built in and cannot be promoted"),
        ("ext.multi_round.v1", "", ErrorCode.INVALID_REQUEST, "is built in and cannot be promoted"),
        ("ext.none.v1", "", ErrorCode.MODE_NOT_SUPPORTED, "'ext.none.v1' is not a registered extension mode"),
        ("ext.vote.v1", "macp.mode.vote.v1", ErrorCode.INVALID_REQUEST, "reserved macp.mode.* namespace"),
        ("ext.vote.v1", "  ", ErrorCode.INVALID_REQUEST, "promoted_mode_name must not be blank"),
        ("ext.vote.v1", "*", ErrorCode.INVALID_REQUEST, "promoted_mode_name '*' is reserved"),
        ("ext.vote.v1", "ext.multi_round.v1", ErrorCode.INVALID_REQUEST, "is a built-in mode"),
        ("ext.vote.v1", "macp.mode.task.v1", ErrorCode.INVALID_REQUEST, "reserved macp.mode.* namespace"),
        ("ext.vote.v1", "ext.other.v1", ErrorCode.INVALID_REQUEST, "'ext.other.v1' is already registered"),
    ],
)
def test_promote_refusals(mode: str, new_name: str, code: ErrorCode, expected: str) -> None:
    registry = _registered("ext.vote.v1", "ext.other.v1")
    message = _refused(promote_mode(registry, mode, new_name), code)
    assert expected in message, message


def test_promote_twice_is_refused() -> None:
    registry = _promoted(_registered("ext.vote.v1"), "ext.vote.v1")
    assert "is already standards-track" in _refused(promote_mode(registry, "ext.vote.v1"))


def test_a_renamed_mode_is_gone_under_its_old_name() -> None:
    registry = _promoted(_registered("ext.vote.v1"), "ext.vote.v1", "org.vote.v1")
    _refused(promote_mode(registry, "ext.vote.v1"), ErrorCode.MODE_NOT_SUPPORTED)
    _refused(unregister_ext_mode(registry, "ext.vote.v1"), ErrorCode.MODE_NOT_SUPPORTED)
    assert "ext.vote.v1" not in descriptors(registry)


# -- listing ------------------------------------------------------------------------------------


def test_empty_registry_lists_the_builtins() -> None:
    assert _names(list_modes({})) == STANDARD_ORDER
    assert _names(list_ext_modes({})) == ["ext.multi_round.v1"]
    assert list_modes({})[0] is BUILTIN_DESCRIPTORS["macp.mode.decision.v1"]


def test_listing_order() -> None:
    registry = _registered("ext.zeta.v1", "aaa.first.v1", "ext.beta.v1", "org.late.v1", "ext.alpha.v1")
    registry = _promoted(registry, "org.late.v1")
    registry = _promoted(registry, "ext.alpha.v1", "com.example.alpha.v1")
    assert _names(list_modes(registry)) == [*STANDARD_ORDER, "com.example.alpha.v1", "org.late.v1"]
    assert _names(list_ext_modes(registry)) == [
        "aaa.first.v1",
        "ext.beta.v1",
        "ext.multi_round.v1",
        "ext.zeta.v1",
    ]


def test_descriptors_include_promoted_and_extension_modes() -> None:
    registry = _promoted(_registered("ext.a.v1", "ext.b.v1"), "ext.b.v1", "org.b.v1")
    assert descriptors(registry) == {"ext.a.v1": _mode("ext.a.v1"), "org.b.v1": _mode("org.b.v1")}


def test_is_standards_track() -> None:
    registry = _promoted(_registered("ext.a.v1", "ext.b.v1"), "ext.b.v1")
    assert all(is_standards_track(registry, name) for name in STANDARD_ORDER)
    assert is_standards_track(registry, "ext.b.v1")
    assert not is_standards_track(registry, "ext.a.v1")
    assert not is_standards_track(registry, "ext.multi_round.v1")
    assert not is_standards_track(registry, "ext.unknown.v1")
