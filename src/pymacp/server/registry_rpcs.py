"""Discovery and registry RPCs: Initialize, manifest, modes, roots, policies."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable

from macp.v1 import core_pb2, policy_pb2

from .. import __version__
from ..kernel import ErrorCode, ModeDescriptor, PolicyDescriptor, Rejection
from ..kernel.envelope import SUPPORTED_PROTOCOL_VERSIONS
from ..runtime.core import Refused
from ..runtime.topic import Lagged
from .base import Context, ServiceBase
from .errors import abort

RUNTIME_NAME = "pymacp"
CONTENT_TYPES = ["application/macp-envelope+proto"]
INSTRUCTIONS = (
    "pymacp MACP runtime. Authenticate every call with 'authorization: Bearer <token>'. "
    "Send envelopes with Send or StreamSession; subscribe with StreamSession "
    "(subscribe_session_id, after_sequence). Ended sessions keep their full history."
)


class RegistryRPCs(ServiceBase):
    def capabilities(self) -> core_pb2.Capabilities:
        return core_pb2.Capabilities(
            sessions=core_pb2.SessionsCapability(stream=True, list_sessions=True, watch_sessions=True),
            cancellation=core_pb2.CancellationCapability(cancel_session=True),
            progress=core_pb2.ProgressCapability(progress=True),
            manifest=core_pb2.ManifestCapability(get_manifest=True),
            mode_registry=core_pb2.ModeRegistryCapability(list_modes=True, list_changed=True),
            roots=core_pb2.RootsCapability(list_roots=True, list_changed=False),
            policy_registry=policy_pb2.PolicyRegistryCapability(
                register_policy=not self.runtime.registries.policies_read_only,
                list_policies=True,
                list_changed=True,
                what_if_replay=True,
            ),
            decision_receipt=core_pb2.DecisionReceiptCapability(get_decision_receipt=True, signed=True),
            experimental=core_pb2.ExperimentalCapabilities(features={"ext_mode_lifecycle": "true"}),
        )

    def _mode_names(self) -> list[str]:
        registries = self.runtime.registries
        return [d.mode for d in (*registries.list_modes(), *registries.list_ext_modes())]

    async def Initialize(
        self, request: core_pb2.InitializeRequest, context: Context
    ) -> core_pb2.InitializeResponse:
        offered = list(request.supported_protocol_versions)
        if not offered:
            await abort(
                context, Rejection(ErrorCode.INVALID_REQUEST, "supported_protocol_versions must not be empty")
            )
        common = [v for v in SUPPORTED_PROTOCOL_VERSIONS if v in offered]
        if not common:
            await abort(
                context,
                Rejection(
                    ErrorCode.UNSUPPORTED_PROTOCOL_VERSION,
                    "no common protocol version: this runtime speaks "
                    + ", ".join(SUPPORTED_PROTOCOL_VERSIONS),
                ),
            )
        return core_pb2.InitializeResponse(
            selected_protocol_version=max(common),
            runtime_info=core_pb2.RuntimeInfo(
                name=RUNTIME_NAME,
                title="pymacp",
                version=__version__,
                description="A MACP runtime in Python: durable sessions on embedded SQLite.",
            ),
            capabilities=self.capabilities(),
            supported_modes=self._mode_names(),
            instructions=INSTRUCTIONS,
        )

    async def GetManifest(
        self, request: core_pb2.GetManifestRequest, context: Context
    ) -> core_pb2.GetManifestResponse:
        if request.agent_id not in ("", RUNTIME_NAME):
            await abort(
                context,
                Rejection(ErrorCode.AGENT_NOT_FOUND, f"this runtime hosts no agent {request.agent_id!r}"),
            )
        manifest = core_pb2.AgentManifest(
            agent_id=RUNTIME_NAME,
            title="pymacp runtime",
            description="MACP coordination runtime",
            supported_modes=self._mode_names(),
            input_content_types=CONTENT_TYPES,
            output_content_types=CONTENT_TYPES,
        )
        return core_pb2.GetManifestResponse(manifest=manifest)

    async def ListModes(
        self, request: core_pb2.ListModesRequest, context: Context
    ) -> core_pb2.ListModesResponse:
        return core_pb2.ListModesResponse(modes=[d.to_proto() for d in self.runtime.registries.list_modes()])

    async def ListExtModes(
        self, request: core_pb2.ListExtModesRequest, context: Context
    ) -> core_pb2.ListExtModesResponse:
        return core_pb2.ListExtModesResponse(
            modes=[d.to_proto() for d in self.runtime.registries.list_ext_modes()]
        )

    async def RegisterExtMode(
        self, request: core_pb2.RegisterExtModeRequest, context: Context
    ) -> core_pb2.RegisterExtModeResponse:
        identity = await self.identity(context)
        if not request.HasField("mode_descriptor"):
            await abort(
                context,
                Rejection(ErrorCode.INVALID_REQUEST, "RegisterExtModeRequest.mode_descriptor is required"),
            )
        problem = await self._registry_call(
            context,
            self.runtime.register_ext_mode(identity, ModeDescriptor.from_proto(request.mode_descriptor)),
        )
        return core_pb2.RegisterExtModeResponse(ok=problem is None, error=problem.message if problem else "")

    async def UnregisterExtMode(
        self, request: core_pb2.UnregisterExtModeRequest, context: Context
    ) -> core_pb2.UnregisterExtModeResponse:
        identity = await self.identity(context)
        problem = await self._registry_call(context, self.runtime.unregister_ext_mode(identity, request.mode))
        return core_pb2.UnregisterExtModeResponse(
            ok=problem is None, error=problem.message if problem else ""
        )

    async def PromoteMode(
        self, request: core_pb2.PromoteModeRequest, context: Context
    ) -> core_pb2.PromoteModeResponse:
        identity = await self.identity(context)
        problem = await self._registry_call(
            context, self.runtime.promote_mode(identity, request.mode, request.promoted_mode_name)
        )
        if problem is not None:
            return core_pb2.PromoteModeResponse(ok=False, error=problem.message)
        return core_pb2.PromoteModeResponse(ok=True, mode=request.promoted_mode_name or request.mode)

    async def _registry_call(self, context: Context, call: Awaitable[Rejection | None]) -> Rejection | None:
        try:
            problem = await call
        except Refused as exc:
            await self.refuse(context, exc)
        if problem is not None and problem.code is ErrorCode.REGISTRY_READ_ONLY:
            await abort(context, problem)
        return problem

    async def WatchModeRegistry(
        self, request: core_pb2.WatchModeRegistryRequest, context: Context
    ) -> AsyncIterator[core_pb2.WatchModeRegistryResponse]:
        while True:  # a hint stream: after a lag, one catch-up hint is as good as the missed ones
            sub = self.runtime.registries.mode_changes.subscribe(16)
            try:
                yield self._mode_change()
                async for _ in sub:
                    yield self._mode_change()
                return  # the runtime is stopping
            except Lagged:
                continue
            finally:
                sub.close()

    def _mode_change(self) -> core_pb2.WatchModeRegistryResponse:
        change = core_pb2.RegistryChanged(registry="modes", observed_at_unix_ms=self.runtime.clock())
        return core_pb2.WatchModeRegistryResponse(change=change)

    async def ListRoots(
        self, request: core_pb2.ListRootsRequest, context: Context
    ) -> core_pb2.ListRootsResponse:
        return core_pb2.ListRootsResponse(roots=[])

    async def WatchRoots(
        self, request: core_pb2.WatchRootsRequest, context: Context
    ) -> AsyncIterator[core_pb2.WatchRootsResponse]:
        yield core_pb2.WatchRootsResponse(
            change=core_pb2.RootsChanged(observed_at_unix_ms=self.runtime.clock())
        )
        await self.runtime.stopping.wait()  # roots never change; stay open until the runtime stops

    async def RegisterPolicy(
        self, request: policy_pb2.RegisterPolicyRequest, context: Context
    ) -> policy_pb2.RegisterPolicyResponse:
        identity = await self.identity(context)
        problem = await self._registry_call(
            context, self.runtime.register_policy(identity, request.policy_descriptor)
        )
        return policy_pb2.RegisterPolicyResponse(ok=problem is None, error=problem.message if problem else "")

    async def UnregisterPolicy(
        self, request: policy_pb2.UnregisterPolicyRequest, context: Context
    ) -> policy_pb2.UnregisterPolicyResponse:
        identity = await self.identity(context)
        problem = await self._registry_call(
            context, self.runtime.unregister_policy(identity, request.policy_id)
        )
        return policy_pb2.UnregisterPolicyResponse(
            ok=problem is None, error=problem.message if problem else ""
        )

    async def GetPolicy(
        self, request: policy_pb2.GetPolicyRequest, context: Context
    ) -> policy_pb2.GetPolicyResponse:
        await self.identity(context)
        try:
            descriptor = self.runtime.policy(request.policy_id)
        except Refused as exc:
            await self.refuse(context, exc)
        return policy_pb2.GetPolicyResponse(policy_descriptor=descriptor.to_proto())

    async def ListPolicies(
        self, request: policy_pb2.ListPoliciesRequest, context: Context
    ) -> policy_pb2.ListPoliciesResponse:
        await self.identity(context)
        return policy_pb2.ListPoliciesResponse(
            descriptors=[d.to_proto() for d in self.runtime.registries.all_policies(request.mode)]
        )

    async def WatchPolicies(
        self, request: policy_pb2.WatchPoliciesRequest, context: Context
    ) -> AsyncIterator[policy_pb2.WatchPoliciesResponse]:
        registries = self.runtime.registries
        while True:  # every notification carries the full list, so after a lag the current one suffices
            sub = registries.policy_changes.subscribe(16)
            try:
                yield self._policies(tuple(registries.all_policies()))
                async for descriptors in sub:
                    yield self._policies(descriptors)
                return  # the runtime is stopping
            except Lagged:
                continue
            finally:
                sub.close()

    def _policies(self, descriptors: tuple[PolicyDescriptor, ...]) -> policy_pb2.WatchPoliciesResponse:
        return policy_pb2.WatchPoliciesResponse(
            descriptors=[d.to_proto() for d in descriptors],
            observed_at_unix_ms=self.runtime.clock(),
        )
