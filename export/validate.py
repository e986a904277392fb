"""Prove that an exported ONNX model answers as the PyTorch run does, on real labelled spectra.

The ONNX side runs through the runner that serves, :class:`edge_runtime.Engine`: the same session options,
provider choice and read-back (a provider that did not load is an error, never a fallback), the same serving
preprocessing (:attr:`Engine.preprocessor`, onto the model axis) and the same input checks, with every output
read by :meth:`Engine.infer_raw`. The PyTorch side (:func:`torch_reference`) gets the run's host
preprocessing (``Preprocessor(contract.preprocess, skip=contract.in_graph_steps)``) plus the reference numpy
implementation of the in-graph steps (:func:`spectral_core.preprocess.normalise`), so the comparison also proves
that the graph's normalisation and the runtime's preprocessing equal the training ones.

The comparison reads like NVIDIA Polygraphy's: per output, the max / mean / median / p99 of the absolute and
relative errors (``rel = |onnx - torch| / |torch|``), the minimum atol (with the configured rtol) and the minimum
rtol (with the configured atol) that would have passed, and a per-output tolerance
(``|onnx - torch| <= atol + rtol * |torch|`` element-wise) with defaults per precision; then task-level agreement
on the labelled spectra.

The report (``model.onnx`` -> ``model.validation.json``) has one schema, shared with the runtime that reads it:
:mod:`spectral_core.validation_report`.
"""

from __future__ import annotations

import logging
import os
import platform
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from edge_runtime.engine import Engine, InferenceOutputs
from export._host import host_preprocess
from spectral_core.contract import ModelContract
from spectral_core.errors import ContractError, DataError, ModelFileError
from spectral_core.hashing import sha256_arrays, sha256_file
from spectral_core.io import read_dataset
from spectral_core.openset import flag_unknown
from spectral_core.preprocess import Preprocessor, normalise
from spectral_core.providers import PROVIDERS, ProviderName
from spectral_core.spectrum import SpectralDataset
from spectral_core.validation_report import (
    OUTPUTS,
    REPORT_FORMAT,
    REPORT_VERSION,
    Criteria,
    DataFacts,
    Environment,
    ErrorStats,
    ModelFacts,
    OutputComparison,
    OutputTolerance,
    RunFacts,
    TaskAgreement,
    ValidationReport,
    WorstElement,
    judge,
    report_path,
)

if TYPE_CHECKING:
    from trainer.checkpoint import RunInfo
    from trainer.ensemble import EnsembleInfo

__all__ = [
    "DEFAULT_CRITERIA",
    "OUTPUTS",
    "REPORT_FORMAT",
    "REPORT_VERSION",
    "Criteria",
    "OutputComparison",
    "OutputTolerance",
    "TaskAgreement",
    "ValidationReport",
    "compare_output",
    "format_report",
    "report_path",
    "torch_reference",
    "validate_model",
]

logger = logging.getLogger(__name__)

#: rows sent to the ONNX session at once (the engine's ``max_batch``)
ONNX_BATCH = 256


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


def _stats(v: NDArray[np.float64]) -> ErrorStats:
    if v.size == 0:
        return ErrorStats(max=0.0, mean=0.0, median=0.0, p99=0.0)
    finite = np.where(np.isfinite(v), v, np.finfo(np.float64).max)
    return ErrorStats(
        max=float(np.max(finite)),
        mean=float(np.mean(finite)),
        median=float(np.median(finite)),
        p99=float(np.quantile(finite, 0.99)),
    )


