"""Offline batch classification (``ramanedge classify MODEL DATA... --out FILE``), streamed in chunks.

Any readable data (files, folders, maps, .npz) goes through the daemon's :class:`~edge_runtime.engine.Engine`:
the same checks of each spectrum, the same contract preprocessing (the shared, per-axis cached
:class:`~spectral_core.preprocess.Preprocessor`), the same axis policy (edge fill within the model's tolerance),
the same ``Engine.infer`` and open-set flags. Nothing is held for the whole data set: files are read one at a
time, a .npz's ``X`` is decoded a chunk of rows at a time straight from the zip member (stored or deflated), and
the results go to a streaming writer (:mod:`edge_runtime._classify_out`).

A reader thread reads and preprocesses the next chunk while the calling thread runs onnxruntime on the current
one (onnxruntime, zlib and numpy release the GIL), so on two cores reading overlaps inference.

Nothing is lost: every spectrum ends as one result row, classified or with an error kind and reason, and an input
that cannot be read at all is one error row of its own.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
import zipfile
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatch
from pathlib import Path
from typing import IO, Any

import numpy as np
from numpy.typing import NDArray

from edge_runtime._classify_out import MapImage, ResultWriter, Rows
from edge_runtime.engine import Engine
from edge_runtime.records import Frame, bounded_text
from spectral_core.contract import OpenSet
from spectral_core.errors import PreprocessError, RamanEdgeError, ReaderError
from spectral_core.io import read_dataset, sniff_format
from spectral_core.openset import unknown_scores

__all__ = [
    "DEFAULT_CHUNK",
    "Chunk",
    "Summary",
    "classify_chunk",
    "engine_facts",
    "expand_inputs",
    "iter_chunks",
    "run_classification",
]

logger = logging.getLogger(__name__)

#: spectra read, preprocessed and written at a time (rounded to whole batches)
DEFAULT_CHUNK = 4096
#: error reasons in the results are cut to this many UTF-8 bytes (a parser error may quote a huge line)
_REASON_BYTES = 512
#: small .npz members read whole (axis, map coordinates): refused above this, bytes
_MAX_SMALL_MEMBER = 256 << 20
#: a Fortran-ordered X cannot be read by rows; it is read whole up to this size, bytes
_MAX_FORTRAN_X = 256 << 20
_SOURCE = "classify"


@dataclass
class Chunk:
    """Consecutive spectra of one input, all on one axis, or error rows for what could not be read.

    Attributes:
        source: the input file as given or found in a folder.
        start: index in the file of the first spectrum (the ``#k`` of its reference).
        axis: the file's axis, cm^-1 (None for an error chunk).
        X: [n, points] intensities (None for an error chunk).
        x, y: map coordinates of the rows, when the file is a map.
        error: (kind, reason) for rows that could not be read; ``count`` rows from ``start`` (0: the whole
            input is one row referenced by its path alone).
        count: number of error rows (error chunks only).
        last: the last chunk of its file (a map's image is written after it).
    """

    source: str
    start: int = 0
    axis: NDArray[np.float64] | None = None
    X: NDArray[Any] | None = None
    x: NDArray[np.float64] | None = None
    y: NDArray[np.float64] | None = None
    error: tuple[str, str] | None = None
    count: int = 0
    last: bool = True

    @property
    def is_map(self) -> bool:
        return self.x is not None and self.y is not None

    def index(self) -> NDArray[np.int64]:
        """Each row's spectrum index in the file; [-1] for an input that could not be read at all."""
        if self.error is not None and self.count == 0:
            return np.full(1, -1, dtype=np.int64)
        n = self.count if self.X is None else int(self.X.shape[0])
        return np.arange(self.start, self.start + n, dtype=np.int64)


@dataclass
class Summary:
    """What a run did: counts per class and per error kind, the provider used, the time taken (s)."""

    spectra: int = 0
    classified: int = 0
    errors: int = 0
    unknown: int = 0
    drift: int = 0
    inputs: int = 0
    per_class: dict[str, int] = field(default_factory=dict)
    error_kinds: dict[str, int] = field(default_factory=dict)
    first_errors: list[str] = field(default_factory=list)
    maps: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0

    def add(self, rows: Rows, classes: Sequence[str]) -> None:
        n = len(rows)
        ok = rows.class_index >= 0
        self.spectra += n
        self.classified += int(ok.sum())
        self.errors += n - int(ok.sum())
        self.unknown += int((rows.unknown == 1).sum())
        self.drift += int((rows.drift == 1).sum())
        counts = np.bincount(rows.class_index[ok], minlength=len(classes))
        for c, k in zip(classes, counts.tolist(), strict=True):
            if k:
                self.per_class[c] = self.per_class.get(c, 0) + int(k)
        for i in np.flatnonzero(~ok).tolist():
            kind = rows.error_kind[i]
            self.error_kinds[kind] = self.error_kinds.get(kind, 0) + 1
            if len(self.first_errors) < 5:
                self.first_errors.append(f"{rows.ref(i)}: {kind}: {rows.error[i]}")


# --- inputs ------------------------------------------------------------------------------------------------


def expand_inputs(paths: Sequence[str | Path], pattern: str | None = None) -> list[str]:
    """Files to classify, in order: each path given, and every regular file under a folder (sorted, depth
    first; hidden files and folders skipped; symlinked folders not followed). ``pattern`` (a glob on the file
    name) picks files inside folders. A path that does not exist, or a folder that cannot be listed, is kept:
    reading it gives its error row (nothing is skipped silently)."""
    out: list[str] = []

    def unlistable(exc: OSError) -> None:
        out.append(str(exc.filename))

    for p in paths:
        path = Path(p)
        if not path.is_dir():
            out.append(str(p))
            continue
        for root, dirs, files in os.walk(path, onerror=unlistable):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for name in sorted(files):
                if name.startswith(".") or (pattern is not None and not fnmatch(name, pattern)):
                    continue
                out.append(os.path.join(root, name))
    return out


def _read_exact(f: IO[bytes], n: int) -> bytes:
    parts: list[bytes] = []
    left = n
    while left > 0:
        b = f.read(min(left, 64 << 20))
        if not b:
            break
        parts.append(b)
        left -= len(b)
    return b"".join(parts)


class _NpzRows:
    """A .npz's ``X`` read a chunk of rows at a time from its zip member, with its axis and map coordinates.

    The member may be stored or deflated (``np.savez_compressed``): the zip stream is decompressed as it is
    read, so memory is one chunk, never the whole array.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self.zf = zipfile.ZipFile(path)
        try:
            names = {n[:-4]: n for n in self.zf.namelist() if n.endswith(".npy")}
            if "X" not in names:
                raise ReaderError(path, f"npz has no array 'X' (found {sorted(names)})")
            key = "axis" if "axis" in names else ("wavenumbers" if "wavenumbers" in names else None)
            if key is None:
                raise ReaderError(path, "npz has no 'axis' array (wavenumbers in cm^-1)")
            self.axis = np.asarray(self._small(names[key]), dtype=np.float64)
            self.f: IO[bytes] = self.zf.open(names["X"])
            version = np.lib.format.read_magic(self.f)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(self.f)
            elif version == (2, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(self.f)
            else:
                raise ReaderError(path, f"X is in .npy format version {version}; 1.0 and 2.0 are read")
            self.dtype = np.dtype(dtype)
            if self.dtype.hasobject or self.dtype.kind not in "fiu":
                raise ReaderError(path, f"X has non-numeric dtype {self.dtype}")
            if len(shape) == 1:
                shape = (1, *shape)
            if len(shape) != 2:
                raise ReaderError(path, f"X must be [spectra, points], has shape {shape}")
            self.n, self.points = int(shape[0]), int(shape[1])
            if self.points != self.axis.size:
                raise ReaderError(path, f"X has {self.points} points per spectrum, the axis {self.axis.size}")
            self._whole: NDArray[Any] | None = None
            if fortran:
                if self.n * self.points * self.dtype.itemsize > _MAX_FORTRAN_X:
                    raise ReaderError(path, "X is stored in Fortran order, which cannot be read by rows; save it "
                                            "in C order (np.ascontiguousarray) to classify it in chunks")
                self._whole = np.asfortranarray(np.frombuffer(
                    _read_exact(self.f, self.n * self.points * self.dtype.itemsize), dtype=self.dtype
                ).reshape((self.n, self.points), order="F"))
            self.x = self.y = None
            if "meta_x" in names and "meta_y" in names:
                x = np.asarray(self._small(names["meta_x"]))
                y = np.asarray(self._small(names["meta_y"]))
                if x.shape == (self.n,) == y.shape and x.dtype.kind in "fiu" and y.dtype.kind in "fiu":
                    self.x, self.y = x.astype(np.float64), y.astype(np.float64)
        except BaseException:
            self.zf.close()
            raise

    def _small(self, name: str) -> NDArray[Any]:
        if self.zf.getinfo(name).file_size > _MAX_SMALL_MEMBER:
            raise ReaderError(self.path, f"member {name} is larger than {_MAX_SMALL_MEMBER >> 20} MiB")
        with self.zf.open(name) as f:
            return np.lib.format.read_array(f, allow_pickle=False)

    def read(self, start: int, rows: int) -> NDArray[Any]:
        """Rows ``start .. start + rows`` (called in order)."""
        if self._whole is not None:
            return np.ascontiguousarray(self._whole[start : start + rows])
        want = rows * self.points * self.dtype.itemsize
        data = _read_exact(self.f, want)
        if len(data) != want:
            raise ReaderError(self.path, f"X is truncated: {len(data)} of {want} bytes of spectra "
                                         f"{start}-{start + rows - 1}")
        return np.frombuffer(data, dtype=self.dtype).reshape(rows, self.points)

    def close(self) -> None:
        self.f.close()
        self.zf.close()


def _reason(exc: BaseException) -> str:
    text = str(exc) if isinstance(exc, RamanEdgeError) else f"{type(exc).__name__}: {exc}"
    return bounded_text(text, _REASON_BYTES)


def _npz_chunks(path: str, rows: int) -> Iterator[Chunk]:
    try:
        npz = _NpzRows(path)
    except Exception as exc:  # BadZipFile, zlib.error, a bad .npy header (ValueError, SyntaxError): the file's row
        yield Chunk(source=path, error=("read", _reason(exc)))
        return
    try:
        if npz.n == 0:
            yield Chunk(source=path, error=("read", "X holds no spectra"))
            return
        for start in range(0, npz.n, rows):
            k = min(rows, npz.n - start)
            last = start + k >= npz.n
            try:
                X = npz.read(start, k)
            except (RamanEdgeError, OSError, ValueError, EOFError, MemoryError, zipfile.BadZipFile, zlib.error) as exc:
                # the rest of the file cannot be read: each remaining spectrum is an error row
                why = ("read", _reason(exc))
                for s in range(start, npz.n, rows):
                    yield Chunk(source=path, start=s, error=why, count=min(rows, npz.n - s), last=s + rows >= npz.n)
                return
            cut = slice(start, start + k)
            yield Chunk(source=path, start=start, axis=npz.axis, X=X, last=last,
                        x=None if npz.x is None else npz.x[cut], y=None if npz.y is None else npz.y[cut])
    finally:
        npz.close()


def _file_chunks(path: str, rows: int, options: dict[str, Any]) -> Iterator[Chunk]:
    try:
        ds = read_dataset(path, **options)
    except (RamanEdgeError, OSError, ValueError, MemoryError, UnicodeError) as exc:
        yield Chunk(source=path, error=("read", _reason(exc)))
        return
    except Exception as exc:  # a reader's bug on one file is that file's error row, never the end of the run
        logger.error("reading %s failed unexpectedly: %s", path, exc, exc_info=True)
        yield Chunk(source=path, error=("read", _reason(exc)))
        return
    if ds.n_spectra == 0:
        yield Chunk(source=path, error=("read", "holds no spectra"))
        return
    x, y = ds.meta.get("x"), ds.meta.get("y")
    is_map = (ds.n_spectra > 1 and x is not None and y is not None
              and np.asarray(x).dtype.kind in "fiu" and np.asarray(y).dtype.kind in "fiu")
    axis = np.asarray(ds.axis, dtype=np.float64)
    for start in range(0, ds.n_spectra, rows):
        cut = slice(start, start + rows)
        yield Chunk(source=path, start=start, axis=axis, X=ds.X[cut], last=start + rows >= ds.n_spectra,
                    x=np.asarray(x, dtype=np.float64)[cut] if is_map else None,
                    y=np.asarray(y, dtype=np.float64)[cut] if is_map else None)


def iter_chunks(files: Iterable[str], rows: int, options: dict[str, Any] | None = None) -> Iterator[Chunk]:
    """Chunks of at most ``rows`` spectra from each file in turn; a file that cannot be read is one error chunk.

    A .npz is streamed by rows (reading options do not apply to it); every other format is read whole by
    :func:`spectral_core.io.read_dataset` with ``options`` (its readers bound their inputs), then cut.
    """
    opts = dict(options or {})
    forced = opts.get("format")
    npz_opts = sorted(k for k in opts if k not in ("format", "pattern"))
    for f in files:
        try:
            kind = forced or sniff_format(f)
        except (RamanEdgeError, OSError, ValueError) as exc:
            yield Chunk(source=f, error=("read", _reason(exc)))
            continue
        if kind == "npz":
            if npz_opts:
                logger.warning("%s: reading option(s) %s do not apply to a .npz and were ignored", f, npz_opts)
            yield from _npz_chunks(f, rows)
        else:
            yield from _file_chunks(f, rows, {k: v for k, v in opts.items() if k != "pattern"})


# --- classification ----------------------------------------------------------------------------------------


@dataclass
class _Prepared:
    """A chunk after the checks and preprocessing (reader thread), waiting for onnxruntime (caller's thread)."""

    chunk: Chunk
    rows: Rows
    Z: NDArray[np.float32] | None = None
    good: NDArray[np.intp] | None = None  # rows of ``Z`` to classify (None: all)


def _fail(rows: Rows, idx: Iterable[int], kind: str, reason: str) -> None:
    why = bounded_text(reason, _REASON_BYTES)
    for i in idx:
        rows.class_index[i] = -1
        rows.error_kind[i] = kind
        rows.error[i] = why


def _prepare(engine: Engine, chunk: Chunk) -> _Prepared:
    """The engine's checks and preprocessing of a chunk: the steps of ``Engine.classify`` before inference,
    once per chunk (all its spectra share one axis and one length)."""
    rows = Rows.empty(chunk.source, chunk.index(), len(engine.classes))
    n = len(rows)
    if chunk.x is not None and chunk.y is not None:
        rows.x[:], rows.y[:] = chunk.x, chunk.y
    if chunk.error is not None or chunk.X is None or chunk.axis is None:
        kind, reason = chunk.error or ("read", "no spectrum in the input")
        _fail(rows, range(n), kind, reason)
        return _Prepared(chunk, rows)
    try:
        # the engine's own per-spectrum checks (size limit, shapes), on the first row: every row shares them
        problem = engine._frame_problem(Frame(source=_SOURCE, ref=rows.ref(0), axis=chunk.axis,
                                              intensities=chunk.X[0]))
        if problem is not None:
            _fail(rows, range(n), "input", problem)
            return _Prepared(chunk, rows)
        axis_problem = engine._axis_error(chunk.axis)
        if axis_problem is not None:
            _fail(rows, range(n), "preprocess", axis_problem)
            return _Prepared(chunk, rows)
        low, high = engine.preprocessor.edge_fill(chunk.axis)
        rows.edge_fill[:] = (round(low, 4), round(high, 4))
        try:
            Z, bad = engine.preprocessor.transform_rows(chunk.X, chunk.axis)
        except (PreprocessError, ValueError) as exc:
            _fail(rows, range(n), "preprocess", str(exc))
            return _Prepared(chunk, rows)
        for k, why in bad.items():
            _fail(rows, (k,), "input", why)
        good = None if not bad else np.setdiff1d(np.arange(n), np.fromiter(bad, dtype=np.intp, count=len(bad)))
        return _Prepared(chunk, rows, Z, good)
    except Exception as exc:  # MemoryError included: this chunk's spectra become error rows, the run goes on
        logger.error("preparing %d spectrum/spectra of %s failed: %s", n, chunk.source, exc, exc_info=True)
        _fail(rows, range(n), "internal", f"internal error: {type(exc).__name__}: {exc}")
        return _Prepared(chunk, rows)


def _open_set(engine: Engine) -> OpenSet | None:
    """The contract's open-set data with its centroids and thresholds as arrays, for the same
    :func:`~spectral_core.openset.unknown_scores`: the contract holds lists, which numpy would convert at every
    call (a third of the open-set time per batch of 256)."""
    o = engine.contract.open_set
    if o is None:
        return None
    return OpenSet.model_construct(metric=o.metric, centroids=np.asarray(o.centroids, dtype=np.float64),
                                   thresholds=np.asarray(o.thresholds, dtype=np.float64), quantile=o.quantile)


def _infer(engine: Engine, p: _Prepared, open_set: OpenSet | None) -> Rows:
    """onnxruntime on a prepared chunk in ``engine.max_batch`` pieces, with the engine's open-set flags."""
    rows = p.rows
    if p.Z is None:
        return rows
    idx_all = np.arange(len(rows)) if p.good is None else p.good
    for s in range(0, idx_all.size, engine.max_batch):
        idx = idx_all[s : s + engine.max_batch]
        batch = p.Z[s : s + idx.size] if p.good is None else p.Z[idx]
        try:
            probs, emb = engine.infer(batch)
        except (RamanEdgeError, RuntimeError, ValueError) as exc:
            _fail(rows, idx.tolist(), "inference", str(exc))
            continue
        if probs.ndim != 2 or probs.shape[1] != len(engine.classes):
            _fail(rows, idx.tolist(), "inference",
                  f"the model gave {probs.shape[-1]} probabilities for {len(engine.classes)} classes")
            continue
        try:
            pred = np.argmax(probs, axis=1).astype(np.int64)
            unknown = dist = None
            if emb is not None and open_set is not None:
                unknown, dist = unknown_scores(emb, pred, open_set)
            drift = engine._drift(batch)  # the engine's drift scores of the same model inputs (None: no model)
        except Exception as exc:  # as Engine.classify: an unexpected failure is these spectra's error rows
            logger.error("open-set flags of %d spectra failed: %s", idx.size, exc, exc_info=True)
            _fail(rows, idx.tolist(), "internal", f"internal error: {type(exc).__name__}: {exc}")
            continue
        rows.class_index[idx] = pred
        rows.probabilities[idx] = probs
        if unknown is not None and dist is not None:
            rows.unknown[idx] = unknown
            rows.distance[idx] = dist
        if drift is not None:
            rows.drift_t2[idx], rows.drift_q[idx], rows.drift[idx] = drift
        for i in idx.tolist():
            rows.error_kind[i] = rows.error[i] = ""
    return rows


def engine_facts(engine: Engine) -> dict[str, str]:
    """What produced the results (stored in the .npz): the provider actually used, the model and its hashes."""
    return {"provider": engine.provider, "model": engine.model_path.name, "model_sha256": engine.model_sha256,
            "preprocess_hash": engine.preprocess_hash}


def classify_chunk(engine: Engine, chunk: Chunk) -> Rows:
    """Classify one chunk in the calling thread (what :func:`run_classification` does with a reader thread)."""
    return _infer(engine, _prepare(engine, chunk), _open_set(engine))


_END = object()


def _producer(engine: Engine, chunks: Iterator[Chunk], out: queue.Queue[Any], stop: threading.Event) -> None:
    try:
        for chunk in chunks:
            item = _prepare(engine, chunk)
            while not stop.is_set():
                try:
                    out.put(item, timeout=0.2)
                    break
                except queue.Full:
                    continue
            if stop.is_set():
                return
        out.put(_END)
    except BaseException as exc:  # handed to the consumer, which raises it: a reader failure is never silent
        out.put(exc)


def run_classification(
    engine: Engine,
    chunks: Iterator[Chunk],
    writer: ResultWriter,
    *,
    map_png: Callable[[int], Path] | None = None,
    progress: Callable[[Summary, str], None] | None = None,
) -> Summary:
    """Classify every chunk and write every row; reading and preprocessing run one chunk ahead in a thread.

    Args:
        map_png: path of the class image of the n-th map (n from 1); None: no images.
        progress: called after each chunk with the summary so far and the current input.
    """
    from threadpoolctl import threadpool_limits

    # The open-set distances are small matrix products; OpenBLAS would run them on a thread per core, and
    # those threads spin while the reader thread and onnxruntime hold the cores: measured 3-4x the inference
    # time itself on a busy 2-core machine (bench/bench_classify.py). One BLAS thread costs nothing here.
    with threadpool_limits(limits=1, user_api="blas"):
        return _run(engine, chunks, writer, map_png, progress)


def _run(
    engine: Engine,
    chunks: Iterator[Chunk],
    writer: ResultWriter,
    map_png: Callable[[int], Path] | None,
    progress: Callable[[Summary, str], None] | None,
) -> Summary:
    summary = Summary()
    t0 = time.monotonic()
    q: queue.Queue[Any] = queue.Queue(maxsize=2)
    stop = threading.Event()
    worker = threading.Thread(target=_producer, args=(engine, chunks, q, stop), name="classify-reader", daemon=True)
    worker.start()
    current_map: MapImage | None = None
    seen_source: str | None = None
    open_set = _open_set(engine)
    try:
        while True:
            item = q.get()
            if item is _END:
                break
            if isinstance(item, BaseException):
                raise item
            p: _Prepared = item
            rows = _infer(engine, p, open_set)
            writer.write(rows)
            summary.add(rows, engine.classes)
            src = p.chunk.source
            if src != seen_source:
                summary.inputs += 1
                seen_source = src
            if map_png is not None and p.chunk.is_map:
                if current_map is None or current_map.source != src:
                    current_map = MapImage(src)
                current_map.add(rows)
            if current_map is not None and p.chunk.last and current_map.source == src:
                summary.maps.append(_write_map(current_map, map_png, len(summary.maps) + 1, engine.classes))
                current_map = None
            summary.seconds = time.monotonic() - t0
            if progress is not None:
                progress(summary, src)
    finally:
        stop.set()
        worker.join(timeout=5)
    summary.seconds = time.monotonic() - t0
    return summary


def _write_map(m: MapImage, map_png: Callable[[int], Path] | None, n: int, classes: Sequence[str]) -> dict[str, Any]:
    path = map_png(n) if map_png is not None else Path(f"map-{n}.png")
    try:
        legend = m.write(path, classes)
    except (RamanEdgeError, OSError) as exc:
        logger.warning("no class image for %s: %s", m.source, exc)
        return {"source": m.source, "image": None, "reason": str(exc)}
    return {"source": m.source, "image": str(path), "legend": str(path.with_suffix(".json")),
            "columns": legend["columns"], "rows": legend["rows"]}
