"""Helpers shared by the readers: decoding text safely, reader options (axis, labels, class names), and
turning data-model errors into :class:`ReaderError` that name the file."""

from __future__ import annotations

import json
import logging
import re
import zlib
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from spectral_core.errors import DataError, ReaderError
from spectral_core.spectrum import SpectralDataset

__all__ = [
    "BAD_SPECTRA_POLICIES",
    "BadSpectraError",
    "bad_spectra_policy",
    "bounded_header",
    "cell_float",
    "classes_and_indices",
    "compressed_limit",
    "concat_datasets",
    "decode_text",
    "gunzip",
    "header_number",
    "is_gzip",
    "make_dataset",
    "parse_axis_option",
    "parse_class_names",
    "parse_labels_option",
    "quote",
    "quote_list",
    "resample_dataset",
    "skipped_spectra",
    "spectra_policy",
    "starts_with_number",
    "wavelength_to_shift",
]

logger = logging.getLogger(__name__)

_AXIS_SPEC = re.compile(r"^\s*([-+0-9.eE]+)\s*:\s*([-+0-9.eE]+)\s*:\s*(\d+)\s*$")
# C0 controls other than tab, LF, VT, FF, CR and the DOS end-of-file marker; DEL; C1 controls.
_CONTROL = bytes(sorted(set(range(0x20)) - {0x09, 0x0A, 0x0B, 0x0C, 0x0D, 0x1A} | {0x7F} | set(range(0x80, 0xA0))))


GZIP_MAGIC = b"\x1f\x8b"
#: what a reader does with the bad spectra (NaN/inf values, a row of the wrong length) of a multi-spectrum file
BAD_SPECTRA_POLICIES = ("error", "skip")
_POLICY: ContextVar[str | None] = ContextVar("bad_spectra_policy", default=None)
_REASONS_SHOWN = 5  # bad spectra named in one error message (all are counted)
DEFAULT_MAX_DECOMPRESSED_MB = 256.0
QUOTE_CHARS = 40


def quote(text: str, limit: int = QUOTE_CHARS) -> str:
    """``repr`` of at most ``limit`` characters of file content, for error messages: a 50 MB line never ends
    up whole in a message or a quarantine record."""
    if len(text) <= limit:
        return repr(text)
    return f"{text[:limit]!r}... ({len(text)} characters)"


def quote_list(items: Sequence[str], limit: int = 8) -> str:
    """At most ``limit`` items, each bounded by :func:`quote`, and how many there are in all."""
    shown = ", ".join(quote(str(i)) for i in list(items)[:limit])
    return f"[{shown}]" if len(items) <= limit else f"[{shown}, ...] ({len(items)} in all)"


def starts_with_number(head: bytes) -> bool:
    """Whether text begins (after blanks and a UTF-8 BOM) with a digit, sign or point: plain numeric data, which
    no vendor text format does; lets their content tests return at once for the common file."""
    first = head[:64].lstrip(b"\xef\xbb\xbf \t\r\n")[:1]
    return first != b"" and first in b"0123456789+-."


def is_gzip(head: bytes) -> bool:
    """Whether bytes start with the gzip magic (RFC 1952: 1f 8b, deflate method 08)."""
    return head[:3] == GZIP_MAGIC + b"\x08"


def compressed_limit(max_mb: float | None = None) -> int:
    """The largest gzip file (bytes) whose content can stay under ``max_mb`` MiB: a deflate stream is never more
    than a few bytes a block larger than its content, so a larger file must hold more and is refused unread."""
    limit = int((DEFAULT_MAX_DECOMPRESSED_MB if max_mb is None else float(max_mb)) * 1024 * 1024)
    return limit + limit // 100 + 65536


