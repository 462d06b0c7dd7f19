"""Optional speed-ups of the render step (warp W → generator G): torch.compile, CUDA graphs.

Both are off by default and chosen per animator (``face_options``: ``compile``,
``cuda_graphs``):

* ``compile`` wraps W and G in ``torch.compile`` (inductor; ``max-autotune`` on CUDA, the
  default mode on CPU). The compiler runs on the first call, which is where a missing
  toolchain (no C++ compiler on CPU, no Triton on CUDA) shows up: ``Compiled`` then logs
  the reason and runs the module eagerly for good, so a session never fails for it.
* ``cuda_graphs`` needs a CUDA device; on a CPU it is ignored with a log line (it is a
  speed hint, not a change of result, and ``device=auto`` may land on either). With
  ``compile`` it selects inductor's CUDA graphs (``max-autotune``); alone it captures the
  eager W → G once as one ``torch.cuda.CUDAGraph`` and replays it per frame
  (``GraphedRender``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import torch

log = logging.getLogger(__name__)

#: Warm-up runs on a side stream before capture, as torch's CUDA-graph notes ask.
WARMUP_RUNS = 3


def compile_mode(device: torch.device, cuda_graphs: bool) -> str | None:
    """torch.compile's mode: autotuned on CUDA, with or without CUDA graphs; default on CPU."""
    if device.type != "cuda":
        return None
    return "max-autotune" if cuda_graphs else "max-autotune-no-cudagraphs"


class Compiled:
    """``torch.compile(module)`` that falls back to the eager module when compiling fails.

    Only the compiler backend's failures (``BackendCompilerFailed``, which inductor's
    errors, a missing C++ compiler or Triton among them, derive from) trigger the
    fallback; an error of the model or its inputs propagates and compiling stays on.
    ``fallback_reason`` says why it runs eagerly (``None`` while compiled).
    """

    def __init__(self, module: Callable[..., Any], mode: str | None, name: str) -> None:
        self.eager = module
        self.name = name
        self.mode = mode
        self.fallback_reason: str | None = None
        self._compiled = torch.compile(module, mode=mode)

    @property
    def active(self) -> bool:
        return self.fallback_reason is None

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.fallback_reason is not None:
            return self.eager(*args, **kwargs)
        try:
            return self._compiled(*args, **kwargs)
        except torch._dynamo.exc.BackendCompilerFailed as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            self.fallback_reason = f"{type(exc).__name__}: {first}"
            log.warning(
                "liveportrait: torch.compile of %s failed, running it eagerly: %s",
                self.name,
                self.fallback_reason,
            )
            return self.eager(*args, **kwargs)


RenderFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


class GraphedRender:
    """One eager W → G call captured as a CUDA graph and replayed for every frame.

    Inputs are copied into the graph's static tensors (the source volume and keypoints
    only when a new reference brings new ones); a change of shape or dtype re-captures.
    The returned image is the graph's static output: it is overwritten by the next call,
    so use it (paste it, read it back) before calling again.
    """

    def __init__(self, render: RenderFn, device: torch.device) -> None:
        if device.type != "cuda":
            raise ValueError("CUDA graphs need a CUDA device")
        self.render = render
        self.device = device
        self.captures = 0
        self._graph: torch.cuda.CUDAGraph | None = None
        self._inputs: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None
        self._fed: tuple[torch.Tensor | None, torch.Tensor | None] = (None, None)
        self._out: torch.Tensor | None = None

    def _fits(self, args: tuple[torch.Tensor, ...]) -> bool:
        if self._inputs is None:
            return False
        return all(
            a.shape == s.shape and a.dtype == s.dtype
            for a, s in zip(args, self._inputs, strict=True)
        )

    def _capture(self, feature: torch.Tensor, kp_d: torch.Tensor, kp_s: torch.Tensor) -> None:
        self._graph = None  # free the old graph's pool before building a new one
        static = (feature.clone(), kp_d.clone(), kp_s.clone())
        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side):
            for _ in range(WARMUP_RUNS):
                self.render(*static)
        torch.cuda.current_stream(self.device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            self._out = self.render(*static)
        self._graph = graph
        self._inputs = static
        self._fed = (feature, kp_s)
        self.captures += 1

    def __call__(
        self, feature: torch.Tensor, kp_driving: torch.Tensor, kp_source: torch.Tensor
    ) -> torch.Tensor:
        args = (feature, kp_driving, kp_source)
        if not self._fits(args):
            self._capture(*args)
        else:
            assert self._inputs is not None
            static_f, static_d, static_s = self._inputs
            static_d.copy_(kp_driving)
            if self._fed[0] is not feature:
                static_f.copy_(feature)
            if self._fed[1] is not kp_source:
                static_s.copy_(kp_source)
            self._fed = (feature, kp_source)  # held, so their memory is not reused
        assert self._graph is not None and self._out is not None
        self._graph.replay()
        return self._out
