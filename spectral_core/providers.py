"""onnxruntime execution providers by the short names the command line uses: the one table of them.

Pure data (no onnxruntime import): the edge runtime, the validator and the command-line choices all read it, so
a provider is added or renamed in one place.
"""

from __future__ import annotations

from typing import Literal

__all__ = ["GPU_PROVIDERS", "PROVIDERS", "PROVIDER_CHOICES", "ProviderName", "short_name"]

#: short name -> onnxruntime execution provider, fastest first.
PROVIDERS: dict[str, str] = {
    "tensorrt": "TensorrtExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "cpu": "CPUExecutionProvider",
}

#: What ``--provider`` accepts: a short name, or ``auto`` (the fastest one that loads, CPU last).
ProviderName = Literal["auto", "cpu", "cuda", "tensorrt"]
PROVIDER_CHOICES: tuple[str, ...] = ("auto", *PROVIDERS)

#: The providers that run on a GPU (what ``--require-gpu`` accepts).
GPU_PROVIDERS = frozenset({PROVIDERS["tensorrt"], PROVIDERS["cuda"]})

_SHORT = {ep: name for name, ep in PROVIDERS.items()}


def short_name(ep: str) -> str | None:
    """The short name of an onnxruntime execution provider (``"CUDAExecutionProvider"`` -> ``"cuda"``), or None
    for a provider this project does not select."""
    return _SHORT.get(ep)
