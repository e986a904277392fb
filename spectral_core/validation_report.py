"""The validation report: the one schema ``ramanedge validate`` writes and the edge runtime reads.

``model.onnx`` -> ``model.validation.json`` beside it (:func:`report_path`). One JSON object (written atomically,
NaN refused), read back strictly: unknown or missing fields, a wrong type, another ``format`` or another
``format_version`` are refused with a reason (:class:`~spectral_core.errors.ValidationReportError`).

- ``format`` = "ramanedge-validation", ``format_version`` = :data:`REPORT_VERSION`
- ``passed`` (bool) and ``reason`` (one line, "" when passed); ``failures``: every failed criterion
- ``model_sha256``: SHA-256 of the model file validated. A runtime with ``--require-validated`` accepts a model
  only when this report exists, ``passed`` is true, its own numbers pass its own criteria
  (:meth:`ValidationReport.refusal`) and ``model_sha256`` equals the file's SHA-256.
- ``model``: path, precision, opset, contract weights hash, in-graph steps; ``run``: path, weights hash;
  ``data``: path, sha256 of the file, spectra used, rows excluded (index -> reason, e.g. a flat spectrum)
- ``environment``: python, numpy, torch, onnx, onnxruntime versions, platform, CPU, the execution provider
  requested and those the session actually used (``session.get_providers()``)
- ``criteria``: the tolerances and thresholds applied
- ``outputs``: per output (probabilities, logits, embedding), :class:`OutputComparison`
- ``task``: :class:`TaskAgreement` (argmax, top-k, embedding cosine, accuracy, macro-F1, unknown flags)
- ``created``: ISO-8601 UTC

Reports written before this module existed have the same shape (format 1 since the first ``ramanedge validate``)
and are read by it. A JSON file without the ``format`` marker (any other spelling of the model hash) was never
written by ramanedge: it is refused, and the fix is to run ``ramanedge validate`` again.

The consistency check is no signature: it catches a hand-edited ``passed`` or a corrupted file, not a forger who
recomputes every number. Protect the model folder's write permission for that.
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from spectral_core.atomic import write_text_atomic
from spectral_core.errors import ValidationReportError

__all__ = [
    "MAX_REPORT_BYTES",
    "OUTPUTS",
    "REPORT_FORMAT",
    "REPORT_SUFFIX",
    "REPORT_VERSION",
    "Criteria",
    "DataFacts",
    "Environment",
    "ErrorStats",
    "ModelFacts",
    "OutputComparison",
    "OutputTolerance",
    "RunFacts",
    "TaskAgreement",
    "ValidationReport",
    "WorstElement",
    "judge",
    "report_path",
]

REPORT_FORMAT = "ramanedge-validation"
REPORT_VERSION = 1
REPORT_SUFFIX = ".validation.json"
#: the outputs every report compares, in this order
OUTPUTS: tuple[str, ...] = ("probabilities", "logits", "embedding")
#: largest report file read, bytes: a real one is a few KiB (more with many excluded rows)
MAX_REPORT_BYTES = 16 * 1024 * 1024


class _Strict(BaseModel):
    # strict: JSON "1" is not 1 and "true" is not true; NaN/inf are not JSON and never written
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


class OutputTolerance(_Strict):
    """Element-wise tolerance of one output: ``|onnx - torch| <= atol + rtol * |torch|``."""

    atol: float = Field(ge=0)
    rtol: float = Field(default=0.0, ge=0)


class Criteria(_Strict):
    """What a model must meet to pass. ``None`` means reported but not judged."""

    tolerances: dict[str, OutputTolerance] = Field(default_factory=dict)
    min_argmax_agreement: float = Field(ge=0, le=1)
    max_accuracy_drop_pp: float | None = Field(
        default=None, ge=0, description="largest accepted accuracy loss of ONNX vs PyTorch, percentage points"
    )
    min_embedding_cosine: float | None = None
    min_unknown_agreement: float | None = Field(default=None, ge=0, le=1)


class ErrorStats(_Strict):
    """Summary of element-wise errors (non-finite errors counted as the largest float)."""

    max: float
    mean: float
    median: float
    p99: float


class WorstElement(_Strict):
    """The element furthest over its tolerance (or the largest error when the output is not judged)."""

    row: int = Field(description="spectrum index among the spectra used")
    col: int = Field(description="class index, or embedding dimension")
    label: str = Field(description="class name, or ``embedding[col]``")
    onnx: float
    torch: float
    abs: float


class OutputComparison(_Strict):
    """Polygraphy-style comparison of one output (ONNX against PyTorch).

    ``min_atol`` is the smallest atol that passes with the configured rtol; ``min_rtol`` the smallest rtol
    that passes with the configured atol (None when no rtol can: an error on an exact zero of PyTorch's).
    ``passed`` is None when the output is not judged element-wise (no tolerance), else ``min_atol <= atol``.
    ``error`` is set (and the statistics absent) when the output cannot be compared at all.
    """

    shape: list[int]
    abs: ErrorStats | None = None
    rel: ErrorStats | None = None
    min_atol: float | None = None
    min_rtol: float | None = None
    atol: float | None = None
    rtol: float | None = None
    passed: bool | None = None
    n_over: int | None = None
    worst: WorstElement | None = None
    reference_shape: list[int] | None = None
    error: str | None = None


class TaskAgreement(_Strict):
    """Decision-level agreement of ONNX and PyTorch on the labelled spectra (fractions 0-1, changes in pp)."""

    n: int
    argmax_agreement: float
    argmax_disagreements: int
    top_k: int
    top_k_agreement: float
    embedding_cosine_mean: float
    embedding_cosine_min: float
    accuracy_torch: float
    accuracy_onnx: float
    accuracy_change_pp: float
    macro_f1_torch: float
    macro_f1_onnx: float
    macro_f1_change_pp: float
    #: unknown-flag agreement; None when the model has no open set
    unknown_agreement: float | None = None
    unknown_torch: int | None = None
    unknown_onnx: int | None = None


class ModelFacts(_Strict):
    """The model file validated (its SHA-256 is the report's ``model_sha256``)."""

    path: str
    precision: str
    opset: int
    contract_weights_sha256: str
    in_graph_steps: list[str]


class RunFacts(_Strict):
    """The training run the PyTorch reference came from."""

    path: str
    weights_sha256: str


class DataFacts(_Strict):
    """The labelled spectra both sides were compared on."""

    path: str
    sha256: str
    n_spectra: int
    n_used: int
    #: row index (as text) -> why the spectrum could not be used
    excluded: dict[str, str]


class Environment(_Strict):
    """Library versions, machine, and the execution provider requested and read back from the session."""

    python: str
    numpy: str
    torch: str
    onnx: str
    onnxruntime: str
    platform: str
    cpu: str
    cpu_count: int | None
    provider_requested: str
    providers_used: list[str]


class ValidationReport(_Strict):
    """The validation report (see the module docstring)."""

    format: str = REPORT_FORMAT
    format_version: int = REPORT_VERSION
    passed: bool
    reason: str
    failures: list[str]
    model_sha256: str
    model: ModelFacts
    run: RunFacts
    data: DataFacts
    environment: Environment
    criteria: Criteria
    outputs: dict[str, OutputComparison]
    task: TaskAgreement
    created: str

    @model_validator(mode="after")
    def _known_format(self) -> ValidationReport:
        if self.format != REPORT_FORMAT:
            raise ValueError(f"format {self.format!r} is not {REPORT_FORMAT!r}")
        if self.format_version != REPORT_VERSION:
            raise ValueError(
                f"report format version {self.format_version} is not supported (this ramanedge reads "
                f"{REPORT_VERSION})"
            )
        return self

    # -- JSON ------------------------------------------------------------------------------------------

    def to_json(self) -> str:
        """The report as indented JSON (what :meth:`write` puts in the file)."""
        return json.dumps(self.model_dump(mode="json"), indent=2, allow_nan=False) + "\n"

    def write(self, path: str | Path) -> Path:
        """Write the report to ``path`` atomically (readable by a runtime running as another user)."""
        return write_text_atomic(path, self.to_json())

    @classmethod
    def from_json(cls, text: str | bytes, *, source: str = "validation report") -> ValidationReport:
        """Read a report strictly.

        Raises:
            ValidationReportError: not JSON, not a ramanedge validation report, another format version, or a
                field missing, unknown or of the wrong type. The message names ``source`` and what is wrong.
        """
        try:
            obj = json.loads(text)
        except ValueError as exc:
            raise ValidationReportError(f"{source} is not JSON: {exc}") from None
        if not isinstance(obj, dict):
            raise ValidationReportError(f"{source} is not a JSON object")
        fmt, version = obj.get("format"), obj.get("format_version")
        if fmt != REPORT_FORMAT:
            raise ValidationReportError(
                f"{source} is not a ramanedge validation report (format {fmt!r}, expected {REPORT_FORMAT!r}); "
                "run `ramanedge validate` to write one"
            )
        if version != REPORT_VERSION:
            newer = isinstance(version, int) and not isinstance(version, bool) and version > REPORT_VERSION
            raise ValidationReportError(
                f"{source} has format version {version!r}; this ramanedge reads version {REPORT_VERSION}"
                + (" (the report was written by a newer ramanedge)" if newer else "")
            )
        try:
            return cls.model_validate_json(text)
        except ValidationError as exc:
            raise ValidationReportError(f"{source} does not match the report schema: {_first_error(exc)}") from None

    @classmethod
    def read(cls, path: str | Path) -> ValidationReport:
        """Read the report file at ``path`` (at most :data:`MAX_REPORT_BYTES`) strictly.

        Raises:
            ValidationReportError: the file cannot be read, is too large, or is no valid report.
        """
        p = Path(path)
        try:
            with p.open("rb") as f:
                raw = f.read(MAX_REPORT_BYTES + 1)
        except OSError as exc:
            raise ValidationReportError(f"cannot read {p}: {exc}") from None
        if len(raw) > MAX_REPORT_BYTES:
            raise ValidationReportError(f"{p} is larger than {MAX_REPORT_BYTES:,} bytes: not a validation report")
        return cls.from_json(raw, source=str(p))

    # -- trust -----------------------------------------------------------------------------------------

    def inconsistencies(self) -> list[str]:
        """Where the report contradicts itself (empty: consistent), in words.

        ``passed``, ``reason`` and ``failures`` must follow from the report's own numbers and criteria:
        :func:`judge` is run again on them. A report edited by hand (``passed`` flipped, a failed output
        removed) or damaged fails this; one forged with recomputed numbers does not (this is no signature).
        """
        out: list[str] = []
        if self.passed != (not self.failures):
            out.append(f"passed is {str(self.passed).lower()} but {len(self.failures)} failure(s) are listed")
        if self.reason != (self.failures[0] if self.failures else ""):
            out.append("reason is not the first failure listed")
        if sorted(self.outputs) != sorted(OUTPUTS):
            out.append(f"outputs {sorted(self.outputs)} are not {sorted(OUTPUTS)}")
        for name, o in sorted(self.outputs.items()):
            tol = self.criteria.tolerances.get(name)
            if o.error is not None:
                continue
            if (tol is None) != (o.atol is None) or (tol is not None and (o.atol, o.rtol) != (tol.atol, tol.rtol)):
                out.append(f"{name}: tolerance {o.atol}/{o.rtol} is not the criteria's {tol}")
            elif tol is not None and (o.min_atol is None or o.passed != (o.min_atol <= tol.atol)):
                out.append(f"{name}: passed is {o.passed} but min_atol {o.min_atol} vs atol {tol.atol} says otherwise")
        again = judge(self.criteria, self.outputs, self.task)
        if bool(again) != bool(self.failures):
            what = f"fail ({again[0]})" if again else "pass"
            out.append(f"its own numbers {what}, but it lists {len(self.failures)} failure(s)")
        return out

    def refusal(self, model_sha256: str) -> str | None:
        """Why this report does not vouch for the model file with SHA-256 ``model_sha256`` (None: it does)."""
        if not self.passed:
            return f"says the model did not pass validation ({self.reason})"
        if self.model_sha256 != model_sha256:
            return (
                f"validated another model (sha256 {self.model_sha256[:12]}..., this one is {model_sha256[:12]}...)"
            )
        problems = self.inconsistencies()
        if problems:
            return f"contradicts itself (edited by hand or corrupted): {'; '.join(problems)}"
        return None


def report_path(model_path: str | Path) -> Path:
    """Where the report of ``model_path`` lives: ``model.onnx`` -> ``model.validation.json``."""
    return Path(model_path).with_suffix(REPORT_SUFFIX)


def _first_error(exc: ValidationError) -> str:
    errs = exc.errors()
    if not errs:
        return str(exc)
    e = errs[0]
    where = ".".join(str(p) for p in e.get("loc", ())) or "(top level)"
    more = f" (and {len(errs) - 1} more)" if len(errs) > 1 else ""
    return f"{where}: {e.get('msg', '')}{more}"


def judge(criteria: Criteria, outputs: dict[str, OutputComparison], task: TaskAgreement) -> list[str]:
    """Every failed criterion as one line, element-wise tolerances first (empty: passed)."""
    fails: list[str] = []
    for name, o in outputs.items():
        if o.error is not None:
            fails.append(f"{name}: {o.error}")
        elif o.passed is False:
            w, a = o.worst, o.abs
            where = (
                f"worst at spectrum {w.row}, {w.label}: onnx {w.onnx:.6g} vs torch {w.torch:.6g}" if w else "no worst element"
            )
            fails.append(
                f"{name}: max abs error {a.max if a else float('nan'):.3g} > atol {_num(o.atol)} "
                f"(+ rtol {_num(o.rtol)}); {o.n_over} element(s) over, {where}"
            )
    if task.argmax_agreement < criteria.min_argmax_agreement:
        fails.append(
            f"argmax agreement {100 * task.argmax_agreement:.2f}% < {100 * criteria.min_argmax_agreement:.2f}% "
            f"({task.argmax_disagreements} of {task.n} spectra differ)"
        )
    # A drop fails; a gain does not (on a few hundred spectra one flipped borderline spectrum is worth more than
    # 0.5 pp either way, and argmax agreement already bounds how far the two may drift apart).
    drop = criteria.max_accuracy_drop_pp
    if drop is not None and -task.accuracy_change_pp > drop + 1e-9:
        fails.append(
            f"accuracy dropped by {-task.accuracy_change_pp:.2f} pp (torch {100 * task.accuracy_torch:.2f}%, "
            f"onnx {100 * task.accuracy_onnx:.2f}%), allowed {drop:g} pp"
        )
    cos = criteria.min_embedding_cosine
    if cos is not None and task.embedding_cosine_min < cos:
        fails.append(f"embedding cosine similarity min {task.embedding_cosine_min:.6f} < {cos:g}")
    unk = criteria.min_unknown_agreement
    if unk is not None and task.unknown_agreement is not None and task.unknown_agreement < unk:
        fails.append(f"unknown-flag agreement {100 * task.unknown_agreement:.2f}% < {100 * unk:.2f}%")
    return fails


def _num(v: float | None) -> str:
    return "none" if v is None else f"{v:g}"

