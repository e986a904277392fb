"""Readers and writers. Every reader returns the same data model; :func:`read_dataset` picks one from the
registry :data:`READERS` by content (magic bytes, then each reader's content test), then by extension; text
that no reader claims is delimited text. gzip is undone first (bounded). See docs/formats.md.

Formats (one private module each):

* ``.npz`` (X, axis, y, classes, groups, meta_*): :func:`read_npz`, :func:`write_npz`.
* ``.npy``: a spectra matrix, or a Bacteria-ID ``X_<name>.npy`` + ``y_<name>.npy`` pair; needs ``axis=``.
* two-column text (csv/tsv/txt/...), instrument ``key: value`` header lines included: one spectrum
  (:func:`read_spectrum`), :func:`write_csv`.
* JCAMP-DX (``.jdx``/``.dx``): one spectrum, AFFN ``XYDATA`` or ``XYPOINTS``.
* delimited tables: one spectrum per row, or the transposed layout (``WN`` column + one column a spectrum).
* B&W Tek BWSpec/BWRam, Ocean Insight OceanView/SpectraSuite and Horiba LabSpec text exports.
* binary vendor files, found by magic bytes or extension: Renishaw WiRE ``.wdf`` (single, series, maps),
  Galactic ``.spc`` (single and multi-subfile), Princeton Instruments ``.spe`` (2.x and 3.0), Andor ``.sif``,
  Bruker OPUS (``[opus]`` extra); per-spectrum facts (map coordinates) in ``meta`` and
  ``provenance["spectrum_metadata"]``.
* MATLAB ``.mat`` (v7.3 via h5py, older via scipy).
* a folder with one sub-folder per class holding any of the above.

Options of :func:`read_dataset` (each used by the readers it applies to; others log a warning):
``axis``, ``labels``, ``class_names``, ``encoding``, ``delimiter``, ``layout``, ``label_column``,
``group_column``, ``label_from_column``, ``x_var``, ``y_var``, ``axis_var``, ``excitation_nm``,
``intensity_column``, ``pattern``, ``max_decompressed_mb`` (gzip, default 256), ``bad_spectra`` (``error``, the
default: a file whose spectra are partly bad (NaN/inf values, a table or map row of the wrong length) is refused
with the index and reason of each bad one; ``skip``: they are left out and listed, with their index in the file,
in ``provenance["skipped_spectra"]``; see :class:`BadSpectraError`), ``resample``
(``"START:STOP:POINTS"``: put every file on one axis by cubic spline, e.g. single spectra measured on different
axes; never extrapolates) and ``format`` to force a reader (a registry name or ``folder``).

A new format is one :class:`Reader` row in :data:`READERS`: a content test on the first 8 KiB, its extensions,
its read function and the options it takes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from spectral_core.errors import ReaderError
from spectral_core.io._bwtek import is_bwtek, read_bwtek
from spectral_core.io._common import (
    BAD_SPECTRA_POLICIES,
    BadSpectraError,
    compressed_limit,
    concat_datasets,
    decode_text,
    gunzip,
    is_gzip,
    make_dataset,
    parse_axis_option,
    parse_class_names,
    read_bytes,
    resample_dataset,
    spectra_policy,
)
from spectral_core.io._folder import DATA_SUFFIXES, read_class_folders
from spectral_core.io._grid import parse_grid
from spectral_core.io._groups import FILE_META, parse_grouping, regroup
from spectral_core.io._jcamp import is_jcamp, jcamp_spectrum, read_jcamp
from spectral_core.io._labspec import is_labspec, read_labspec
from spectral_core.io._mat import is_mat, read_mat
from spectral_core.io._npy import read_npy
from spectral_core.io._npz import read_npz, write_npz
from spectral_core.io._ocean import is_ocean, read_ocean
from spectral_core.io._opus import is_opus, read_opus
from spectral_core.io._sif import is_sif, read_sif
from spectral_core.io._spc import is_spc, read_spc
from spectral_core.io._spe import is_spe, read_spe
from spectral_core.io._table import read_table, table_from_grid
from spectral_core.io._text import read_text_spectrum, spectrum_from_grid, write_csv
from spectral_core.io._wdf import is_wdf, read_wdf
from spectral_core.spectrum import SpectralDataset, Spectrum

__all__ = [
    "BAD_SPECTRA_POLICIES",
    "FORMATS",
    "READERS",
    "BadSpectraError",
    "Reader",
    "concat_datasets",
    "read_bwtek",
    "read_dataset",
    "read_datasets",
    "read_jcamp",
    "read_labspec",
    "read_mat",
    "read_npy",
    "read_npz",
    "read_ocean",
    "read_opus",
    "read_sif",
    "read_spc",
    "read_spe",
    "read_spectrum",
    "read_table",
    "read_text_spectrum",
    "read_wdf",
    "sniff_format",
    "write_csv",
    "write_npz",
]

logger = logging.getLogger(__name__)

_HEAD = 8192  # bytes a content test sees
_SPREADSHEETS = (".xlsx", ".xls", ".xlsm", ".ods")
_DELIMITED = frozenset(
    {
        "axis",
        "labels",
        "class_names",
        "encoding",
        "delimiter",
        "layout",
        "label_column",
        "group_column",
        "label_from_column",
    }
)
_MATRIX = frozenset({"axis", "labels", "class_names"})


@dataclass(frozen=True)
class Reader:
    """One row of the reader registry.

    Attributes:
        name: the format name (``format=`` forces it).
        sniff: content test on the first bytes of the file (gzip already undone); None: chosen by extension
            or ``format=`` only.
        suffixes: extensions that choose this reader when no content test matched.
        read: ``read(path, data, **options)``; ``data`` is the whole (decompressed) content for text readers
            and None for readers that open ``path`` themselves (``binary``).
        options: the reader options it takes; others given are logged as ignored.
        binary: reads ``path`` itself (not from gzip, not from bytes in hand).
        magic: the content test is decisive: a file with one of ``suffixes`` that fails it is refused.
    """

    name: str
    sniff: Callable[[bytes], bool] | None
    suffixes: tuple[str, ...]
    read: Callable[..., SpectralDataset]
    options: frozenset[str] = frozenset()
    binary: bool = False
    magic: bool = False


def _text_of(path: Path, data: bytes | None, encoding: str | None) -> tuple[str, str]:
    return decode_text(read_bytes(path) if data is None else data, path, encoding)


def _read_jcamp(path: Path, data: bytes | None, **o: Any) -> SpectralDataset:
    text, _ = _text_of(path, data, o.get("encoding"))
    return _one(jcamp_spectrum(path, text, excitation_nm=o.get("excitation_nm")), path)


def _read_delimited(path: Path, data: bytes | None, *, mode: str = "auto", **o: Any) -> SpectralDataset:
    text, enc = _text_of(path, data, o.get("encoding"))
    grid = parse_grid(path, text, delimiter=o.get("delimiter"))
    table_opts = {k: o[k] for k in _DELIMITED - {"encoding", "delimiter"} if k in o}
    wants_table = any(table_opts.get(k) is not None for k in ("label_column", "label_from_column", "labels", "axis"))
    if mode == "text" or (
        mode == "auto" and grid.n_columns == 2 and not wants_table and table_opts.get("layout", "auto") == "auto"
    ):
        ds = _one(spectrum_from_grid(grid, encoding=enc), path)
    else:
        ds = table_from_grid(grid, **table_opts)
    ds.provenance["encoding"] = enc
    return ds


def _npy(p: Path, data: bytes | None, **o: Any) -> SpectralDataset:
    return read_npy(p, **o)


def _npz(p: Path, data: bytes | None, **o: Any) -> SpectralDataset:
    return read_npz(p)


def _mat(p: Path, data: bytes | None, **o: Any) -> SpectralDataset:
    return read_mat(p, **o)


def _text(p: Path, data: bytes | None, **o: Any) -> SpectralDataset:
    return _read_delimited(p, data, mode="text", **o)


def _table(p: Path, data: bytes | None, **o: Any) -> SpectralDataset:
    return _read_delimited(p, data, mode="table", **o)


def _is_npy(head: bytes) -> bool:
    return head.startswith(b"\x93NUMPY")


def _is_npz(head: bytes) -> bool:
    return head.startswith(b"PK\x03\x04")


def _is_jcamp(head: bytes) -> bool:
    return is_jcamp(head[:4096].decode("latin-1"))


def _path_reader(read: Callable[..., SpectralDataset]) -> Callable[..., SpectralDataset]:
    """A registry read function for a binary reader that opens ``path`` itself."""

    def read_path(p: Path, data: bytes | None, **o: Any) -> SpectralDataset:
        return read(p, **o)

    return read_path


_MAT_OPTIONS = frozenset({"x_var", "y_var", "axis_var"}) | _MATRIX
_EXCITATION = frozenset({"excitation_nm"})
_CM1_TEXT = frozenset({"excitation_nm", "encoding"})

# The registry: content tests run in this order, then extensions; text that nothing claims is delimited text.
# One row a format: name, content test, extensions, read(path, data, **options), options, flags.
# fmt: off
READERS: tuple[Reader, ...] = (
    Reader("npy", _is_npy, (".npy",), _npy, _MATRIX, binary=True, magic=True),
    Reader("npz", _is_npz, (".npz",), _npz, binary=True, magic=True),
    Reader("mat", is_mat, (".mat",), _mat, _MAT_OPTIONS, binary=True),
    # binary vendor files (docs/formats_binary.md): a wrong magic under their extension is named by the reader
    Reader("wdf", is_wdf, (".wdf",), _path_reader(read_wdf), _EXCITATION, binary=True),
    Reader("spc", is_spc, (".spc",), _path_reader(read_spc), _EXCITATION, binary=True),
    Reader("spe", is_spe, (".spe",), _path_reader(read_spe), _EXCITATION, binary=True),
    Reader("sif", is_sif, (".sif",), _path_reader(read_sif), _EXCITATION, binary=True),
    Reader("opus", is_opus, (), _path_reader(read_opus), _EXCITATION, binary=True),  # OPUS files are .0, .1, ...
    Reader("jcamp", _is_jcamp, (".jdx", ".dx", ".jcamp"), _read_jcamp, _CM1_TEXT),
    Reader("bwtek", is_bwtek, (), read_bwtek, frozenset({"intensity_column", "encoding"})),
    Reader("oceanview", is_ocean, (), read_ocean, _CM1_TEXT),
    Reader("labspec", is_labspec, (), read_labspec, frozenset({"encoding"})),
    Reader("text", None, (), _text, _DELIMITED),
    Reader("table", None, (), _table, _DELIMITED),
)
# fmt: on
_BY_NAME = {r.name: r for r in READERS}
_AUTO_TEXT = Reader("delimited", None, (), _read_delimited, _DELIMITED)
FORMATS = (*_BY_NAME, "folder")
_FOLDER_SUFFIXES = DATA_SUFFIXES | {s for r in READERS for s in r.suffixes}
_ALL_OPTIONS = frozenset().union(*(r.options for r in READERS)) | {
    "pattern", "resample", "max_decompressed_mb", "groups", "bad_spectra"}


def sniff_format(path: str | Path) -> str:
    """The reader for ``path`` from its content: ``folder``, a registry name (npz, npy, mat, jcamp, bwtek,
    oceanview, labspec, ...) or ``delimited`` (two-column text or a table). A gzip file is judged by its
    decompressed content.

    Raises:
        ReaderError: a missing path, a spreadsheet, or content that contradicts a binary extension.
    """
    p = Path(path)
    if p.is_dir():
        return "folder"
    return _choose(p, _head(p)).name


def _head(p: Path) -> bytes:
    head = _head_raw(p)
    return _gunzip_file(p)[:_HEAD] if is_gzip(head) else head


def _gunzip_file(p: Path, max_mb: float | None = None) -> bytes:
    """A gzip file's content; a file too large to stay under the cap is refused before it is read."""
    try:
        size = p.stat().st_size
    except OSError as exc:
        raise ReaderError(p, f"cannot read ({exc.strerror or exc})") from None
    if size > compressed_limit(max_mb):
        raise ReaderError(
            p, f"gzip file of {size} bytes exceeds the decompressed-size cap (max_decompressed_mb option)"
        )
    return gunzip(read_bytes(p), p, max_mb)