def compare_output(
    name: str, got: NDArray[np.floating], ref: NDArray[np.floating], tol: OutputTolerance | None,
    labels: list[str] | None = None,
) -> OutputComparison:
    """Polygraphy-style comparison of one output (``got`` from ONNX, ``ref`` from PyTorch)."""
    a = np.asarray(got, dtype=np.float64)
    b = np.asarray(ref, dtype=np.float64)
    if a.shape != b.shape:
        return OutputComparison(shape=list(a.shape), reference_shape=list(b.shape),
                                error=f"shape {a.shape} differs from PyTorch's {b.shape}")
    for side, v in (("ONNX", a), ("PyTorch", b)):
        bad = int(np.sum(~np.isfinite(v)))
        if bad:  # no error statistics mean anything then (and NaN is not JSON)
            return OutputComparison(shape=list(a.shape), error=f"{bad} NaN/inf value(s) in the {side} output")
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
    excess = diff - rtol * mag - atol  # the same arithmetic as min_atol, so passed == (min_atol <= atol) exactly
    worst: WorstElement | None = None
    if diff.size:
        flat = int(np.argmax(excess)) if tol is not None else int(np.argmax(diff))
        d2, a2, b2 = (v.reshape(v.shape[0], -1) if v.ndim >= 1 else v.reshape(1, 1) for v in (diff, a, b))
        row, col = np.unravel_index(flat, d2.shape)
        c = int(col)
        worst = WorstElement(
            row=int(row), col=c,
            label=labels[c] if labels is not None and c < len(labels) else f"{name}[{c}]",
            onnx=float(a2[row, col]), torch=float(b2[row, col]), abs=float(d2[row, col]),
        )
    return OutputComparison(
        shape=list(a.shape),
        abs=_stats(diff),
        rel=_stats(rel),
        min_atol=min_atol,
        min_rtol=min_rtol,
        atol=tol.atol if tol else None,
        rtol=tol.rtol if tol else None,
        passed=None if tol is None else bool(min_atol <= tol.atol),
        n_over=None if tol is None else int(np.sum(excess > 0)),
        worst=worst,
    )


def _top_k_agreement(p: NDArray[np.floating], q: NDArray[np.floating], k: int) -> float:
    if p.shape[0] == 0:
        return 1.0
    a = np.sort(np.argsort(-p, axis=1)[:, :k], axis=1)
    b = np.sort(np.argsort(-q, axis=1)[:, :k], axis=1)
    return float(np.mean(np.all(a == b, axis=1)))


def torch_reference(
    run_dir: str | Path, contract: ModelContract, X_host: NDArray[np.float32]
) -> tuple[InferenceOutputs, RunInfo | EnsembleInfo]:
    """PyTorch's answers for host-preprocessed spectra, from the run the model was exported from.

    The steps the graph runs itself (``contract.in_graph_steps``) are applied first with the reference numpy
    implementation, so PyTorch sees fully preprocessed spectra as in training.

    Args:
        run_dir: the training run (``ramanedge train``), or an ensemble of runs (``--ensemble K``).
        contract: the exported model's contract.
        X_host: [N, points] spectra after the host part of the contract's preprocessing (model axis).

    Returns:
        (outputs, run info).

    Raises:
        ContractError: the run has other weights, classes or model axis than the contract.
    """
    import torch

    from trainer.ensemble import load_reference

    # a single run, or an ensemble (trainer.ensemble): softmax of its logits is the mean of the members' softmax
    model, info = load_reference(run_dir)
    if contract.weights_sha256 and info.weights_sha256 and contract.weights_sha256 != info.weights_sha256:
        raise ContractError(
            f"the model was exported from other weights ({contract.weights_sha256[:12]}) than run {run_dir} "
            f"({info.weights_sha256[:12]})"
        )
    contract.check_classes_match(info.classes, what=f"run {run_dir}")
    contract.check_axis_matches(np.asarray(info.axis), what=f"run {run_dir}")
    X = normalise(X_host, contract.preprocess.normalise)[0] if "normalise" in contract.in_graph_steps else X_host
    probs, logits, embs = [], [], []
    with torch.no_grad():
        for i in range(0, X.shape[0], 1024):
            lg, em = model(torch.from_numpy(np.ascontiguousarray(X[i : i + 1024], dtype=np.float32)))
            probs.append(torch.softmax(lg, dim=1).numpy())
            logits.append(lg.numpy())
            embs.append(em.numpy())
    out = InferenceOutputs(
        probabilities=np.concatenate(probs, axis=0),
        logits=np.concatenate(logits, axis=0),
        embedding=np.concatenate(embs, axis=0),
    )
    return out, info


