"""Synthetic data: deterministic, physically shaped, and not linearly trivial."""

from __future__ import annotations

import numpy as np
import pytest

from spectral_core.preprocess import PreprocessConfig, Preprocessor
from spectral_core.synth import SyntheticCatalog, class_names, instrument_axis, synth_dataset


def test_same_seed_same_data_and_other_seed_other_data() -> None:
    a = synth_dataset(3, 5, 200, seed=1)
    b = synth_dataset(3, 5, 200, seed=1)
    np.testing.assert_array_equal(a.X, b.X)
    np.testing.assert_array_equal(a.y, b.y)
    assert a.fingerprint() == b.fingerprint()
    c = synth_dataset(3, 5, 200, seed=2)
    assert not np.array_equal(a.X, c.X)


def test_templates_depend_on_catalog_seed_only() -> None:
    axis = np.linspace(400, 1800, 300)
    np.testing.assert_array_equal(SyntheticCatalog(4, 0).clean(2, axis), SyntheticCatalog(4, 0).clean(2, axis))
    assert not np.allclose(SyntheticCatalog(4, 0).clean(2, axis), SyntheticCatalog(4, 1).clean(2, axis))


def test_shapes_names_and_axes() -> None:
    ds = synth_dataset(4, 6, 128, seed=0)
    assert ds.X.shape == (24, 128) and ds.X.dtype == np.float32
    assert ds.classes == ("compound_A", "compound_B", "compound_C", "compound_D")
    assert ds.class_counts() == dict.fromkeys(ds.classes, 6)
    assert class_names(28)[26:] == ["compound_AA", "compound_AB"]
    ax = instrument_axis(512)
    assert ax.size == 512 and np.all(np.diff(ax) > 0)
    assert np.ptp(np.diff(ax)) > 0.01  # non-uniform in cm^-1, as on a dispersive spectrometer
    with pytest.raises(ValueError):
        synth_dataset(2, 0)


def test_a_linear_model_learns_but_does_not_reach_100_percent() -> None:
    from sklearn.linear_model import RidgeClassifierCV
    from sklearn.model_selection import train_test_split

    ds = synth_dataset(8, 60, 400, seed=0)
    X = Preprocessor(PreprocessConfig(normalise="snv")).transform(ds.X, ds.axis)
    Xtr, Xte, ytr, yte = train_test_split(X, ds.y, test_size=0.3, random_state=0, stratify=ds.y)
    model = RidgeClassifierCV(alphas=np.logspace(-2, 3, 11)).fit(Xtr, ytr)
    acc = model.score(Xte, yte)
    assert 0.3 < acc < 0.97  # well above chance (0.125), well short of a lookup