def _inner_name(p: Path, gz: bool) -> Path:
    """The name that says the format: ``x.csv`` for ``x.csv.gz``."""
    return p.with_name(p.stem) if gz and p.suffix.lower() == ".gz" else p


def _choose(p: Path, head: bytes, gz: bool = False) -> Reader:
    """The registry row for a file named ``p`` whose first (decompressed) bytes are ``head``."""
    name = _inner_name(p, gz or p.suffix.lower() == ".gz")
    suffix = name.suffix.lower()
    if suffix in _SPREADSHEETS:
        raise ReaderError(p, f"{suffix} spreadsheets are not read; export the sheet as .csv")
    if not head:
        raise ReaderError(p, "empty file" if not gz else "empty file once decompressed")
    found = next((r for r in READERS if r.sniff is not None and r.sniff(head)), None)
    claimed = next((r for r in READERS if suffix in r.suffixes), None)
    if claimed is not None and claimed.magic and found is not claimed:
        what = found.name if found is not None else "text or unknown bytes"
        raise ReaderError(p, f"the extension says {suffix} but the content is {what}")
    if found is None and claimed is not None and claimed.binary:
        return claimed  # e.g. MATLAB v4 files have no header; the reader decides
    return found or _AUTO_TEXT


def _warn_unused(p: Path, reader: Reader, options: dict[str, Any]) -> None:
    unused = sorted(k for k, v in options.items() if v is not None and k not in reader.options)
    if unused:
        logger.warning("%s: option(s) %s do not apply to the %s reader and were ignored", p, unused, reader.name)