def gunzip(raw: bytes, path: str | Path, max_mb: float | None = None) -> bytes:
    """Decompress gzip bytes (all members), refusing more than ``max_mb`` MiB of output (default 256).

    The cap is checked while decompressing, in bounded steps, so a decompression bomb never allocates more
    than the cap.

    Raises:
        ReaderError: corrupt or truncated stream (with the compressed offset), or output beyond the cap.
    """
    limit_mb = DEFAULT_MAX_DECOMPRESSED_MB if max_mb is None else float(max_mb)
    if not limit_mb > 0:
        raise ReaderError(path, f"max_decompressed_mb must be positive, got {max_mb!r}")
    limit = int(limit_mb * 1024 * 1024)
    if len(raw) > compressed_limit(limit_mb):
        raise ReaderError(path, f"gzip file of {len(raw)} bytes cannot hold under {limit_mb:g} MiB of data "
                          "(max_decompressed_mb option)")
    out: list[bytes] = []
    size = 0
    pos = 0
    step = 1 << 20
    while pos < len(raw):
        d = zlib.decompressobj(wbits=31)  # 16 + MAX_WBITS: gzip header and trailer
        data = raw[pos:]
        try:
            while True:
                # max_length bounds each step's output; the input it did not reach waits in unconsumed_tail
                chunk = d.decompress(data, step)
                data = d.unconsumed_tail
                size += len(chunk)
                if size > limit:
                    raise ReaderError(
                        path, f"gzip content exceeds {limit_mb:g} MiB once decompressed (max_decompressed_mb "
                        "option); refused as a possible decompression bomb"
                    )
                out.append(chunk)
                if d.eof or (not data and not chunk):
                    break
        except zlib.error as exc:
            raise ReaderError(
                path, f"corrupt gzip stream in the member starting at byte {pos}: {exc}; expected deflate data"
            ) from None
        if not d.eof:
            raise ReaderError(
                path, f"truncated gzip stream: the member starting at byte {pos} ends at byte {len(raw)} without "
                "its end-of-stream marker and CRC trailer"
            )
        pos = len(raw) - len(d.unused_data)
        rest = d.unused_data
        if rest and not is_gzip(rest[:3]):
            if rest.strip(b"\x00"):
                raise ReaderError(path, f"byte {pos}: data after the gzip stream is not another gzip member")
            break
    return b"".join(out)


def cell_float(cell: str, path: str | Path, line: int, column: int, *, decimal_comma: bool = False) -> float:
    """One numeric cell of a vendor text export; errors name the line and column (1-based).

    Raises:
        ReaderError: an empty, non-numeric or non-finite cell.
    """
    text = cell.strip().replace(",", ".") if decimal_comma else cell.strip()
    if not text:
        raise ReaderError(path, f"line {line}, column {column}: an empty cell where a number was expected")
    try:
        value = float(text)
    except ValueError:
        raise ReaderError(path, f"line {line}, column {column}: {quote(cell)} is not a number") from None
    if not np.isfinite(value):
        raise ReaderError(path, f"line {line}, column {column}: non-finite value {quote(cell)}")
    return value


def header_number(header: dict[str, str], pattern: str) -> float | None:
    """The first number in the value of the first header key matching ``pattern`` (case-insensitive)."""
    rx = re.compile(pattern, re.IGNORECASE)
    for key, value in header.items():
        if rx.search(key):
            m = re.search(r"[-+]?\d+(?:[.,]\d*)?(?:[eE][-+]?\d+)?", value)
            if m:
                v = float(m.group(0).replace(",", "."))
                return v if np.isfinite(v) else None
    return None


def wavelength_to_shift(
    nm: NDArray[np.float64], excitation_nm: float, path: str | Path
) -> NDArray[np.float64]:
    """Raman shift (cm^-1) of absolute wavelengths ``nm`` with the laser at ``excitation_nm``:
    1e7/excitation - 1e7/wavelength (anti-Stokes wavelengths give negative shifts).

    Raises:
        ReaderError: a non-positive excitation or wavelength.
    """
    if not excitation_nm > 0 or not np.isfinite(excitation_nm):
        raise ReaderError(path, f"the excitation wavelength must be a positive number of nm, got {excitation_nm!r}")
    if np.any(nm <= 0):
        raise ReaderError(path, "non-positive wavelengths on the axis; expected nm")
    return np.asarray(1e7 / float(excitation_nm) - 1e7 / nm, dtype=np.float64)


