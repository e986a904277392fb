"""The semi-hard triplet loss against hand-made embeddings and a literal port of tfa.losses.TripletSemiHardLoss."""

from __future__ import annotations

import pytest
import torch

from trainer.losses import pairwise_distance, triplet_semihard_loss


def _tfa_reference(labels: torch.Tensor, emb: torch.Tensor, margin: float) -> torch.Tensor:
    """TF-addons' O(B^3) algorithm, transcribed mask for mask (masked_minimum / masked_maximum included)."""
    b = labels.shape[0]
    pdist = pairwise_distance(emb)
    adj = labels[:, None] == labels[None, :]
    adj_not = (~adj).float()
    pdist_tile = pdist.repeat(b, 1)  # [B*B, B], row r = pdist[r % B]
    mask = adj_not.repeat(b, 1) * (pdist_tile > pdist.T.reshape(-1, 1)).float()
    mask_final = (mask.sum(1) > 0).reshape(b, b).T

    def masked_min(data: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        mx = data.max(1, keepdim=True).values
        return ((data - mx) * m).min(1, keepdim=True).values + mx

    def masked_max(data: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        mn = data.min(1, keepdim=True).values
        return ((data - mn) * m).max(1, keepdim=True).values + mn

    outside = masked_min(pdist_tile, mask).reshape(b, b).T
    inside = masked_max(pdist, adj_not).repeat(1, b)
    semi = torch.where(mask_final, outside, inside)
    loss_mat = margin + pdist - semi
    mask_pos = adj.float() - torch.eye(b)
    return (loss_mat * mask_pos).clamp_min(0).sum() / mask_pos.sum()


def test_hand_made_embeddings_give_the_known_loss() -> None:
    # Points on a line; class 0 at 0 and 0.5, class 1 at 0.8 and 3.0; margin 1.
    # (0,1): semi-hard negative 0.8 -> 1 + 0.5 - 0.8 = 0.7
    # (1,0): semi-hard negative 2.5 -> 1 + 0.5 - 2.5 < 0 -> 0
    # (2,3): no negative farther than 2.2 -> farthest negative 0.8 -> 1 + 2.2 - 0.8 = 2.4
    # (3,2): semi-hard negative 2.5 -> 1 + 2.2 - 2.5 = 0.7        mean over 4 pairs = 0.95
    emb = torch.tensor([[0.0, 0.0], [0.5, 0.0], [0.8, 0.0], [3.0, 0.0]])
    labels = torch.tensor([0, 0, 1, 1])
    loss = triplet_semihard_loss(labels, emb, margin=1.0)
    assert float(loss) == pytest.approx(0.95, abs=1e-6)


def test_well_separated_classes_give_zero_loss() -> None:
    emb = torch.tensor([[0.0, 0.0], [0.1, 0.0], [5.0, 0.0], [5.1, 0.0]])
    assert float(triplet_semihard_loss(torch.tensor([0, 0, 1, 1]), emb, margin=1.0)) == 0.0


def test_no_positive_pair_gives_zero_not_nan() -> None:
    emb = torch.randn(4, 3, requires_grad=True)
    loss = triplet_semihard_loss(torch.tensor([0, 1, 2, 3]), emb)
    assert float(loss.detach()) == 0.0
    loss.backward()
    assert emb.grad is not None and torch.all(emb.grad == 0)


@pytest.mark.parametrize("seed", range(6))
def test_matches_the_tfa_algorithm_on_random_batches(seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    b = [8, 16, 33, 64, 5, 40][seed]
    labels = torch.randint(0, [2, 3, 5, 7, 1, 4][seed], (b,), generator=g)
    emb = torch.nn.functional.normalize(torch.randn(b, 6, generator=g, dtype=torch.float64), dim=1)
    for margin in (0.2, 1.0):
        got = triplet_semihard_loss(labels, emb, margin)
        want = _tfa_reference(labels, emb, margin)
        torch.testing.assert_close(got, want)


def test_gradient_matches_the_reference_and_is_finite_for_duplicates() -> None:
    g = torch.Generator().manual_seed(1)
    base = torch.nn.functional.normalize(torch.randn(12, 4, generator=g, dtype=torch.float64), dim=1)
    base[3] = base[2]  # coincident embeddings: sqrt(0) must not give an infinite gradient
    labels = torch.tensor([0, 0, 1, 1, 2, 2, 0, 1, 2, 0, 1, 2])
    a = base.clone().requires_grad_(True)
    r = base.clone().requires_grad_(True)
    triplet_semihard_loss(labels, a, 0.5).backward()
    _tfa_reference(labels, r, 0.5).backward()
    assert a.grad is not None and r.grad is not None
    assert torch.isfinite(a.grad).all()
    torch.testing.assert_close(a.grad, r.grad)
