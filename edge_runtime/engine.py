"""The inference engine: one onnxruntime session built from the model contract alone.

Classes, the model axis and the preprocessing come from the contract embedded in the ONNX file. Execution
providers are explicit: the provider actually in use is read back from ``session.get_providers()`` (ORT
falls back to CPU quietly when a GPU library does not load, so asking is not enough) and a request that
did not take effect raises :class:`ProviderError`. Spectra from any source axis are resampled onto the
model axis by the shared :class:`~spectral_core.preprocess.Preprocessor`, whose fused linear operator is
cached per source axis, so per-spectrum work is one small banded matrix product.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from numpy.typing import NDArray

from edge_runtime.errors import ModelRefusedError, ProviderError, SelfTestError
from edge_runtime.records import Frame, ModelIdentity, Outcome, Prepared, bounded_text
from edge_runtime.settings import DEFAULT_MAX_POINTS
from spectral_core.contract import ModelContract
from spectral_core.drift import DriftModel, DriftScorer
from spectral_core.errors import (
    ContractError,
    ModelFileError,
    PreprocessError,
    RamanEdgeError,
    ValidationReportError,
)
from spectral_core.hashing import sha256_arrays, sha256_file
from spectral_core.openset import unknown_scores
from spectral_core.preprocess import AxisSpec, PreprocessConfig, Preprocessor, normalise
from spectral_core.providers import GPU_PROVIDERS, PROVIDER_CHOICES, PROVIDERS, ProviderName
from spectral_core.validation_report import ValidationReport, report_path

__all__ = [
    "MAX_POINTS",
    "PREPROCESS_IN_CALLER_POINTS",
    "PROVIDERS",
    "Engine",
    "InferenceOutputs",
    "ProviderName",
    "find_validation_report",
    "task_changes",
]

logger = logging.getLogger(__name__)

# ``auto`` tries these in order. TensorRT is left to an explicit request: it builds an engine per input
# shape at start-up and on every new batch size, seconds each, for no gain on a model this small.
AUTO_ORDER = ("cuda", "cpu")
_ORT_TYPES = {"tensor(float)": "float32", "tensor(float16)": "float16"}
#: the longest spectrum classified by default, points (the ``max_points`` setting): work and memory per
#: spectrum grow with its length, so a longer one is refused with a reason before anything is allocated
MAX_POINTS = DEFAULT_MAX_POINTS
#: frames marked ``preprocess_ahead`` (an HTTP request: one spectrum on an axis of its own) longer than this
#: (points) are preprocessed in their caller's thread by :meth:`Engine.prepare_frame`; the single worker then
#: only runs inference for them, so resampling a long spectrum never holds up the small ones batched behind it.
#: Sources leave it unset: their spectra share an axis and are preprocessed by the worker in batches (one call
#: for 64 rows of 8,192 points costs about a quarter of 64 calls of one row)
PREPROCESS_IN_CALLER_POINTS = 4096


def task_changes(old: ModelContract, new: ModelContract) -> list[str]:
    """What a model swap would change in the task served (empty: the same task), in words."""
    out: list[str] = []
    if list(old.classes) != list(new.classes):
        if sorted(old.classes) == sorted(new.classes):
            out.append(f"class order {old.classes} -> {new.classes}")
        else:
            added = [c for c in new.classes if c not in old.classes]
            removed = [c for c in old.classes if c not in new.classes]
            out.append(f"classes {old.classes} -> {new.classes} (added {added}, removed {removed})")
    a, b = old.axis_array(), new.axis_array()
    if a.shape != b.shape or not np.allclose(a, b, rtol=0, atol=1e-6):
        out.append(f"model axis {a.size} points {a[0]:g}-{a[-1]:g} cm^-1 -> {b.size} points {b[0]:g}-{b[-1]:g} cm^-1")
    if old.preprocess_hash != new.preprocess_hash:
        out.append(f"preprocessing {old.preprocess_hash[:12]} -> {new.preprocess_hash[:12]}")
    return out


def find_validation_report(model: Path) -> Path | None:
    """The validation report beside ``model`` (:func:`~spectral_core.validation_report.report_path`), if any."""
    path = report_path(model)
    return path if path.is_file() else None


def check_validated(model: Path, model_sha256: str) -> Path:
    """Raise :class:`ModelRefusedError` unless a passed validation report for exactly this model exists.

    The report is read by its one schema (:class:`~spectral_core.validation_report.ValidationReport`, strict,
    format version checked) and must vouch for this file: passed, this SHA-256, and consistent with its own
    numbers (:meth:`~spectral_core.validation_report.ValidationReport.refusal`).
    """
    path = find_validation_report(model)
    if path is None:
        raise ModelRefusedError(
            f"--require-validated: no validation report beside {model} "
            f"(expected {report_path(model).name}); run `ramanedge validate` first"
        )
    try:
        report = ValidationReport.read(path)
    except ValidationReportError as exc:
        raise ModelRefusedError(f"--require-validated: cannot read {path.name}: {exc}") from None
    why = report.refusal(model_sha256)
    if why is not None:
        raise ModelRefusedError(f"--require-validated: {path} {why}")
    return path


@dataclass(frozen=True)
class InferenceOutputs:
    """Every output of a RamanNet model for a batch of model inputs, float32, rows in input order.

    Attributes:
        probabilities: [N, C] softmax of the logits, classes in contract order.
        logits: [N, C] class scores before the softmax.
        embedding: [N, D] L2-normalised embedding (what open-set distances are measured in).
    """

    probabilities: NDArray[np.float32]
    logits: NDArray[np.float32]
    embedding: NDArray[np.float32]


class Engine:
    """An onnxruntime session for one exported RamanNet model, with preprocessing, open-set and checks.

    Args:
        model: path of the ONNX file (contract embedded).
        provider: ``auto`` (best that really loads: CUDA, then CPU), ``cpu``, ``cuda`` or ``tensorrt``.
        require_gpu: fail unless a GPU provider is the one in use.
        require_validated: fail unless ``<model>.validation.json`` passed for this exact file.
        threads: ORT intra-op threads (1 suits small batches on a small edge box).
        max_batch: largest batch sent to the session at once (TensorRT profile upper bound too).
        axis_tolerance: cm^-1 at each end a spectrum's range may fall short of the model axis (edge filled
            from the nearest measured point, recorded as ``axis_edge_fill_cm1``); None: the contract's.
        max_points: longest spectrum accepted, points; a longer one is an error record, refused before any
            work or allocation that grows with its length.
    """

    def __init__(
        self,
        model: str | Path,
        *,
        provider: ProviderName = "auto",
        require_gpu: bool = False,
        require_validated: bool = False,
        threads: int = 1,
        max_batch: int = 64,
        self_test: bool = True,
        axis_tolerance: float | None = None,
        max_points: int = MAX_POINTS,
    ) -> None:
        t0 = time.monotonic()
        self.model_path = Path(model)
        if not self.model_path.is_file():
            raise ModelFileError(f"model file {self.model_path} does not exist")
        if provider not in PROVIDER_CHOICES:
            raise ProviderError(f"unknown provider {provider!r}; choose {', '.join(PROVIDER_CHOICES)}")
        self.max_batch = max(1, int(max_batch))
        self.max_points = max(2, int(max_points))
        self.model_sha256 = sha256_file(self.model_path)
        self.validation_report: Path | None = None
        if require_validated:
            self.validation_report = check_validated(self.model_path, self.model_sha256)
            logger.info("validation report %s accepted", self.validation_report)
        self.validation_note = self._validation_note()
        self.requested_provider = provider
        self.session, self.provider = self._open(provider, threads)
        if require_gpu and self.provider not in GPU_PROVIDERS:
            raise ProviderError(
                f"--require-gpu: the session runs on {self.provider}; no GPU provider is active "
                f"(onnxruntime offers {ort.get_available_providers()})"
            )
        meta = self.session.get_modelmeta().custom_metadata_map
        self.contract = ModelContract.from_metadata(meta)
        self._check_io()
        self.classes: list[str] = list(self.contract.classes)
        self.preprocess_hash = self.contract.preprocess_hash
        # Spectra whose range falls short of the model axis by at most this (cm^-1, each end) are classified,
        # the edge filled from the nearest measured point; None: the contract's tolerance.
        self.axis_tolerance = self.contract.axis_tolerance() if axis_tolerance is None else float(axis_tolerance)
        self.preprocessor = Preprocessor(
            self._serving_config(), skip=self.contract.in_graph_steps, axis_tolerance=self.axis_tolerance
        )
        self._dtype = np.float16 if self.contract.input_dtype == "float16" else np.float32
        self._axis_ok: dict[str, str | None] = {}
        names = self.contract.output_names
        self._outputs = [names["probabilities"]]
        self._emb_name = names.get("embedding") if self.contract.open_set is not None else None
        if self._emb_name is not None:
            self._outputs.append(self._emb_name)
        self.drift: DriftModel | None = self.contract.drift
        if self.drift is not None and not set(self.contract.in_graph_steps) <= {"normalise"}:
            logger.warning("drift not available: the graph runs preprocessing steps %s the host cannot repeat",
                           self.contract.in_graph_steps)
            self.drift = None
        self._drift_scorer = None if self.drift is None else DriftScorer(self.drift)
        if self_test:
            self.self_test()
        self.load_s = time.monotonic() - t0
        logger.info(
            "model %s (sha256 %s, %d classes, %d points) ready on %s (requested %s) in %.3f s",
            self.model_path.name, self.model_sha256[:12], len(self.classes), self.contract.n_points,
            self.provider, provider, self.load_s,
        )

    def _validation_note(self) -> str:
        """``passed`` when a passed report for exactly this file is beside it, else why not (for display)."""
        try:
            self.validation_report = self.validation_report or check_validated(self.model_path, self.model_sha256)
        except ModelRefusedError as exc:
            return str(exc).removeprefix("--require-validated: ")
        return "passed"

    # -- session and contract ------------------------------------------------------------------------

    def _session(self, ep: str, threads: int) -> ort.InferenceSession:
        so = ort.SessionOptions()
        so.intra_op_num_threads = max(1, int(threads))
        so.inter_op_num_threads = 1
        so.log_severity_level = 3
        providers: list[Any]
        if ep == "TensorrtExecutionProvider":
            n = self._points_hint()
            opts: dict[str, Any] = {"trt_engine_cache_enable": True,
                                    "trt_engine_cache_path": str(self.model_path.parent / ".trt_cache")}
            if n is not None:
                opts.update(
                    trt_profile_min_shapes=f"{self._input_hint}:1x{n}",
                    trt_profile_opt_shapes=f"{self._input_hint}:1x{n}",
                    trt_profile_max_shapes=f"{self._input_hint}:{self.max_batch}x{n}",
                )
            providers = [(ep, opts), "CUDAExecutionProvider", "CPUExecutionProvider"]
        elif ep == "CUDAExecutionProvider":
            providers = [ep, "CPUExecutionProvider"]
        else:
            providers = [ep]
        return ort.InferenceSession(str(self.model_path), sess_options=so, providers=providers)

    _input_hint = "spectrum"

    def _points_hint(self) -> int | None:
        """Input name and length from the contract, read before the TensorRT session exists."""
        probe = ort.InferenceSession(str(self.model_path), providers=["CPUExecutionProvider"])
        contract = ModelContract.from_metadata(probe.get_modelmeta().custom_metadata_map)
        self._input_hint = contract.input_name
        return contract.n_points

    def _open(self, provider: str, threads: int) -> tuple[ort.InferenceSession, str]:
        available = ort.get_available_providers()
        wanted = AUTO_ORDER if provider == "auto" else (provider,)
        failures: list[str] = []
        for name in wanted:
            ep = PROVIDERS[name]
            if ep not in available:
                failures.append(f"{name}: not in this onnxruntime build (it offers {available})")
                continue
            # auto probes a GPU provider that may not load (a CPU-only machine with onnxruntime-gpu): onnxruntime
            # would print its own red library error first; the fallback is reported below, in one clean line.
            quiet = provider == "auto" and ep in GPU_PROVIDERS
            if quiet:
                ort.set_default_logger_severity(4)
            try:
                sess = self._session(ep, threads)
            except (RuntimeError, ValueError, OSError) as exc:
                # onnxruntime raises its own Fail/RuntimeException types, all RuntimeError subclasses.
                failures.append(f"{name}: {exc}")
                continue
            finally:
                if quiet:
                    ort.set_default_logger_severity(2)  # onnxruntime's default: warnings and above
            active = sess.get_providers()
            if active and active[0] == ep:
                if failures:
                    logger.warning("provider auto: using %s; skipped %s", ep, "; ".join(failures))
                else:
                    logger.info("provider %s: session runs on %s", provider, ep)
                return sess, ep
            failures.append(f"{name}: requested {ep} but onnxruntime fell back to {active} (library did not load)")
        raise ProviderError(f"provider {provider!r} is not usable: " + "; ".join(failures))

    def _serving_config(self) -> PreprocessConfig:
        """The contract's preprocessing, resampling onto the model axis when the config leaves that implicit.

        A model trained on data already on its axis carries ``target_axis=None``; an instrument measures on
        its own axis, so the runtime adds the resampling step onto the contract axis (same interpolation,
        same shared code). A non-uniform model axis cannot be written as an AxisSpec: then only spectra
        already on the model axis are accepted (each other axis is refused with a reason).
        """
        c = self.contract
        cfg = c.preprocess
        if cfg.target_axis is not None or "resample" in c.in_graph_steps:
            return cfg
        ax = c.axis_array()
        spec = AxisSpec(start=float(ax[0]), stop=float(ax[-1]), points=int(ax.size))
        if not np.allclose(spec.values(), ax, rtol=0, atol=1e-6):
            logger.warning("the model axis is not uniform: only spectra already on it can be classified")
            return cfg
        return cfg.model_copy(update={"target_axis": spec})

    def _check_io(self) -> None:
        c = self.contract
        inputs = {i.name: i for i in self.session.get_inputs()}
        if c.input_name not in inputs:
            raise ContractError(f"the model has no input {c.input_name!r} named by its contract (has {list(inputs)})")
        inp = inputs[c.input_name]
        dtype = _ORT_TYPES.get(inp.type)
        if dtype != c.input_dtype:
            raise ContractError(f"model input {inp.name!r} is {inp.type}, the contract says {c.input_dtype}")
        shape = list(inp.shape)
        if len(shape) != 2 or (isinstance(shape[1], int) and shape[1] != c.n_points):
            raise ContractError(
                f"model input {inp.name!r} has shape {shape}; the contract needs [batch, {c.n_points}]"
            )
        out_meta = {o.name: o for o in self.session.get_outputs()}
        outputs = set(out_meta)
        prob = out_meta.get(c.output_names["probabilities"])
        if prob is not None:
            pshape = list(prob.shape)
            if len(pshape) != 2 or (isinstance(pshape[1], int) and pshape[1] != len(c.classes)):
                raise ContractError(
                    f"model output {prob.name!r} has shape {pshape}; the contract lists {len(c.classes)} classes "
                    f"({c.classes}), so it must be [batch, {len(c.classes)}]"
                )
        need = {c.output_names["probabilities"]}
        if c.open_set is not None:
            need.add(c.output_names.get("embedding", "embedding"))
        missing = need - outputs
        if missing:
            raise ContractError(f"model output(s) {sorted(missing)} named by the contract are missing (has {sorted(outputs)})")
        if len(self.session.get_inputs()) != 1:
            raise ContractError(f"the model has {len(self.session.get_inputs())} inputs; RamanNet has one")

    # -- inference -----------------------------------------------------------------------------------

    def infer(self, X: NDArray[Any]) -> tuple[NDArray[np.float32], NDArray[np.float32] | None]:
        """Run the session on model-axis inputs after checking them against the contract.

        Returns:
            (probabilities [N, C], embedding [N, D] or None when the model has no open-set data).

        Raises:
            ContractError: wrong rank, length or non-finite values.
        """
        x = self._model_input(X)
        outs = self.session.run(self._outputs, {self.contract.input_name: x})
        probs = np.asarray(outs[0], dtype=np.float32)
        emb = np.asarray(outs[1], dtype=np.float32) if len(outs) > 1 else None
        return probs, emb

    def infer_raw(self, X: NDArray[Any]) -> InferenceOutputs:
        """Every output of the model on model-axis inputs, ``max_batch`` rows at a time.

        What ``ramanedge validate`` compares with PyTorch: the same session (provider read back), input checks
        and input dtype as :meth:`infer`, which serves only the outputs the daemon needs.

        Raises:
            ContractError: wrong rank, length or non-finite values; an output the contract names is missing.
        """
        x = self._model_input(X)
        names = self.contract.output_names
        have = {o.name for o in self.session.get_outputs()}
        want = [names.get(key, key) for key in ("probabilities", "logits", "embedding")]  # InferenceOutputs' order
        missing = [w for w in want if w not in have]
        if missing:
            raise ContractError(f"the model lacks output(s) {missing} (has {sorted(have)})")
        parts: list[list[NDArray[np.float32]]] = [[], [], []]
        for start in range(0, max(x.shape[0], 1), self.max_batch):
            outs = self.session.run(want, {self.contract.input_name: x[start : start + self.max_batch]})
            for part, o in zip(parts, outs, strict=True):
                part.append(np.asarray(o, dtype=np.float32))
        probs, logits, emb = (np.concatenate(p, axis=0) for p in parts)
        return InferenceOutputs(probabilities=probs, logits=logits, embedding=emb)

    def _model_input(self, X: NDArray[Any]) -> NDArray[Any]:
        """``X`` checked against the contract ([batch, points], finite) in the model's input dtype."""
        x = np.asarray(X)
        n = self.contract.n_points
        if x.ndim != 2 or x.shape[1] != n:
            raise ContractError(f"model input must be [batch, {n}], got {list(x.shape)}")
        if x.dtype != self._dtype:
            x = x.astype(self._dtype)
        if not np.isfinite(x).all():
            raise ContractError("model input holds NaN/inf")
        return x

    def self_test(self) -> None:
        """Check the model reproduces the exporter's probabilities on the contract's reference spectra."""
        ref = self.contract.reference
        k = len(self.classes)
        if ref is None:
            logger.warning("the contract carries no reference spectra: self-test skipped")
            x = np.zeros((1, self.contract.n_points), dtype=self._dtype)
            p0, _ = self.infer(x)  # still load kernels now rather than on the first real spectrum
            if p0.shape[1] != k:
                raise SelfTestError(f"self-test: the model gives {p0.shape[1]} probabilities, the contract lists "
                                    f"{k} classes")
            return
        x = np.asarray(ref.inputs, dtype=self._dtype)
        want = np.asarray(ref.probabilities, dtype=np.float64)
        try:
            got, _ = self.infer(x)
        except (RamanEdgeError, RuntimeError, ValueError) as exc:
            raise SelfTestError(f"self-test: the model failed on its reference spectra: {exc}") from None
        if got.ndim != 2 or got.shape[1] != k:
            raise SelfTestError(f"self-test: the model gives {got.shape[-1]} probabilities per spectrum, the "
                                f"contract lists {k} classes")
        if got.shape != want.shape:
            raise SelfTestError(f"self-test: probabilities of shape {got.shape}, reference {want.shape}")
        err = float(np.max(np.abs(got - want)))
        if not err <= ref.atol:
            raise SelfTestError(
                f"self-test: max |p - p_ref| = {err:.3g} exceeds {ref.atol:g} on {self.provider} "
                f"({x.shape[0]} reference spectra)"
            )
        self._check_reference_names(got, want)
        if x.shape[0] < self.max_batch:
            # warm both the single-spectrum and the batched paths before the first real spectrum
            self.infer(np.repeat(x[:1], min(self.max_batch, 8), axis=0))
        logger.info("self-test passed on %d reference spectra (max abs error %.2g)", x.shape[0], err)

    def _check_reference_names(self, got: NDArray[np.float32], want: NDArray[np.float64]) -> None:
        """The predicted class NAMES of the reference spectra must be those the exporter recorded.

        Probabilities alone cannot catch a contract whose class list was reordered: the same columns then
        carry other names. Only clear winners are compared (top two more than ``atol`` apart), so a near-tie
        that flips between providers is no failure.
        """
        ref = self.contract.reference
        if ref is None or ref.predicted_classes is None:
            return
        names = ref.predicted_classes
        if len(names) != got.shape[0]:
            raise SelfTestError(f"self-test: {len(names)} expected class names for {got.shape[0]} reference spectra")
        top2 = np.sort(want, axis=1)[:, -2:] if want.shape[1] > 1 else np.zeros((want.shape[0], 2))
        clear = (top2[:, 1] - top2[:, 0]) > ref.atol
        pred = [self.classes[int(i)] for i in np.argmax(got, axis=1)]
        wrong = [(i, pred[i], names[i]) for i in range(len(names)) if clear[i] and pred[i] != names[i]]
        if wrong:
            i, p, w = wrong[0]
            raise SelfTestError(
                f"self-test: {len(wrong)} reference spectrum/spectra predicted as the wrong class name "
                f"(spectrum {i}: {p!r}, expected {w!r}): the contract's class list does not match the model"
            )

    def _size_error(self, n: int) -> str | None:
        if n > self.max_points:
            return f"spectrum of {n:,} points exceeds the limit of {self.max_points:,} points (max_points)"
        return None

    def prepare(self, axis: NDArray[np.float64]) -> str | None:
        """Build (and cache) the preprocessing operator for a source axis ahead of its first spectrum.

        Returns:
            None when spectra on ``axis`` can be classified, else the reason they cannot.
        """
        too_long = self._size_error(int(np.size(axis)))
        if too_long is not None:
            return too_long
        a = np.asarray(axis, dtype=np.float64)
        reason = self._axis_error(a)
        if reason is None:
            self.preprocessor.transform_rows(np.ones((1, a.size), dtype=np.float32) + np.arange(a.size) % 3, a)
        return reason

    def prepare_frame(self, frame: Frame) -> None:
        """In the caller's thread (sources, HTTP requests): build the operator for a frame's axis and, for a
        frame marked ``preprocess_ahead`` longer than ``PREPROCESS_IN_CALLER_POINTS``, preprocess it outright, so
        the worker only applies cached operators and only runs inference for such a frame. Frames the engine
        will refuse anyway (too long, malformed, an axis it cannot use) are left alone: the worker records why."""
        if frame.error is not None or self._frame_problem(frame) is not None:
            return
        axis = np.asarray(frame.axis, dtype=np.float64)
        if not frame.preprocess_ahead or axis.size <= PREPROCESS_IN_CALLER_POINTS:
            self.prepare(axis)
            return
        if self._axis_error(axis) is not None:
            return
        t0 = time.perf_counter()
        try:
            edge = self.preprocessor.edge_fill(axis)
            Z, bad = self.preprocessor.transform_rows(np.asarray(frame.intensities, dtype=np.float32)[None, :], axis)
        except (PreprocessError, ValueError):
            return
        frame.prepared = Prepared(self, None if bad else Z[0], bad.get(0), time.perf_counter() - t0, edge)

    def _axis_error(self, axis: NDArray[np.float64]) -> str | None:
        """None when spectra on ``axis`` preprocess onto the model axis, else the reason (cached)."""
        key = sha256_arrays(axis)  # not the bytes themselves: a 65,536-point axis is a 512 KiB key
        if key in self._axis_ok:
            return self._axis_ok[key]
        reason: str | None
        try:
            out_axis = self.preprocessor.output_axis(axis)
            self.contract.check_axis_matches(out_axis, what="preprocessed", atol=1e-6)
            reason = None
        except (PreprocessError, ContractError, ValueError) as exc:
            reason = str(exc)
        if len(self._axis_ok) > 64:
            self._axis_ok.clear()
        self._axis_ok[key] = reason
        return reason

    def classify(self, frames: Sequence[Frame]) -> list[Outcome]:
        """Classify a batch; every frame gets exactly one outcome (a class or an error with a reason)."""
        out: dict[int, Outcome] = {}
        # Grouped by axis object: sources hand out one shared array per instrument axis, so this costs
        # nothing per frame; equal axes in distinct arrays only make smaller groups, never wrong ones.
        groups: dict[int, list[int]] = {}
        axes: dict[int, NDArray[np.float64]] = {}
        ready: list[int] = []  # preprocessed by this engine in their caller's thread: inference only
        for i, f in enumerate(frames):
            if f.error is not None:
                out[i] = Outcome.failed(f, *f.error)
                continue
            if f.prepared is not None and f.prepared.owner is self:
                ready.append(i)
                continue
            reason = self._frame_problem(f)
            if reason is not None:
                out[i] = Outcome.failed(f, "input", reason)
                continue
            ax = f.axis if isinstance(f.axis, np.ndarray) and f.axis.dtype == np.float64 else (
                np.asarray(f.axis, dtype=np.float64))
            key = id(ax)
            groups.setdefault(key, []).append(i)
            axes.setdefault(key, ax)
        for key, idx in groups.items():
            group = [frames[i] for i in idx]
            try:
                self._classify_group(group, axes[key], idx, out)
            except Exception as exc:  # MemoryError included: one group's failure is its frames' error records
                logger.error("classifying %d spectrum/spectra failed: %s", len(group), exc, exc_info=True)
                reason = bounded_text(f"internal error: {type(exc).__name__}: {exc}", 512)
                for i, f in zip(idx, group, strict=True):
                    out[i] = Outcome.failed(f, "internal", reason)
        if ready:
            group = [frames[i] for i in ready]
            try:
                self._classify_prepared(group, ready, out)
            except Exception as exc:  # as above: these frames' error records, never a dead worker
                logger.error("classifying %d spectrum/spectra failed: %s", len(group), exc, exc_info=True)
                reason = bounded_text(f"internal error: {type(exc).__name__}: {exc}", 512)
                for i, f in zip(ready, group, strict=True):
                    out[i] = Outcome.failed(f, "internal", reason)
        return [out[i] for i in range(len(frames))]

    def _classify_prepared(self, frames: list[Frame], idx: list[int], out: dict[int, Outcome]) -> None:
        preps = [f.prepared for f in frames if f.prepared is not None]
        if len(preps) != len(frames):
            raise RuntimeError("a frame to classify without its preprocessed row")
        zero = np.zeros(self.contract.n_points, dtype=np.float32)
        for f, p in zip(frames, preps, strict=True):
            if p.edge_fill[0] > 0 or p.edge_fill[1] > 0:
                f.metadata = {**f.metadata, "axis_edge_fill_cm1": [round(p.edge_fill[0], 4), round(p.edge_fill[1], 4)]}
        Z = np.stack([p.row if p.row is not None else zero for p in preps])
        bad = {k: p.bad for k, p in enumerate(preps) if p.bad is not None}
        self._infer_rows(frames, idx, Z, bad=bad, t_pre=0.0, out=out)
        for i, p in zip(idx, preps, strict=True):
            out[i].preprocess_s = p.preprocess_s

    def _frame_problem(self, f: Frame) -> str | None:
        if f.axis is None or f.intensities is None:
            return "no spectrum in the input"
        # the size first, from the shapes alone: nothing that grows with the length is allocated before it
        too_long = self._size_error(max(int(np.size(f.axis)), int(np.size(f.intensities))))
        if too_long is not None:
            return too_long
        try:
            a = np.asarray(f.axis, dtype=np.float64)
            x = np.asarray(f.intensities, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            return f"non-numeric values ({exc})"
        if a.ndim != 1 or x.ndim != 1:
            return f"axis and intensities must be 1-D, got shapes {a.shape} and {x.shape}"
        if a.size != x.size:
            return f"{x.size} intensity values for an axis of {a.size} points"
        if a.size < 2:
            return f"a spectrum needs at least 2 points, got {a.size}"
        return None

    def _classify_group(
        self, frames: list[Frame], axis: NDArray[np.float64], idx: list[int], out: dict[int, Outcome]
    ) -> None:
        reason = self._axis_error(axis)
        if reason is not None:
            for i, f in zip(idx, frames, strict=True):
                out[i] = Outcome.failed(f, "preprocess", reason)
            return
        low, high = self.preprocessor.edge_fill(axis)
        if low > 0 or high > 0:  # the record says how much of the model axis was filled, cm^-1
            for f in frames:
                f.metadata = {**f.metadata, "axis_edge_fill_cm1": [round(low, 4), round(high, 4)]}
        t0 = time.perf_counter()
        X = np.stack([np.asarray(f.intensities, dtype=np.float32) for f in frames])
        try:
            Z, bad = self.preprocessor.transform_rows(X, axis)
        except (PreprocessError, ValueError) as exc:
            for i, f in zip(idx, frames, strict=True):
                out[i] = Outcome.failed(f, "preprocess", str(exc))
            return
        self._infer_rows(frames, idx, Z, bad=bad, t_pre=time.perf_counter() - t0, out=out)

    def _infer_rows(self, frames: list[Frame], idx: list[int], Z: NDArray[np.float32], *, bad: dict[int, str],
                    t_pre: float, out: dict[int, Outcome]) -> None:
        """Inference on preprocessed rows ``Z`` (model axis), ``max_batch`` at a time; rows in ``bad`` are
        input error records."""
        good = [k for k in range(len(frames)) if k not in bad]
        for k, why in bad.items():
            o = Outcome.failed(frames[k], "input", why)
            o.preprocess_s = t_pre
            out[idx[k]] = o
        for start in range(0, len(good), self.max_batch):
            chunk = good[start : start + self.max_batch]
            t1 = time.perf_counter()
            try:
                probs, emb = self.infer(Z[chunk])
            except (RamanEdgeError, RuntimeError, ValueError) as exc:
                for k in chunk:
                    out[idx[k]] = Outcome.failed(frames[k], "inference", str(exc))
                continue
            t_inf = time.perf_counter() - t1
            if probs.ndim != 2 or probs.shape[1] != len(self.classes):
                why = f"the model gave {probs.shape[-1]} probabilities for {len(self.classes)} classes"
                for k in chunk:
                    out[idx[k]] = Outcome.failed(frames[k], "inference", why)
                continue
            pred = np.argmax(probs, axis=1).astype(np.int64)
            unknown: NDArray[np.bool_] | None = None
            dist: NDArray[np.float64] | None = None
            thr: NDArray[np.float64] | None = None
            if emb is not None and self.contract.open_set is not None:
                unknown, dist = unknown_scores(emb, pred, self.contract.open_set)  # one distance computation
                thr = np.asarray(self.contract.open_set.thresholds, dtype=np.float64)[pred]
            drift = self._drift(Z[chunk])
            for j, k in enumerate(chunk):
                c = int(pred[j])
                out[idx[k]] = Outcome(
                    frame=frames[k],
                    ok=True,
                    class_name=self.classes[c],
                    class_index=c,
                    confidence=float(probs[j, c]),
                    probabilities=[float(v) for v in probs[j]],
                    unknown=None if unknown is None else bool(unknown[j]),
                    open_set_distance=None if dist is None else float(dist[j]),
                    open_set_threshold=None if thr is None else float(thr[j]),
                    drift=None if drift is None else bool(drift[2][j]),
                    drift_t2=None if drift is None else float(drift[0][j]),
                    drift_q=None if drift is None else float(drift[1][j]),
                    drift_t2_limit=None if self.drift is None else self.drift.t2_limit,
                    drift_q_limit=None if self.drift is None else self.drift.q_limit,
                    preprocess_s=t_pre,
                    inference_s=t_inf,
                    batch_size=len(chunk),
                )

    def _drift(
        self, Z: NDArray[np.float32]
    ) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.bool_]] | None:
        """(T^2, Q, flag) of host-preprocessed model inputs, or None without a drift model.

        The drift model describes fully preprocessed spectra; the graph's own normalisation is repeated here
        in numpy (the same function the trainer used), a few microseconds a spectrum.
        """
        if self._drift_scorer is None:
            return None
        full = normalise(Z, self.contract.preprocess.normalise)[0] if self.contract.in_graph_steps else Z
        s = self._drift_scorer.score(full)
        return s.t2, s.q, s.flag

    def drift_info(self) -> dict[str, Any] | None:
        """The drift model's limits and size (None: the model carries none, drift not available)."""
        d = self.drift
        if d is None:
            return None
        return {"t2_limit": d.t2_limit, "q_limit": d.q_limit, "components": d.n_components,
                "explained_variance": round(d.explained_variance, 4), "quantile": d.quantile,
                "expected_flag_rate": round(d.expected_flag_rate, 4), "limit_method": d.limit_method}

    @property
    def identity(self) -> ModelIdentity:
        """The model as every record it makes names it (see :meth:`edge_runtime.ledger.Ledger.serve`)."""
        return ModelIdentity(self.model_sha256, self.preprocess_hash, self.provider)

    def describe(self) -> dict[str, Any]:
        """What is being served (for logs, /readyz and the ledger)."""
        return {
            "model": str(self.model_path),
            "model_sha256": self.model_sha256,
            "preprocess_hash": self.preprocess_hash,
            "provider": self.provider,
            "requested_provider": self.requested_provider,
            "classes": self.classes,
            "points": self.contract.n_points,
            "axis_tolerance_cm1": self.axis_tolerance,
            "open_set": self.contract.open_set is not None,
            "drift": self.drift_info(),
            # how the unknown thresholds were fitted (None: before calibrated unknowns, a training quantile)
            "unknown_rate": self.contract.open_set.target_unknown_rate if self.contract.open_set else None,
            "unknown_calibration_spectra": (
                self.contract.open_set.calibration_spectra if self.contract.open_set else None),
            "precision": self.contract.precision,
            "load_s": round(self.load_s, 4),
            "validation_report": str(self.validation_report) if self.validation_report else None,
            "validated": self.validation_note == "passed",
            "validation": self.validation_note,
        }
