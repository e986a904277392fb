"""Readers and writers. Every reader returns the same data model; :func:`read_dataset` picks one by
content (magic bytes, JCAMP labels, the shape of delimited text), checked against the extension.

Formats (one private module each):

* ``.npz`` (X, y, axis, classes, groups): :func:`read_npz`, :func:`write_npz`.
* ``.npy``: a spectra matrix, or a Bacteria-ID ``X_<name>.npy`` + ``y_<name>.npy`` pair; needs ``axis=``.
* two-column text (csv/tsv/txt/...): one spectrum (:func:`read_spectrum`), :func:`write_csv`.
* JCAMP-DX (``.jdx``/``.dx``): one spectrum, AFFN ``XYDATA`` or ``XYPOINTS``.
* delimited tables: one spectrum per row, or the transposed layout (``WN`` column + one column a spectrum).
* MATLAB ``.mat`` (v7.3 via h5py, older via scipy).
* a folder with one sub-folder per class holding any of the above.
* binary vendor files, found by magic bytes or extension (one dataset row a spectrum, per-spectrum facts such
  as map coordinates in ``provenance["spectrum_metadata"]``): Renishaw WiRE ``.wdf`` (single, series, maps),
  Galactic ``.spc`` (single and multi-subfile), Princeton Instruments ``.spe`` (2.x and 3.0), Andor ``.sif``, Bruker OPUS (``[opus]`` extra).

Options of :func:`read_dataset` (each used by the readers it applies to; others log a warning):
``axis``, ``labels``, ``class_names``, ``encoding``, ``delimiter``, ``layout``, ``label_column``,
``group_column``, ``label_from_column``, ``x_var``, ``y_var``, ``axis_var``, ``excitation_nm``, ``pattern``,
``resample`` (``"START:STOP:POINTS"``: put every file on one axis by cubic spline, e.g. single spectra measured
on different axes; never extrapolates) and ``format`` to force a reader (npz, npy, text, table, jcamp, mat,
folder, wdf, spc, spe, sif, opus).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from spectral_core.errors import ReaderError
from spectral_core.io._common import (
    concat_datasets,
    decode_text,
    make_dataset,
    parse_axis_option,
    parse_class_names,
    read_bytes,
    resample_dataset,
)
from spectral_core.io._folder import read_class_folders
from spectral_core.io._grid import parse_grid
from spectral_core.io._jcamp import is_jcamp, jcamp_spectrum, read_jcamp
from spectral_core.io._mat import is_mat, read_mat
from spectral_core.io._npy import read_npy
from spectral_core.io._npz import read_npz, write_npz
from spectral_core.io._opus import is_opus, read_opus
from spectral_core.io._sif import is_sif, read_sif
from spectral_core.io._spc import is_spc, read_spc
from spectral_core.io._spe import is_spe, read_spe
from spectral_core.io._table import read_table, table_from_grid
from spectral_core.io._text import read_text_spectrum, spectrum_from_grid, write_csv
from spectral_core.io._wdf import is_wdf, read_wdf
from spectral_core.spectrum import SpectralDataset, Spectrum

__all__ = [
    "FORMATS",
    "concat_datasets",
    "read_dataset",
    "read_datasets",
    "read_jcamp",
    "read_mat",
    "read_npy",
    "read_npz",
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

# Binary vendor formats: kind -> (content test on the first _SNIFF_BYTES bytes, extensions, reader(path, **opts)).
_VENDOR: dict[str, tuple[Callable[[bytes], bool], tuple[str, ...], Callable[..., SpectralDataset]]] = {
    "wdf": (is_wdf, (".wdf",), read_wdf),
    "spc": (is_spc, (".spc",), read_spc),
    "spe": (is_spe, (".spe",), read_spe),
    "sif": (is_sif, (".sif",), read_sif),
    "opus": (is_opus, (), read_opus),  # OPUS names files .0, .1, ...: found by content only
}
FORMATS = ("npz", "npy", "text", "table", "jcamp", "mat", "folder", *_VENDOR)
_SNIFF_BYTES = 4100  # SPE keeps its magic (0x5555) at bytes 4098-4099
_OPTIONS: dict[str, frozenset[str]] = {
    "npz": frozenset(),
    "npy": frozenset({"axis", "labels", "class_names"}),
    "jcamp": frozenset({"excitation_nm", "encoding"}),
    "mat": frozenset({"x_var", "y_var", "axis_var", "axis", "labels", "class_names"}),
    **{kind: frozenset({"excitation_nm"}) for kind in _VENDOR},
    "delimited": frozenset(
        {"axis", "labels", "class_names", "encoding", "delimiter", "layout", "label_column", "group_column",
         "label_from_column"}
    ),
}
_ALL_OPTIONS = frozenset().union(*_OPTIONS.values()) | {"pattern", "resample"}
_BINARY = {".npy": "npy", ".npz": "npz", ".mat": "mat", **{e: k for k, (_, exts, _) in _VENDOR.items() for e in exts}}
_SPREADSHEETS = (".xlsx", ".xls", ".xlsm", ".ods")


def sniff_format(path: str | Path) -> str:
    """The reader for ``path``: folder, npz, npy, mat, jcamp or delimited (text/table), from its content.

    Raises:
        ReaderError: a missing path, a spreadsheet, or content that contradicts a binary extension.
    """
    p = Path(path)
    if p.is_dir():
        return "folder"
    if not p.exists():
        raise ReaderError(p, "no such file or folder")
    if p.suffix.lower() in _SPREADSHEETS:
        raise ReaderError(p, f"{p.suffix.lower()} spreadsheets are not read; export the sheet as .csv")
    try:
        with open(p, "rb") as f:
            head = f.read(_SNIFF_BYTES)
    except OSError as exc:
        raise ReaderError(p, f"cannot read ({exc.strerror or exc})") from None
    return _sniff_content(p, head)


def _sniff_content(p: Path, head: bytes) -> str:
    """The reader for a file named ``p`` whose first bytes are ``head`` (see :func:`sniff_format`)."""
    suffix = p.suffix.lower()
    if suffix in _SPREADSHEETS:
        raise ReaderError(p, f"{suffix} spreadsheets are not read; export the sheet as .csv")
    if not head:
        raise ReaderError(p, "empty file")
    if head.startswith(b"\x93NUMPY"):
        kind = "npy"
    elif head.startswith(b"PK\x03\x04"):
        kind = "npz"
    elif is_mat(head):
        kind = "mat"
    else:
        kind = next((k for k, (test, _, _) in _VENDOR.items() if test(head)), "")
    expected = _BINARY.get(suffix)
    if expected is not None and kind != expected and not (kind == "" and (expected == "mat" or expected in _VENDOR)):
        found = kind or "text or unknown bytes"
        raise ReaderError(p, f"the extension says {suffix} but the content is {found}")
    if kind:
        return kind
    if expected == "mat" or expected in _VENDOR:
        return expected  # MATLAB v4 files have no header (scipy decides); a vendor reader names the wrong magic
    return "delimited"


def _warn_unused(p: Path, kind: str, options: dict[str, Any]) -> None:
    unused = sorted(k for k, v in options.items() if v is not None and k not in _OPTIONS.get(kind, frozenset()))
    if unused:
        logger.warning("%s: option(s) %s do not apply to the %s reader and were ignored", p, unused, kind)


def _read_file(path: Path, **options: Any) -> SpectralDataset:
    fmt = options.pop("format", None)
    kind = sniff_format(path)
    if kind == "folder":
        raise ReaderError(path, "is a folder where a file was expected")
    if fmt is not None and fmt not in FORMATS:
        raise ReaderError(path, f"unknown format {fmt!r}; choose from {FORMATS}")
    if fmt in ("text", "table", "jcamp") and kind != "delimited":
        raise ReaderError(path, f"format={fmt} but the content is {kind}")
    if (fmt in ("npz", "npy", "mat") or fmt in _VENDOR) and kind != fmt:
        raise ReaderError(path, f"format={fmt} but the content is {kind if kind != 'delimited' else 'text'}")
    if kind == "npz":
        _warn_unused(path, "npz", options)
        return read_npz(path)
    if kind == "npy":
        _warn_unused(path, "npy", options)
        return read_npy(path, **{k: options[k] for k in _OPTIONS["npy"] if k in options})
    if kind == "mat":
        _warn_unused(path, "mat", options)
        return read_mat(path, **{k: options[k] for k in _OPTIONS["mat"] if k in options})
    if kind in _VENDOR:
        _warn_unused(path, kind, options)
        return _VENDOR[kind][2](path, excitation_nm=options.get("excitation_nm"))
    text, enc = decode_text(read_bytes(path), path, options.get("encoding"))
    if fmt == "jcamp" or (fmt is None and is_jcamp(text[:4096])):
        _warn_unused(path, "jcamp", options)
        s = read_jcamp(path, excitation_nm=options.get("excitation_nm"), encoding=options.get("encoding"))
        return _one(s, path)
    _warn_unused(path, "delimited", options)
    grid = parse_grid(path, text, delimiter=options.get("delimiter"))
    table_opts = {k: options[k] for k in _OPTIONS["delimited"] - {"encoding", "delimiter"} if k in options}
    wants_table = any(table_opts.get(k) is not None for k in ("label_column", "label_from_column", "labels", "axis"))
    if fmt == "text" or (fmt is None and grid.n_columns == 2 and not wants_table
                         and table_opts.get("layout", "auto") == "auto"):
        ds = _one(spectrum_from_grid(grid, encoding=enc), path)
    else:
        ds = table_from_grid(grid, **table_opts)
    ds.provenance["encoding"] = enc
    return ds


def _one(s: Spectrum, path: Path) -> SpectralDataset:
    return make_dataset(path, X=s.intensities[None, :], axis=s.axis, provenance=dict(s.metadata))


def read_dataset(path: str | Path, **options: Any) -> SpectralDataset:
    """Read spectra from ``path`` (a file or a folder of class sub-folders), choosing the reader by content.

    Args:
        path: the file or folder.
        **options: reader options (see the module docstring), e.g. ``axis="100:4278:2090"``,
            ``labels="array_labels.npy"``, ``class_names="COVID-19,Suspected,Healthy"``, ``pattern="COOH.csv"``,
            ``label_from_column=r"^(\\S+)"``.

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

    def read_file(f: Path, **file_opts: Any) -> SpectralDataset:
        ds = _read_file(f, **file_opts)
        return ds if target is None else resample_dataset(ds, target, f)

    if sniff_format(p) == "folder":
        if opts.get("format") not in (None, "folder"):
            raise ReaderError(p, f"format={opts['format']} but this is a folder")
        opts.pop("format", None)
        return read_class_folders(p, read_file, **opts)
    if "pattern" in opts:
        logger.warning("%s: option pattern applies to folders only and was ignored", p)
        opts.pop("pattern")
    if opts.get("format") == "folder":
        raise ReaderError(p, "format=folder but this is a file")
    return read_file(p, **opts)