def _environment(engine: Engine, provider: str) -> Environment:
    import onnx
    import onnxruntime as ort
    import torch

    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), cpu)
    except OSError:
        pass
    return Environment(
        python=platform.python_version(),
        numpy=np.__version__,
        torch=torch.__version__,
        onnx=onnx.__version__,
        onnxruntime=ort.__version__,
        platform=platform.platform(),
        cpu=cpu,
        cpu_count=os.cpu_count(),
        provider_requested=PROVIDERS.get(provider, provider),
        providers_used=list(engine.session.get_providers()),
    )

def validate_model(
    model_path: str | Path,
    run_dir: str | Path,
    data: str | Path | SpectralDataset,
    *,
    provider: ProviderName = "cpu",
    criteria: Criteria | None = None,
    write: bool = True,
    top_k: int = 3,
) -> ValidationReport:
    """Compare an exported model, run by the serving :class:`~edge_runtime.Engine`, with its PyTorch run on
    labelled spectra; write the report beside the model.

    Args:
        model_path: the ``.onnx`` file.
        run_dir: the run it was exported from.
        data: labelled spectra (a file for :func:`spectral_core.io.read_dataset`, or a dataset) with the
            model's classes, on any axis the run's preprocessing maps onto the model axis.
        provider: "cpu", "cuda" or "tensorrt" (or "auto", as the daemon); the session must really use it.
        criteria: pass/fail rules; default :data:`DEFAULT_CRITERIA` for the model's precision.
        write: write :func:`report_path` (atomically).
        top_k: k of the top-k agreement.

    Returns:
        The report; ``report.passed`` is False with a one-line ``reason`` when any criterion fails.

    Raises:
        ModelFileError: no model file.
        ProviderError: the provider is unknown, not available or did not load.
        ContractError: the model carries no valid contract, was exported from another run, or the data has
            other classes than the model or cannot be put on the model axis.
        DataError: unlabelled data, or no spectrum survives preprocessing.
    """
    from trainer.metrics import classification_metrics

    mpath = Path(model_path)
    if not mpath.is_file():
        raise ModelFileError(f"{mpath}: no such model file")
    # The daemon's runner, minus its self-test: a model that fails it still gets a report saying where.
    engine = Engine(mpath, provider=provider, self_test=False, max_batch=ONNX_BATCH)
    contract = engine.contract
    if isinstance(data, SpectralDataset):
        ds, data_file, data_sha = data, str(data.provenance.get("source", "<dataset>")), sha256_arrays(data.X, data.axis)
    else:
        ds, data_file = read_dataset(data), str(data)
        data_sha = sha256_file(data) if Path(data).is_file() else sha256_arrays(ds.X, ds.axis)
    if ds.y is None:
        raise DataError(f"{data_file}: validation needs labelled spectra (no labels found)")
    contract.check_classes_match(list(ds.classes), what=f"data {data_file}")
    what = f"data {data_file}"
    kept, bad = host_preprocess(Preprocessor(contract.preprocess, skip=contract.in_graph_steps), ds, contract, what=what)
    X_host, X_runtime, y, excluded = _inputs(engine, ds, kept, bad, what=what)
    ref, info = torch_reference(run_dir, contract, X_host)
    got = engine.infer_raw(X_runtime)

    crit = criteria or DEFAULT_CRITERIA[contract.precision]
    outputs: dict[str, OutputComparison] = {}
    for name in OUTPUTS:
        labels = list(contract.classes) if name != "embedding" else None
        outputs[name] = compare_output(name, getattr(got, name), getattr(ref, name), crit.tolerances.get(name), labels)

    classes = list(contract.classes)
    pt, po = np.argmax(ref.probabilities, axis=1), np.argmax(got.probabilities, axis=1)
    k = max(1, min(top_k, len(classes)))
    # a NaN embedding (a broken graph) counts as pointing the opposite way, never as NaN in the report
    cos = np.nan_to_num(np.sum(_unit(got.embedding) * _unit(ref.embedding), axis=1), nan=-1.0)
    # the same metric code as `ramanedge evaluate` (macro-F1 over the classes present in the data)
    m_t = classification_metrics(y, ref.probabilities, classes)
    m_o = classification_metrics(y, np.nan_to_num(got.probabilities, nan=-1.0), classes)
    acc_t, acc_o, f1_t, f1_o = (float(v) for v in (m_t["accuracy"], m_o["accuracy"], m_t["macro_f1"], m_o["macro_f1"]))
    ut = uo = None
    if contract.open_set is not None:
        ut = flag_unknown(ref.embedding, pt, contract.open_set)
        uo = flag_unknown(got.embedding, po, contract.open_set)
    task = TaskAgreement(
        n=int(y.size),
        argmax_agreement=float(np.mean(pt == po)),
        argmax_disagreements=int(np.sum(pt != po)),
        top_k=k,
        top_k_agreement=_top_k_agreement(ref.probabilities, got.probabilities, k),
        embedding_cosine_mean=float(np.mean(cos)),
        embedding_cosine_min=float(np.min(cos)),
        accuracy_torch=acc_t,
        accuracy_onnx=acc_o,
        accuracy_change_pp=100.0 * (acc_o - acc_t),
        macro_f1_torch=f1_t,
        macro_f1_onnx=f1_o,
        macro_f1_change_pp=100.0 * (f1_o - f1_t),
        unknown_agreement=None if ut is None or uo is None else float(np.mean(ut == uo)),
        unknown_torch=None if ut is None else int(np.sum(ut)),
        unknown_onnx=None if uo is None else int(np.sum(uo)),
    )

    failures = judge(crit, outputs, task)
    report = ValidationReport(
        passed=not failures,
        reason=failures[0] if failures else "",
        failures=failures,
        model_sha256=engine.model_sha256,
        model=ModelFacts(
            path=str(mpath),
            precision=contract.precision,
            opset=contract.opset,
            contract_weights_sha256=contract.weights_sha256,
            in_graph_steps=list(contract.in_graph_steps),
        ),
        run=RunFacts(path=str(run_dir), weights_sha256=info.weights_sha256),
        data=DataFacts(
            path=data_file,
            sha256=data_sha,
            n_spectra=int(ds.n_spectra),
            n_used=int(y.size),
            excluded={str(i): r for i, r in sorted(excluded.items())},
        ),
        environment=_environment(engine, provider),
        criteria=crit,
        outputs=outputs,
        task=task,
        created=datetime.now(UTC).isoformat(timespec="seconds"),
    )
    if write:
        report.write(report_path(mpath))
    logger.info("validation of %s: %s", mpath, "passed" if report.passed else report.reason)
    return report


