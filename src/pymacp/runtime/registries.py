"""The policy and extension-mode registries, persisted beside the log.

Unlike the reference runtime, registrations survive restarts: every change is written
to the store before it takes effect. With ``MACP_POLICIES_DIR`` the policy registry is
loaded from ``*.json`` files instead (before sessions are recovered) and is read-only.
Sessions never depend on either registry after they start: each binds a copy of its
policy and mode descriptor in its SessionStart entry.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from ..kernel import ErrorCode, ModeDescriptor, PolicyDescriptor, Registry, Rejection
from ..kernel.modes import registration as modes
from ..kernel.policy import registration as policies
from ..kernel.policy.descriptor import STANDARD_POLICIES
from ..storage import EXTENSION_MODES, POLICIES, Store
from .topic import Topic

log = logging.getLogger("pymacp.runtime")


class PolicyDirectoryError(Exception):
    """A policy file in MACP_POLICIES_DIR was refused; the runtime must not start."""


def load_policy_directory(directory: Path, now_ms: int) -> dict[str, PolicyDescriptor]:
    """Every ``*.json`` descriptor in ``directory``, in name order, registered as by the RPC."""
    loaded: dict[str, PolicyDescriptor] = {}
    for path in sorted(directory.glob("*.json")):
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise PolicyDirectoryError(f"{path}: not readable JSON: {exc}") from None
        descriptor = policies.descriptor_from_json(document)
        if isinstance(descriptor, Rejection):
            raise PolicyDirectoryError(f"{path}: {descriptor.message}")
        result = policies.register(loaded, descriptor, now_ms)
        if isinstance(result, Rejection):
            raise PolicyDirectoryError(f"{path}: {result.message}")
        loaded = result
    return loaded


class Registries:
    def __init__(self, store: Store, *, policies_dir: Path | None = None) -> None:
        self._store = store
        self._policies_dir = policies_dir
        self.policies: dict[str, PolicyDescriptor] = {}
        self.ext_modes: dict[str, modes.ExtModeEntry] = {}
        self.snapshot = Registry()
        self.policy_changes: Topic[tuple[PolicyDescriptor, ...]] = Topic()
        self.mode_changes: Topic[str] = Topic()

    @property
    def policies_read_only(self) -> bool:
        return self._policies_dir is not None

    async def load(self, now_ms: int) -> None:
        if self._policies_dir is not None:
            self.policies = load_policy_directory(self._policies_dir, now_ms)
            log.info(
                "loaded %d policies from %s (registry is read-only)", len(self.policies), self._policies_dir
            )
        else:
            for key, text in (await self._store.documents(POLICIES)).items():
                descriptor = policies.descriptor_from_json(json.loads(text))
                if isinstance(descriptor, Rejection):
                    log.error(
                        "stored policy %s no longer validates (%s); keeping it", key, descriptor.message
                    )
                    descriptor = PolicyDescriptor.from_json(json.loads(text))
                self.policies[key] = descriptor
        for key, text in (await self._store.documents(EXTENSION_MODES)).items():
            doc = json.loads(text)
            self.ext_modes[key] = modes.ExtModeEntry(
                ModeDescriptor.from_json(doc["descriptor"]), bool(doc["promoted"])
            )
        self._refresh()

    def _refresh(self) -> None:
        self.snapshot = Registry(
            policies=dict(self.policies), extension_modes=modes.descriptors(self.ext_modes)
        )

    # ---------------------------------------------------------------- policies
    def all_policies(self, mode: str = "") -> list[PolicyDescriptor]:
        every = [p for p in self.snapshot_policies() if not mode or p.mode in (mode, "*")]
        return sorted(every, key=lambda p: p.policy_id)

    def snapshot_policies(self) -> list[PolicyDescriptor]:
        return [*STANDARD_POLICIES, *self.policies.values()]

    def policy(self, policy_id: str) -> PolicyDescriptor | None:
        return self.snapshot.policy(policy_id)

    async def register_policy(self, descriptor: PolicyDescriptor, now_ms: int) -> Rejection | None:
        if self.policies_read_only:
            return Rejection(
                ErrorCode.REGISTRY_READ_ONLY,
                "the policy registry is loaded from MACP_POLICIES_DIR and is read-only",
            )
        result = policies.register(self.policies, descriptor, now_ms)
        if isinstance(result, Rejection):
            return result
        stored = result[descriptor.policy_id]
        await self._store.put_document(
            POLICIES, stored.policy_id, json.dumps(stored.to_json(), sort_keys=True)
        )
        self.policies = result
        self._refresh()
        self.policy_changes.publish(tuple(self.all_policies()))
        return None

    async def unregister_policy(self, policy_id: str) -> Rejection | None:
        if self.policies_read_only:
            return Rejection(
                ErrorCode.REGISTRY_READ_ONLY,
                "the policy registry is loaded from MACP_POLICIES_DIR and is read-only",
            )
        result = policies.unregister(self.policies, policy_id)
        if isinstance(result, Rejection):
            return result
        await self._store.delete_document(POLICIES, policy_id)
        self.policies = result
        self._refresh()
        self.policy_changes.publish(tuple(self.all_policies()))
        return None

    # ---------------------------------------------------------------- extension modes
    def list_modes(self) -> tuple[ModeDescriptor, ...]:
        return modes.list_modes(self.ext_modes)

    def list_ext_modes(self) -> tuple[ModeDescriptor, ...]:
        return modes.list_ext_modes(self.ext_modes)

    async def register_ext_mode(self, descriptor: ModeDescriptor) -> Rejection | None:
        return await self._update_modes(modes.register_ext_mode(self.ext_modes, descriptor))

    async def unregister_ext_mode(self, mode: str) -> Rejection | None:
        return await self._update_modes(modes.unregister_ext_mode(self.ext_modes, mode))

    async def promote_mode(self, mode: str, promoted_name: str) -> Rejection | None:
        return await self._update_modes(modes.promote_mode(self.ext_modes, mode, promoted_name))

    async def _update_modes(self, result: dict[str, modes.ExtModeEntry] | Rejection) -> Rejection | None:
        if isinstance(result, Rejection):
            return result
        for key in self.ext_modes.keys() - result.keys():
            await self._store.delete_document(EXTENSION_MODES, key)
        for key, entry in result.items():
            if self.ext_modes.get(key) != entry:
                doc = {"descriptor": entry.descriptor.to_json(), "promoted": entry.promoted}
                await self._store.put_document(EXTENSION_MODES, key, json.dumps(doc, sort_keys=True))
        self.ext_modes = result
        self._refresh()
        self.mode_changes.publish("modes")
        return None
