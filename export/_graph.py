"""The inference form of RamanNet that is exported: exact eval-mode rewrites of :class:`trainer.model.RamanNet`.

What changes from the training module, and why each rewrite is exact in eval mode:

- The host's normalisation (:func:`spectral_core.preprocess.normalise`) runs first, in the graph, so a runtime
  cannot forget it (contract ``in_graph_steps = ["normalise"]``).
- Every batch norm is an affine map with frozen statistics: it is folded into the dense layer before it
  (window layer, dense2) or kept as one Mul + Add where the un-normalised value is also needed (bn3 sits after
  the embedding, which is an output itself).
- The window layer is one Gather of all window indices then one batched MatMul over the windows; its node
  count does not grow with the number of windows. It works on the transposed batch, ``x.T [L, B]``: the
  Gather then copies whole rows of B values (not B x n_windows x w single floats), and
  ``[n_windows, n1, w] @ [n_windows, w, B] -> [n_windows * n1, B]`` needs one transpose of the input and one of
  the result. Bit-identical to the ``[B, n_windows, w]`` form and 20-25% faster at batch 256 on 2 cores.
  (A dense ``L x n_windows*n1`` block-sparse GEMM was measured too: 20x the FLOPs, 3.9 MB of weights, and
  2.5x slower at batch 1 on the 2-core CPU, so it is not used.)
- Dropout is the identity.
- fp16 models are built here (layers in float16, explicit Casts), not by rewriting the ONNX graph.

An ensemble (:class:`InferenceEnsemble`, ``trainer.ensemble``) is K folded members behind one normalisation,
with the single model's inputs and outputs: probabilities the mean of the members' softmax, logits the log of
that mean, embedding the members' unit embeddings concatenated and divided by sqrt(K) (unit norm).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from spectral_core.preprocess import FLAT_EPS, NORMALISATIONS
from trainer.model import RamanNet

__all__ = ["InferenceEnsemble", "InferenceRamanNet", "torch_normalise"]

OUTPUT_NAMES = ("probabilities", "logits", "embedding")
INPUT_NAME = "spectrum"
#: the buffer (and so ONNX initialiser) name of the classifier weight: ``wc`` in a single model, ``members.K.wc``
#: in an ensemble; the int8 export keeps the MatMuls that read it in float32
CLASSIFIER_WEIGHT = "wc"


def torch_normalise(x: torch.Tensor, method: str) -> torch.Tensor:
    """Row-wise normalisation, the torch twin of :func:`spectral_core.preprocess.normalise` (same formulas,
    same flat-row rule: a row whose scale is <= FLAT_EPS is divided by 1). The host flags flat rows as
    errors before they reach a model, so the rule only keeps the graph free of inf/NaN."""
    if method == "none":
        return x
    if method == "minmax":
        shift = torch.amin(x, dim=1, keepdim=True)
        scale = torch.amax(x, dim=1, keepdim=True) - shift
    elif method == "vector":
        shift = None
        scale = torch.linalg.vector_norm(x, ord=2, dim=1, keepdim=True)
    elif method == "area":
        shift = None
        scale = torch.sum(torch.abs(x), dim=1, keepdim=True)
    elif method == "snv":
        shift = torch.mean(x, dim=1, keepdim=True)
        # population standard deviation (ddof=0), as numpy's default
        scale = torch.sqrt(torch.mean(torch.square(x - shift), dim=1, keepdim=True))
    else:
        raise ValueError(f"unknown normalisation {method!r}; choose from {NORMALISATIONS}")
    one = torch.ones((), dtype=x.dtype)
    safe = torch.where(scale > FLAT_EPS, scale, one)
    return (x - shift) / safe if shift is not None else x / safe


def _bn_affine(bn: nn.BatchNorm1d) -> tuple[torch.Tensor, torch.Tensor]:
    """Scale and shift of an eval-mode batch norm: ``bn(h) == h * s + t``."""
    if bn.running_mean is None or bn.running_var is None:
        raise ValueError("batch norm without running statistics cannot be folded")
    w = bn.weight if bn.weight is not None else torch.ones_like(bn.running_var)
    b = bn.bias if bn.bias is not None else torch.zeros_like(bn.running_mean)
    s = w / torch.sqrt(bn.running_var + bn.eps)
    return s, b - bn.running_mean * s


class InferenceRamanNet(nn.Module):
    """RamanNet folded for inference: ``forward(x [B, L]) -> (probabilities, logits, embedding)``.

    Args:
        model: a RamanNet (its weights are copied; it is not modified).
        normalise: the normalisation method to run in the graph ("none" to run nothing).
        dtype: the compute dtype of the layers (torch.float16 for fp16 models). The input, the in-graph
            normalisation, the embedding norm, the softmax and every output stay float32: raw counts overflow
            float16 (65504) once squared or summed, and callers feed the same arrays to every precision.
    """

    w1: torch.Tensor
    b1: torch.Tensor
    index: torch.Tensor
    w2: torch.Tensor
    b2: torch.Tensor
    we: torch.Tensor
    be: torch.Tensor
    s3: torch.Tensor
    t3: torch.Tensor
    wc: torch.Tensor
    bc: torch.Tensor

    def __init__(self, model: RamanNet, normalise: str = "none", dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        if normalise not in NORMALISATIONS:
            raise ValueError(f"unknown normalisation {normalise!r}; choose from {NORMALISATIONS}")
        c = model.config
        self.normalise = normalise
        self.slope = float(c.leaky_slope)
        n, w, u = model.window_weight.shape
        self.n_windows, self.window, self.n1 = int(n), int(w), int(u)
        with torch.no_grad():
            s0, t0 = _bn_affine(model.window_bn)
            s0w = s0.view(n, u)
            # [n, n1, w] per-window weights (transposed) with the batch norm's scale folded in; bias [n*n1, 1]
            w1 = model.window_weight * s0w[:, None, :]
            self.register_buffer("w1", w1.transpose(1, 2).contiguous().detach())
            self.register_buffer("b1", (model.window_bias.reshape(-1) * s0 + t0).reshape(-1, 1).detach().clone())
            self.register_buffer("index", model.window_index.reshape(-1).detach().clone())
            s2, t2 = _bn_affine(model.bn2)
            self.register_buffer("w2", (model.dense2.weight * s2[:, None]).t().contiguous().detach())
            self.register_buffer("b2", (model.dense2.bias * s2 + t2).detach().clone())
            self.register_buffer("we", model.embed.weight.t().contiguous().detach().clone())
            self.register_buffer("be", model.embed.bias.detach().clone())
            s3, t3 = _bn_affine(model.bn3)
            self.register_buffer("s3", s3.detach().clone())
            self.register_buffer("t3", t3.detach().clone())
            self.register_buffer("wc", model.classifier.weight.t().contiguous().detach().clone())
            self.register_buffer("bc", model.classifier.bias.detach().clone())
        self.to(dtype)
        self.dtype = dtype
        self.eval()

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Args: x [B, L] float32 on the model axis, host-preprocessed except the in-graph normalisation."""
        x = torch_normalise(x, self.normalise).to(self.dtype)
        b = x.shape[0]
        # one Gather of every window's rows of x.T, then [n, n1, w] @ [n, w, B]: a single batched GEMM
        win = torch.index_select(x.t(), 0, self.index).reshape(self.n_windows, self.window, b)
        h = torch.matmul(self.w1, win).reshape(self.n_windows * self.n1, b) + self.b1
        h = F.leaky_relu(h, self.slope).t()
        h = F.leaky_relu(h @ self.w2 + self.b2, self.slope)
        e = h @ self.we + self.be
        e32 = e.float()
        emb = e32 / torch.clamp_min(torch.linalg.vector_norm(e32, ord=2, dim=1, keepdim=True), 1e-12)
        z = F.leaky_relu(e * self.s3 + self.t3, self.slope)
        logits = (z @ self.wc + self.bc).float()
        return torch.softmax(logits, dim=1), logits, emb


