"""Losses of RamanNet: cross-entropy on the logits plus a triplet loss with semi-hard negative mining.

:func:`triplet_semihard_loss` follows ``tfa.losses.TripletSemiHardLoss`` (the loss of the original RamanNet
code) exactly, including its corner cases:

- distances are Euclidean (not squared) between embeddings, with TF-addons' guard against the infinite
  gradient of ``sqrt`` at 0;
- every anchor-positive pair (i != j, same label) of the batch is a triplet;
- its negative is the *semi-hard* one: the closest negative that is still farther from the anchor than the
  positive (``d(a, n) > d(a, p)``); when no such negative exists, the farthest negative of the anchor;
- loss = ``sum(max(margin + d(a, p) - d(a, n), 0)) / number of anchor-positive pairs``.

Unlike TF (which divides by zero and returns NaN), a batch without any positive pair gives a loss of 0.

The search for the semi-hard negative is O(B^2 log B) (a sort of each anchor's negatives and one
``searchsorted``) instead of TF's O(B^3) tiled masks, so a batch of 256 costs little beside the network.
"""

from __future__ import annotations

import torch

__all__ = ["pairwise_distance", "triplet_semihard_loss"]


def pairwise_distance(embeddings: torch.Tensor) -> torch.Tensor:
    """Euclidean distance matrix [B, B] of ``embeddings`` [B, D], zero on the diagonal.

    As in TF-addons: squared distances are clamped at 0 and a tiny epsilon is added where they are 0 before
    the square root, so the gradient stays finite for coincident embeddings.
    """
    sq = embeddings.pow(2).sum(dim=1)
    d2 = sq[:, None] + sq[None, :] - 2.0 * embeddings @ embeddings.T
    d2 = d2.clamp_min(0.0)
    zero = d2 <= 0.0
    d = torch.sqrt(d2 + zero.to(d2.dtype) * 1e-16) * (~zero).to(d2.dtype)
    eye = torch.eye(d.shape[0], dtype=torch.bool, device=d.device)
    return d.masked_fill(eye, 0.0)


def triplet_semihard_loss(labels: torch.Tensor, embeddings: torch.Tensor, margin: float = 1.0) -> torch.Tensor:
    """Triplet loss with batch-all semi-hard negative mining (``tfa.losses.TripletSemiHardLoss`` semantics).

    Args:
        labels: int class indices [B].
        embeddings: [B, D], normally L2-normalised (RamanNet's embedding output).
        margin: the triplet margin, in embedding distance units.

    Returns:
        A scalar tensor (0 when the batch holds no anchor-positive pair).
    """
    lab = labels.reshape(-1)
    b = lab.shape[0]
    pdist = pairwise_distance(embeddings)
    same = lab[:, None] == lab[None, :]
    negative = ~same
    eye = torch.eye(b, dtype=torch.bool, device=lab.device)
    positive = same & ~eye
    n_pos = positive.sum()
    if int(n_pos) == 0:
        return embeddings.sum() * 0.0

    inf = torch.tensor(float("inf"), dtype=pdist.dtype, device=pdist.device)
    # Each anchor's negative distances in ascending order (non-negatives sorted to the end as +inf).
    neg_sorted, _ = torch.sort(torch.where(negative, pdist, inf), dim=1)
    n_neg = negative.sum(dim=1, keepdim=True)
    # For pair (i, j): index of the first negative of anchor i strictly farther than d(i, j).
    idx = torch.searchsorted(neg_sorted.detach().contiguous(), pdist.detach().contiguous(), right=True)
    has_semihard = idx < n_neg
    outside = torch.gather(neg_sorted, 1, idx.clamp(max=b - 1))
    # No semi-hard negative: the farthest negative of the anchor. TF's masked_maximum gives the row minimum
    # (0, the diagonal) when the anchor has no negative at all; so do we.
    has_neg = n_neg.squeeze(1) > 0
    farthest = torch.where(negative, pdist, -inf).max(dim=1).values
    inside = torch.where(has_neg, farthest, torch.zeros_like(farthest))[:, None].expand(b, b)
    semihard = torch.where(has_semihard, outside, inside)
    loss_mat = margin + pdist - semihard
    per_pair = torch.where(positive, loss_mat.clamp_min(0.0), torch.zeros_like(loss_mat))
    return per_pair.sum() / n_pos.to(per_pair.dtype)