def _read_file(path: Path, data: bytes | None = None, **options: Any) -> SpectralDataset:
    fmt = options.pop("format", None)
    max_mb = options.pop("max_decompressed_mb", None)
    policy = options.pop("bad_spectra", None) or "error"
    if fmt is not None and fmt not in FORMATS:
        raise ReaderError(path, f"unknown format {fmt!r}; choose from {FORMATS}")
    if data is None and path.is_dir():
        raise ReaderError(path, "is a folder where a file was expected")
    head = _head_raw(path) if data is None else data[:_HEAD]
    gz = is_gzip(head)
    if gz:
        data = _gunzip_file(path, max_mb) if data is None else gunzip(data, path, max_mb)
        head = data[:_HEAD]
    sniffed = _choose(path, head, gz)
    reader = sniffed if fmt is None else _BY_NAME[fmt]
    if reader is not sniffed and (reader.binary or sniffed.binary):
        raise ReaderError(path, f"format={fmt} but the content is {_kind(sniffed)}")
    if reader.binary and gz:
        raise ReaderError(path, f"gzip-compressed {reader.name} is not read; decompress the file first")
    _warn_unused(path, reader, options)
    kwargs = {k: v for k, v in options.items() if k in reader.options}
    with spectra_policy(policy, path):
        ds = reader.read(path, None if reader.binary else data, **kwargs)
    if gz:
        ds.provenance["compression"] = "gzip"
    return ds


