"""Export a trained run to ONE ONNX file that carries its model contract.

The graph: input ``spectrum`` [batch, L] float32 (host-preprocessed spectra on the model axis, all steps but
the normalisation), outputs ``probabilities`` [batch, C], ``logits`` [batch, C] and ``embedding`` [batch, nf]
(unit L2 norm), all float32 whatever the precision. The run's normalisation runs inside the graph
(``contract.in_graph_steps == ["normalise"]``), so a runtime calls ``Preprocessor(config, skip=in_graph_steps)``.

Choices, measured on torch 2.13 / onnx 1.23 / onnxruntime 1.31 (see docs/benchmarks.md):

- Exporter: ``torch.onnx.export(dynamo=True)`` (torch.export + onnxscript). On the folded inference module it
  gives 29 nodes for a minmax model against 47 for the TorchScript exporter (``dynamo=False``, deprecated),
  which adds Constant/Shape/Unsqueeze/Concat chains around every reshape.
- Opset 18 (pinned): the dynamo exporter's native opset (lower ones go through the ONNX version converter),
  ReduceMin/ReduceMax take axes as inputs (opset 18 form), and onnxruntime's quantisation and float16 tools
  and every onnxruntime >= 1.14 handle it. Opsets 18-21 are accepted; below 18 is refused.
- fp16: weights and activations of the layers in float16, built in torch (explicit Casts) rather than by
  onnxruntime's float16 graph converter, which duplicated node names and shared initialisers across fp16
  and fp32 nodes here. Input, in-graph normalisation, embedding norm, softmax and outputs stay float32:
  raw counts overflow float16 (65504) once squared or summed, and callers feed one dtype to every precision.
- int8: onnxruntime quantisation of the two big dense layers' MatMuls (dense2 and embedding: 92% of the
  multiply-adds), int8 symmetric weights, per tensor (per channel measured no better). ``int8-dynamic`` quantises activations at run time;
  ``int8-static`` inserts QDQ pairs with activation ranges calibrated on real spectra. Normalisation, the
  window layer (a batched MatMul with its constant first, which has no fused int8 kernel), the classifier
  (its int8 output would quantise the logits), softmax and the embedding norm stay float32.

An ensemble run (``trainer.ensemble``, ``ramanedge train --ensemble K``) exports as ONE graph with the same
input and outputs (:class:`export._graph.InferenceEnsemble`): probabilities the mean of the members' softmax,
logits the log of that mean, embedding the members' unit embeddings concatenated / sqrt(K) (the open-set
centroids in the contract are fitted on it). The contract's ``ensemble`` field records the size and the
members' weights hashes; ``weights_sha256`` is the hash of those hashes. A runtime needs no change: it reads
the same names and shapes, only the embedding is K times wider.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal, cast

import numpy as np
from numpy.typing import NDArray

from export._host import host_preprocess
from spectral_core.contract import EnsembleSpec, ModelContract, ReferenceSpectra
from spectral_core.drift import DriftModel, fit_drift
from spectral_core.errors import ContractError, DataError, RamanEdgeError
from spectral_core.preprocess import PreprocessConfig, Preprocessor
from spectral_core.spectrum import SpectralDataset

__all__ = [
    "IN_GRAPH_STEPS",
    "PINNED_OPSET",
    "PRECISIONS",
    "SUPPORTED_OPSETS",
    "ExportError",
    "Precision",
    "export_run",
    "host_preprocess",
    "read_contract",
]

logger = logging.getLogger(__name__)

PINNED_OPSET = 18
SUPPORTED_OPSETS = (18, 19, 20, 21)
Precision = Literal["fp32", "fp16", "int8-dynamic", "int8-static"]
PRECISIONS: tuple[str, ...] = ("fp32", "fp16", "int8-dynamic", "int8-static")
IN_GRAPH_STEPS = ["normalise"]
N_REFERENCE = 8
# Self-test tolerance on the probabilities per precision: the runtime compares its answers on the reference
# spectra with PyTorch's. Raised to twice what onnxruntime showed at export time when that is larger.
REFERENCE_ATOL = {"fp32": 1e-4, "fp16": 1e-2, "int8-dynamic": 5e-2, "int8-static": 5e-2}
_QUANT_OPS = ["MatMul", "Gemm"]


class ExportError(RamanEdgeError, ValueError):
    """An export that cannot be produced as asked (opset, precision, missing calibration data, ...)."""


def _reference_inputs(
    contract: ModelContract, data: SpectralDataset | None
) -> NDArray[np.float32]:
    """A few spectra on the model axis for the runtime's self-test: real ones (one per class first) when data
    is given, else reproducible synthetic Raman spectra on the model axis."""
    if data is not None and data.n_spectra:
        idx: list[int] = []
        if data.y is not None:
            for c in range(len(data.classes)):
                hit = np.flatnonzero(data.y == c)
                if hit.size:
                    idx.append(int(hit[0]))
        for i in range(data.n_spectra):
            if len(idx) >= N_REFERENCE:
                break
            if i not in idx:
                idx.append(i)
        return np.ascontiguousarray(data.X[sorted(idx[:N_REFERENCE])], dtype=np.float32)
    from spectral_core.synth import synth_dataset

    syn = synth_dataset(classes=N_REFERENCE, per_class=1, seed=20240607, axis=contract.axis_array())
    return np.ascontiguousarray(syn.X, dtype=np.float32)


def _normalise_ancestors(model: Any) -> list[str]:
    """Names of the nodes computing the in-graph normalisation (everything upstream of the window Gather)."""
    producers = {o: n for n in model.graph.node for o in n.output}
    gather = next((n for n in model.graph.node if n.op_type == "Gather"), None)
    if gather is None:
        return []
    seen: set[str] = set()
    stack = [gather.input[0]]
    while stack:
        name = stack.pop()
        node = producers.get(name)
        if node is None or node.name in seen:
            continue
        seen.add(node.name)
        stack.extend(node.input)
    return sorted(seen)


def _tidy_nodes(model: Any) -> None:
    """Name every node, and drop the exporter's per-node metadata (FX stack traces with this machine's
    source paths): the file then carries only the contract."""
    for i, node in enumerate(model.graph.node):
        if not node.name:
            node.name = f"{node.op_type.lower()}_{i}"
        del node.metadata_props[:]


class _DropPreprocessHint(logging.Filter):
    """onnxruntime.quantization logs "consider pre-processing" on the root logger at every call; our graph is
    already shape-inferred and optimised by the exporter, so the hint is noise."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "pre-processing before quantization" not in record.getMessage()


