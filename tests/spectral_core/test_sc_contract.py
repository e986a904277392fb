"""ModelContract round-trips through ONNX-style metadata and refuses anything inconsistent."""

from __future__ import annotations

import json

import numpy as np
import pytest

from spectral_core.contract import METADATA_KEY, ModelContract, OpenSet
from spectral_core.errors import ContractError, PreprocessError
from spectral_core.preprocess import AXIS_TOLERANCE_MIN_CM1, AxisSpec, PreprocessConfig, Preprocessor

CFG = PreprocessConfig(target_axis=AxisSpec(start=400.0, stop=1800.0, points=5), normalise="minmax")


def contract(**kw: object) -> ModelContract:
    fields: dict[str, object] = {
        "classes": ["a", "b", "c"],
        "axis": CFG.target_axis.values().tolist() if CFG.target_axis else [],
        "preprocess": CFG,
        "preprocess_hash": CFG.hash(),
        "open_set": OpenSet(centroids=[[1.0, 0.0], [0.0, 1.0], [0.7, 0.7]], thresholds=[0.3, 0.3, 0.4]),
    }
    fields.update(kw)
    return ModelContract(**fields)  # type: ignore[arg-type]


def test_round_trip_through_metadata() -> None:
    c = contract(in_graph_steps=["normalise"], precision="fp16", extra={"note": "x"})
    meta = c.to_metadata()
    assert list(meta) == [METADATA_KEY] and isinstance(meta[METADATA_KEY], str)
    back = ModelContract.from_metadata(meta)
    assert back == c
    assert back.preprocess.hash() == CFG.hash()
    assert back.n_points == 5
    np.testing.assert_array_equal(back.axis_array(), CFG.target_axis.values() if CFG.target_axis else [])


def tampered(change: dict[str, object]) -> dict[str, str]:
    doc = json.loads(contract().model_dump_json())
    doc.update(change)
    return {METADATA_KEY: json.dumps(doc)}


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"preprocess_hash": "0" * 64}, "preprocess_hash does not match"),
        ({"contract_version": 2}, "contract version 2 is not supported"),
        (
            {"open_set": {"metric": "cosine", "centroids": [[1.0, 0.0]], "thresholds": [0.1, 0.2, 0.3]}},
            "one centroid and one threshold per class",
        ),
        ({"classes": ["a", "a", "b"]}, "distinct"),
        ({"axis": [400.0, 300.0, 500.0]}, "not monotonic"),
        ({"in_graph_steps": ["transmogrify"]}, "unknown in-graph step"),
        ({"surprise": 1}, "Extra inputs are not permitted"),
    ],
)
def test_rejections(change: dict[str, object], match: str) -> None:
    with pytest.raises(ContractError, match=match):
        ModelContract.from_metadata(tampered(change))


def test_edited_preprocessing_is_detected() -> None:
    doc = json.loads(contract().model_dump_json())
    doc["preprocess"]["normalise"] = "snv"  # someone edits the config but not its hash
    with pytest.raises(ContractError, match="preprocess_hash does not match"):
        ModelContract.from_metadata({METADATA_KEY: json.dumps(doc)})


def test_missing_or_broken_metadata() -> None:
    with pytest.raises(ContractError, match="carries no ramanedge contract"):
        ModelContract.from_metadata({})
    with pytest.raises(ContractError, match="invalid"):
        ModelContract.from_metadata({METADATA_KEY: "{not json"})


def test_axis_and_class_checks() -> None:
    c = contract()
    c.check_axis_matches(np.linspace(400, 1800, 5))
    with pytest.raises(ContractError, match="not the model axis"):
        c.check_axis_matches(np.linspace(400, 1800, 6), what="spectrum")
    c.check_classes_match(("a", "b", "c"))
    with pytest.raises(ContractError, match="differ"):
        c.check_classes_match(["b", "a", "c"])


# --- the axis policy: a tolerance at each end of the model axis ---------------------------------------------