def _inputs(
    engine: Engine, ds: SpectralDataset, kept: SpectralDataset, bad: dict[int, str], *, what: str
) -> tuple[NDArray[np.float32], NDArray[np.float32], NDArray[np.int64], dict[int, str]]:
    """Both sides' inputs for the spectra both can use: those the run's host preprocessing kept (``kept``,
    ``bad``) and the runtime's preprocessing (the daemon's: :attr:`Engine.preprocessor`) accepts too.

    Returns:
        (PyTorch's host rows, the runtime's model inputs, their labels, every excluded row of ``ds`` -> reason).
    """
    reason = engine.prepare(np.asarray(ds.axis, dtype=np.float64))
    if reason is not None:
        raise ContractError(f"{what}: the runtime cannot classify spectra on this axis: {reason}")
    Z, bad_rt = engine.preprocessor.transform_rows(ds.X, ds.axis)
    kept_idx = np.array([i for i in range(ds.n_spectra) if i not in bad], dtype=np.int64)
    only_rt = sorted(set(bad_rt) - set(bad))
    if only_rt:
        logger.warning("%s: the runtime's preprocessing leaves out %d spectrum/spectra the run's keeps (row %d: %s)",
                       what, len(only_rt), only_rt[0], bad_rt[only_rt[0]])
    use = np.array([j for j, i in enumerate(kept_idx) if int(i) not in bad_rt], dtype=np.int64)
    if use.size == 0:
        raise DataError(f"{what}: no spectrum survives the runtime's preprocessing")
    if kept.y is None:  # cannot happen (the caller checked labels), but the type says it may
        raise DataError(f"{what}: labels lost in preprocessing")
    excluded = {**{int(i): r for i, r in bad_rt.items()}, **bad}
    return kept.X[use], Z[kept_idx[use]], np.asarray(kept.y[use], dtype=np.int64), excluded


