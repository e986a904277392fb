"""An ensemble exported as ONE ONNX graph: the single model's interface, the mean of the members' softmax,
deterministic bytes, the contract's ensemble fields, served by the edge Engine unchanged, and validated against
the PyTorch ensemble (passing, and failing on a tampered member)."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from _tiny import TINY_TRAIN_CONFIG

from export.onnx_export import export_run, read_contract
from export.validate import validate_model
from spectral_core.contract import ModelContract
from spectral_core.errors import ContractError
from spectral_core.hashing import sha256_file
from spectral_core.io import read_dataset
from spectral_core.preprocess import Preprocessor, normalise
from trainer.ensemble import ENSEMBLE_JSON, ensemble_weights_sha256, load_ensemble, train_ensemble
from trainer.train import TrainConfig

K = 2


@pytest.fixture(scope="module")
def ens(tiny_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ens_export") / "ens"
    train_ensemble(read_dataset(tiny_data), out, TrainConfig.model_validate({**TINY_TRAIN_CONFIG, "epochs": 12}), K)
    return out


@pytest.fixture(scope="module")
def ens_onnx(ens: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_run(ens, tmp_path_factory.mktemp("ens_onnx") / "ens.onnx")


def _host_x(contract: ModelContract, tiny_data: Path, n: int = 60) -> np.ndarray:
    ds = read_dataset(tiny_data)
    host = Preprocessor(contract.preprocess, skip=contract.in_graph_steps)
    return host.transform(ds.X[:n], ds.axis)


def test_the_ensemble_graph_has_the_single_model_interface(ens_onnx: Path, tiny_onnx: Path) -> None:
    sess, single = ort.InferenceSession(str(ens_onnx)), ort.InferenceSession(str(tiny_onnx))
    assert [(i.name, i.shape[1], i.type) for i in sess.get_inputs()] == [
        (i.name, i.shape[1], i.type) for i in single.get_inputs()]
    assert [o.name for o in sess.get_outputs()] == [o.name for o in single.get_outputs()]
    shapes = {o.name: o.shape[1] for o in sess.get_outputs()}
    single_shapes = {o.name: o.shape[1] for o in single.get_outputs()}
    assert shapes["probabilities"] == shapes["logits"] == single_shapes["probabilities"]
    assert shapes["embedding"] == K * single_shapes["embedding"]
    ops = [n.op_type for n in onnx.load(ens_onnx).graph.node]
    assert ops.count("MatMul") == 4 * K  # K folded members in one graph
    assert ops.count("Gather") == 1  # the members read the same windows: the exporter's optimiser shares them


def test_onnx_outputs_are_the_mean_of_the_members_softmax(ens: Path, ens_onnx: Path, tiny_data: Path) -> None:
    contract = read_contract(ens_onnx)
    x = _host_x(contract, tiny_data)
    prob, logits, emb = ort.InferenceSession(str(ens_onnx)).run(None, {"spectrum": x})
    net, _ = load_ensemble(ens)
    xt = torch.from_numpy(normalise(x, contract.preprocess.normalise)[0])
    with torch.no_grad():  # the training-form members, not the folded ones the graph holds
        outs = [m(xt) for m in net.members]
    mean_p = np.mean([torch.softmax(lg, dim=1).numpy() for lg, _ in outs], axis=0)
    np.testing.assert_allclose(prob, mean_p, atol=1e-5)
    np.testing.assert_allclose(np.exp(logits), mean_p, atol=1e-5)
    np.testing.assert_allclose(emb, np.concatenate([e.numpy() for _, e in outs], axis=1) / math.sqrt(K), atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)


def test_contract_records_the_ensemble_and_its_members(ens: Path, ens_onnx: Path) -> None:
    c = read_contract(ens_onnx)
    doc = json.loads((ens / ENSEMBLE_JSON).read_text())
    assert c.ensemble is not None and c.ensemble.size == K
    assert c.ensemble.member_weights_sha256 == doc["member_weights_sha256"]
    assert c.weights_sha256 == ensemble_weights_sha256(doc["member_weights_sha256"]) == doc["weights_sha256"]
    assert set(c.ensemble.combination) == {"probabilities", "logits", "embedding"}
    assert c.open_set is not None and len(c.open_set.centroids[0]) == len(doc["open_set"]["centroids"][0])
    assert c.reference is not None and c.created == doc["created"]
    with pytest.raises(ContractError, match="member hashes"):
        ModelContract.from_metadata({"ramanedge.contract": c.model_copy(
            update={"ensemble": c.ensemble.model_copy(update={"size": K + 1})}).model_dump_json()})


def test_the_same_ensemble_exported_twice_gives_the_same_bytes(ens: Path, ens_onnx: Path, tmp_path: Path) -> None:
    again = export_run(ens, tmp_path / "again.onnx")
    assert sha256_file(again) == sha256_file(ens_onnx)


def test_int8_keeps_every_members_classifier_in_float32(ens: Path, tmp_path: Path) -> None:
    q = onnx.load(export_run(ens, tmp_path / "q.onnx", precision="int8-dynamic"))
    ops = [n.op_type for n in q.graph.node]
    # per member: dense2 and embedding quantised; window layer and classifier kept float32
    assert ops.count("MatMulInteger") + ops.count("DynamicQuantizeMatMul") == 2 * K
    assert ops.count("MatMul") == 2 * K


def test_the_edge_engine_serves_the_ensemble(ens: Path, ens_onnx: Path, tiny_data: Path) -> None:
    from edge_runtime.engine import Engine, Frame

    engine = Engine(ens_onnx, provider="cpu")  # the self-test runs on the contract's reference spectra
    ds = read_dataset(tiny_data)
    out = engine.classify([Frame("t", str(i), ds.axis, ds.X[i]) for i in range(0, ds.n_spectra, 4)])
    assert all(o.ok for o in out)
    net, info = load_ensemble(ens)
    X = Preprocessor(info.preprocess).transform(ds.X[::4], ds.axis)
    with torch.no_grad():
        want = net.probabilities(torch.from_numpy(X)).numpy()
    assert [o.class_index for o in out] == want.argmax(1).tolist()
    np.testing.assert_allclose([o.probabilities for o in out], want, atol=1e-4)
    assert all(o.unknown is not None and o.open_set_distance is not None for o in out)
    assert np.mean([o.unknown for o in out]) < 0.5  # its own training spectra are mostly known
    assert all(o.drift is not None for o in out)


def test_validate_passes_on_the_ensemble(ens: Path, ens_onnx: Path, tiny_data: Path) -> None:
    report = validate_model(ens_onnx, ens, tiny_data, write=False)
    assert report.passed, report.reason
    assert report.run.weights_sha256 == read_contract(ens_onnx).weights_sha256
    probs = report.outputs["probabilities"].abs
    assert probs is not None and probs.max <= 1e-5


def _retrained_member(ens: Path, tmp_path: Path) -> Path:
    """A copy of ``ens`` whose member 1 is swapped for member 0 with every hash in the run directory made
    consistent again (what an edit of the run directory, not of the ONNX file, would look like)."""
    copy = tmp_path / "ens"
    shutil.copytree(ens, copy)
    shutil.rmtree(copy / "members" / "1")
    shutil.copytree(ens / "members" / "0", copy / "members" / "1")
    doc = json.loads((copy / ENSEMBLE_JSON).read_text())
    doc["member_weights_sha256"][1] = doc["member_weights_sha256"][0]
    doc["weights_sha256"] = ensemble_weights_sha256(doc["member_weights_sha256"])
    (copy / ENSEMBLE_JSON).write_text(json.dumps(doc))
    return copy


def test_validate_fails_on_a_tampered_member(ens: Path, ens_onnx: Path, tiny_data: Path, tmp_path: Path) -> None:
    # a member's weights modified in place: its own hash check refuses it
    broken = tmp_path / "broken"
    shutil.copytree(ens, broken)
    w = broken / "members" / "0" / "weights.safetensors"
    data = bytearray(w.read_bytes())
    data[-1] ^= 0xFF
    w.write_bytes(bytes(data))
    with pytest.raises(ContractError, match="weights do not match"):
        validate_model(ens_onnx, broken, tiny_data, write=False)
    # a member swapped with all run-side hashes made consistent: the model was exported from other weights
    swapped = _retrained_member(ens, tmp_path)
    with pytest.raises(ContractError, match="exported from other weights"):
        validate_model(ens_onnx, swapped, tiny_data, write=False)
    # and with the model's contract edited to match as well, the numbers themselves fail
    proto = onnx.load(ens_onnx)
    c = read_contract(ens_onnx)
    doc = json.loads((swapped / ENSEMBLE_JSON).read_text())
    c = c.model_copy(update={"weights_sha256": doc["weights_sha256"]})
    for p in proto.metadata_props:
        if p.key == "ramanedge.contract":
            p.value = c.model_dump_json()
    forged = tmp_path / "forged.onnx"
    onnx.save(proto, forged)
    report = validate_model(forged, swapped, tiny_data, write=False)
    assert not report.passed
    assert any(f.startswith(("probabilities", "logits", "embedding")) for f in report.failures), report.failures
