"""Prove that an exported ONNX model answers as the PyTorch run does, on real labelled spectra.

Both sides see the same spectra: DATA goes through the run's host preprocessing
(``Preprocessor(contract.preprocess, skip=contract.in_graph_steps)``); onnxruntime gets that, and PyTorch gets
that plus the reference numpy implementation of the in-graph steps (:func:`spectral_core.preprocess.normalise`),
so the comparison also proves the graph's normalisation equals the host one.

The comparison reads like NVIDIA Polygraphy's: per output, the max / mean / median / p99 of the absolute and
relative errors (``rel = |onnx - torch| / |torch|``), the minimum atol (with rtol = 0) and the minimum rtol
(with atol = 0) that would have passed, and a per-output tolerance (``|onnx - torch| <= atol + rtol * |torch|``
element-wise) with defaults per precision; then task-level agreement on the labelled spectra.

Report file
-----------
``model.onnx`` -> ``model.validation.json`` beside it (the model's suffix replaced; :func:`report_path`).
JSON object, written atomically:

- ``format`` = "ramanedge-validation", ``format_version`` = 1
- ``passed`` (bool) and ``reason`` (one line, "" when passed); ``failures``: every failed criterion
- ``model_sha256``: SHA-256 of the model file validated. A runtime with ``--require-validated`` accepts a model
  only when this report exists, ``passed`` is true and ``model_sha256`` equals the file's SHA-256.
- ``model``: path, precision, opset, contract weights hash; ``run``: path, weights hash; ``data``: path,
  sha256 of the file, spectra used, rows excluded (index -> reason, e.g. a flat spectrum)
- ``environment``: python, numpy, torch, onnx, onnxruntime versions, platform, CPU, the execution providers
  requested and those the session actually used (``session.get_providers()``)
- ``criteria``: the tolerances and thresholds applied
- ``outputs``: per output (probabilities, logits, embedding): ``abs`` and ``rel`` stats (max, mean, median,
  p99), ``min_atol``, ``min_rtol`` (null when no rtol alone can pass), ``atol``, ``rtol``, ``passed`` (null when not judged element-wise), and
  ``worst``: the row, column (class name or embedding index), both values
- ``task``: argmax and top-k agreement, embedding cosine similarity (mean, min), accuracy and macro-F1 of
  PyTorch and ONNX and their differences (percentage points), unknown-flag agreement (when the contract has
  an open set)
- ``created``: ISO-8601 UTC
"""

from __future__ import annotations

import logging
import os
import platform
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field

from export._host import host_preprocess
from spectral_core.atomic import write_json_atomic
from spectral_core.contract import ModelContract
from spectral_core.errors import ContractError, DataError, ModelFileError, ProviderError
from spectral_core.hashing import sha256_arrays, sha256_file
from spectral_core.io import read_dataset
from spectral_core.openset import flag_unknown
from spectral_core.preprocess import Preprocessor, normalise
from spectral_core.providers import PROVIDERS
from spectral_core.spectrum import SpectralDataset

__all__ = [
    "DEFAULT_CRITERIA",
    "PROVIDERS",
    "REPORT_FORMAT",
    "Criteria",
    "OutputTolerance",
    "ValidationReport",
    "format_report",
    "report_path",
    "validate_model",
]

logger = logging.getLogger(__name__)

REPORT_FORMAT = "ramanedge-validation"
REPORT_VERSION = 1
OUTPUTS = ("probabilities", "logits", "embedding")


class OutputTolerance(BaseModel):
    """Element-wise tolerance of one output: ``|onnx - torch| <= atol + rtol * |torch|``."""

    model_config = ConfigDict(extra="forbid")

    atol: float = Field(ge=0)
    rtol: float = Field(default=0.0, ge=0)


class Criteria(BaseModel):
    """What a model must meet to pass. ``None`` means reported but not judged."""

    model_config = ConfigDict(extra="forbid")

    tolerances: dict[str, OutputTolerance] = Field(default_factory=dict)
    min_argmax_agreement: float = Field(ge=0, le=1)
    max_accuracy_drop_pp: float | None = Field(
        default=None, ge=0, description="largest accepted accuracy loss of ONNX vs PyTorch, percentage points"
    )
    min_embedding_cosine: float | None = None
    min_unknown_agreement: float | None = Field(default=None, ge=0, le=1)


