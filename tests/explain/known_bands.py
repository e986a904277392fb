"""Synthetic data whose discriminating bands are known by construction, and a small RamanNet trained on it.

Three classes share the same 12 pseudo-Voigt bands (the catalogue's shared bands, identical in every class)
and differ only in two class-specific bands each, at the centres in :data:`KNOWN_BANDS`. Spectra get the
catalogue's instrument effects (band jitter, fluorescence, shot and read noise, mixing, spikes).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from spectral_core.preprocess import AxisSpec, BaselineConfig, PreprocessConfig, Preprocessor
from spectral_core.spectrum import SpectralDataset
from spectral_core.synth import Band, SyntheticCatalog

# class index -> centres (cm^-1) of its own bands
KNOWN_BANDS: dict[int, tuple[float, ...]] = {0: (640.0, 1240.0), 1: (890.0, 1530.0), 2: (1085.0, 1690.0)}
BAND_FWHM = 14.0  # cm^-1
AXIS = AxisSpec(start=400.0, stop=1800.0, points=600)
PREPROCESS = PreprocessConfig(target_axis=AXIS, baseline=BaselineConfig(method="arpls", lam=1e5), normalise="minmax")


def known_band_catalog() -> SyntheticCatalog:
    cat = SyntheticCatalog(3, catalog_seed=11)
    shared = cat.templates[0][:12]
    cat.templates = [
        [*shared, *(Band(c, BAND_FWHM, 0.45, 0.5) for c in KNOWN_BANDS[k])] for k in range(3)
    ]
    return cat


def known_band_dataset(per_class: int, seed: int) -> SpectralDataset:
    """Spectra of the three classes on a 1024-pixel instrument axis (not the model axis: resampling runs)."""
    from spectral_core.synth import instrument_axis

    cat = known_band_catalog()
    ax = instrument_axis(1024, start_cm=380.0, stop_cm=1820.0)
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(3), per_class)
    rng.shuffle(y)
    X = np.stack([cat.sample(int(c), ax, rng, spike_probability=0.0) for c in y]).astype(np.float32)
    return SpectralDataset(X=X, axis=ax, y=y.astype(np.int64), classes=tuple(cat.names))


def train_small_run(ds: SpectralDataset, out: Path, *, epochs: int = 40, seed: int = 0) -> Path:
    """Train a small RamanNet (cross-entropy only) on ``ds`` and save it as a run in ``out``."""
    import torch
    import torch.nn.functional as F

    from trainer.checkpoint import RunInfo, save_run
    from trainer.model import RamanNet, RamanNetConfig

    pre = Preprocessor(PREPROCESS)
    X = torch.from_numpy(pre.transform(ds.X, ds.axis))
    assert ds.y is not None
    y = torch.from_numpy(ds.y)
    torch.manual_seed(seed)
    cfg = RamanNetConfig(input_length=AXIS.points, n_classes=len(ds.classes), n2=64, embedding_dim=16)
    model = RamanNet(cfg)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        model.train()
        for idx in torch.randperm(X.shape[0], generator=gen).split(64):
            if idx.numel() < 2:
                continue
            opt.zero_grad()
            logits, _ = model(X[idx])
            F.cross_entropy(logits, y[idx]).backward()
            opt.step()
    model.eval()
    info = RunInfo(
        model=cfg,
        preprocess=PREPROCESS,
        classes=list(ds.classes),
        axis=[float(a) for a in pre.output_axis(ds.axis)],
        data_sha256=ds.fingerprint(),
    )
    save_run(out, model, info)
    return out
