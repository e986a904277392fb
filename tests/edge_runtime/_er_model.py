"""A small stand-in ONNX model with a real ramanedge contract, built without training.

Used until (and beside) the shared ``tiny_onnx`` fixture: a nearest-class-mean classifier on the
preprocessed synthetic spectra, written with ``onnx.helper`` (the test process may import onnx; the daemon
under test never does). Outputs follow the contract: probabilities, logits, embedding.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from spectral_core.contract import ModelContract, OpenSet, ReferenceSpectra
from spectral_core.preprocess import AxisSpec, PreprocessConfig, Preprocessor, SmoothConfig
from spectral_core.synth import instrument_axis, synth_dataset

N_CLASSES = 4
MODEL_POINTS = 400
CATALOG_SEED = 0


def model_config() -> PreprocessConfig:
    return PreprocessConfig(
        target_axis=AxisSpec(start=420.0, stop=1780.0, points=MODEL_POINTS),
        interpolation="linear",
        smooth=SmoothConfig(window=9, polyorder=3),
        normalise="snv",
    )


def build_model(path: Path, *, n_classes: int = N_CLASSES, seed: int = 1) -> Path:
    """Write the stand-in model to ``path`` and return it."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    cfg = model_config()
    pre = Preprocessor(cfg)
    axis = instrument_axis(1024)
    ds = synth_dataset(classes=n_classes, per_class=60, seed=seed, catalog_seed=CATALOG_SEED, axis=axis)
    X = pre.transform(ds.X, ds.axis)
    # Fluorescence is a smooth background: a first difference removes most of it before the class means.
    D = np.eye(MODEL_POINTS, k=0) - np.eye(MODEL_POINTS, k=-1)
    Xd = X @ D.T
    means = np.stack([Xd[ds.y == c].mean(axis=0) for c in range(n_classes)])
    means /= np.linalg.norm(means, axis=1, keepdims=True)
    W = (D.T @ means.T).astype(np.float32)  # x -> first difference -> cosine to class means
    scale = np.float32(30.0)

    def unit(e: np.ndarray) -> np.ndarray:
        return e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)

    emb_train = unit(X @ W)
    centroids = unit(np.stack([emb_train[ds.y == c].mean(axis=0) for c in range(n_classes)]))
    dist = 1.0 - np.sum(emb_train * centroids[ds.y], axis=1)
    thresholds = [float(np.quantile(dist[ds.y == c], 0.99)) + 0.05 for c in range(n_classes)]

    x = helper.make_tensor_value_info("spectrum", TensorProto.FLOAT, ["batch", MODEL_POINTS])
    outs = [
        helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", n_classes]),
        helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", n_classes]),
        helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", n_classes]),
    ]
    nodes = [
        helper.make_node("MatMul", ["spectrum", "W"], ["proj"]),
        helper.make_node("Mul", ["proj", "scale"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1),
        helper.make_node("LpNormalization", ["proj"], ["embedding"], axis=1, p=2),
    ]
    graph = helper.make_graph(
        nodes,
        "standin",
        [x],
        outs,
        initializer=[numpy_helper.from_array(W, "W"), numpy_helper.from_array(np.array(scale), "scale")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    ref_x = X[:4].astype(np.float32)
    logits = (ref_x @ W) * scale
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    contract = ModelContract(
        classes=list(ds.classes),
        axis=[float(v) for v in pre.output_axis(axis)],
        preprocess=cfg,
        preprocess_hash=cfg.hash(),
        open_set=OpenSet(centroids=centroids.tolist(), thresholds=thresholds),
        reference=ReferenceSpectra(inputs=ref_x.tolist(), probabilities=p.tolist(), atol=1e-3,
                                   predicted_classes=[ds.classes[int(i)] for i in np.argmax(p, axis=1)]),
        opset=17,
    )
    for k, v in contract.to_metadata().items():
        entry = model.metadata_props.add()
        entry.key, entry.value = k, v
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def rewrite_contract(src: Path, dst: Path, change: dict[str, object] | None, *, drop: bool = False) -> Path:
    """Copy a model with its contract fields updated (``change``) or the contract removed (``drop``)."""
    import json

    import onnx

    from spectral_core.contract import METADATA_KEY

    m = onnx.load(str(src))
    props = {p.key: p.value for p in m.metadata_props}
    del m.metadata_props[:]
    if not drop:
        c = json.loads(props[METADATA_KEY])
        for k, v in (change or {}).items():
            c[k] = v
        props[METADATA_KEY] = json.dumps(c)
    else:
        props.pop(METADATA_KEY)
    for k, v in props.items():
        e = m.metadata_props.add()
        e.key, e.value = k, v
    onnx.save(m, str(dst))
    return dst
