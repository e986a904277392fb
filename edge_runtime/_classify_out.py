"""Writers of ``ramanedge classify``: results as .csv or .npz, streamed, and a class image PNG for a map.

Both writers take results a chunk at a time and keep nothing per spectrum in memory: the CSV is written row by
row, the .npz column by column into temporary files beside the output (strings one JSON line each, numbers raw),
then zipped member by member in bounded pieces. The output appears only when it is complete (temporary file,
then rename), so an interrupted run never leaves a truncated results file under the requested name.

The PNG is written with zlib and struct (no imaging library: the command works with the daemon's light install).
"""

from __future__ import annotations

import csv
import json
import logging
import os
import shutil
import struct
import tempfile
import time
import zipfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np
from numpy.typing import NDArray

from spectral_core.errors import DataError

__all__ = [
    "BACKGROUND_RGB",
    "ERROR_RGB",
    "OUTPUT_SUFFIXES",
    "UNKNOWN_RGB",
    "CsvWriter",
    "MapImage",
    "NpzWriter",
    "ResultWriter",
    "Rows",
    "class_colours",
    "open_writer",
    "write_png",
]

logger = logging.getLogger(__name__)

OUTPUT_SUFFIXES = (".npz", ".csv")
#: a map cell with no spectrum, a spectrum that failed, a spectrum flagged unknown (open set)
BACKGROUND_RGB = (255, 255, 255)
ERROR_RGB = (0, 0, 0)
UNKNOWN_RGB = (128, 128, 128)
# Ten well-separated colours (the usual qualitative palette, as plain numbers); more classes get hues spaced
# by the golden angle at full saturation, never white, black or grey (those mean no spectrum/error/unknown).
_PALETTE = (
    (31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
    (140, 86, 75), (227, 119, 194), (188, 189, 34), (23, 190, 207), (255, 187, 120),
)
#: string members of the .npz are decoded and written this many rows at a time (bounded memory)
_STRING_ROWS = 8192
#: the longest map image side, pixels; maps are scaled up by a whole factor to about this size
_MAP_TARGET_PX = 512
#: a map whose bounding grid has more cells than this (or more than 4 per spectrum) is no image
_MAX_MAP_CELLS = 16_000_000


@dataclass
class Rows:
    """Results of consecutive spectra (one chunk), column by column. Failed rows have ``class_index`` -1.

    Attributes:
        source: the input file of these rows (a chunk never spans two files).
        index: each spectrum's index in the file (counted from 0), -1 for an input that could not be read at
            all; the reference of a row is ``file#index`` (:meth:`ref`), or ``file`` alone for -1.
        class_index: index into the model's classes, -1 for an error row.
        probabilities: [n, C] softmax probabilities; NaN for an error row.
        unknown: 1 flagged unknown by the open set, 0 not, -1 no open-set data in the model or an error row.
        distance: cosine distance of the embedding to the predicted class's centroid (the unknown score);
            NaN without open-set data or for an error row.
        drift: 1 flagged by the model's drift model (Hotelling T^2 or Q beyond its limit), 0 not, -1 no drift
            model in the contract or an error row; ``drift_t2``/``drift_q``: the two statistics (NaN then).
        edge_fill: [n, 2] cm^-1 of the model axis filled from the nearest measured point below and above
            (the axis policy, docs/calibration.md); 0 when the measured range covers the model axis.
        x, y: map coordinates as the file gives them (NaN when the input is no map).
        error_kind: ``read``, ``input``, ``preprocess``, ``inference`` or ``internal``; empty when classified.
        error: the reason; empty when classified.
    """

    source: str
    index: NDArray[np.int64]
    class_index: NDArray[np.int32]
    probabilities: NDArray[np.float32]
    unknown: NDArray[np.int8]
    distance: NDArray[np.float32]
    drift: NDArray[np.int8]
    drift_t2: NDArray[np.float32]
    drift_q: NDArray[np.float32]
    edge_fill: NDArray[np.float32]
    x: NDArray[np.float64]
    y: NDArray[np.float64]
    error_kind: list[str]
    error: list[str]

    def __len__(self) -> int:
        return int(self.index.size)

    def ref(self, i: int) -> str:
        """The input reference of row ``i``: ``file#k``, or ``file`` for an input that could not be read."""
        k = int(self.index[i])
        return self.source if k < 0 else f"{self.source}#{k}"

    @classmethod
    def empty(cls, source: str, index: NDArray[np.int64], n_classes: int) -> Rows:
        """Rows with nothing filled in yet: every row an error until set (kind ``internal``)."""
        n = int(index.size)
        return cls(
            source=source,
            index=np.asarray(index, dtype=np.int64),
            class_index=np.full(n, -1, dtype=np.int32),
            probabilities=np.full((n, n_classes), np.nan, dtype=np.float32),
            unknown=np.full(n, -1, dtype=np.int8),
            distance=np.full(n, np.nan, dtype=np.float32),
            drift=np.full(n, -1, dtype=np.int8),
            drift_t2=np.full(n, np.nan, dtype=np.float32),
            drift_q=np.full(n, np.nan, dtype=np.float32),
            edge_fill=np.zeros((n, 2), dtype=np.float32),
            x=np.full(n, np.nan),
            y=np.full(n, np.nan),
            error_kind=["internal"] * n,
            error=["not classified"] * n,
        )


class ResultWriter:
    """Common interface of the two writers; use as a context manager (the output appears on a clean exit)."""

    def __init__(self, path: Path, classes: Sequence[str]) -> None:
        self.path = Path(path)
        self.classes = list(classes)
        self.rows = 0

    def write(self, rows: Rows) -> None:
        raise NotImplementedError

    def _commit(self) -> None:
        raise NotImplementedError

    def _abort(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> ResultWriter:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            self._commit()
        else:
            self._abort()


def _fmt(v: float) -> str:
    return "" if not np.isfinite(v) else repr(float(v))


class CsvWriter(ResultWriter):
    """One CSV row per spectrum: ``ref, status, class, class_index, confidence, unknown, unknown_score,
    edge_fill_low_cm1, edge_fill_high_cm1, x, y, error_kind, error`` and ``p_<class>`` per class."""

    def __init__(self, path: Path, classes: Sequence[str]) -> None:
        super().__init__(path, classes)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".tmp")
        self._tmp = Path(tmp)
        self._f: IO[str] = os.fdopen(fd, "w", encoding="utf-8", newline="")
        self._w = csv.writer(self._f)
        self._w.writerow(["ref", "status", "class", "class_index", "confidence", "unknown", "unknown_score",
                          "drift", "drift_t2", "drift_q",
                          "edge_fill_low_cm1", "edge_fill_high_cm1", "x", "y", "error_kind", "error",
                          *(f"p_{c}" for c in self.classes)])

    def write(self, rows: Rows) -> None:
        for i in range(len(rows)):
            c = int(rows.class_index[i])
            ok = c >= 0
            p = rows.probabilities[i]
            u = int(rows.unknown[i])
            d = int(rows.drift[i])
            self._w.writerow([
                rows.ref(i), "ok" if ok else "error", self.classes[c] if ok else "", c if ok else "",
                _fmt(p[c]) if ok else "", "" if u < 0 else u, _fmt(rows.distance[i]),
                "" if d < 0 else d, _fmt(rows.drift_t2[i]), _fmt(rows.drift_q[i]),
                _fmt(rows.edge_fill[i, 0]) if ok else "", _fmt(rows.edge_fill[i, 1]) if ok else "",
                _fmt(rows.x[i]), _fmt(rows.y[i]), rows.error_kind[i], rows.error[i],
                *(_fmt(v) for v in p),
            ])
        self.rows += len(rows)

    def _commit(self) -> None:
        self._f.close()
        os.replace(self._tmp, self.path)

    def _abort(self) -> None:
        self._f.close()
        self._tmp.unlink(missing_ok=True)


class _Column:
    """One .npz member spooled to a temporary file: raw numbers, or strings as one JSON line each."""

    def __init__(self, folder: Path, name: str, dtype: np.dtype[Any] | None, width: int = 0) -> None:
        self.name = name
        self.dtype = dtype  # None: strings
        self.width = width  # columns per row of a 2-D numeric member (0: 1-D)
        self.path = folder / f"{name}.spool"
        self.f: IO[bytes] = open(self.path, "wb")  # noqa: SIM115 (closed in finish/close)
        self.n = 0
        self.longest = 1  # characters of the longest string (a '<U0' array is not allowed)

    def add(self, values: Any) -> None:
        if self.dtype is None:  # one JSON list a chunk: one call, not one a string
            values = list(values)
            if values:
                self.longest = max(self.longest, *map(len, values))
                self.f.write(json.dumps(values).encode("utf-8") + b"\n")
            self.n += len(values)
            return
        a = np.ascontiguousarray(values, dtype=self.dtype)
        self.f.write(a.tobytes())
        self.n += a.shape[0]

    def store(self, zf: zipfile.ZipFile) -> None:
        self.f.close()
        dtype = np.dtype(f"<U{self.longest}") if self.dtype is None else self.dtype
        shape: tuple[int, ...] = (self.n, self.width) if self.width else (self.n,)
        header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": shape}
        info = zipfile.ZipInfo(f"{self.name}.npy", date_time=time.localtime()[:6])
        info.compress_type = zipfile.ZIP_DEFLATED if self.dtype is None else zipfile.ZIP_STORED
        with zf.open(info, "w", force_zip64=True) as out, open(self.path, "rb") as src:
            np.lib.format.write_array_header_2_0(out, header)
            if self.dtype is not None:
                shutil.copyfileobj(src, out, 1 << 20)
                return
            for line in src:  # a line is one chunk of rows: bounded by the chunk size
                values = json.loads(line)
                for s in range(0, len(values), _STRING_ROWS):
                    out.write(np.asarray(values[s : s + _STRING_ROWS], dtype=dtype).tobytes())


class NpzWriter(ResultWriter):
    """A .npz readable with ``np.load`` (no pickle): ``classes`` [C]; per spectrum ``file_index`` [N] into
    ``files`` [F] and ``spectrum_index`` [N] (k of ``file#k``, -1 for an input that could not be read at all),
    ``class_index`` [N] (-1 error), ``probabilities`` [N, C], ``unknown`` [N] (1/0, -1 none), ``unknown_score``
    [N], ``drift`` [N] (1/0, -1 none), ``drift_t2``/``drift_q`` [N], ``edge_fill_cm1`` [N, 2], ``x``/``y`` [N], ``error_kind``/``error`` [N] (empty when classified); and
    the facts given (``provider``, ``model_sha256``, ...).

    Numbers are stored as they are (deflating float32 probabilities costs more time than it saves space);
    the string members are deflated (mostly empty error texts).
    """

    def __init__(self, path: Path, classes: Sequence[str], facts: dict[str, str] | None = None) -> None:
        super().__init__(path, classes)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._dir = Path(tempfile.mkdtemp(dir=self.path.parent, prefix=f".{self.path.name}."))
        self.facts = dict(facts or {})
        c = len(self.classes)
        self._files: list[str] = []  # the last one only is needed to number the next; all are spooled
        self._cols = {
            "files": _Column(self._dir, "files", None),
            "file_index": _Column(self._dir, "file_index", np.dtype("<i4")),
            "spectrum_index": _Column(self._dir, "spectrum_index", np.dtype("<i8")),
            "class_index": _Column(self._dir, "class_index", np.dtype("<i4")),
            "probabilities": _Column(self._dir, "probabilities", np.dtype("<f4"), c),
            "unknown": _Column(self._dir, "unknown", np.dtype("i1")),
            "unknown_score": _Column(self._dir, "unknown_score", np.dtype("<f4")),
            "drift": _Column(self._dir, "drift", np.dtype("i1")),
            "drift_t2": _Column(self._dir, "drift_t2", np.dtype("<f4")),
            "drift_q": _Column(self._dir, "drift_q", np.dtype("<f4")),
            "edge_fill_cm1": _Column(self._dir, "edge_fill_cm1", np.dtype("<f4"), 2),
            "x": _Column(self._dir, "x", np.dtype("<f8")),
            "y": _Column(self._dir, "y", np.dtype("<f8")),
            "error_kind": _Column(self._dir, "error_kind", None),
            "error": _Column(self._dir, "error", None),
        }

    def write(self, rows: Rows) -> None:
        cols = self._cols
        if not self._files or self._files[-1] != rows.source:
            self._files = [rows.source]
            cols["files"].add([rows.source])
        cols["file_index"].add(np.full(len(rows), cols["files"].n - 1, dtype=np.int32))
        cols["spectrum_index"].add(rows.index)
        cols["class_index"].add(rows.class_index)
        cols["probabilities"].add(rows.probabilities)
        cols["unknown"].add(rows.unknown)
        cols["unknown_score"].add(rows.distance)
        cols["drift"].add(rows.drift)
        cols["drift_t2"].add(rows.drift_t2)
        cols["drift_q"].add(rows.drift_q)
        cols["edge_fill_cm1"].add(rows.edge_fill)
        cols["x"].add(rows.x)
        cols["y"].add(rows.y)
        cols["error_kind"].add(rows.error_kind)
        cols["error"].add(rows.error)
        self.rows += len(rows)

    def _commit(self) -> None:
        tmp = self._dir / "out.npz"
        try:
            with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as zf:
                small = {"classes": np.asarray(self.classes, dtype=str),
                         **{k: np.asarray(v, dtype=str) for k, v in self.facts.items()}}
                for name, arr in small.items():
                    with zf.open(f"{name}.npy", "w") as out:
                        np.lib.format.write_array(out, arr, allow_pickle=False)
                for col in self._cols.values():
                    col.store(zf)
            os.replace(tmp, self.path)
        finally:
            self._abort()

    def _abort(self) -> None:
        for col in self._cols.values():
            col.f.close()
        shutil.rmtree(self._dir, ignore_errors=True)


def open_writer(path: Path, classes: Sequence[str], facts: dict[str, str] | None = None) -> ResultWriter:
    """The writer for ``path`` by its suffix (.npz or .csv).

    Raises:
        DataError: another suffix.
    """
    suffix = Path(path).suffix.lower()
    if suffix == ".csv":
        return CsvWriter(path, classes)
    if suffix == ".npz":
        return NpzWriter(path, classes, facts)
    raise DataError(f"--out must name a .npz or .csv file, got {str(path)!r}")


# --- the class image of a map -----------------------------------------------------------------------------


def class_colours(n: int) -> list[tuple[int, int, int]]:
    """One RGB colour per class, distinct from each other and from background, error and unknown."""
    out = list(_PALETTE[:n])
    k = 0
    while len(out) < n:
        h = (k * 0.618033988749895) % 1.0
        k += 1
        i, f = int(h * 6), h * 6 - int(h * 6)
        q, t = int(255 * (1 - f)), int(255 * f)
        rgb = [(255, t, 0), (q, 255, 0), (0, 255, t), (0, q, 255), (t, 0, 255), (255, 0, q)][i % 6]
        if rgb not in out:
            out.append(rgb)
    return out


def write_png(path: Path, rgb: NDArray[np.uint8]) -> None:
    """Write an [H, W, 3] uint8 image as an 8-bit RGB PNG (atomically: temporary file, then rename)."""
    h, w, _ = rgb.shape
    raw = np.concatenate([np.zeros((h, 1), dtype=np.uint8), rgb.reshape(h, w * 3)], axis=1)  # filter 0 a row

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
           + chunk(b"IDAT", zlib.compress(raw.tobytes(), 6)) + chunk(b"IEND", b""))
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(png)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class MapImage:
    """Collects the classes of one map file's spectra by their x/y coordinates and writes its class image.

    Memory: three numbers per spectrum of the map (its coordinates and class), nothing per pixel until the
    image is written.
    """

    def __init__(self, source: str) -> None:
        self.source = source
        self._x: list[NDArray[np.float64]] = []
        self._y: list[NDArray[np.float64]] = []
        self._code: list[NDArray[np.int32]] = []

    def add(self, rows: Rows) -> None:
        """Record rows of this map: class index, -1 error, -2 unknown."""
        code = rows.class_index.astype(np.int32)
        code = np.where((rows.unknown == 1) & (code >= 0), -2, code)
        self._x.append(np.asarray(rows.x, dtype=np.float64))
        self._y.append(np.asarray(rows.y, dtype=np.float64))
        self._code.append(code)

    def write(self, path: Path, classes: Sequence[str]) -> dict[str, Any]:
        """Write the PNG and its legend (``<png stem>.json``); return the legend.

        Columns are x ascending left to right, rows y ascending top to bottom, each map cell a square of
        ``scale`` pixels. A cell without a spectrum is white, a failed spectrum black, an unknown one grey.

        Raises:
            DataError: the coordinates do not form a grid the image can show (missing, irregular, too large).
        """
        x = np.concatenate(self._x) if self._x else np.zeros(0)
        y = np.concatenate(self._y) if self._y else np.zeros(0)
        code = np.concatenate(self._code) if self._code else np.zeros(0, dtype=np.int32)
        ok = np.isfinite(x) & np.isfinite(y)
        if not ok.any():
            raise DataError(f"{self.source}: no spectrum has finite x/y coordinates")
        # coordinates written as text (LabSpec) or float32 (WDF) repeat up to rounding: 6 significant digits
        ux = np.unique(_round(x[ok]))
        uy = np.unique(_round(y[ok]))
        cells = ux.size * uy.size
        if cells > _MAX_MAP_CELLS or cells > 4 * int(ok.sum()):
            raise DataError(
                f"{self.source}: {ux.size} x {uy.size} distinct coordinates for {int(ok.sum())} spectra do not form "
                "a grid (irregular or too large for an image)"
            )
        colours = class_colours(len(classes))
        lut = np.array([*colours, UNKNOWN_RGB, ERROR_RGB], dtype=np.uint8)  # code -2 -> [-2], -1 -> [-1]
        grid = np.empty((uy.size, ux.size, 3), dtype=np.uint8)
        grid[:] = BACKGROUND_RGB
        ix = np.searchsorted(ux, _round(x[ok]))
        iy = np.searchsorted(uy, _round(y[ok]))
        grid[iy, ix] = lut[code[ok]]
        scale = max(1, min(32, _MAP_TARGET_PX // max(ux.size, uy.size)))
        image = np.repeat(np.repeat(grid, scale, axis=0), scale, axis=1)
        write_png(path, image)
        legend = {
            "image": path.name,
            "source": self.source,
            "columns": int(ux.size),
            "rows": int(uy.size),
            "scale_px": scale,
            "x": {"min": float(ux[0]), "max": float(ux[-1])},
            "y": {"min": float(uy[0]), "max": float(uy[-1])},
            "orientation": "x ascending left to right, y ascending top to bottom",
            "classes": {c: list(colours[i]) for i, c in enumerate(classes)},
            "unknown": list(UNKNOWN_RGB),
            "error": list(ERROR_RGB),
            "no_spectrum": list(BACKGROUND_RGB),
            "spectra": int(code.size),
            "without_coordinates": int((~ok).sum()),
        }
        legend_path = path.with_suffix(".json")
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{legend_path.name}.", suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(legend, f, indent=2)
        os.replace(tmp, legend_path)
        return legend


def _round(v: NDArray[np.float64]) -> NDArray[np.float64]:
    """Values rounded to 6 significant digits of the largest magnitude, so repeats up to rounding compare equal."""
    m = float(np.max(np.abs(v))) if v.size else 0.0
    if m == 0.0:
        return v
    digits = 6 - int(np.floor(np.log10(m)))
    return np.round(v, digits)