def bounded_header(pairs: Sequence[tuple[str, str]], limit: int = 2000) -> dict[str, str]:
    """Header ``(key, value)`` pairs as metadata: keys up to 80 characters, values up to 1,000, at most
    ``limit`` entries (a header line is file content: never kept unbounded)."""
    out: dict[str, str] = {}
    for key, value in pairs[:limit]:
        out[key.strip()[:80]] = value.strip()[:1000]
    return out


def decode_text(raw: bytes, path: str | Path, encoding: str | None = None) -> tuple[str, str]:
    """Decode a text file; returns (text, encoding used).

    UTF-8 (with or without BOM) first, UTF-16 when a UTF-16 BOM is present, then Latin-1 only when the bytes
    look like text (no NUL, no control characters): binary junk is refused, never decoded into garbage.

    Raises:
        ReaderError: empty, binary, or not decodable with ``encoding``.
    """
    if not raw.strip():
        raise ReaderError(path, "empty file")
    if encoding is not None:
        try:
            return raw.decode(encoding), encoding
        except (UnicodeDecodeError, LookupError) as exc:
            raise ReaderError(path, f"cannot decode as {encoding}: {str(exc)[:200]}") from None
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return raw.decode("utf-16"), "utf-16"
        except UnicodeDecodeError as exc:
            raise ReaderError(path, f"has a UTF-16 byte-order mark but is not valid UTF-16 ({str(exc)[:200]})") from None
    if b"\x00" in raw:
        i = raw.index(b"\x00")
        head = raw[:4000]
        if head[1::2].count(0) > 0.9 * len(head[1::2]) or head[0::2].count(0) > 0.9 * len(head[0::2]):
            raise ReaderError(
                path, "looks like UTF-16 text without a byte-order mark; pass encoding='utf-16-le' (or -be)"
            )
        raise ReaderError(path, f"binary content (NUL byte at offset {i}), not a text file")
    try:
        return raw.decode("utf-8-sig"), "utf-8"
    except UnicodeDecodeError as exc:
        bad = sum(raw.count(bytes([c])) for c in _CONTROL)
        if bad:
            raise ReaderError(
                path,
                f"wrong encoding: not UTF-8 (byte 0x{raw[exc.start]:02x} at offset {exc.start}) and "
                f"{bad} control byte(s) suggest binary data",
            ) from None
        logger.info("%s is not UTF-8; decoding as Latin-1", path)
        return raw.decode("latin-1"), "latin-1"


def read_bytes(path: Path) -> bytes:
    """Read a whole file, turning OS errors into :class:`ReaderError`."""
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ReaderError(path, f"cannot read ({exc.strerror or exc})") from None


def parse_axis_option(value: Any, path: str | Path) -> NDArray[np.float64]:
    """The ``axis=`` option: ``"START:STOP:POINTS"`` (cm^-1, inclusive), a ``.npy``/``.txt`` file, or an array.

    Raises:
        ReaderError: malformed specification or unreadable axis file (named with the data file).
    """
    if isinstance(value, (str, Path)):
        text = str(value)
        m = _AXIS_SPEC.match(text)
        if m:
            try:
                start, stop, points = float(m.group(1)), float(m.group(2)), int(m.group(3))
            except ValueError:
                raise ReaderError(path, f"axis option {text!r} is not START:STOP:POINTS") from None
            if points < 2 or not stop > start:
                raise ReaderError(path, f"axis option {text!r} needs STOP > START and POINTS >= 2")
            return np.linspace(start, stop, points, dtype=np.float64)
        ap = Path(text)
        if not ap.is_file():
            raise ReaderError(path, f"axis option {text!r} is neither START:STOP:POINTS nor an existing file")
        try:
            if ap.suffix.lower() == ".npy":
                arr = np.load(ap, allow_pickle=False)
            else:
                arr = np.loadtxt(ap, dtype=np.float64, ndmin=1)
        except (OSError, ValueError) as exc:
            raise ReaderError(path, f"cannot read the axis file {ap}: {exc}") from None
    else:
        arr = np.asarray(value)
    if arr.dtype.kind not in "fiu":
        raise ReaderError(path, f"axis option holds non-numeric values (dtype {arr.dtype})")
    arr = np.asarray(arr, dtype=np.float64)
    if arr.ndim == 2 and 1 in arr.shape:
        arr = arr.ravel()
    return arr