def _head_raw(p: Path) -> bytes:
    try:
        with open(p, "rb") as f:
            return f.read(_HEAD)
    except FileNotFoundError:
        raise ReaderError(p, "no such file or folder") from None
    except OSError as exc:
        raise ReaderError(p, f"cannot read ({exc.strerror or exc})") from None


def _kind(r: Reader) -> str:
    return "text" if r is _AUTO_TEXT else r.name


def _one(s: Spectrum, path: Path) -> SpectralDataset:
    return make_dataset(path, X=s.intensities[None, :], axis=s.axis, provenance=dict(s.metadata))


def read_dataset(path: str | Path, *, data: bytes | None = None, **options: Any) -> SpectralDataset:
    """Read spectra from ``path`` (a file or a folder of class sub-folders), choosing the reader by content.

    Args:
        path: the file or folder.
        data: the file's bytes when the caller already holds them (the drop-folder daemon): text formats are
            parsed from memory; binary formats still read ``path``.
        **options: reader options (see the module docstring), e.g. ``axis="100:4278:2090"``,
            ``labels="array_labels.npy"``, ``class_names="COVID-19,Suspected,Healthy"``, ``pattern="COOH.csv"``,
            ``label_from_column=r"^(\\S+)"``, ``intensity_column="raw"``, ``excitation_nm=785``.

    Raises:
        ReaderError: the path and what is wrong with it.
        MissingExtraError: a format whose optional dependency is missing (.mat v7.3 needs h5py, Bruker OPUS
            needs brukeropus).
    """
    p = Path(path)
    unknown = sorted(set(options) - _ALL_OPTIONS - {"format"})
    if unknown:
        raise ReaderError(p, f"unknown reader option(s) {unknown}; known: {sorted(_ALL_OPTIONS | {'format'})}")
    opts = {k: v for k, v in options.items() if v is not None}
    target = None if "resample" not in opts else parse_axis_option(opts.pop("resample"), p)
    grouping = None if "groups" not in opts else parse_grouping(opts.pop("groups"), p)
    if grouping is not None and grouping[0] == "column":
        opts["group_column"] = grouping[1]
    ds = _read_path(p, data, target, opts)
    return ds if grouping is None else regroup(ds, grouping[0], grouping[1], p)