# fp32: the graph is the same arithmetic in another order, so near bit-level agreement is required.
# fp16 / int8: judged by decisions (argmax, accuracy, unknown flags) and embedding direction, not by
# element-wise error, which they are expected to have.
DEFAULT_CRITERIA: dict[str, Criteria] = {
    "fp32": Criteria(
        tolerances={
            "logits": OutputTolerance(atol=1e-4),
            "probabilities": OutputTolerance(atol=1e-5),
            "embedding": OutputTolerance(atol=1e-5),
        },
        min_argmax_agreement=1.0,
        max_accuracy_drop_pp=0.0,
        min_embedding_cosine=0.99999,
        min_unknown_agreement=0.99,
    ),
    "fp16": Criteria(
        min_argmax_agreement=0.99, max_accuracy_drop_pp=0.5, min_embedding_cosine=0.999,
        min_unknown_agreement=0.97,
    ),
    "int8-dynamic": Criteria(
        min_argmax_agreement=0.97, max_accuracy_drop_pp=0.5, min_embedding_cosine=0.98,
        min_unknown_agreement=0.9,
    ),
    "int8-static": Criteria(
        min_argmax_agreement=0.97, max_accuracy_drop_pp=0.5, min_embedding_cosine=0.98,
        min_unknown_agreement=0.9,
    ),
}


class ValidationReport(BaseModel):
    """The validation report (see the module docstring for the file format)."""

    model_config = ConfigDict(extra="forbid")

    format: str = REPORT_FORMAT
    format_version: int = REPORT_VERSION
    passed: bool
    reason: str
    failures: list[str]
    model_sha256: str
    model: dict[str, Any]
    run: dict[str, Any]
    data: dict[str, Any]
    environment: dict[str, Any]
    criteria: Criteria
    outputs: dict[str, dict[str, Any]]
    task: dict[str, Any]
    created: str


def report_path(model_path: str | Path) -> Path:
    """Where the report of ``model_path`` lives: ``model.onnx`` -> ``model.validation.json``."""
    p = Path(model_path)
    return p.with_suffix(".validation.json")


def _stats(v: NDArray[np.float64]) -> dict[str, float]:
    if v.size == 0:
        return {"max": 0.0, "mean": 0.0, "median": 0.0, "p99": 0.0}
    finite = np.where(np.isfinite(v), v, np.finfo(np.float64).max)
    return {
        "max": float(np.max(finite)),
        "mean": float(np.mean(finite)),
        "median": float(np.median(finite)),
        "p99": float(np.quantile(finite, 0.99)),
    }