def parse_class_names(value: Any, path: str | Path) -> list[str]:
    """The ``class_names=`` option: a sequence, ``"a,b,c"``, or a ``.json`` (a list, or ``{"classes": [...]}``)
    or ``.txt`` (one name a line) file."""
    if isinstance(value, (str, Path)):
        text = str(value)
        p = Path(text)
        if p.suffix.lower() in (".json", ".txt") and p.is_file():
            try:
                content = p.read_text(encoding="utf-8")
                if p.suffix.lower() == ".json":
                    obj = json.loads(content)
                    names = obj.get("classes") if isinstance(obj, dict) else obj
                    if not isinstance(names, list):
                        raise ValueError("expected a list or an object with a 'classes' list")
                else:
                    names = [ln.strip() for ln in content.splitlines() if ln.strip()]
            except (OSError, ValueError) as exc:
                raise ReaderError(path, f"cannot read class names from {p}: {exc}") from None
            return [str(n) for n in names]
        return [s.strip() for s in text.split(",")]
    if isinstance(value, (Sequence, np.ndarray)):
        return [str(v) for v in value]
    raise ReaderError(path, f"class_names must be a list or 'a,b,c', got {type(value).__name__}")


def _labels_array(value: Any, path: str | Path) -> NDArray[Any]:
    if isinstance(value, (str, Path)):
        lp = Path(value)
        if not lp.is_file():
            raise ReaderError(path, f"labels file {lp} does not exist")
        try:
            if lp.suffix.lower() == ".npy":
                return np.asarray(np.load(lp, allow_pickle=False))
            if lp.suffix.lower() == ".json":
                obj = json.loads(lp.read_text(encoding="utf-8"))
                return np.asarray(obj.get("labels") if isinstance(obj, dict) else obj)
            return np.asarray([ln.strip() for ln in lp.read_text(encoding="utf-8").splitlines() if ln.strip()])
        except (OSError, ValueError) as exc:
            raise ReaderError(path, f"cannot read labels from {lp}: {exc}") from None
    return np.asarray(value)


def classes_and_indices(
    raw: NDArray[Any], n: int, path: str | Path, class_names: Any = None, what: str = "labels"
) -> tuple[NDArray[np.int64], tuple[str, ...]]:
    """Turn raw labels (integer or integral-float indices, one-hot rows, or strings) into (y, classes).

    Indices keep their meaning: index ``i`` is ``class_names[i]`` (or the name ``"i"`` when none given).
    String labels become classes in ``class_names`` order, or sorted.
    """
    lab = np.asarray(raw)
    if lab.ndim == 2 and lab.shape[0] == n and lab.shape[1] > 1 and lab.dtype.kind in "biuf":
        ok = np.isin(lab, (0, 1)).all() and np.all(lab.sum(axis=1) == 1)
        if not ok:
            raise ReaderError(path, f"{what} are 2-D {lab.shape} but not one-hot (rows of 0/1 with a single 1)")
        n_classes = lab.shape[1]
        y = np.argmax(lab, axis=1).astype(np.int64)
    else:
        if lab.ndim == 2 and 1 in lab.shape:
            lab = lab.ravel()
        if lab.ndim != 1:
            raise ReaderError(path, f"{what} must be 1-D indices or 2-D one-hot, got shape {lab.shape}")
        if lab.shape[0] != n:
            raise ReaderError(path, f"{what} hold {lab.shape[0]} entries but the file has {n} spectra")
        if lab.dtype.kind in "US":
            strs = lab.astype(str).tolist()
            names = parse_class_names(class_names, path) if class_names is not None else sorted(set(strs))
            lookup = {s: i for i, s in enumerate(names)}
            unknown = sorted(set(strs) - set(lookup))
            if unknown:
                raise ReaderError(path, f"{what} {quote_list(unknown)} are not among the classes {quote_list(names)}")
            return np.array([lookup[s] for s in strs], dtype=np.int64), tuple(names)
        if lab.dtype.kind == "b" or lab.dtype.kind not in "iuf":
            raise ReaderError(path, f"{what} must be class indices, got dtype {lab.dtype}")
        if lab.dtype.kind == "f":
            if not np.all(np.isfinite(lab)):
                raise ReaderError(path, f"{what} hold NaN/inf")
            if not np.all(np.mod(lab, 1) == 0):
                raise ReaderError(path, f"{what} hold non-integer values (e.g. {lab[np.mod(lab, 1) != 0][0]:g})")
        y = lab.astype(np.int64)
        if y.size and y.min() < 0:
            raise ReaderError(path, f"{what} hold a negative class index ({int(y.min())})")
        n_classes = int(y.max()) + 1 if y.size else 0
    if class_names is None:
        return y, tuple(str(i) for i in range(n_classes))
    names = parse_class_names(class_names, path)
    if len(names) < n_classes:
        raise ReaderError(path, f"{len(names)} class names given but {what} use {n_classes} classes")
    if len(set(names)) != len(names):
        raise ReaderError(path, f"class names are not distinct: {names}")
    return y, tuple(names)


