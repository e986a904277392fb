"""``ramanedge calibrate-unknown``: re-fit a model's unknown thresholds for a new instrument, without retraining.

Known spectra measured on the new instrument go through the model exactly as the daemon sends them (the
engine's own preprocessing and ONNX session, so torch and onnx are not needed: this runs on the edge box);
their embeddings give new per-class thresholds at the target false-unknown rate
(:func:`spectral_core.openset.calibrate_thresholds`). The result is a NEW model file: the graph and weights
byte for byte, the contract's ``open_set`` replaced (thresholds, target rate, how many spectra, their
fingerprint) and ``extra["unknown_calibration"]`` naming the file it came from. The new file is loaded and
self-tested as the daemon would before it is reported; the old file is never written to.

The contract lives in the ONNX ``metadata_props``; the file is rewritten at the protobuf level here (the
top-level ``ModelProto`` fields copied as they are, the contract entry replaced), so the ``onnx`` package is
not needed either.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from spectral_core.contract import METADATA_KEY, ModelContract
from spectral_core.errors import ContractError, DataError
from spectral_core.hashing import sha256_file
from spectral_core.openset import calibrate_thresholds, flag_unknown
from spectral_core.providers import PROVIDER_CHOICES, ProviderName
from spectral_core.spectrum import SpectralDataset

__all__ = ["CalibrationResult", "calibrate_unknown", "configure_calibrate_unknown", "replace_metadata",
           "run_calibrate_unknown"]

logger = logging.getLogger(__name__)

_METADATA_FIELD = 14  # ModelProto.metadata_props (repeated StringStringEntryProto: key = 1, value = 2)
_MAX_MODEL_BYTES = 2**31 - 1  # a protobuf message cannot be larger; bigger models keep weights outside


@dataclass
class CalibrationResult:
    """What ``calibrate-unknown`` did, for the JSON report."""

    model: str
    model_sha256: str
    out: str
    out_sha256: str
    unknown_rate: float
    spectra: int
    excluded: dict[int, str] = field(default_factory=dict)
    accuracy: float = 0.0
    false_unknown_before: float = 0.0
    false_unknown_after: float = 0.0
    thresholds_before: list[float] = field(default_factory=list)
    thresholds_after: list[float] = field(default_factory=list)
    threshold_rules: list[str] = field(default_factory=list)
    self_test: str = ""


# -- protobuf: the metadata entry, nothing else touched ----------------------------------------------------


def _read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise ContractError("the model file is not a valid ONNX protobuf (truncated varint)")
        b = buf[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value, pos
        shift += 7


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _len_field(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _fields(buf: bytes) -> list[tuple[int, int, int, bytes | None]]:
    """Top-level fields of a protobuf message: (number, start, end, payload of length-delimited ones)."""
    out: list[tuple[int, int, int, bytes | None]] = []
    pos = 0
    while pos < len(buf):
        start = pos
        tag, pos = _read_varint(buf, pos)
        number, wire = tag >> 3, tag & 7
        payload: bytes | None = None
        if wire == 0:
            _, pos = _read_varint(buf, pos)
        elif wire == 1:
            pos += 8
        elif wire == 5:
            pos += 4
        elif wire == 2:
            n, pos = _read_varint(buf, pos)
            payload = buf[pos : pos + n]
            pos += n
        else:
            raise ContractError(f"the model file is not a valid ONNX protobuf (wire type {wire})")
        if pos > len(buf) or number == 0:
            raise ContractError("the model file is not a valid ONNX protobuf (truncated field)")
        out.append((number, start, pos, payload))
    return out


def _entry_key(payload: bytes) -> str | None:
    for number, _, _, value in _fields(payload):
        if number == 1 and value is not None:
            return value.decode("utf-8", errors="replace")
    return None


def replace_metadata(model_bytes: bytes, key: str, value: str) -> bytes:
    """The serialised ONNX model with the ``metadata_props`` entry ``key`` set to ``value`` (others kept).

    Raises:
        ContractError: the bytes are not a protobuf message.
    """
    out = bytearray()
    for number, start, end, payload in _fields(model_bytes):
        if number == _METADATA_FIELD and payload is not None and _entry_key(payload) == key:
            continue
        out += model_bytes[start:end]
    out += _len_field(_METADATA_FIELD, _len_field(1, key.encode()) + _len_field(2, value.encode()))
    return bytes(out)


# -- the calibration ---------------------------------------------------------------------------------------


def _embed(engine: Any, ds: SpectralDataset) -> tuple[NDArray[np.int64], NDArray[np.float32], NDArray[np.float32],
                                                      dict[int, str]]:
    """Row indices kept, probabilities and embeddings of ``ds`` through the engine's preprocessing and model;
    rows that cannot be preprocessed are returned with the reason, never dropped silently."""
    reason = engine.prepare(np.asarray(ds.axis, dtype=np.float64))
    if reason is not None:
        raise DataError(f"the calibration spectra cannot be classified by this model: {reason}")
    Z, bad = engine.preprocessor.transform_rows(np.asarray(ds.X, dtype=np.float32), ds.axis)
    keep = np.asarray([i for i in range(ds.n_spectra) if i not in bad], dtype=np.int64)
    probs, embs = [], []
    for start in range(0, keep.size, engine.max_batch):
        p, e = engine.infer(Z[keep[start : start + engine.max_batch]])
        if e is None:
            raise ContractError("the model gives no embedding output; it cannot flag unknowns")
        probs.append(p)
        embs.append(e)
    k = len(engine.classes)
    P = np.concatenate(probs) if probs else np.zeros((0, k), np.float32)
    E = np.concatenate(embs) if embs else np.zeros((0, 0), np.float32)
    return keep, P, E, {int(i): str(why) for i, why in bad.items()}


def calibrate_unknown(
    model: str | Path,
    data: SpectralDataset,
    out: str | Path,
    *,
    unknown_rate: float = 0.05,
    force: bool = False,
    provider: ProviderName = "cpu",
) -> CalibrationResult:
    """Write ``out``: ``model`` with unknown thresholds fitted on the known spectra ``data``.

    Args:
        model: the ONNX model with a ramanedge contract (read only).
        data: labelled spectra of the model's classes (a subset of them is fine), on any axis the model's
            preprocessing accepts.
        out: the new model file; refused if it is ``model`` or exists (unless ``force``).
        unknown_rate: target share of known spectra flagged unknown, in (0, 1).
        force: overwrite an existing ``out``.
        provider: onnxruntime provider for the embeddings and the self-test.

    Raises:
        DataError: unlabelled data, classes the model does not know, no spectrum usable.
        ContractError: a model without open-set centroids, or whose file cannot be rewritten.
        SelfTestError: the new file fails the runtime's self-test (it is removed then).
    """
    from edge_runtime.engine import Engine

    src, dst = Path(model), Path(out)
    if dst.exists() and src.exists() and dst.resolve() == src.resolve():
        raise DataError("--out must be a new file: the model given is never overwritten")
    if dst.exists() and not force:
        raise DataError(f"{dst} exists; choose another --out or pass --force")
    if data.y is None:
        raise DataError("calibration spectra must be labelled with the model's class names")
    engine = Engine(src, provider=provider, self_test=True)
    contract = engine.contract
    if contract.open_set is None:
        raise ContractError(f"{src} carries no open-set centroids (exported without them): nothing to calibrate")
    foreign = [c for c in data.classes if c not in contract.classes]
    present = sorted({data.classes[int(i)] for i in np.unique(data.y)})
    if foreign and any(c in present for c in foreign):
        raise DataError(
            f"the calibration data hold class(es) {[c for c in foreign if c in present]} that the model does not "
            f"know (its classes: {contract.classes}); unknown thresholds are fitted on known spectra only"
        )
    to_model = np.asarray([contract.classes.index(c) if c in contract.classes else -1 for c in data.classes])
    keep, P, E, excluded = _embed(engine, data)
    if keep.size == 0:
        raise DataError(f"none of the {data.n_spectra} calibration spectra could be preprocessed: {excluded}")
    y = to_model[data.y[keep]]
    pred = P.argmax(axis=1).astype(np.int64)
    old_os = contract.open_set
    src_sha = engine.model_sha256
    new_os = calibrate_thresholds(
        old_os, E, pred, unknown_rate=unknown_rate,
        calibration=f"calibrate-unknown: {keep.size} known spectra of {len(present)} class(es) from "
                    f"{data.provenance.get('source', 'the calibration data')}",
        calibration_sha256=data.fingerprint(),
    )
    extra = {**contract.extra, "unknown_calibration": {
        "from_model_sha256": src_sha, "from_model": src.name, "at": datetime.now(UTC).isoformat(timespec="seconds"),
    }}
    try:
        new_contract = ModelContract.model_validate({**contract.model_dump(), "open_set": new_os.model_dump(),
                                                     "extra": extra})
    except ValueError as exc:
        raise ContractError(f"the recalibrated contract is invalid: {exc}") from None
    text = new_contract.to_metadata()[METADATA_KEY]
    blob = replace_metadata(src.read_bytes(), METADATA_KEY, text)
    if len(blob) > _MAX_MODEL_BYTES:
        raise ContractError("the model is too large to rewrite as one protobuf message")
    dst.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dst.parent, prefix=f".{dst.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(blob)
            f.flush()
            os.fsync(f.fileno())
        # The new file must load and pass the self-test the daemon runs, and read back the thresholds written.
        check = Engine(tmp, provider=provider, self_test=True)
        if check.contract != new_contract:
            raise ContractError("the rewritten model does not read back the contract written")
        os.replace(tmp, dst)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    before = flag_unknown(E, pred, old_os)
    after = flag_unknown(E, pred, new_os)
    result = CalibrationResult(
        model=str(src), model_sha256=src_sha, out=str(dst), out_sha256=sha256_file(dst), unknown_rate=unknown_rate,
        spectra=int(keep.size), excluded=excluded, accuracy=float((pred == y).mean()),
        false_unknown_before=float(before.mean()), false_unknown_after=float(after.mean()),
        thresholds_before=list(old_os.thresholds), thresholds_after=list(new_os.thresholds),
        threshold_rules=list(new_os.threshold_rules or []), self_test="passed",
    )
    logger.info("wrote %s (sha256 %s): false-unknown on the calibration spectra %.3f -> %.3f",
                dst, result.out_sha256[:12], result.false_unknown_before, result.false_unknown_after)
    return result


# -- command line ------------------------------------------------------------------------------------------


def configure_calibrate_unknown(p: argparse.ArgumentParser) -> None:
    from spectral_core.cli import add_data_option

    p.add_argument("model", metavar="MODEL.onnx", help="the exported model (never modified)")
    add_data_option(p, help="known spectra from the new instrument, labelled with the model's class names")
    p.add_argument("--unknown-rate", type=float, default=0.05, metavar="RATE",
                   help="target share of known spectra flagged unknown (default 0.05)")
    p.add_argument("--out", required=True, metavar="NEW.onnx", help="the new model file to write")
    p.add_argument("--force", action="store_true", help="overwrite an existing --out")
    p.add_argument("--provider", default="cpu", choices=PROVIDER_CHOICES, help="onnxruntime provider (default cpu)")


def run_calibrate_unknown(args: argparse.Namespace) -> int:
    from spectral_core.cli import read_data

    ds = read_data(args)
    result = calibrate_unknown(args.model, ds, args.out, unknown_rate=args.unknown_rate, force=args.force,
                               provider=args.provider)
    print(  # noqa: T201 (a command's user message)
        f"calibrate-unknown: {result.spectra} spectra, accuracy {result.accuracy:.3f}; false unknown on them "
          f"{result.false_unknown_before:.3f} -> {result.false_unknown_after:.3f} (target {result.unknown_rate:g}); "
          f"wrote {result.out}. A validation report (--require-validated) names the old file: re-run "
          "`ramanedge validate` on the new one where that is required.", file=sys.stderr, flush=True,
    )
    print(json.dumps(asdict(result)))  # noqa: T201 (the command's result)
    return 0