def compare_output(
    name: str, got: NDArray[np.floating], ref: NDArray[np.floating], tol: OutputTolerance | None,
    labels: list[str] | None = None,
) -> dict[str, Any]:
    """Polygraphy-style comparison of one output (``got`` from ONNX, ``ref`` from PyTorch)."""
    a = np.asarray(got, dtype=np.float64)
    b = np.asarray(ref, dtype=np.float64)
    if a.shape != b.shape:
        return {"shape": list(a.shape), "reference_shape": list(b.shape), "passed": False,
                "error": f"shape {a.shape} differs from PyTorch's {b.shape}"}
    diff = np.abs(a - b)
    mag = np.abs(b)
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = np.where(mag > 0, diff / np.where(mag > 0, mag, 1.0), np.where(diff > 0, np.inf, 0.0))
    atol = tol.atol if tol else 0.0
    rtol = tol.rtol if tol else 0.0
    # the smallest atol that passes with the configured rtol, and the smallest rtol with the configured atol
    min_atol = float(np.max(np.maximum(diff - rtol * mag, 0.0))) if diff.size else 0.0
    with np.errstate(divide="ignore", invalid="ignore"):
        need = np.where(mag > 0, (diff - atol) / np.where(mag > 0, mag, 1.0), np.where(diff > atol, np.inf, 0.0))
    min_rtol: float | None = float(np.max(np.maximum(need, 0.0))) if diff.size else 0.0
    if min_rtol is not None and not np.isfinite(min_rtol):
        min_rtol = None  # an error on an exact zero of PyTorch's: no rtol alone can pass it (JSON has no inf)
    excess = diff - (atol + rtol * mag)
    worst_flat = int(np.argmax(excess)) if tol is not None and diff.size else int(np.argmax(diff)) if diff.size else 0
    out: dict[str, Any] = {
        "shape": list(a.shape),
        "abs": _stats(diff),
        "rel": _stats(rel),
        "min_atol": min_atol,
        "min_rtol": min_rtol,
        "atol": tol.atol if tol else None,
        "rtol": tol.rtol if tol else None,
        "passed": None if tol is None else bool(np.all(excess <= 0)),
        "n_over": None if tol is None else int(np.sum(excess > 0)),
    }
    if diff.size:
        row, col = np.unravel_index(worst_flat, diff.shape) if diff.ndim == 2 else (worst_flat, 0)
        out["worst"] = {
            "row": int(row),
            "col": int(col),
            "label": labels[int(col)] if labels is not None and int(col) < len(labels) else f"{name}[{int(col)}]",
            "onnx": float(a.reshape(diff.shape)[row, col]) if diff.ndim == 2 else float(a.flat[worst_flat]),
            "torch": float(b.reshape(diff.shape)[row, col]) if diff.ndim == 2 else float(b.flat[worst_flat]),
            "abs": float(diff[row, col]) if diff.ndim == 2 else float(diff.flat[worst_flat]),
        }
    return out


def _top_k_agreement(p: NDArray[np.floating], q: NDArray[np.floating], k: int) -> float:
    if p.shape[0] == 0:
        return 1.0
    a = np.sort(np.argsort(-p, axis=1)[:, :k], axis=1)
    b = np.sort(np.argsort(-q, axis=1)[:, :k], axis=1)
    return float(np.mean(np.all(a == b, axis=1)))


def _session(model_path: Path, provider: str) -> Any:
    """An onnxruntime session on exactly the requested provider: a missing one is an error, never a fallback."""
    import onnxruntime as ort

    if provider not in PROVIDERS:
        raise ProviderError(f"unknown provider {provider!r}; choose from {', '.join(PROVIDERS)}")
    want = PROVIDERS[provider]
    available = ort.get_available_providers()
    if want not in available:
        raise ProviderError(f"execution provider {want} is not available here (available: {', '.join(available)})")
    so = ort.SessionOptions()
    so.log_severity_level = 3
    try:
        sess = ort.InferenceSession(str(model_path), so, providers=[want])
    except Exception as exc:  # onnxruntime raises its own pybind exception types
        raise ContractError(f"{model_path}: onnxruntime cannot load the model: {exc}") from exc
    used = sess.get_providers()
    if not used or used[0] != want:
        raise ProviderError(f"onnxruntime fell back from {want} to {used}: refusing a silent fallback")
    return sess


def _run_onnx(
    sess: Any, X: NDArray[np.float32], contract: ModelContract, batch: int = 256
) -> list[NDArray[np.float32]]:
    """The model's outputs (in :data:`OUTPUTS` order), by the input and output names its contract gives."""
    names = [contract.output_names[o] for o in OUTPUTS]
    outs: list[list[NDArray[np.float32]]] = [[], [], []]
    for i in range(0, X.shape[0], batch):
        res = sess.run(names, {contract.input_name: np.ascontiguousarray(X[i : i + batch])})
        for j, r in enumerate(res):
            outs[j].append(np.asarray(r))
    return [np.concatenate(o, axis=0) for o in outs]


def _run_torch(model: Any, X: NDArray[np.float32], batch: int = 1024) -> list[NDArray[np.float32]]:
    import torch

    probs, logits, embs = [], [], []
    with torch.no_grad():
        for i in range(0, X.shape[0], batch):
            lg, em = model(torch.from_numpy(np.ascontiguousarray(X[i : i + batch])))
            probs.append(torch.softmax(lg, dim=1).numpy())
            logits.append(lg.numpy())
            embs.append(em.numpy())
    return [np.concatenate(v, axis=0) for v in (probs, logits, embs)]