def parse_labels_option(
    value: Any, n: int, path: str | Path, class_names: Any = None
) -> tuple[NDArray[np.int64], tuple[str, ...]]:
    """The ``labels=`` option: a .npy/.json/.txt file or an array of indices, one-hot rows or names."""
    return classes_and_indices(_labels_array(value, path), n, path, class_names)


class BadSpectraError(ReaderError):
    """Some spectra of a file are bad (NaN/inf values, a map row of the wrong length).

    Attributes:
        bad: ``(index in the file, reason)`` of each bad spectrum, 0-based, in file order.
        n: the number of spectra in the file.
    """

    def __init__(self, path: str | Path, bad: Sequence[tuple[int, str]], n: int) -> None:
        self.bad = list(bad)
        self.n = n
        shown = "; ".join(f"spectrum #{k}: {why}" for k, why in self.bad[:_REASONS_SHOWN])
        more = f"; ... ({len(self.bad)} in all)" if len(self.bad) > _REASONS_SHOWN else ""
        if n == 1:
            reason = self.bad[0][1]
        elif len(self.bad) == n:
            reason = f"all {n} spectra are bad: {shown}{more}"
        else:
            reason = (f"{len(self.bad)} of {n} spectra are bad: {shown}{more}; pass bad_spectra=skip "
                      "(--bad-spectra skip) to leave them out")
        super().__init__(path, reason)

    @property
    def partly(self) -> bool:
        """Whether some spectra of the file are good."""
        return 0 < len(self.bad) < self.n


def bad_spectra_policy() -> str | None:
    """The policy for bad spectra of the file being read (``"error"`` or ``"skip"``), None outside
    :func:`spectra_policy` (a reader called on its own refuses the file at its first bad value, as always)."""
    return _POLICY.get()


@contextmanager
def spectra_policy(policy: str, path: str | Path) -> Iterator[None]:
    """Read one file under a policy for its bad spectra: readers of multi-spectrum files let NaN/inf values
    (and map rows of the wrong length) through to :func:`make_dataset`, which names the bad spectra
    (``"error"``) or leaves them out and lists them in ``provenance["skipped_spectra"]`` (``"skip"``).

    Raises:
        ReaderError: an unknown policy.
    """
    if policy not in BAD_SPECTRA_POLICIES:
        raise ReaderError(path, f"bad_spectra must be one of {BAD_SPECTRA_POLICIES}, got {quote(str(policy))}")
    token = _POLICY.set(policy)
    try:
        yield
    finally:
        _POLICY.reset(token)


def _bad_rows(X: NDArray[Any], axis: Any, known: Mapping[int, str]) -> list[tuple[int, str]]:
    """``(index, reason)`` of each spectrum (row of ``X``) holding a NaN/inf value or named in ``known``."""
    bad_mask = ~np.isfinite(X)
    rows = np.flatnonzero(bad_mask.any(axis=1)).tolist()
    out: dict[int, str] = {k: why for k, why in known.items() if 0 <= k < X.shape[0]}
    ax = np.asarray(axis, dtype=np.float64) if axis is not None else None
    for r in rows:
        if r in out:
            continue
        j = int(np.flatnonzero(bad_mask[r])[0])
        at = f" ({ax[j]:g} cm^-1)" if ax is not None and ax.shape == (X.shape[1],) and np.isfinite(ax[j]) else ""
        out[r] = f"{int(bad_mask[r].sum())} NaN/inf value(s), first at point {j}{at}"
    return sorted(out.items())


