"""ModelContract round-trips through ONNX-style metadata and refuses anything inconsistent."""

from __future__ import annotations

import json

import numpy as np
import pytest

from spectral_core.contract import METADATA_KEY, ModelContract, OpenSet
from spectral_core.errors import ContractError
from spectral_core.preprocess import AxisSpec, PreprocessConfig

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
