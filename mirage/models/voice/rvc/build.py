"""Networks by golden-manifest name, in eval mode on CPU with their sampling noise zeroed."""

from __future__ import annotations

from collections.abc import Callable
from types import MappingProxyType

from torch import nn

from mirage.models.voice.rvc.rmvpe import Rmvpe
from mirage.models.voice.rvc.synthesizer import Synthesizer, SynthesizerConfig

#: The official 40 kHz config (``configs/v1/40k.json``; the WebUI uses it for v2 40k too).
CONFIG_40K: tuple[object, ...] = (
    1025, 32, 192, 192, 768, 2, 6, 3, 0, "1",
    [3, 7, 11], [[1, 3, 5], [1, 3, 5], [1, 3, 5]],
    [10, 10, 2, 2], 512, [16, 16, 4, 4], 109, 256, 40000,
)  # fmt: skip


def _synthesizer(version: str) -> Callable[[], nn.Module]:
    def make() -> nn.Module:
        cfg = SynthesizerConfig.from_list(CONFIG_40K)
        return Synthesizer(cfg, version, noise_scale=0.0, nsf_noise_scale=0.0)

    return make


_FACTORIES: MappingProxyType[str, Callable[[], nn.Module]] = MappingProxyType(
    {
        "rvc_v1_40k": _synthesizer("v1"),
        "rvc_v2_40k": _synthesizer("v2"),
        "rmvpe": Rmvpe,
    }
)

NETWORK_NAMES = tuple(_FACTORIES)


def build_network(name: str) -> nn.Module:
    """The module for a manifest ``network`` name; call it with ``io.inputs`` by keyword.

    Weights are left at their random init: load a state dict (or the golden fill) next.
    Raises ``KeyError`` naming the known networks for any other name.
    """
    try:
        factory = _FACTORIES[name]
    except KeyError:
        raise KeyError(f"unknown RVC network {name!r}; known: {', '.join(NETWORK_NAMES)}") from None
    return factory().eval()