def _environment(sess: Any, provider: str) -> dict[str, Any]:
    import onnx
    import onnxruntime as ort
    import torch

    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), cpu)
    except OSError:
        pass
    return {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "torch": torch.__version__,
        "onnx": onnx.__version__,
        "onnxruntime": ort.__version__,
        "platform": platform.platform(),
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "provider_requested": PROVIDERS[provider],
        "providers_used": list(sess.get_providers()),
    }


def validate_model(
    model_path: str | Path,
    run_dir: str | Path,
    data: str | Path | SpectralDataset,
    *,
    provider: str = "cpu",
    criteria: Criteria | None = None,
    write: bool = True,
    top_k: int = 3,
) -> ValidationReport:
    """Compare an exported model with its PyTorch run on labelled spectra; write the report beside the model.

    Args:
        model_path: the ``.onnx`` file.
        run_dir: the run it was exported from.
        data: labelled spectra (a file for :func:`spectral_core.io.read_dataset`, or a dataset) with the
            model's classes, on any axis the run's preprocessing maps onto the model axis.
        provider: "cpu", "cuda" or "tensorrt"; the session must really use it.
        criteria: pass/fail rules; default :data:`DEFAULT_CRITERIA` for the model's precision.
        write: write :func:`report_path` (atomically).
        top_k: k of the top-k agreement.

    Returns:
        The report; ``report.passed`` is False with a one-line ``reason`` when any criterion fails.

    Raises:
        ContractError: the model carries no valid contract, was exported from another run, or the data has
            other classes than the model or cannot be put on the model axis; a provider that is missing.
        DataError: unlabelled data.
    """
    from trainer.checkpoint import load_run
    from trainer.metrics import classification_metrics

    mpath = Path(model_path)
    if not mpath.is_file():
        raise ModelFileError(f"{mpath}: no such model file")
    sess = _session(mpath, provider)
    contract = ModelContract.from_metadata(sess.get_modelmeta().custom_metadata_map)
    model, info = load_run(run_dir)
    if contract.weights_sha256 and info.weights_sha256 and contract.weights_sha256 != info.weights_sha256:
        raise ContractError(
            f"{mpath} was exported from other weights ({contract.weights_sha256[:12]}) than run {run_dir} "
            f"({info.weights_sha256[:12]})"
        )
    contract.check_classes_match(info.classes, what=f"run {run_dir}")
    contract.check_axis_matches(np.asarray(info.axis), what=f"run {run_dir}")
    if isinstance(data, SpectralDataset):
        ds, data_file, data_sha = data, str(data.provenance.get("source", "<dataset>")), sha256_arrays(data.X, data.axis)
    else:
        ds, data_file = read_dataset(data), str(data)
        data_sha = sha256_file(data) if Path(data).is_file() else sha256_arrays(ds.X, ds.axis)
    if ds.y is None:
        raise DataError(f"{data_file}: validation needs labelled spectra (no labels found)")
    contract.check_classes_match(list(ds.classes), what=f"data {data_file}")
    host = Preprocessor(contract.preprocess, skip=contract.in_graph_steps)
    kept, bad = host_preprocess(host, ds, contract, what=f"data {data_file}")
    if kept.y is None:  # cannot happen (checked above and kept), but the type says it may
        raise DataError(f"{data_file}: labels lost in preprocessing")
    X_host, y = kept.X, kept.y
    # PyTorch side: the reference numpy implementation of the steps the graph runs itself
    X_torch = X_host
    if "normalise" in contract.in_graph_steps:
        X_torch = normalise(X_host, contract.preprocess.normalise)[0]
    ref = _run_torch(model, X_torch)
    got = _run_onnx(sess, X_host, contract)

    crit = criteria or DEFAULT_CRITERIA[contract.precision]
    outputs: dict[str, dict[str, Any]] = {}
    for name, g, r in zip(OUTPUTS, got, ref, strict=True):
        labels = list(contract.classes) if name != "embedding" else None
        outputs[name] = compare_output(name, g, r, crit.tolerances.get(name), labels)

    n_classes = len(contract.classes)
    pt, po = np.argmax(ref[0], axis=1), np.argmax(got[0], axis=1)
    k = max(1, min(top_k, n_classes))
    cos = np.sum(_unit(got[2]) * _unit(ref[2]), axis=1)
    # the same metric code as `ramanedge evaluate` (macro-F1 over the classes present in the data)
    m_t = classification_metrics(y, ref[0], list(contract.classes))
    m_o = classification_metrics(y, got[0], list(contract.classes))
    acc_t, acc_o, f1_t, f1_o = m_t["accuracy"], m_o["accuracy"], m_t["macro_f1"], m_o["macro_f1"]
    task: dict[str, Any] = {
        "n": int(y.size),
        "argmax_agreement": float(np.mean(pt == po)),
        "argmax_disagreements": int(np.sum(pt != po)),
        "top_k": k,
        "top_k_agreement": _top_k_agreement(ref[0], got[0], k),
        "embedding_cosine_mean": float(np.mean(cos)),
        "embedding_cosine_min": float(np.min(cos)),
        "accuracy_torch": acc_t,
        "accuracy_onnx": acc_o,
        "accuracy_change_pp": 100.0 * (acc_o - acc_t),
        "macro_f1_torch": f1_t,
        "macro_f1_onnx": f1_o,
        "macro_f1_change_pp": 100.0 * (f1_o - f1_t),
    }
    if contract.open_set is not None:
        ut = flag_unknown(ref[2], pt, contract.open_set)
        uo = flag_unknown(got[2], po, contract.open_set)
        task.update(
            unknown_agreement=float(np.mean(ut == uo)),
            unknown_torch=int(np.sum(ut)),
            unknown_onnx=int(np.sum(uo)),
        )

    failures = _judge(crit, outputs, task)
    report = ValidationReport(
        passed=not failures,
        reason=failures[0] if failures else "",
        failures=failures,
        model_sha256=sha256_file(mpath),
        model={
            "path": str(mpath),
            "precision": contract.precision,
            "opset": contract.opset,
            "contract_weights_sha256": contract.weights_sha256,
            "in_graph_steps": list(contract.in_graph_steps),
        },
        run={"path": str(run_dir), "weights_sha256": info.weights_sha256},
        data={
            "path": data_file,
            "sha256": data_sha,
            "n_spectra": int(ds.n_spectra),
            "n_used": int(kept.n_spectra),
            "excluded": {str(i): r for i, r in sorted(bad.items())},
        },
        environment=_environment(sess, provider),
        criteria=crit,
        outputs=outputs,
        task=task,
        created=datetime.now(UTC).isoformat(timespec="seconds"),
    )
    if write:
        write_json_atomic(report_path(mpath), report.model_dump(mode="json"))
    logger.info("validation of %s: %s", mpath, "passed" if report.passed else report.reason)
    return report


