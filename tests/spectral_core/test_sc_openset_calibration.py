"""Unknown thresholds calibrated on held-out known spectra to a target false-unknown rate (numpy only)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from spectral_core.contract import METADATA_KEY, ModelContract, OpenSet
from spectral_core.errors import ContractError, DataError
from spectral_core.openset import calibrate_thresholds, flag_unknown, min_class_spectra, own_distances
from spectral_core.preprocess import AxisSpec, PreprocessConfig

D = 16
SPREAD = np.array([0.05, 0.08, 0.12, 0.20])  # very different class spreads: one pooled quantile cannot fit all


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def _centroids(rng: np.random.Generator) -> np.ndarray:
    return _unit(rng.normal(size=(SPREAD.size, D)))


def _draw(rng: np.random.Generator, cen: np.ndarray, per_class: int, widen: float = 1.0) -> tuple[np.ndarray,
                                                                                                   np.ndarray]:
    """Embeddings around each centroid; ``widen`` > 1: held-out spectra, farther out than training ones."""
    y = np.repeat(np.arange(cen.shape[0]), per_class)
    e = _unit(cen[y] + rng.normal(size=(y.size, D)) * (SPREAD[y] * widen / np.sqrt(D))[:, None])
    return e, y


def _open_set(rng: np.random.Generator) -> tuple[OpenSet, np.ndarray]:
    """Centroids and training-quantile thresholds (the old rule) from tight 'training' embeddings."""
    cen = _centroids(rng)
    e, y = _draw(rng, cen, 200)
    os_ = OpenSet(centroids=cen.tolist(), thresholds=[1.0] * SPREAD.size)
    d = own_distances(e, y, os_)
    train_q = np.array([np.quantile(d[y == c], 0.99) for c in range(SPREAD.size)])
    return os_.model_copy(update={"thresholds": train_q.tolist()}), cen


@pytest.mark.parametrize(("per_class_n", "rule"), [(400, "class"), (6, "pooled")])
def test_fitted_rate_on_held_out_data_is_near_the_target(per_class_n: int, rule: str) -> None:
    rng = np.random.default_rng(0)
    os_, cen = _open_set(rng)
    # The old thresholds (a training-distance quantile) flag far more than 5% of new, wider spectra.
    test_e, test_y = _draw(rng, cen, 5000, widen=1.6)
    assert flag_unknown(test_e, test_y, os_).mean() > 0.3
    per_class = []
    for rep in range(20):  # judged on the average over calibration draws (the pooled rule rests on 24 spectra)
        cal_e, cal_y = _draw(np.random.default_rng(100 + rep), cen, per_class_n, widen=1.6)
        fitted = calibrate_thresholds(os_, cal_e, cal_y, unknown_rate=0.05, calibration="synthetic held-out")
        assert fitted.threshold_rules == [rule] * SPREAD.size
        flags = flag_unknown(test_e, test_y, fitted)
        per_class.append([flags[test_y == c].mean() for c in range(SPREAD.size)])
    per = np.mean(per_class, axis=0)
    assert 0.03 <= float(per.mean()) <= 0.075
    # each class near the target, not only the average: its own quantile, or the pooled factor times its scale
    assert per.max() < 0.1 and per.min() > 0.015, per


def test_contract_records_how_the_thresholds_were_fitted() -> None:
    rng = np.random.default_rng(1)
    os_, cen = _open_set(rng)
    cal_e, cal_y = _draw(rng, cen, 30, widen=1.5)
    cal_y[:12] = 3  # 12 spectra of class 0 predicted as class 3: counted by predicted class
    fitted = calibrate_thresholds(os_, cal_e, cal_y, unknown_rate=0.1, calibration="validation part",
                                  calibration_sha256="ab" * 32)
    assert fitted.target_unknown_rate == 0.1
    assert fitted.quantile == pytest.approx(0.9)
    assert fitted.calibration_spectra == 120
    assert fitted.calibration_counts == [18, 30, 30, 42]
    assert min_class_spectra(0.1) == 20
    assert fitted.threshold_rules == ["pooled", "class", "class", "class"]
    assert fitted.scales == pytest.approx(os_.thresholds)
    assert fitted.centroids == os_.centroids
    assert fitted.calibration == "validation part" and fitted.calibration_sha256 == "ab" * 32
    # a stricter target gives larger thresholds on the same spectra
    looser = calibrate_thresholds(os_, cal_e, cal_y, unknown_rate=0.3, calibration="x")
    assert all(a > b for a, b in zip(fitted.thresholds, looser.thresholds, strict=True))


def test_min_class_spectra_follows_the_rate() -> None:
    assert min_class_spectra(0.05) == 20
    assert min_class_spectra(0.01) == 100
    assert min_class_spectra(0.2) == 20


def test_collapsed_class_scale_is_floored() -> None:
    rng = np.random.default_rng(2)
    os_, cen = _open_set(rng)
    scales = [0.0, *os_.thresholds[1:]]
    cal_e, cal_y = _draw(rng, cen, 5, widen=1.5)
    fitted = calibrate_thresholds(os_, cal_e, cal_y, unknown_rate=0.05, scales=scales, calibration="x")
    assert fitted.scales is not None and fitted.scales[0] > 0
    assert fitted.thresholds[0] > 0


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"unknown_rate": 0.0}, "must lie in"),
        ({"unknown_rate": 1.0}, "must lie in"),
        ({"scales": [0.1, 0.1]}, "scales must be 4"),
        ({"scales": [0.1, 0.1, float("nan"), 0.1]}, "scales must be 4"),
    ],
)
def test_bad_calibration_arguments_are_refused(kw: dict[str, object], match: str) -> None:
    rng = np.random.default_rng(3)
    os_, cen = _open_set(rng)
    e, y = _draw(rng, cen, 5)
    args: dict[str, object] = {"unknown_rate": 0.05, "calibration": "x", **kw}
    with pytest.raises(DataError, match=match):
        calibrate_thresholds(os_, e, y, **args)  # type: ignore[arg-type]


def test_no_calibration_spectra_is_refused() -> None:
    rng = np.random.default_rng(4)
    os_, _ = _open_set(rng)
    with pytest.raises(DataError, match="at least one held-out"):
        calibrate_thresholds(os_, np.zeros((0, D)), np.zeros(0, np.int64), unknown_rate=0.05, calibration="x")


# -- the contract -----------------------------------------------------------------------------------------

CFG = PreprocessConfig(target_axis=AxisSpec(start=400.0, stop=1800.0, points=5), normalise="minmax")


def _contract(open_set: OpenSet) -> ModelContract:
    return ModelContract(classes=["a", "b", "c", "d"], axis=CFG.target_axis.values().tolist() if CFG.target_axis
                         else [], preprocess=CFG, preprocess_hash=CFG.hash(), open_set=open_set)


def test_calibrated_open_set_round_trips_through_the_contract() -> None:
    rng = np.random.default_rng(5)
    os_, cen = _open_set(rng)
    e, y = _draw(rng, cen, 25, widen=1.5)
    fitted = calibrate_thresholds(os_, e, y, unknown_rate=0.05, calibration="validation part",
                                  calibration_sha256="cd" * 32)
    c = _contract(fitted)
    back = ModelContract.from_metadata(c.to_metadata())
    assert back == c
    assert back.open_set is not None and back.open_set.target_unknown_rate == 0.05
    assert back.open_set.calibration_spectra == 100 and back.open_set.threshold_rules == ["class"] * 4


def test_old_contract_without_the_new_fields_still_loads() -> None:
    old = {"metric": "cosine", "centroids": [[1.0, 0.0]] * 4, "thresholds": [0.1, 0.2, 0.3, 0.4], "quantile": 0.99}
    doc = json.loads(_contract(OpenSet(**old)).model_dump_json())
    doc["open_set"] = old  # exactly the fields an older ramanedge wrote
    back = ModelContract.from_metadata({METADATA_KEY: json.dumps(doc)})
    assert back.open_set is not None and back.open_set.thresholds == [0.1, 0.2, 0.3, 0.4]
    assert back.open_set.target_unknown_rate is None and back.open_set.calibration_spectra is None


@pytest.mark.parametrize("name", ["calibration_counts", "threshold_rules", "scales"])
def test_per_class_calibration_lists_must_match_the_classes(name: str) -> None:
    value = {"calibration_counts": [1, 2], "threshold_rules": ["class", "pooled"], "scales": [0.1, 0.2]}[name]
    doc = json.loads(_contract(OpenSet(centroids=[[1.0, 0.0]] * 4, thresholds=[0.1] * 4)).model_dump_json())
    doc["open_set"][name] = value
    with pytest.raises(ContractError, match=f"open_set.{name} needs one entry per class"):
        ModelContract.from_metadata({METADATA_KEY: json.dumps(doc)})