def read_datasets(paths: Sequence[str | Path], **options: Any) -> SpectralDataset:
    """Read several files or folders with the same options and stack them (same axis required).

    Classes merge in order of first appearance, or in the order of ``class_names``.
    """
    if len(paths) == 1:
        return read_dataset(paths[0], **options)
    if not paths:
        raise ReaderError("(no paths)", "no files given")
    names = options.get("class_names")
    parts = [read_dataset(p, **options) for p in paths]
    order = None if names is None else parse_class_names(names, paths[0])
    return concat_datasets(parts, class_names=order, source=", ".join(str(p) for p in paths))


def read_spectrum(path: str | Path, *, data: bytes | None = None, **options: Any) -> Spectrum:
    """Read a file that holds exactly one spectrum (two-column text, JCAMP-DX, or a one-row dataset).

    Args:
        data: the file's bytes when the caller already read them (the drop-folder daemon hashes them too):
            text and JCAMP-DX are then parsed from memory without touching the file again; binary formats
            are still read from ``path``.
    """
    p = Path(path)
    kind = sniff_format(p) if data is None else _sniff_content(p, data[:_SNIFF_BYTES])
    if kind == "delimited" and not options.get("format"):
        text, enc = decode_text(read_bytes(p) if data is None else data, p, options.get("encoding"))
        if is_jcamp(text[:4096]):
            return jcamp_spectrum(p, text, excitation_nm=options.get("excitation_nm"))
        grid = parse_grid(p, text, delimiter=options.get("delimiter"))
        if grid.n_columns == 2:
            return spectrum_from_grid(grid, encoding=enc)
    ds = read_dataset(p, **options)
    if ds.n_spectra != 1:
        raise ReaderError(p, f"holds {ds.n_spectra} spectra where one was expected; use read_dataset")
    return Spectrum(ds.axis, ds.X[0], dict(ds.provenance))