def _unit(v: NDArray[np.floating]) -> NDArray[np.float64]:
    a = np.asarray(v, dtype=np.float64)
    return np.asarray(a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12))


def _judge(crit: Criteria, outputs: dict[str, dict[str, Any]], task: dict[str, Any]) -> list[str]:
    """Every failed criterion as one line, element-wise tolerances first."""
    fails: list[str] = []
    for name, o in outputs.items():
        if "error" in o:
            fails.append(f"{name}: {o['error']}")
        elif o["passed"] is False:
            w = o["worst"]
            fails.append(
                f"{name}: max abs error {o['abs']['max']:.3g} > atol {o['atol']:g} (+ rtol {o['rtol']:g}); "
                f"{o['n_over']} element(s) over, worst at spectrum {w['row']}, {w['label']}: "
                f"onnx {w['onnx']:.6g} vs torch {w['torch']:.6g}"
            )
    if task["argmax_agreement"] < crit.min_argmax_agreement:
        fails.append(
            f"argmax agreement {100 * task['argmax_agreement']:.2f}% < {100 * crit.min_argmax_agreement:.2f}% "
            f"({task['argmax_disagreements']} of {task['n']} spectra differ)"
        )
    # A drop fails; a gain does not (on a few hundred spectra one flipped borderline spectrum is worth more than
    # 0.5 pp either way, and argmax agreement already bounds how far the two may drift apart).
    if crit.max_accuracy_drop_pp is not None and -task["accuracy_change_pp"] > crit.max_accuracy_drop_pp + 1e-9:
        fails.append(
            f"accuracy dropped by {-task['accuracy_change_pp']:.2f} pp (torch {100 * task['accuracy_torch']:.2f}%, "
            f"onnx {100 * task['accuracy_onnx']:.2f}%), allowed {crit.max_accuracy_drop_pp:g} pp"
        )
    if crit.min_embedding_cosine is not None and task["embedding_cosine_min"] < crit.min_embedding_cosine:
        fails.append(
            f"embedding cosine similarity min {task['embedding_cosine_min']:.6f} < {crit.min_embedding_cosine:g}"
        )
    if crit.min_unknown_agreement is not None and "unknown_agreement" in task and (
        task["unknown_agreement"] < crit.min_unknown_agreement
    ):
        fails.append(
            f"unknown-flag agreement {100 * task['unknown_agreement']:.2f}% < {100 * crit.min_unknown_agreement:.2f}%"
        )
    return fails