def _unit(v: NDArray[np.floating]) -> NDArray[np.float64]:
    a = np.asarray(v, dtype=np.float64)
    return np.asarray(a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12))


def _g(v: float | None) -> str:
    return "none" if v is None else f"{v:.3g}"


def format_report(r: ValidationReport) -> str:
    """The report as a readable table (what ``ramanedge validate`` prints)."""
    e, m = r.environment, r.model
    lines = [
        f"model     {m.path}  ({m.precision}, opset {m.opset}, sha256 {r.model_sha256[:16]})",
        f"run       {r.run.path}",
        f"data      {r.data.path}  ({r.data.n_used} of {r.data.n_spectra} spectra, sha256 {r.data.sha256[:16]})",
        f"versions  torch {e.torch}, onnx {e.onnx}, onnxruntime {e.onnxruntime}, numpy {e.numpy}",
        f"provider  {', '.join(e.providers_used)} (requested {e.provider_requested})",
        "",
        f"{'output':<14}{'max abs':>11}{'mean abs':>11}{'med abs':>11}{'p99 abs':>11}{'max rel':>11}"
        f"{'min atol':>11}{'min rtol':>11}{'atol':>9}  result",
    ]
    for name, o in r.outputs.items():
        if o.error is not None or o.abs is None or o.rel is None:
            lines.append(f"{name:<14}{o.error}")
            continue
        a, rel = o.abs, o.rel
        res = "-" if o.passed is None else ("PASS" if o.passed else "FAIL")
        atol = "-" if o.atol is None else f"{o.atol:g}"
        lines.append(
            f"{name:<14}{a.max:>11.3g}{a.mean:>11.3g}{a.median:>11.3g}{a.p99:>11.3g}{rel.max:>11.3g}"
            f"{_g(o.min_atol):>11}{_g(o.min_rtol):>11}{atol:>9}  {res}"
        )
    t = r.task
    lines += [
        "",
        f"argmax agreement   {100 * t.argmax_agreement:.2f}%  ({t.argmax_disagreements} of {t.n} differ)",
        f"top-{t.top_k} agreement    {100 * t.top_k_agreement:.2f}%",
        f"embedding cosine   mean {t.embedding_cosine_mean:.6f}, min {t.embedding_cosine_min:.6f}",
        f"accuracy           torch {100 * t.accuracy_torch:.2f}%, onnx {100 * t.accuracy_onnx:.2f}% "
        f"({t.accuracy_change_pp:+.2f} pp)",
        f"macro-F1           torch {100 * t.macro_f1_torch:.2f}%, onnx {100 * t.macro_f1_onnx:.2f}% "
        f"({t.macro_f1_change_pp:+.2f} pp)",
    ]
    if t.unknown_agreement is not None:
        lines.append(
            f"unknown flags      agreement {100 * t.unknown_agreement:.2f}% "
            f"(torch {t.unknown_torch}, onnx {t.unknown_onnx})"
        )
    lines += ["", "PASSED" if r.passed else f"FAILED: {r.reason}"]
    lines += [f"  also: {f}" for f in r.failures[1:]]
    return "\n".join(lines)