def _apply_policy(path: str | Path, policy: str, fields: dict[str, Any], known: Mapping[int, str]) -> dict[str, Any]:
    """``fields`` of a dataset less its bad spectra (policy ``"skip"``), or a :class:`BadSpectraError`."""
    try:
        X = np.asarray(fields.get("X"))
    except (TypeError, ValueError):
        return fields  # the data model names what is wrong
    if X.ndim != 2 or X.shape[0] == 0 or X.dtype.kind not in "fc":
        return fields
    bad = _bad_rows(X, fields.get("axis"), known)
    if not bad:
        return fields
    n = X.shape[0]
    if policy == "error" or len(bad) == n:
        raise BadSpectraError(path, bad, n)
    keep = np.ones(n, dtype=bool)
    keep[[k for k, _ in bad]] = False
    out = dict(fields)
    out["X"] = X[keep]
    for key in ("y", "groups"):
        if out.get(key) is not None:
            out[key] = np.asarray(out[key])[keep]
    if out.get("meta"):
        out["meta"] = {k: np.asarray(v)[keep] for k, v in out["meta"].items()}
    out["provenance"] = {
        **(out.get("provenance") or {}),
        "spectra_in_file": n,
        "skipped_spectra": [{"source": str(path), "index": k, "reason": why} for k, why in bad],
    }
    logger.warning("%s: %d of %d spectra left out (bad_spectra=skip): %s", path, len(bad), n,
                   "; ".join(f"#{k}: {why}" for k, why in bad[:_REASONS_SHOWN]))
    return out


def make_dataset(path: str | Path, *, bad_reasons: Mapping[int, str] | None = None, **fields: Any) -> SpectralDataset:
    """Build a :class:`SpectralDataset`, reporting any validation failure as a :class:`ReaderError`.

    Inside :func:`spectra_policy` (every file :func:`read_dataset` reads), spectra with NaN/inf values, or
    named in ``bad_reasons`` (index -> why, e.g. a row of the wrong length), are named in a
    :class:`BadSpectraError` or left out, as the policy says.
    """
    policy = _POLICY.get()
    if policy is not None:
        fields = _apply_policy(path, policy, fields, bad_reasons or {})
    try:
        return SpectralDataset(**fields)
    except DataError as exc:
        if isinstance(exc, ReaderError):
            raise
        raise ReaderError(path, str(exc)) from None


def concat_datasets(
    datasets: Sequence[SpectralDataset], *, class_names: Sequence[str] | None = None, source: str = "concatenation"
) -> SpectralDataset:
    """Stack datasets measured on the same axis; classes merge in order of first appearance (or ``class_names``).

    Raises:
        ReaderError: axes differ (resample explicitly first), or labelled and unlabelled data are mixed.
    """
    if not datasets:
        raise ReaderError(source, "no datasets to combine")
    first = datasets[0]
    for d in datasets[1:]:
        if d.axis.shape != first.axis.shape or not np.allclose(d.axis, first.axis, rtol=1e-9, atol=1e-9):
            raise ReaderError(
                d.provenance.get("source", source),
                f"axis ({d.n_points} points, {d.axis[0]:g}-{d.axis[-1]:g} cm^-1) differs from that of "
                f"{first.provenance.get('source', 'the first')} ({first.n_points} points, "
                f"{first.axis[0]:g}-{first.axis[-1]:g} cm^-1); resample onto one axis first",
            )
    labelled = [d.y is not None for d in datasets]
    if any(labelled) and not all(labelled):
        i = labelled.index(False)
        raise ReaderError(datasets[i].provenance.get("source", source), "has no labels while the others have")
    X = np.concatenate([d.X for d in datasets], axis=0)
    y = None
    names: list[str] = list(class_names) if class_names is not None else []
    if all(labelled):
        for d in datasets:
            for c in d.classes:
                if c not in names:
                    if class_names is not None:
                        raise ReaderError(d.provenance.get("source", source), f"class {quote(c)} is not in {quote_list(names)}")
                    names.append(c)
        lookup = {c: i for i, c in enumerate(names)}
        y = np.concatenate(
            [np.array([lookup[c] for c in d.classes], dtype=np.int64)[d.y] for d in datasets if d.y is not None]
        )
    groups = None
    if all(d.groups is not None for d in datasets):
        groups = np.concatenate([np.asarray(d.groups, dtype=str) for d in datasets])
    meta = _concat_meta(datasets, source)
    provenance: dict[str, Any] = {
        "source": source,
        "reader": "concat",
        "parts": [
            {"source": d.provenance.get("source"), "reader": d.provenance.get("reader"), "spectra": d.n_spectra}
            for d in datasets
        ],
    }
    skipped = skipped_spectra(datasets)
    if skipped:
        provenance["skipped_spectra"] = skipped
    return make_dataset(
        source, X=X, axis=first.axis, y=y, classes=tuple(names), groups=groups, provenance=provenance, meta=meta
    )