def _g(v: float | None) -> str:
    return "none" if v is None else f"{v:.3g}"


def format_report(r: ValidationReport) -> str:
    """The report as a readable table (what ``ramanedge validate`` prints)."""
    e = r.environment
    lines = [
        f"model     {r.model['path']}  ({r.model['precision']}, opset {r.model['opset']}, sha256 {r.model_sha256[:16]})",
        f"run       {r.run['path']}",
        f"data      {r.data['path']}  ({r.data['n_used']} of {r.data['n_spectra']} spectra, "
        f"sha256 {r.data['sha256'][:16]})",
        f"versions  torch {e['torch']}, onnx {e['onnx']}, onnxruntime {e['onnxruntime']}, numpy {e['numpy']}",
        f"provider  {', '.join(e['providers_used'])} (requested {e['provider_requested']})",
        "",
        f"{'output':<14}{'max abs':>11}{'mean abs':>11}{'med abs':>11}{'p99 abs':>11}{'max rel':>11}"
        f"{'min atol':>11}{'min rtol':>11}{'atol':>9}  result",
    ]
    for name, o in r.outputs.items():
        if "error" in o:
            lines.append(f"{name:<14}{o['error']}")
            continue
        a, rel = o["abs"], o["rel"]
        res = "-" if o["passed"] is None else ("PASS" if o["passed"] else "FAIL")
        atol = "-" if o["atol"] is None else f"{o['atol']:g}"
        lines.append(
            f"{name:<14}{a['max']:>11.3g}{a['mean']:>11.3g}{a['median']:>11.3g}{a['p99']:>11.3g}{rel['max']:>11.3g}"
            f"{o['min_atol']:>11.3g}{_g(o['min_rtol']):>11}{atol:>9}  {res}"
        )
    t = r.task
    lines += [
        "",
        f"argmax agreement   {100 * t['argmax_agreement']:.2f}%  ({t['argmax_disagreements']} of {t['n']} differ)",
        f"top-{t['top_k']} agreement    {100 * t['top_k_agreement']:.2f}%",
        f"embedding cosine   mean {t['embedding_cosine_mean']:.6f}, min {t['embedding_cosine_min']:.6f}",
        f"accuracy           torch {100 * t['accuracy_torch']:.2f}%, onnx {100 * t['accuracy_onnx']:.2f}% "
        f"({t['accuracy_change_pp']:+.2f} pp)",
        f"macro-F1           torch {100 * t['macro_f1_torch']:.2f}%, onnx {100 * t['macro_f1_onnx']:.2f}% "
        f"({t['macro_f1_change_pp']:+.2f} pp)",
    ]
    if "unknown_agreement" in t:
        lines.append(
            f"unknown flags      agreement {100 * t['unknown_agreement']:.2f}% "
            f"(torch {t['unknown_torch']}, onnx {t['unknown_onnx']})"
        )
    lines += ["", "PASSED" if r.passed else f"FAILED: {r.reason}"]
    lines += [f"  also: {f}" for f in r.failures[1:]]
    return "\n".join(lines)