def _quantise(
    fp32_path: Path, out_path: Path, precision: str, exclude: list[str], calibration: NDArray[np.float32] | None
) -> None:
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_dynamic,
        quantize_static,
    )

    from export._graph import INPUT_NAME

    if precision == "int8-dynamic":
        quantize_dynamic(
            fp32_path, out_path, weight_type=QuantType.QInt8, per_channel=False,
            op_types_to_quantize=_QUANT_OPS, nodes_to_exclude=exclude,
        )
        return
    if calibration is None:
        raise ExportError("int8-static needs calibration spectra (--calibration DATA)")

    class _Calibration(CalibrationDataReader):
        """Host-preprocessed spectra in batches of 64."""

        def __init__(self, X: NDArray[np.float32]) -> None:
            self._batches: Iterator[NDArray[np.float32]] = (X[i : i + 64] for i in range(0, X.shape[0], 64))

        def get_next(self) -> dict[str, NDArray[np.float32]] | None:
            x = next(self._batches, None)
            return None if x is None else {INPUT_NAME: np.ascontiguousarray(x)}

    quantize_static(
        fp32_path, out_path, _Calibration(calibration), quant_format=QuantFormat.QDQ,
        activation_type=QuantType.QInt8, weight_type=QuantType.QInt8, per_channel=False,
        op_types_to_quantize=_QUANT_OPS, nodes_to_exclude=exclude,
        extra_options={"ActivationSymmetric": False, "WeightSymmetric": True},
    )