def test_old_contracts_without_a_tolerance_read_with_the_default() -> None:
    doc = json.loads(contract().model_dump_json())
    doc.pop("axis_tolerance_cm1")  # a contract written before the field existed
    c = ModelContract.from_metadata({METADATA_KEY: json.dumps(doc)})
    assert c.axis_tolerance_cm1 is None
    assert c.axis_tolerance() == 350.0  # 400-1800 in 5 points: one step (350) beats the 2 cm^-1 floor
    fine = contract(axis=np.linspace(400, 1800, 1401).tolist(),
                    preprocess=PreprocessConfig(), preprocess_hash=PreprocessConfig().hash())
    assert fine.axis_tolerance() == AXIS_TOLERANCE_MIN_CM1 == 2.0  # 1 cm^-1 steps: the floor
    assert contract(axis_tolerance_cm1=0.5).axis_tolerance() == 0.5
    assert ModelContract.from_metadata(contract(axis_tolerance_cm1=3.0).to_metadata()).axis_tolerance() == 3.0
    with pytest.raises(ValueError, match="greater than or equal to 0"):
        contract(axis_tolerance_cm1=-1.0)


MODEL = AxisSpec(start=100.0, stop=300.0, points=101)  # 2 cm^-1 steps


@pytest.mark.parametrize(
    ("lo", "hi", "fill"),
    [
        (101.0, 301.0, (1.0, 0.0)),  # shifted by +1 cm^-1
        (99.0, 299.0, (0.0, 1.0)),  # shifted by -1 cm^-1
        (102.0, 298.0, (2.0, 2.0)),  # one point shorter at each end
        (100.0, 300.0, (0.0, 0.0)),  # the model axis itself
    ],
)
def test_spectra_within_the_tolerance_are_filled_from_the_nearest_point(
    lo: float, hi: float, fill: tuple[float, float]
) -> None:
    src = np.linspace(lo, hi, 1 + round(hi - lo) // 2 * 2)
    y = np.sin(src / 17.0) + 2.0
    p = Preprocessor(PreprocessConfig(target_axis=MODEL, normalise="none", interpolation="linear"), axis_tolerance=2.0)
    out = p.transform(y, src)
    np.testing.assert_allclose(p.edge_fill(src), fill, atol=1e-9)
    np.testing.assert_array_equal(p.output_axis(src), MODEL.values())
    dst = MODEL.values()
    inside = (dst >= lo) & (dst <= hi)
    np.testing.assert_allclose(out[inside], np.interp(dst[inside], src, y), rtol=1e-5)
    # the filled edge takes the nearest measured value: no extrapolated slope
    np.testing.assert_allclose(out[dst < lo], y[0], rtol=1e-6)
    np.testing.assert_allclose(out[dst > hi], y[-1], rtol=1e-6)


def test_beyond_the_tolerance_the_error_names_both_ranges_and_what_to_do() -> None:
    cfg = PreprocessConfig(target_axis=MODEL, normalise="none")
    src = np.linspace(103.0, 301.0, 100)
    with pytest.raises(PreprocessError) as err:
        Preprocessor(cfg, axis_tolerance=2.0).transform(np.ones_like(src), src)
    msg = str(err.value)
    assert "100-300 cm^-1 lies outside the measured range 103-301 cm^-1" in msg
    assert "by 3 cm^-1 at the low end" in msg and "axis tolerance of 2 cm^-1" in msg
    assert "ramanedge calibrate" in msg and "measure a range" in msg
    # without a tolerance (training, export) the old strict rule holds: one wavenumber short is refused
    src1 = np.linspace(101.0, 301.0, 101)
    with pytest.raises(PreprocessError, match="extrapolation would invent data"):
        Preprocessor(cfg).transform(np.ones_like(src1), src1)
    with pytest.raises(PreprocessError, match="axis tolerance must be"):
        Preprocessor(cfg, axis_tolerance=-1.0)


def test_a_crop_within_the_tolerance_is_accepted() -> None:
    cfg = PreprocessConfig(crop=(100.0, 300.0), target_axis=MODEL, normalise="none")
    src = np.linspace(101.0, 301.0, 101)
    p = Preprocessor(cfg, axis_tolerance=2.0)
    assert p.transform(np.ones_like(src), src).shape == (101,)
    assert p.edge_fill(src) == (1.0, 1.0)  # the crop keeps 101-299: 1 cm^-1 to fill at each end
    with pytest.raises(PreprocessError, match="crop range 100-300 cm\\^-1 lies outside"):
        Preprocessor(cfg, axis_tolerance=0.5).transform(np.ones_like(src), src)
