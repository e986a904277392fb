"""Engine: providers are explicit and read back, the contract is checked, bad inputs become recorded errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from _er_model import rewrite_contract

from edge_runtime.engine import Engine
from edge_runtime.errors import ModelRefusedError, ProviderError, SelfTestError
from edge_runtime.records import Frame
from spectral_core.errors import ContractError
from spectral_core.hashing import sha256_file
from spectral_core.synth import instrument_axis, synth_dataset


def _cuda_really_loads(model: Path) -> bool:
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        return False
    s = ort.InferenceSession(str(model), providers=["CUDAExecutionProvider", "CPUExecutionProvider"])
    return s.get_providers()[0] == "CUDAExecutionProvider"


@pytest.fixture(scope="module")
def engine(model: Path) -> Engine:
    return Engine(model, provider="cpu")


def test_cpu_provider_is_read_back_and_reported(engine: Engine, model: Path) -> None:
    assert engine.provider == "CPUExecutionProvider"
    assert engine.session.get_providers()[0] == "CPUExecutionProvider"
    d = engine.describe()
    assert d["provider"] == "CPUExecutionProvider" and d["requested_provider"] == "cpu"
    assert d["model_sha256"] == sha256_file(model)
    assert d["classes"] == ["compound_A", "compound_B", "compound_C", "compound_D"]


@pytest.mark.parametrize("provider", ["cuda", "tensorrt"])
def test_gpu_provider_that_does_not_load_fails_loudly(model: Path, provider: str) -> None:
    if _cuda_really_loads(model):
        pytest.skip("a GPU provider really loads here; this test is about a machine without one")
    with pytest.raises(ProviderError, match=provider):
        Engine(model, provider=provider)  # type: ignore[arg-type]


def test_auto_says_which_provider_it_picked(model: Path, caplog: pytest.LogCaptureFixture) -> None:
    e = Engine(model, provider="auto")
    assert e.provider in e.session.get_providers()[:1]
    if not _cuda_really_loads(model):
        assert e.provider == "CPUExecutionProvider"
        assert any("skipped cuda" in r.getMessage() for r in caplog.records)


def test_require_gpu_refuses_a_cpu_session(model: Path) -> None:
    if _cuda_really_loads(model):
        pytest.skip("a GPU is present")
    with pytest.raises(ProviderError, match=r"require-gpu|not usable"):
        Engine(model, provider="auto", require_gpu=True)
    with pytest.raises(ProviderError, match="require-gpu"):
        Engine(model, provider="cpu", require_gpu=True)


def test_unknown_provider_is_refused(model: Path) -> None:
    with pytest.raises(ProviderError, match="unknown provider"):
        Engine(model, provider="openvino")  # type: ignore[arg-type]


def test_missing_model_file_is_its_own_error_not_a_contract_error(tmp_path: Path) -> None:
    from spectral_core.errors import ContractError, ModelFileError

    with pytest.raises(ModelFileError, match="does not exist") as info:
        Engine(tmp_path / "gone.onnx", provider="cpu")
    assert not isinstance(info.value, ContractError)
    assert isinstance(info.value, FileNotFoundError)


def test_every_provider_has_one_short_name_and_the_cli_offers_them_all() -> None:
    import argparse

    from edge_runtime.cli import configure_serve
    from spectral_core.providers import GPU_PROVIDERS, PROVIDER_CHOICES, PROVIDERS, short_name

    assert {short_name(ep) for ep in PROVIDERS.values()} == set(PROVIDERS)
    assert short_name("OpenVINOExecutionProvider") is None
    assert {PROVIDERS["cuda"], PROVIDERS["tensorrt"]} == GPU_PROVIDERS
    p = argparse.ArgumentParser()
    configure_serve(p)
    (action,) = [a for a in p._actions if a.dest == "provider"]
    assert tuple(action.choices or ()) == PROVIDER_CHOICES


def test_every_serve_flag_is_a_setting_and_reaches_the_settings(model: Path) -> None:
    import argparse

    from edge_runtime.cli import NOT_SETTINGS, configure_serve, settings_flags
    from edge_runtime.settings import ServeSettings, load_settings

    p = argparse.ArgumentParser()
    configure_serve(p)
    dests = {a.dest for a in p._actions} - NOT_SETTINGS
    assert dests <= set(ServeSettings.model_fields), dests - set(ServeSettings.model_fields)
    # Settings without a flag are set in the config file or the environment only; say so when adding one.
    assert set(ServeSettings.model_fields) - dests == {"request_timeout_s", "temp_suffixes", "http_token"}
    args = p.parse_args(["--model", str(model), "--max-batch", "7", "--http", "off", "--watch-links", "inside"])
    args.verbose = 2  # the composition root's own options travel in the same namespace
    s = load_settings(settings_flags(args))
    assert (s.max_batch, s.watch_links, s.http) == (7, "inside", None)


def test_classifies_instrument_spectra_resampled_onto_the_model_axis(engine: Engine) -> None:
    ds = synth_dataset(classes=4, per_class=25, seed=11, axis=instrument_axis(1024))
    out = engine.classify([Frame("t", str(i), ds.axis, ds.X[i]) for i in range(ds.n_spectra)])
    assert len(out) == ds.n_spectra and all(o.ok for o in out)
    acc = np.mean([o.class_index == y for o, y in zip(out, ds.y, strict=True)])
    assert acc > 0.6  # chance is 0.25
    for o in out[:5]:
        assert o.probabilities is not None and abs(sum(o.probabilities) - 1) < 1e-4
        assert o.confidence == max(o.probabilities)
        assert o.class_name == engine.classes[o.class_index or 0]
        assert o.unknown is not None and o.open_set_distance is not None
    # one cached operator for the instrument axis: a second batch builds nothing new
    cached = len(engine.preprocessor._cache)
    engine.classify([Frame("t", "again", ds.axis, ds.X[0])])
    assert len(engine.preprocessor._cache) == cached


def test_bad_inputs_become_errors_with_reasons_never_exceptions(engine: Engine) -> None:
    ds = synth_dataset(classes=4, per_class=2, seed=3, axis=instrument_axis(1024))
    nan = ds.X[0].copy()
    nan[10] = np.nan
    frames = [
        Frame("t", "good", ds.axis, ds.X[1]),
        Frame("t", "nan", ds.axis, nan),
        Frame("t", "short", ds.axis, ds.X[2][:500]),
        Frame("t", "narrow", ds.axis[:300], ds.X[3][:300]),  # 350-~800 cm^-1: does not cover the model axis
        Frame("t", "text", ds.axis, np.array(["a"] * 1024)),
        Frame("t", "none", None, None),
        Frame("t", "2d", ds.axis, ds.X[:2]),
        Frame("t", "unreadable", None, None, error=("read", "garbled file")),
        Frame("t", "good2", ds.axis, ds.X[4]),
    ]
    out = engine.classify(frames)
    assert [o.frame.ref for o in out] == [f.ref for f in frames]
    by = {o.frame.ref: o for o in out}
    assert by["good"].ok and by["good2"].ok
    for ref, kind, words in [
        ("nan", "input", "NaN"), ("short", "input", "500 intensity values"), ("narrow", "preprocess", "outside"),
        ("text", "input", "non-numeric"), ("none", "input", "no spectrum"),
        ("2d", "input", "1-D"), ("unreadable", "read", "garbled"),
    ]:
        o = by[ref]
        assert not o.ok and o.error_kind == kind and words in (o.error or ""), (ref, o.error_kind, o.error)


def test_infer_checks_inputs_against_the_contract(engine: Engine) -> None:
    n = engine.contract.n_points
    with pytest.raises(ContractError, match="batch"):
        engine.infer(np.zeros((2, n + 1), dtype=np.float32))
    with pytest.raises(ContractError, match="NaN"):
        engine.infer(np.full((1, n), np.nan, dtype=np.float32))
    probs, emb = engine.infer(np.random.default_rng(0).random((3, n)).astype(np.float64))  # cast to the contract dtype
    assert probs.shape == (3, 4) and emb is not None and emb.shape[0] == 3


def test_model_without_contract_is_refused(standin_model: Path, tmp_path: Path) -> None:
    bare = rewrite_contract(standin_model, tmp_path / "bare.onnx", None, drop=True)
    with pytest.raises(ContractError, match="no ramanedge contract"):
        Engine(bare, provider="cpu")


def test_contract_that_does_not_match_the_graph_is_refused(standin_model: Path, tmp_path: Path) -> None:
    wrong_len = rewrite_contract(standin_model, tmp_path / "len.onnx", {"axis": list(np.linspace(500, 1500, 300))})
    with pytest.raises(ContractError, match=r"\[batch, 300\]"):
        Engine(wrong_len, provider="cpu")
    wrong_name = rewrite_contract(standin_model, tmp_path / "name.onnx", {"input_name": "x"})
    with pytest.raises(ContractError, match="no input 'x'"):
        Engine(wrong_name, provider="cpu")


def test_self_test_failure_refuses_the_model(standin_model: Path, tmp_path: Path) -> None:
    c = json.loads(ort.InferenceSession(str(standin_model), providers=["CPUExecutionProvider"])
                   .get_modelmeta().custom_metadata_map["ramanedge.contract"])
    ref = c["reference"]
    ref["probabilities"] = [list(reversed(p)) for p in ref["probabilities"]]
    bad = rewrite_contract(standin_model, tmp_path / "selftest.onnx", {"reference": ref})
    with pytest.raises(SelfTestError, match="self-test"):
        Engine(bad, provider="cpu")


def test_require_validated(model: Path, tmp_path: Path) -> None:
    m = tmp_path / "m.onnx"
    shutil.copy(model, m)
    with pytest.raises(ModelRefusedError, match="no validation report"):
        Engine(m, provider="cpu", require_validated=True)
    report = json.loads(model.with_suffix(".validation.json").read_text())
    assert report["passed"] is True
    m.with_suffix(".validation.json").write_text(json.dumps(report))
    e = Engine(m, provider="cpu", require_validated=True)
    assert e.validation_report == m.with_suffix(".validation.json")
    m.with_suffix(".validation.json").write_text(json.dumps({**report, "passed": False}))
    with pytest.raises(ModelRefusedError, match="did not pass"):
        Engine(m, provider="cpu", require_validated=True)
    m.with_suffix(".validation.json").write_text(json.dumps({**report, "model_sha256": "0" * 64}))
    with pytest.raises(ModelRefusedError, match="another model"):
        Engine(m, provider="cpu", require_validated=True)
    m.with_suffix(".validation.json").write_text("{not json")
    with pytest.raises(ModelRefusedError, match="cannot read"):
        Engine(m, provider="cpu", require_validated=True)


@pytest.mark.gpu
def test_cuda_session_really_runs_on_the_gpu_and_agrees_with_cpu(model: Path) -> None:
    if not _cuda_really_loads(model):
        pytest.fail("pytest -m gpu on a machine where the CUDA provider does not load")
    gpu = Engine(model, provider="cuda", require_gpu=True)
    assert gpu.provider == "CUDAExecutionProvider"
    cpu = Engine(model, provider="cpu")
    x = np.random.default_rng(1).random((16, cpu.contract.n_points)).astype(np.float32)
    assert np.allclose(gpu.infer(x)[0], cpu.infer(x)[0], atol=1e-4)


def test_auto_provider_probe_prints_no_onnxruntime_library_error(model: Path) -> None:
    """On a machine whose CUDA libraries do not load, `--provider auto` reports the fallback in its own words."""
    import subprocess
    import sys

    code = ("import logging, sys; logging.basicConfig(stream=sys.stderr, level=logging.WARNING)\n"
            "from edge_runtime.engine import Engine\n"
            f"e = Engine({str(model)!r}, provider='auto'); print(e.provider)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert proc.stdout.strip() in ("CUDAExecutionProvider", "CPUExecutionProvider")
    assert "provider_bridge" not in proc.stderr and "Failed to create CUDAExecutionProvider" not in proc.stderr, (
        proc.stderr)
    if proc.stdout.strip() == "CPUExecutionProvider" and "CUDAExecutionProvider" in ort.get_available_providers():
        assert "skipped cuda" in proc.stderr  # the fallback is still said, once, by the engine
