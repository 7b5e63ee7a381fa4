"""How the ingress reaches its stages: the one place the two Serve layouts differ.

``build_app`` (workflows/serve/app.py) picks the layout and hands the ingress one of these; the
ingress awaits the same methods either way and runs the one orchestration
(``components.inference.answer_tracks_async``) over them, so it holds no layout branch:

- ``StagedStages``: Serve handles to the face pipeline, member and combiner deployments; a call
  that fails because a replica died is retried once, a second failure is a 503 for the client.
- ``FusedStages``: the same stage classes (``workflows.serve.deployments``) built in the ingress
  replica and called without a Serve hop: synchronous stage methods in a worker thread, members
  through their ``@serve.batch`` method. A fused replica that dies takes its requests with it
  (Serve replaces it); local calls are not retried.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

from ray.exceptions import RayActorError

from components.serving_inputs import BadInput
from workflows.serve.deployments import Combiner, FacePipelineDeployment, MemberModel

log = logging.getLogger("facsflow.serve")

__all__ = ["StagedStages", "FusedStages", "LocalStages", "FacesArgs", "MemberArgs"]


@dataclass
class FacesArgs:
    """Constructor arguments of ``FacePipelineDeployment``."""

    preload: list[dict[str, Any]]
    """Face pipeline configurations whose models load at start (the first manifest's plan)."""
    limits: dict[str, Any]
    """``components.serving_inputs.Limits`` fields."""


@dataclass
class MemberArgs:
    """Constructor arguments of ``MemberModel`` besides the manifest and slot."""

    max_batch_size: int = 16
    batch_wait_timeout_s: float = 0.005
    use_gpu: bool = False


@dataclass
class StagedStages:
    """The stages as Serve deployments, reached through handles (Serve swaps the bound
    applications held here for handles when it builds the ingress)."""

    faces: Any
    members: list[Any]
    combiner: Any

    def start(self, ensemble: str) -> "StagedStages":
        """Nothing to build: each deployment loads its own models."""
        return self

    async def _call(self, method: Any, *args: Any) -> Any:
        try:
            return await method.remote(*args)
        except RayActorError as e:
            log.warning("retrying once after a replica failure (%s)", type(e).__name__)
        try:
            return await method.remote(*args)
        except RayActorError as e:
            raise BadInput(503, f"a backend replica failed twice ({type(e).__name__}); try again shortly") from None

    async def image(self, data: bytes, content_type: str, faces: dict[str, Any]) -> dict[str, Any]:
        return await self._call(self.faces.image, data, content_type, faces)

    async def video(self, data: bytes, content_type: str, faces: dict[str, Any], steps: list[int]) -> dict[str, Any]:
        return await self._call(self.faces.video, data, content_type, faces, steps)

    async def stream(self, data: bytes, content_type: str, faces: dict[str, Any], state: Any, index: int) -> dict[str, Any]:
        return await self._call(self.faces.stream, data, content_type, faces, state, index)

    async def member(self, slot: int, request: dict[str, Any]) -> dict[str, Any]:
        return await self._call(self.members[slot].predict, request)

    async def combine(self, manifest: Any, use: list[int], outs: list[dict[str, Any]], window: int) -> dict[str, Any]:
        return await self._call(self.combiner.combine, manifest, use, outs, window)

    async def probe_faces(self) -> None:
        await self._call(self.faces.probe)

    async def check_health(self) -> None:
        """The deployments' replicas check themselves."""

    def reconfigure(self, config: dict[str, Any]) -> None:
        """Member deployments get the same ``user_config`` from Serve and preload themselves."""


@dataclass
class FusedStages:
    """The stages' constructor arguments; ``start`` builds them in the ingress replica."""

    faces_args: FacesArgs
    member_args: MemberArgs

    def start(self, ensemble: str) -> "LocalStages":
        # One member object for every member: @serve.batch keeps one queue per method and process.
        return LocalStages({"faces": FacePipelineDeployment.func_or_class(self.faces_args),
                            "member": MemberModel.func_or_class(ensemble, None, self.member_args),
                            "combiner": Combiner.func_or_class()})


class LocalStages:
    """The stage objects of a fused replica, called in process. Kept apart from ``FusedStages``
    (the ingress's constructor argument, which Serve pickles to look for handles in it, and a
    loaded ONNX session cannot be pickled)."""

    def __init__(self, objects: dict[str, Any]) -> None:
        self._objects = objects

    async def image(self, data: bytes, content_type: str, faces: dict[str, Any]) -> dict[str, Any]:
        return await asyncio.to_thread(self._objects["faces"].image, data, content_type, faces)

    async def video(self, data: bytes, content_type: str, faces: dict[str, Any], steps: list[int]) -> dict[str, Any]:
        return await asyncio.to_thread(self._objects["faces"].video, data, content_type, faces, steps)

    async def stream(self, data: bytes, content_type: str, faces: dict[str, Any], state: Any, index: int) -> dict[str, Any]:
        return await asyncio.to_thread(self._objects["faces"].stream, data, content_type, faces, state, index)

    async def member(self, slot: int, request: dict[str, Any]) -> dict[str, Any]:
        return await self._objects["member"].predict(request)

    async def combine(self, manifest: Any, use: list[int], outs: list[dict[str, Any]], window: int) -> dict[str, Any]:
        return self._objects["combiner"].combine(manifest, use, outs, window)  # microseconds: no thread hop

    async def probe_faces(self) -> None:
        await asyncio.to_thread(self._objects["faces"].probe)

    async def check_health(self) -> None:
        """Each stage's own health check in this replica: a detection, every member's forward
        pass, a combination."""
        await asyncio.to_thread(self._objects["faces"].check_health)
        await asyncio.to_thread(self._objects["member"].check_health)
        self._objects["combiner"].check_health()

    def reconfigure(self, config: dict[str, Any]) -> None:
        """The new manifest's members load before the ingress swaps the manifest."""
        self._objects["member"].reconfigure(config)
