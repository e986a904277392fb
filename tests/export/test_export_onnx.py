"""export_run: a small, checked graph with its contract; in-graph normalisation equal to the host one;
bad input refused without leaving a file behind."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from export._graph import InferenceRamanNet, torch_normalise
from export.onnx_export import ExportError, export_run
from spectral_core.contract import ModelContract
from spectral_core.errors import ContractError
from spectral_core.preprocess import PreprocessConfig, normalise
from spectral_core.synth import synth_dataset
from trainer.checkpoint import RunInfo, load_run, save_run
from trainer.model import RamanNet, RamanNetConfig

# RamanNet inference graph: normalisation (<= 9 nodes for snv), window layer (Gather, Reshape, Transpose,
# MatMul, Transpose, Reshape, Add, LeakyRelu), dense2 (MatMul, Add, LeakyRelu), embedding (MatMul, Add,
# ReduceL2, Clip, Div), bn3 + classifier (Mul, Add, LeakyRelu, MatMul, Add), Softmax: 30 at most.
MAX_NODES = 32


def _random_run(path: Path, *, length: int = 120, window: int = 20, step: int = 10, normalise: str = "minmax") -> Path:
    torch.manual_seed(0)
    cfg = RamanNetConfig(input_length=length, n_classes=3, window=window, step=step, n2=16, embedding_dim=8)
    model = RamanNet(cfg).eval()
    with torch.no_grad():  # non-trivial batch-norm statistics, so folding them is really exercised
        for bn in (model.window_bn, model.bn2, model.bn3):
            bn.running_mean.uniform_(-0.2, 0.2)
            bn.running_var.uniform_(0.5, 2.0)
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.uniform_(-0.2, 0.2)
    info = RunInfo(
        model=cfg, preprocess=PreprocessConfig(normalise=normalise), classes=["a", "b", "c"],
        axis=np.linspace(400.0, 1800.0, length).tolist(),
    )
    save_run(path, model, info)
    return path


def _ops(path: Path) -> list[str]:
    return [n.op_type for n in onnx.load(path).graph.node]


def test_fp32_graph_is_small_checked_and_named(tiny_onnx: Path, tiny_run: Path) -> None:
    model = onnx.load(tiny_onnx)
    onnx.checker.check_model(model, full_check=True)
    ops = [n.op_type for n in model.graph.node]
    assert len(ops) <= MAX_NODES, ops
    assert ops.count("Gather") == 1  # the whole window layer reads its input with one Gather
    assert ops.count("MatMul") == 4  # window layer, dense2, embedding, classifier
    assert "BatchNormalization" not in ops and "Einsum" not in ops
    assert [o.opset_import[0].version for o in (model,)] == [18]
    (inp,) = model.graph.input
    assert inp.name == "spectrum" and inp.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    dims = inp.type.tensor_type.shape.dim
    _, info = load_run(tiny_run)
    assert dims[0].dim_param and dims[1].dim_value == len(info.axis)  # dynamic batch, fixed length
    assert [o.name for o in model.graph.output] == ["probabilities", "logits", "embedding"]
    assert all(o.type.tensor_type.elem_type == onnx.TensorProto.FLOAT for o in model.graph.output)


def test_node_count_does_not_grow_with_windows(tmp_path: Path) -> None:
    few = export_run(_random_run(tmp_path / "few", window=40, step=40), tmp_path / "few.onnx")  # 3 windows
    many = export_run(_random_run(tmp_path / "many", window=10, step=5), tmp_path / "many.onnx")  # 23 windows
    assert _ops(few) == _ops(many)
    assert len(_ops(many)) <= MAX_NODES


def test_contract_round_trips_through_onnxruntime_without_onnx_or_torch(tiny_onnx: Path, tiny_run: Path) -> None:
    """The runtime's way in: onnxruntime's custom_metadata_map and spectral_core, with onnx and torch blocked."""
    code = (
        "import sys, json\n"
        "sys.modules['onnx'] = None; sys.modules['torch'] = None\n"
        "import numpy as np, onnxruntime as ort\n"
        "from spectral_core.contract import ModelContract\n"
        f"s = ort.InferenceSession({str(tiny_onnx)!r}, providers=['CPUExecutionProvider'])\n"
        "c = ModelContract.from_metadata(s.get_modelmeta().custom_metadata_map)\n"
        "p = s.run(['probabilities'], {'spectrum': np.asarray(c.reference.inputs, dtype=np.float32)})[0]\n"
        "print(json.dumps({'contract': c.model_dump(mode='json'), 'selftest': float(np.abs(p - np.asarray(c.reference.probabilities)).max())}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    got = json.loads(out.stdout)
    contract = ModelContract.model_validate(got["contract"])
    _, info = load_run(tiny_run)
    assert contract.classes == info.classes
    assert contract.axis == info.axis
    assert contract.preprocess == info.preprocess and contract.preprocess_hash == info.preprocess.hash()
    assert contract.in_graph_steps == ["normalise"]
    assert contract.open_set == info.open_set and contract.open_set is not None
    assert contract.weights_sha256 == info.weights_sha256 and contract.data_sha256 == info.data_sha256
    assert contract.opset == 18 and contract.precision == "fp32" and contract.package_version
    assert contract.created and contract.reference is not None and len(contract.reference.inputs) == 8
    assert got["selftest"] <= contract.reference.atol  # the embedded self-test passes on onnxruntime


@pytest.mark.parametrize("method", ["minmax", "vector", "area", "snv", "none"])
def test_in_graph_normalisation_equals_host_normalise(method: str) -> None:
    """torch_normalise (what the graph runs) against the numpy reference, on raw-count-scale spectra."""
    rng = np.random.default_rng(0)
    x = (rng.random((16, 200)) * 5e4 + rng.random((16, 1)) * 1e3).astype(np.float32)
    ref = normalise(x, method)[0]
    got = torch_normalise(torch.from_numpy(x), method).numpy()
    np.testing.assert_allclose(got, ref, rtol=2e-5, atol=1e-6)


@pytest.mark.parametrize("method", ["vector", "snv"])
def test_exported_graph_normalises_like_the_host(tmp_path: Path, method: str) -> None:
    """End to end through ONNX for the normalisations the tiny run does not use (it uses minmax)."""
    run = _random_run(tmp_path / "run", normalise=method)
    path = export_run(run, tmp_path / "m.onnx")
    model, _ = load_run(run)
    x = synth_dataset(classes=3, per_class=4, points=120, seed=3).X
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    probs, logits, emb = sess.run(None, {"spectrum": x})
    with torch.no_grad():
        ref_logits, ref_emb = model(torch.from_numpy(normalise(x, method)[0]))
    np.testing.assert_allclose(logits, ref_logits.numpy(), atol=1e-4, rtol=0)
    np.testing.assert_allclose(emb, ref_emb.numpy(), atol=1e-5, rtol=0)
    np.testing.assert_allclose(probs, torch.softmax(ref_logits, 1).numpy(), atol=1e-5, rtol=0)


def test_folding_is_exact_in_torch() -> None:
    torch.manual_seed(1)
    model = RamanNet(RamanNetConfig(input_length=100, n_classes=5, window=16, step=7, n2=12, embedding_dim=6))
    with torch.no_grad():
        for bn in (model.window_bn, model.bn2, model.bn3):
            bn.running_mean.uniform_(-1, 1)
            bn.running_var.uniform_(0.2, 3.0)
    model.eval()
    x = torch.rand(9, 100)
    with torch.no_grad():
        p, lg, em = InferenceRamanNet(model, "none")(x)
        ref_lg, ref_em = model(x)
    torch.testing.assert_close(lg, ref_lg, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(em, ref_em, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(p, torch.softmax(ref_lg, 1))


# --- bad input ----------------------------------------------------------------------------------------------


def test_bad_precision_and_opset_are_refused_before_writing(tiny_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "m.onnx"
    with pytest.raises(ExportError, match="precision 'int4'"):
        export_run(tiny_run, out, precision="int4")
    with pytest.raises(ExportError, match="opset 11 is not supported"):
        export_run(tiny_run, out, opset=11)
    with pytest.raises(ExportError, match="calibration"):
        export_run(tiny_run, out, precision="int8-static")
    assert list(tmp_path.iterdir()) == []


def test_incomplete_or_foreign_run_is_a_contract_error(tiny_run: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "run.json").write_text((tiny_run / "run.json").read_text())  # weights missing
    with pytest.raises(ContractError, match=r"missing weights\.safetensors"):
        export_run(broken, tmp_path / "m.onnx")
    other = tmp_path / "other"
    other.mkdir()
    raw = json.loads((tiny_run / "run.json").read_text())
    raw["format_version"] = 99
    (other / "run.json").write_text(json.dumps(raw))
    (other / "weights.safetensors").write_bytes((tiny_run / "weights.safetensors").read_bytes())
    with pytest.raises(ContractError, match="another version"):
        export_run(other, tmp_path / "m.onnx")
    assert not (tmp_path / "m.onnx").exists()


def test_calibration_data_on_another_axis_is_refused(tiny_run: Path, tmp_path: Path) -> None:
    wrong = synth_dataset(classes=4, per_class=2, points=250, seed=0)  # 250 points, the model has 300
    with pytest.raises(ContractError, match="not the model axis"):
        export_run(tiny_run, tmp_path / "m.onnx", precision="int8-static", calibration=wrong)
    assert not (tmp_path / "m.onnx").exists()


def test_failed_export_leaves_no_partial_file_and_keeps_the_old_one(
    tiny_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "model.onnx"
    out.write_bytes(b"previous model")

    def explode(*args: object, **kwargs: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(onnx, "save", explode)
    with pytest.raises(OSError, match="disk full"):
        export_run(tiny_run, out)
    assert out.read_bytes() == b"previous model"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]  # no temporary left behind


def test_the_same_run_exported_twice_gives_the_same_bytes(tiny_run: Path, tmp_path: Path) -> None:
    from spectral_core.hashing import sha256_file

    a = export_run(tiny_run, tmp_path / "a.onnx", precision="fp32")
    b = export_run(tiny_run, tmp_path / "b.onnx", precision="fp32")
    assert sha256_file(a) == sha256_file(b)
    created = ModelContract.from_metadata({p.key: p.value for p in onnx.load(a).metadata_props}).created
    assert created == load_run(tiny_run)[1].created != ""


def test_export_command_prints_no_exporter_noise(tiny_run: Path, tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "ramanedge", "export", str(tiny_run), "--out", str(tmp_path / "m.onnx")],
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "torchvision" not in proc.stderr and "Warning" not in proc.stderr, proc.stderr
    assert "m.onnx" in proc.stdout
