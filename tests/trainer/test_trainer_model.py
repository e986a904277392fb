"""RamanNet shapes and window arithmetic."""

from __future__ import annotations

import pytest
import torch

from trainer.model import RamanNet, RamanNetConfig, window_starts


def test_window_arithmetic_l1000_both_modes() -> None:
    full = window_starts(1000, 50, 25)
    paper = window_starts(1000, 50, 25, paper_compat=True)
    assert len(full) == 39 and len(paper) == 38
    assert paper == list(range(0, 950, 25))
    assert paper[-1] + 50 == 975  # the original never sees points 975-999
    assert full[-1] + 50 == 1000 and full[:38] == paper


def test_window_arithmetic_exact_fit_adds_no_extra_window() -> None:
    starts = window_starts(100, 20, 10)
    assert starts == list(range(0, 81, 10))
    covered = {i for s in starts for i in range(s, s + 20)}
    assert covered == set(range(100))


def test_window_arithmetic_uneven_tail_is_covered() -> None:
    starts = window_starts(103, 20, 10)
    assert starts[-1] == 83 and starts[-2] == 80


def test_window_longer_than_spectrum_is_refused() -> None:
    with pytest.raises(ValueError, match="longer"):
        window_starts(10, 20, 5)


@pytest.mark.parametrize(("paper_compat", "n_windows"), [(False, 39), (True, 38)])
def test_model_shapes(paper_compat: bool, n_windows: int) -> None:
    cfg = RamanNetConfig(input_length=1000, n_classes=7, n2=64, embedding_dim=16, paper_compat=paper_compat)
    model = RamanNet(cfg)
    assert model.n_windows == n_windows
    assert tuple(model.window_weight.shape) == (n_windows, 50, 25)
    model.eval()
    logits, emb = model(torch.randn(5, 1000))
    assert logits.shape == (5, 7) and emb.shape == (5, 16)
    torch.testing.assert_close(emb.norm(dim=1), torch.ones(5))


def test_paper_compat_ignores_the_tail() -> None:
    torch.manual_seed(0)
    cfg = RamanNetConfig(input_length=1000, n_classes=3, n2=32, embedding_dim=8, paper_compat=True)
    model = RamanNet(cfg).eval()
    x = torch.randn(2, 1000)
    x2 = x.clone()
    x2[:, 975:] += 100.0
    torch.testing.assert_close(model(x)[0], model(x2)[0])
    full = RamanNet(cfg.model_copy(update={"paper_compat": False})).eval()
    assert not torch.allclose(full(x)[0], full(x2)[0])


def test_windows_are_batched_not_a_python_loop() -> None:
    model = RamanNet(RamanNetConfig(input_length=300, n_classes=3, window=20, step=10))
    # One parameter tensor for all windows: no per-window submodules.
    assert not any(isinstance(m, torch.nn.Linear) and m.in_features == 20 for m in model.modules())


def test_recalibrate_batchnorm_sets_exact_population_statistics() -> None:
    from trainer.model import RamanNet, RamanNetConfig
    from trainer.train import recalibrate_batchnorm

    torch.manual_seed(0)
    cfg = RamanNetConfig(input_length=60, n_classes=3, window=10, step=5, n2=16, embedding_dim=8,
                         dp1=0.0, dp2=0.0, dp3=0.0)
    model = RamanNet(cfg)
    x = torch.randn(40, 60) * 3 + 1
    model.eval()
    recalibrate_batchnorm(model, x, batch_size=64)  # one pass over all 40 spectra
    assert not model.training  # mode restored
    feats = model.window_features(x).flatten(1).detach()
    torch.testing.assert_close(model.window_bn.running_mean, feats.mean(0), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(model.window_bn.running_var, feats.var(0, unbiased=True), rtol=1e-4, atol=1e-5)
    assert model.window_bn.momentum == cfg.bn_momentum  # the training momentum is put back