def _ort_outputs(model_bytes: bytes, X: NDArray[np.float32]) -> list[NDArray[np.float32]]:
    import onnxruntime as ort

    from export._graph import INPUT_NAME, OUTPUT_NAMES

    so = ort.SessionOptions()
    so.log_severity_level = 3
    sess = ort.InferenceSession(model_bytes, so, providers=["CPUExecutionProvider"])
    return [np.asarray(o) for o in sess.run(list(OUTPUT_NAMES), {INPUT_NAME: X})]


def export_run(
    run_dir: str | Path,
    out_path: str | Path,
    *,
    precision: str = "fp32",
    calibration: SpectralDataset | None = None,
    opset: int = PINNED_OPSET,
    reference: SpectralDataset | None = None,
    axis_tolerance: float | None = None,
    drift_data: SpectralDataset | None = None,
) -> Path:
    """Export a run to one ONNX file with its contract in ``metadata_props``; written atomically.

    Args:
        run_dir: a run written by :func:`trainer.checkpoint.save_run`.
        out_path: the ``.onnx`` file to write (its folder is created).
        precision: "fp32", "fp16", "int8-dynamic" or "int8-static".
        calibration: spectra (any axis the preprocessing maps onto the model axis) for int8-static; they are
            preprocessed with the run's host preprocessing. Also used for the reference spectra when given.
        opset: the ONNX opset, :data:`PINNED_OPSET` by default (one of :data:`SUPPORTED_OPSETS`).
        reference: spectra to embed as the runtime's self-test (default: ``calibration``, else synthetic).
        axis_tolerance: the contract's ``axis_tolerance_cm1`` (cm^-1 at each end a spectrum's range may fall
            short of the model axis); None: the default, the larger of 2 cm^-1 and one model-axis step.
        drift_data: training-distribution spectra to fit the contract's drift model on (preprocessed with the
            run's full preprocessing); None: the drift model the trainer fitted on the run's training spectra
            (runs written before drift models carry none: the runtime then reports drift "not available").

    Returns:
        ``out_path``.

    Raises:
        ContractError: incomplete run, run of another format version, or calibration data on another axis.
        ExportError: unsupported opset or precision, int8-static without calibration, a check that failed.
    """
    if precision not in PRECISIONS:
        raise ExportError(f"precision {precision!r} cannot be produced; choose from {', '.join(PRECISIONS)}")
    if opset not in SUPPORTED_OPSETS:
        raise ExportError(
            f"opset {opset} is not supported: the exporter targets opsets {SUPPORTED_OPSETS[0]}-"
            f"{SUPPORTED_OPSETS[-1]} (pinned default {PINNED_OPSET})"
        )
    if axis_tolerance is not None and not (math.isfinite(axis_tolerance) and axis_tolerance >= 0):
        raise ExportError(f"axis tolerance must be a finite number >= 0 cm^-1, got {axis_tolerance}")
    if precision == "int8-static" and calibration is None:
        raise ExportError("int8-static needs calibration spectra (--calibration DATA)")
    out = Path(out_path)
    from trainer.ensemble import EnsembleInfo, load_reference

    # ContractError on an incomplete run, another format version, or an ensemble member that was modified
    model, info = load_reference(run_dir)
    ensemble = None
    if isinstance(info, EnsembleInfo):
        ensemble = EnsembleSpec(size=info.size, member_weights_sha256=list(info.member_weights_sha256),
                                combination=dict(info.combination))
    contract = ModelContract(
        classes=list(info.classes),
        axis=list(info.axis),
        axis_tolerance_cm1=axis_tolerance,
        preprocess=info.preprocess,
        preprocess_hash=info.preprocess.hash(),
        in_graph_steps=list(IN_GRAPH_STEPS),
        open_set=info.open_set,
        drift=info.drift if drift_data is None else _fit_drift(info.preprocess, drift_data, info.axis),
        ensemble=ensemble,
        weights_sha256=info.weights_sha256,
        data_sha256=info.data_sha256,
        opset=opset,
        precision=cast(Precision, precision),
    )
    host = Preprocessor(info.preprocess, skip=IN_GRAPH_STEPS)
    calib = None if calibration is None else host_preprocess(host, calibration, contract, what="calibration data")[0]
    ref_ds = calib if reference is None else host_preprocess(host, reference, contract, what="reference data")[0]
    ref_x = _reference_inputs(contract, ref_ds)

    import onnx
    import torch

    from export._graph import CLASSIFIER_WEIGHT, INPUT_NAME, OUTPUT_NAMES, InferenceEnsemble, InferenceRamanNet
    from trainer.ensemble import EnsembleNet
    from trainer.model import RamanNet

    dtype = torch.float16 if precision == "fp16" else torch.float32
    net: torch.nn.Module
    ref_in = torch.from_numpy(_host_normalise(ref_x, info.preprocess.normalise))
    with torch.no_grad():
        if isinstance(model, EnsembleNet):
            net = InferenceEnsemble(model.member_nets(), info.preprocess.normalise, dtype=dtype).eval()
            ref_prob = model.probabilities(ref_in).numpy()  # the mean of the members' softmax, as such
        elif isinstance(model, RamanNet):
            net = InferenceRamanNet(model, info.preprocess.normalise, dtype=dtype).eval()
            ref_prob = torch.softmax(model(ref_in)[0], dim=1).numpy()
        else:  # load_reference gives one of the two
            raise ExportError(f"{run_dir}: a {type(model).__name__} cannot be exported")
    example = torch.from_numpy(np.repeat(ref_x[:1], 2, axis=0))
    try:
        with _quiet_exporter():
            prog = torch.onnx.export(
                net, (example,), None, dynamo=True, verbose=False, opset_version=opset, optimize=True,
                input_names=[INPUT_NAME], output_names=list(OUTPUT_NAMES),
                dynamic_shapes=({0: torch.export.Dim("batch")},),
            )
    except Exception as exc:  # the exporter raises many unrelated types; report them as one export failure
        raise ExportError(f"torch.onnx.export failed at opset {opset}: {exc}") from exc
    if prog is None:
        raise ExportError("torch.onnx.export returned no program")
    proto = prog.model_proto
    _tidy_nodes(proto)
    n_nodes_fp32 = len(proto.graph.node)
    # kept float32 under int8: the normalisation (raw counts), and the window layer's batched MatMul, whose
    # constant is its first input: onnxruntime has no fused int8 kernel for that form (it would dequantize the
    # weights on every run), and it is 7% of the model's multiply-adds.
    # The classifier (the last MatMul, 1% of the work) stays float32 too: quantising its output quantises the
    # logits themselves; on the demo model it halved the argmax disagreements of int8-static.
    inits = {t.name for t in proto.graph.initializer}
    matmuls = [n for n in proto.graph.node if n.op_type == "MatMul"]
    exclude = _normalise_ancestors(proto) + [n.name for n in matmuls if n.input[0] in inits]
    # every classifier: one per ensemble member, found by its weight's name (members.K.wc); else the last MatMul
    classifiers = [n.name for n in matmuls if any(
        i == CLASSIFIER_WEIGHT or i.endswith(f".{CLASSIFIER_WEIGHT}") for i in n.input if i in inits)]
    exclude += classifiers or [matmuls[-1].name for _ in matmuls[:1]]

    with tempfile.TemporaryDirectory(prefix="ramanedge-export-") as tmp:
        work = Path(tmp)
        if precision.startswith("int8"):
            fp32_path = work / "fp32.onnx"
            onnx.save(proto, fp32_path)
            q_path = work / "int8.onnx"
            calib_x = None if calib is None else calib.X
            hint = _DropPreprocessHint()
            logging.getLogger().addFilter(hint)
            try:
                _quantise(fp32_path, q_path, precision, exclude, calib_x)
            except ExportError:
                raise
            except Exception as exc:  # onnxruntime.quantization raises bare Exceptions and ValueErrors
                raise ExportError(f"{precision} quantisation failed: {exc}") from exc
            finally:
                logging.getLogger().removeFilter(hint)
            proto = onnx.load(q_path)
        proto.producer_name = "ramanedge"
        proto.producer_version = _package_version()
        got = _ort_outputs(proto.SerializeToString(), ref_x)
        diff = float(np.max(np.abs(got[0] - ref_prob))) if ref_prob.size else 0.0
        atol = max(REFERENCE_ATOL[precision], float(np.ceil(2.0 * diff * 1e4) / 1e4))
        if precision == "fp32" and diff > REFERENCE_ATOL["fp32"]:
            raise ExportError(
                f"the exported fp32 graph does not reproduce PyTorch: max |probability difference| {diff:.3g} "
                f"on the reference spectra (> {REFERENCE_ATOL['fp32']:g})"
            )
        contract = contract.model_copy(
            update={
                "reference": ReferenceSpectra(
                    inputs=ref_x.astype(np.float64).tolist(), probabilities=ref_prob.astype(np.float64).tolist(),
                    atol=atol, predicted_classes=[contract.classes[int(i)] for i in np.argmax(got[0], axis=1)],
                ),
                "package_version": _package_version(),
                # the run's own time, not the export's: the same run exported twice gives the same bytes
                "created": info.created,
                "extra": {
                    "exporter": f"torch.onnx.export(dynamo=True) torch {torch.__version__}",
                    "onnx": onnx.__version__,
                    "onnxruntime": _ort_version(),
                    "nodes": len(proto.graph.node),
                    "nodes_fp32": n_nodes_fp32,
                    "window_layer": "Gather + batched MatMul, batch norms folded",
                    "reference_max_abs_diff": diff,
                },
            }
        )
        ModelContract.model_validate_json(contract.model_dump_json())  # refuse to write a contract we can't read
        del proto.metadata_props[:]
        for key, value in contract.to_metadata().items():
            entry = proto.metadata_props.add()
            entry.key, entry.value = key, value
        try:
            onnx.checker.check_model(proto, full_check=True)
        except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
            raise ExportError(f"onnx.checker rejected the {precision} model: {exc}") from exc
        _save_atomic(proto, out)
    logger.info("exported %s (%s, opset %d, %d nodes) to %s", run_dir, precision, opset, len(proto.graph.node), out)
    return out


