"""``ramanedge export`` and ``ramanedge validate``. Nothing heavy is imported at module level."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from spectral_core.cli import add_data_option, read_data, read_options
from spectral_core.providers import PROVIDERS

__all__ = ["configure_export", "configure_validate", "run_export", "run_validate"]

logger = logging.getLogger(__name__)

_PRECISION_CHOICES = ("fp32", "fp16", "int8", "int8-dynamic", "int8-static")


def configure_export(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", type=Path, help="run directory written by `ramanedge train`")
    parser.add_argument("--out", "-o", type=Path, required=True, help="the .onnx file to write")
    parser.add_argument(
        "--precision", choices=_PRECISION_CHOICES, default="fp32",
        help="fp32 (default), fp16, int8 (= int8-static with --calibration, else int8-dynamic)",
    )
    parser.add_argument(
        "--calibration", type=Path, default=None,
        help="spectra for int8-static calibration (and the embedded self-test spectra); any readable data set",
    )
    parser.add_argument("--opset", type=int, default=None, help="ONNX opset (default: the pinned one, 18)")
    parser.add_argument(
        "--axis-tolerance", type=float, default=None, metavar="CM1",
        help="how far a spectrum's range may fall short of the model axis at each end and still be classified, "
        "its edge filled from the nearest point (default: the larger of 2 cm^-1 and one model-axis step)",
    )
    parser.add_argument(
        "--drift-data", type=Path, default=None, metavar="DATA",
        help="training-distribution spectra to fit the drift model on (default: the one the run's training fitted; "
        "runs made before drift models have none)",
    )


def run_export(args: argparse.Namespace) -> int:
    from export.onnx_export import PINNED_OPSET, export_run
    from spectral_core.hashing import sha256_file
    from spectral_core.io import read_dataset

    precision = args.precision
    if precision == "int8":
        precision = "int8-static" if args.calibration is not None else "int8-dynamic"
    calibration = read_dataset(args.calibration) if args.calibration is not None else None
    out = export_run(
        args.run, args.out, precision=precision, calibration=calibration,
        opset=args.opset if args.opset is not None else PINNED_OPSET, axis_tolerance=args.axis_tolerance,
        drift_data=read_dataset(args.drift_data) if args.drift_data is not None else None,
    )
    import onnx

    n = len(onnx.load(out).graph.node)
    print(f"{out}  {precision}  opset {args.opset or PINNED_OPSET}  {n} nodes  sha256 {sha256_file(out)}")
    return 0


def configure_validate(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", type=Path, help="the exported .onnx file")
    parser.add_argument("--run", type=Path, required=True, help="the run it was exported from")
    add_data_option(parser, help="labelled spectra with the model's classes")
    parser.add_argument("--provider", choices=tuple(PROVIDERS), default="cpu",
                        help="onnxruntime execution provider; it must really be used (no silent fallback)")
    parser.add_argument("--atol", action="append", default=[], metavar="OUTPUT=VALUE",
                        help="element-wise absolute tolerance of an output (repeatable), e.g. logits=1e-4")
    parser.add_argument("--rtol", action="append", default=[], metavar="OUTPUT=VALUE",
                        help="element-wise relative tolerance of an output (repeatable)")
    parser.add_argument("--min-agreement", type=float, default=None, help="minimum argmax agreement, 0-1")
    parser.add_argument("--max-accuracy-drop", type=float, default=None,
                        help="largest accepted accuracy loss of ONNX vs PyTorch, percentage points")
    parser.add_argument("--json", action="store_true", help="print the JSON report instead of the table")


def _parse_pairs(items: list[str], what: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for item in items:
        name, sep, value = item.partition("=")
        try:
            if not sep:
                raise ValueError(item)
            out[name.strip()] = float(value)
        except ValueError:
            raise SystemExit(f"ramanedge validate: {what} expects OUTPUT=VALUE, got {item!r}") from None
    return out


def run_validate(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from export.onnx_export import read_contract
    from export.validate import (
        DEFAULT_CRITERIA,
        OUTPUTS,
        Criteria,
        OutputTolerance,
        format_report,
        report_path,
        validate_model,
    )

    criteria = None
    atols, rtols = _parse_pairs(args.atol, "--atol"), _parse_pairs(args.rtol, "--rtol")
    if atols or rtols or args.min_agreement is not None or args.max_accuracy_drop is not None:
        precision = read_contract(args.model).precision
        base = DEFAULT_CRITERIA[precision]
        unknown = sorted((set(atols) | set(rtols)) - set(OUTPUTS))
        if unknown:
            raise SystemExit(f"ramanedge validate: no output {unknown[0]!r}; the outputs are {', '.join(OUTPUTS)}")
        tols = dict(base.tolerances)
        fields: dict[str, object] = dict(base)
        try:
            for name in set(atols) | set(rtols):
                old = tols.get(name)
                tols[name] = OutputTolerance(
                    atol=atols.get(name, old.atol if old else 0.0), rtol=rtols.get(name, old.rtol if old else 0.0)
                )
            fields["tolerances"] = tols
            if args.min_agreement is not None:
                fields["min_argmax_agreement"] = args.min_agreement
            if args.max_accuracy_drop is not None:
                fields["max_accuracy_drop_pp"] = args.max_accuracy_drop
            criteria = Criteria.model_validate(fields)  # validated, unlike model_copy(update=...)
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(p) for p in err["loc"])
            raise SystemExit(f"ramanedge validate: invalid criteria: {where}: {err['msg']}") from None
    paths = args.data
    # one plain file: validate_model reads it itself and records the file's own SHA-256 in the report
    data = paths[0] if len(paths) == 1 and not read_options(args) else read_data(args)
    report = validate_model(args.model, args.run, data, provider=args.provider, criteria=criteria)
    print(report.to_json().rstrip("\n") if args.json else format_report(report))
    print(f"report: {report_path(args.model)}", file=sys.stderr)
    if not report.passed:
        print(f"ramanedge validate: FAILED: {report.reason}", file=sys.stderr)
        return 1
    return 0
