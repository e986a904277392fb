"""RamanNet (Ibtehaz et al., 2022) in PyTorch.

A spectrum of L points is cut into overlapping windows of ``w`` points every ``dw`` points; each window has
its own dense layer (n1 units) + batch norm + LeakyReLU. The window features are concatenated and pass
dropout -> dense n2 -> BN -> LeakyReLU -> dropout -> dense nf (the embedding, L2-normalised as the embedding
output) -> BN -> LeakyReLU -> dropout -> dense to the classes.

Windows are one batched operation: a gather of window indices and one einsum over per-window weights, never
a Python loop of per-window layers, so the exported ONNX graph stays a handful of nodes.

Differences from the original TensorFlow code, on purpose:
- The original window loop ``range(0, L - w, dw)`` drops the tail: for L = 1000, w = 50, dw = 25 it builds 38
  windows and never looks at points 975-999. By default we cover the whole spectrum (a last window aligned
  to the end when the step does not land there: 39 windows for that case). ``paper_compat=True`` reproduces
  the 38-window behaviour exactly.
- Keras defaults are matched where PyTorch differs: LeakyReLU slope 0.3, batch-norm momentum 0.99
  (PyTorch ``momentum=0.01``) and epsilon 1e-3, Glorot-uniform weights and zero biases.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

__all__ = ["RamanNet", "RamanNetConfig", "window_starts"]

KERAS_BN_MOMENTUM = 0.01  # PyTorch convention: 1 - Keras momentum (0.99)
KERAS_BN_EPS = 1e-3
KERAS_LEAKY_SLOPE = 0.3


class RamanNetConfig(BaseModel):
    """Architecture of RamanNet. Defaults are the paper's."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    input_length: int = Field(ge=2, description="points per spectrum on the model axis")
    n_classes: int = Field(ge=2)
    window: int = Field(default=50, ge=1, description="window length w, points")
    step: int = Field(default=25, ge=1, description="window step dw, points")
    n1: int = Field(default=25, ge=1, description="units of each window's dense layer")
    n2: int = Field(default=512, ge=1)
    embedding_dim: int = Field(default=256, ge=2, description="nf, size of the embedding")
    dp1: float = Field(default=0.5, ge=0, lt=1)
    dp2: float = Field(default=0.4, ge=0, lt=1)
    dp3: float = Field(default=0.25, ge=0, lt=1)
    leaky_slope: float = KERAS_LEAKY_SLOPE
    bn_momentum: float = KERAS_BN_MOMENTUM
    bn_eps: float = KERAS_BN_EPS
    paper_compat: bool = Field(default=False, description="reproduce the original's 38-window tail drop")


def window_starts(length: int, window: int, step: int, *, paper_compat: bool = False) -> list[int]:
    """Start indices of the windows over a spectrum of ``length`` points.

    Default: every ``step`` points while the window fits, plus one window aligned to the end if the last
    regular window stops short of it, so every point is seen. ``paper_compat``: the original
    ``range(0, length - window, step)``, which drops the tail.
    """
    if window > length:
        raise ValueError(f"window ({window}) is longer than the spectrum ({length} points)")
    if paper_compat:
        starts = list(range(0, length - window, step))
        if not starts:
            raise ValueError(f"paper_compat builds no window for length {length} and window {window}")
        return starts
    starts = list(range(0, length - window + 1, step))
    if starts[-1] + window < length:
        starts.append(length - window)
    return starts


class RamanNet(nn.Module):
    """RamanNet. ``forward`` returns ``(logits, embedding)``; the embedding is L2-normalised."""

    window_index: torch.Tensor

    def __init__(self, config: RamanNetConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        starts = window_starts(c.input_length, c.window, c.step, paper_compat=c.paper_compat)
        self.n_windows = len(starts)
        idx = torch.tensor(starts, dtype=torch.long)[:, None] + torch.arange(c.window)[None, :]
        self.register_buffer("window_index", idx, persistent=False)
        self.window_weight = nn.Parameter(torch.empty(self.n_windows, c.window, c.n1))
        self.window_bias = nn.Parameter(torch.zeros(self.n_windows, c.n1))
        feat = self.n_windows * c.n1
        self.window_bn = nn.BatchNorm1d(feat, momentum=c.bn_momentum, eps=c.bn_eps)
        self.drop1 = nn.Dropout(c.dp1)
        self.dense2 = nn.Linear(feat, c.n2)
        self.bn2 = nn.BatchNorm1d(c.n2, momentum=c.bn_momentum, eps=c.bn_eps)
        self.drop2 = nn.Dropout(c.dp2)
        self.embed = nn.Linear(c.n2, c.embedding_dim)
        self.bn3 = nn.BatchNorm1d(c.embedding_dim, momentum=c.bn_momentum, eps=c.bn_eps)
        self.drop3 = nn.Dropout(c.dp3)
        self.classifier = nn.Linear(c.embedding_dim, c.n_classes)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Keras defaults: Glorot-uniform weights, zero biases."""
        c = self.config
        bound = math.sqrt(6.0 / (c.window + c.n1))
        nn.init.uniform_(self.window_weight, -bound, bound)
        nn.init.zeros_(self.window_bias)
        for lin in (self.dense2, self.embed, self.classifier):
            nn.init.xavier_uniform_(lin.weight)
            nn.init.zeros_(lin.bias)

    def window_features(self, x: torch.Tensor) -> torch.Tensor:
        """Per-window dense outputs before batch norm, shape [B, n_windows, n1]."""
        windows = x[:, self.window_index]  # [B, n_windows, w]: one Gather in ONNX
        return torch.einsum("bnw,nwu->bnu", windows, self.window_weight) + self.window_bias

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Args: x [B, L] spectra on the model axis. Returns (logits [B, C], embedding [B, nf], unit L2 norm)."""
        c = self.config
        h = self.window_features(x).flatten(1)
        h = F.leaky_relu(self.window_bn(h), c.leaky_slope)
        h = self.drop1(h)
        h = F.leaky_relu(self.bn2(self.dense2(h)), c.leaky_slope)
        h = self.drop2(h)
        e = self.embed(h)
        emb = F.normalize(e, p=2.0, dim=1, eps=1e-12)
        h = F.leaky_relu(self.bn3(e), c.leaky_slope)
        h = self.drop3(h)
        return self.classifier(h), emb