def _fit_drift(config: PreprocessConfig, data: SpectralDataset, axis: list[float]) -> DriftModel:
    """The drift model of ``data`` after the run's full preprocessing (the graph's normalisation included)."""
    pre = Preprocessor(config)
    out_axis = pre.output_axis(data.axis)
    if out_axis.shape != (len(axis),) or not np.allclose(out_axis, axis, rtol=0, atol=1e-6):
        raise ContractError("drift data do not preprocess onto the model axis")
    from threadpoolctl import threadpool_limits

    try:
        with threadpool_limits(limits=1):  # as the trainer: OpenBLAS threads on a busy machine cost 10x
            return fit_drift(pre.transform(data.X, data.axis), groups=data.groups)
    except DataError as exc:
        raise ExportError(f"cannot fit the drift model: {exc}") from None


def _host_normalise(x: NDArray[np.float32], method: str) -> NDArray[np.float32]:
    """The reference numpy normalisation (what the graph does in float32)."""
    from spectral_core.preprocess import normalise

    return normalise(x, method)[0]


def _save_atomic(proto: Any, out: Path) -> None:
    """Write the model to a temporary file beside ``out``, then rename: never a half-written model."""
    import onnx

    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp")
    os.close(fd)
    try:
        onnx.save(proto, tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; a runtime under another user must be able to read it
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """Silence the exporter's noise that says nothing about this model: torchvision operators it skips (not
    installed, never used by RamanNet) and torch's own deprecation warnings raised from its pytree code."""
    registration = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = registration.level
    registration.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r".*treespec.*LeafSpec", category=FutureWarning)
            yield
    finally:
        registration.setLevel(level)


def _package_version() -> str:
    from spectral_core._version import __version__

    return __version__


def _ort_version() -> str:
    import onnxruntime as ort

    return str(ort.__version__)


def read_contract(path: str | Path) -> ModelContract:
    """Read a model's contract the way the runtime does (onnxruntime only, no onnx or torch)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    try:
        sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own pybind exception types
        raise ContractError(f"{path}: onnxruntime cannot load the model: {exc}") from exc
    return ModelContract.from_metadata(sess.get_modelmeta().custom_metadata_map)