class InferenceEnsemble(nn.Module):
    """K RamanNets folded for inference behind one in-graph normalisation:
    ``forward(x [B, L]) -> (probabilities, logits, embedding)`` as :class:`InferenceRamanNet`.

    - probabilities [B, C]: the mean of the members' softmax;
    - logits [B, C]: ``logsumexp_k(log_softmax_k) - log K``, the log of that mean without underflow to -inf;
    - embedding [B, K * nf]: the members' L2-normalised embeddings concatenated, divided by sqrt(K).

    Args:
        members: the RamanNets (weights copied, not modified).
        normalise: the normalisation to run once in the graph.
        dtype: the members' compute dtype (see :class:`InferenceRamanNet`).
    """

    def __init__(self, members: list[RamanNet], normalise: str = "none", dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        if len(members) < 2:
            raise ValueError(f"an ensemble needs at least 2 members, got {len(members)}")
        if normalise not in NORMALISATIONS:
            raise ValueError(f"unknown normalisation {normalise!r}; choose from {NORMALISATIONS}")
        self.normalise = normalise
        self.members = nn.ModuleList([InferenceRamanNet(m, "none", dtype=dtype) for m in members])
        self.log_k = math.log(len(members))
        self.inv_sqrt_k = 1.0 / math.sqrt(len(members))
        self.eval()

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Args: x [B, L] float32 on the model axis, host-preprocessed except the in-graph normalisation."""
        x = torch_normalise(x, self.normalise)
        probs, logps, embs = [], [], []
        for m in self.members:
            p, lg, e = m(x)
            probs.append(p)
            logps.append(F.log_softmax(lg, dim=1))
            embs.append(e)
        prob = torch.stack(probs).mean(dim=0)
        logits = torch.logsumexp(torch.stack(logps), dim=0) - self.log_k
        return prob, logits, torch.cat(embs, dim=1) * self.inv_sqrt_k