def skipped_spectra(datasets: Sequence[SpectralDataset]) -> list[dict[str, Any]]:
    """The spectra that ``bad_spectra=skip`` left out of each dataset: ``{"source", "index", "reason"}`` each
    (``index`` counts the spectra of that file from 0)."""
    out: list[dict[str, Any]] = []
    for d in datasets:
        for e in d.provenance.get("skipped_spectra") or ():
            out.append({"source": e.get("source", d.provenance.get("source")), "index": e["index"],
                        "reason": e["reason"]})
    return out


def _concat_meta(datasets: Sequence[SpectralDataset], source: str) -> dict[str, NDArray[Any]]:
    """Per-spectrum columns of stacked datasets: a column all parts have is stacked; one that only some parts
    have is filled (NaN for numbers, "" for text) so that no part's values are lost."""
    keys = list(dict.fromkeys(k for d in datasets for k in d.meta))
    out: dict[str, NDArray[Any]] = {}
    for key in keys:
        cols = [d.meta.get(key) for d in datasets]
        present = [c for c in cols if c is not None]
        if len(present) == len(cols):
            out[key] = np.concatenate(present)
            continue
        logger.debug("%s: meta column %r is missing in some parts; filled", source, key)
        text = any(c.dtype.kind == "U" for c in present)
        fill: Any = "" if text else np.nan
        out[key] = np.concatenate([
            (c.astype(str) if text else c.astype(np.float64)) if c is not None else np.full(d.n_spectra, fill)
            for c, d in zip(cols, datasets, strict=True)
        ])
    return out


def resample_dataset(ds: SpectralDataset, target: NDArray[np.float64], path: str | Path) -> SpectralDataset:
    """``ds`` on the axis ``target`` (cm^-1) by not-a-knot cubic spline, as the ``resample=`` reader option.

    Used to bring files measured on different axes (e.g. single RRUFF spectra in class folders) onto one
    axis; only on request, and never by extrapolation. The spline is the preprocessing's own
    (:func:`spectral_core.preprocess.resample`), so data resampled here equal what serving computes.

    Raises:
        ReaderError: ``target`` reaches outside the file's measured range.
    """
    from spectral_core.preprocess import resample

    lo, hi = float(ds.axis[0]), float(ds.axis[-1])
    tol = 1e-9 * (hi - lo)
    if target[0] < lo - tol or target[-1] > hi + tol:
        raise ReaderError(
            path,
            f"resample target {target[0]:g}-{target[-1]:g} cm^-1 reaches outside the measured range "
            f"{lo:g}-{hi:g} cm^-1 (extrapolation would invent data)",
        )
    if ds.axis.shape == target.shape and np.array_equal(ds.axis, target):
        return ds
    try:
        X = resample(ds.X, ds.axis, target, interpolation="cubic")
    except DataError as exc:  # a target axis that is not strictly increasing
        raise ReaderError(path, str(exc)) from None
    prov = {**ds.provenance, "resampled": {"from": [lo, hi, int(ds.axis.size)], "method": "cubic spline"}}
    return make_dataset(
        path, X=X, axis=target, y=ds.y, classes=ds.classes, groups=ds.groups, provenance=prov, meta=ds.meta
    )