def _read_path(
    p: Path, data: bytes | None, target: NDArray[np.float64] | None, opts: dict[str, Any]
) -> SpectralDataset:
    def read_file(f: Path, file_data: bytes | None = None, **file_opts: Any) -> SpectralDataset:
        ds = _read_file(f, file_data, **file_opts)
        return ds if target is None else resample_dataset(ds, target, f)

    if data is None and p.is_dir():
        if opts.get("format") not in (None, "folder"):
            raise ReaderError(p, f"format={opts['format']} but this is a folder")
        opts.pop("format", None)
        return read_class_folders(p, read_file, suffixes=_FOLDER_SUFFIXES, **opts)
    if "pattern" in opts:
        logger.warning("%s: option pattern applies to folders only and was ignored", p)
        opts.pop("pattern")
    if opts.get("format") == "folder":
        raise ReaderError(p, "format=folder but this is a file")
    return read_file(p, data, **opts)


def read_datasets(paths: Sequence[str | Path], **options: Any) -> SpectralDataset:
    """Read several files or folders with the same options and stack them (same axis required).

    Classes merge in order of first appearance, or in the order of ``class_names``.
    """
    if len(paths) == 1:
        return read_dataset(paths[0], **options)
    if not paths:
        raise ReaderError("(no paths)", "no files given")
    names = options.get("class_names")
    grouping = options.get("groups")
    kind, arg = parse_grouping(grouping, paths[0]) if grouping is not None else (None, None)
    per_path = {k: v for k, v in options.items() if k != "groups"}
    if kind == "column":  # each file's table reader takes it
        per_path["group_column"] = arg
    parts = [_with_file(read_dataset(p, **per_path), str(p)) for p in paths]
    if any(d.n_spectra > 1 for d in parts) and all(
        d.groups is not None or not Path(p).is_dir() for p, d in zip(paths, parts, strict=True)
    ):
        # as in class folders: a file's spectra (a map, a series) are one group unless the file says otherwise
        parts = [d if d.groups is not None else _grouped_by_file(d, str(p)) for p, d in zip(paths, parts, strict=True)]
        logger.info("files hold several spectra; each file without a group column is the group of its spectra")
    order = None if names is None else parse_class_names(names, paths[0])
    ds = concat_datasets(parts, class_names=order, source=", ".join(str(p) for p in paths))
    if kind is None or kind == "column":
        return ds
    return regroup(ds, kind, arg, ds.provenance.get("source", paths[0]))


def _with_file(ds: SpectralDataset, name: str) -> SpectralDataset:
    """``ds`` with the per-spectrum ``file`` column, when its reader did not set one (a folder sets its own)."""
    if FILE_META in ds.meta:
        return ds
    return make_dataset(name, X=ds.X, axis=ds.axis, y=ds.y, classes=ds.classes, groups=ds.groups,
                        provenance=ds.provenance, meta={**ds.meta, FILE_META: np.full(ds.n_spectra, name)})


def _grouped_by_file(ds: SpectralDataset, name: str) -> SpectralDataset:
    return make_dataset(
        name,
        X=ds.X,
        axis=ds.axis,
        y=ds.y,
        classes=ds.classes,
        groups=np.full(ds.n_spectra, name),
        provenance={**ds.provenance, "groups_from": "file"},
        meta=ds.meta,
    )


def read_spectrum(path: str | Path, *, data: bytes | None = None, **options: Any) -> Spectrum:
    """Read a file that holds exactly one spectrum (two-column text, JCAMP-DX, or a one-spectrum file of any
    registered format, gzip included).

    Args:
        data: the file's bytes when the caller already read them (the drop-folder daemon hashes them too):
            text formats are then parsed from memory without touching the file again; binary formats are
            still read from ``path``.

    Raises:
        ReaderError: as :func:`read_dataset`, or a file holding several spectra.
    """
    p = Path(path)
    if data is not None and not options.get("format") and not is_gzip(data[:3]):
        # the daemon's hot path: plain two-column text parsed from memory, no registry round trip
        reader = _choose(p, data[:_HEAD])
        if reader is _AUTO_TEXT:
            text, enc = decode_text(data, p, options.get("encoding"))
            with spectra_policy("error", p):  # a table's truncated row is named by the table reader
                grid = parse_grid(p, text, delimiter=options.get("delimiter"))
            if grid.n_columns == 2:
                return spectrum_from_grid(grid, encoding=enc)
    ds = read_dataset(p, data=data, **options)
    if ds.n_spectra != 1:
        raise ReaderError(p, f"holds {ds.n_spectra} spectra where one was expected; use read_dataset")
    meta = dict(ds.provenance)
    meta.update({k: v[0].item() for k, v in ds.meta.items()})
    return Spectrum(ds.axis, ds.X[0], meta)
