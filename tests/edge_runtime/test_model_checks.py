"""Models are refused unless the contract's classes match the probability output (ONNX shape and self-test
width), unless the self-test predicts the recorded class NAMES, and a swap that changes the task is refused
without allow_task_change, the swap record saying what changed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from _er_model import rewrite_contract

from edge_runtime.daemon import Daemon
from edge_runtime.engine import Engine, task_changes
from edge_runtime.errors import SelfTestError
from edge_runtime.settings import load_settings
from spectral_core.contract import METADATA_KEY
from spectral_core.errors import ContractError


def _contract(path: Path) -> dict:
    import onnx

    return json.loads({p.key: p.value for p in onnx.load(str(path)).metadata_props}[METADATA_KEY])


def test_contract_with_fewer_classes_than_the_output_is_refused(standin_model: Path, tmp_path: Path) -> None:
    bad = rewrite_contract(standin_model, tmp_path / "three.onnx",
                           {"classes": ["compound_A", "compound_B", "compound_C"], "open_set": None})
    with pytest.raises(ContractError, match=r"lists 3 classes.*\[batch, 3\]"):
        Engine(bad, provider="cpu")


def test_the_self_test_checks_the_probability_width_too(standin_model: Path, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """A graph whose class dimension is symbolic passes the shape check; the self-test's width must catch it.
    (onnxruntime infers this graph's width, so the shape check is switched off to reach the self-test.)"""
    bad = rewrite_contract(standin_model, tmp_path / "three.onnx",
                           {"classes": ["compound_A", "compound_B", "compound_C"], "open_set": None})
    monkeypatch.setattr(Engine, "_check_io", lambda self: None)
    with pytest.raises(SelfTestError, match="gives 4 probabilities per spectrum, the contract lists 3 classes"):
        Engine(bad, provider="cpu")


def test_reversed_class_names_fail_the_self_test(standin_model: Path, tmp_path: Path) -> None:
    c = _contract(standin_model)
    assert c["reference"]["predicted_classes"], "the stand-in records its reference predictions by name"
    bad = rewrite_contract(standin_model, tmp_path / "reversed.onnx", {"classes": c["classes"][::-1]})
    with pytest.raises(SelfTestError, match="wrong class name"):
        Engine(bad, provider="cpu")


def test_old_contract_without_names_still_loads(standin_model: Path, tmp_path: Path) -> None:
    c = _contract(standin_model)
    ref = {k: v for k, v in c["reference"].items() if k != "predicted_classes"}
    old = rewrite_contract(standin_model, tmp_path / "old.onnx", {"reference": ref})
    assert Engine(old, provider="cpu").contract.reference.predicted_classes is None  # type: ignore[union-attr]


def test_task_changes_name_what_changed(standin_model: Path) -> None:
    e = Engine(standin_model, provider="cpu")
    c = e.contract
    assert task_changes(c, c) == []
    rev = c.model_copy(update={"classes": c.classes[::-1]})
    assert task_changes(c, rev) == [f"class order {c.classes} -> {c.classes[::-1]}"]
    other = c.model_copy(update={"classes": ["x", *c.classes[1:]], "axis": c.axis[:-1],
                                 "preprocess_hash": "f" * 64})
    got = task_changes(c, other)
    assert len(got) == 3 and "added ['x']" in got[0] and "model axis 400 points" in got[1]
    assert got[2].startswith("preprocessing ")


@pytest.mark.parametrize("allow", [False, True])
def test_swap_to_another_task_refused_unless_allowed(model: Path, standin_model: Path, tmp_path: Path,
                                                     allow: bool) -> None:
    d = Daemon(load_settings({"model": str(model), "db": str(tmp_path / "r.sqlite"), "http": "off",
                              "provider": "cpu", "model_poll_s": 0, "allow_task_change": allow,
                              "max_points": 4096}))
    d.start()
    try:
        assert d.engine is not None and d.engine.max_points == 4096  # the setting reaches the engine
        new = Engine(standin_model, provider="cpu")
        why = d._check_candidate(new)
        if allow:
            assert why is None
            d._accept_engine(new)
            d._maybe_swap()
            rec = d.model_update_status()["last_accepted"]
            assert any(c.startswith("model axis 300 points") for c in rec["changes"])
        else:
            assert why is not None and "changes the task" in why and "model axis 300 points" in why
            assert "preprocessing" in why
            d._reject_engine(new.model_sha256, why)
            rec = d.model_update_status()["last_rejected"]
            assert rec["reason"] == why and any(c.startswith("model axis") for c in rec["changes"])
    finally:
        d.stop("test")
        d.shutdown()
