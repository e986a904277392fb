"""Subcommands of the core: ``ramanedge info`` and ``ramanedge synth``."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import numpy as np

from spectral_core.io import BAD_SPECTRA_POLICIES, FORMATS, read_datasets, write_npz
from spectral_core.spectrum import SpectralDataset

__all__ = [
    "add_data_option",
    "configure_convert",
    "configure_info",
    "configure_synth",
    "read_data",
    "read_options",
    "run_convert",
    "run_info",
    "run_synth",
    "summarise",
]


def summarise(ds: SpectralDataset) -> dict[str, Any]:
    """A JSON-able summary of a dataset: shapes, axis range and step, classes with counts, groups."""
    step = np.diff(ds.axis)
    out: dict[str, Any] = {
        "source": ds.provenance.get("source"),
        "reader": ds.provenance.get("reader"),
        "spectra": ds.n_spectra,
        "points": ds.n_points,
        "axis": {
            "min": float(ds.axis[0]),
            "max": float(ds.axis[-1]),
            "step_mean": float(step.mean()),
            "step_min": float(step.min()),
            "step_max": float(step.max()),
            "uniform": bool(np.allclose(step, step.mean(), rtol=1e-6, atol=1e-9)),
            "unit": "cm^-1",
        },
        "classes": ds.class_counts() if ds.y is not None else None,
        "n_classes": len(ds.classes) if ds.y is not None else 0,
        "groups": None if ds.groups is None else int(np.unique(ds.groups).size),
        # Readers refuse non-finite values, so a dataset that loaded has none; reported for completeness.
        "nan_count": int(np.isnan(ds.X).sum()),
        "intensity": {"min": float(ds.X.min()), "max": float(ds.X.max())},
    }
    if ds.provenance.get("skipped_spectra"):  # bad_spectra=skip left these out: never silently
        out["skipped_spectra"] = ds.provenance["skipped_spectra"]
    return out


def _add_read_options(p: argparse.ArgumentParser, *, classes_alias: bool = False) -> None:
    """Reader options shared by every command that reads data (see :func:`spectral_core.io.read_dataset`)."""
    g = p.add_argument_group("reading options")
    g.add_argument("--axis", help="axis for files that do not carry one: START:STOP:POINTS (cm^-1) or a .npy file")
    g.add_argument("--labels", help="labels for files that do not carry them (.npy with indices or one-hot)")
    names = ["--class-names", "--classes"] if classes_alias else ["--class-names"]
    g.add_argument(*names, dest="class_names", metavar="NAMES",
                   help="class names for label indices 0,1,..., comma-separated or a .json/.txt file")
    g.add_argument("--pattern", help="files to read inside each class folder (glob, e.g. COOH.csv)")
    g.add_argument("--label-from-column", metavar="REGEX",
                   help="tables with one spectrum per column: the class is the first group of REGEX on the column name")
    g.add_argument("--label-column", help="tables with one spectrum per row: name or 0-based index of the class column")
    g.add_argument("--layout", choices=("auto", "rows", "columns"), help="table orientation (default auto)")
    g.add_argument("--delimiter", help="column separator of text files (sniffed by default)")
    g.add_argument("--encoding", help="text encoding (default: UTF-8, then Latin-1 for textual files)")
    g.add_argument("--x-var", help=".mat: variable holding the spectra (default X)")
    g.add_argument("--y-var", help=".mat: variable holding the labels (default Y or y)")
    g.add_argument("--axis-var", help=".mat: variable holding the axis (default wave_number or axis)")
    g.add_argument("--excitation-nm", type=float,
                   help="laser wavelength (nm) to convert a wavelength axis to cm^-1 "
                        "(JCAMP-DX, OceanView, SPC, SPE, SIF, WDF)")
    g.add_argument("--intensity-column", metavar="NAME",
                   help="B&W Tek exports: dark_subtracted (default), raw, or a column name as in the file")
    g.add_argument("--max-decompressed-mb", type=float, metavar="MIB",
                   help="refuse a .gz file larger than this once decompressed (default 256)")
    g.add_argument("--resample", metavar="START:STOP:POINTS",
                   help="put every file on this axis (cm^-1) by cubic spline, e.g. single spectra on different axes")
    g.add_argument("--groups", metavar="file|folder|column:NAME|regex:PATTERN|none",
                   help="which spectra belong together (never split between training and test): the file they "
                        "came from (the default when files hold several spectra), its folder, a table column, a "
                        "regex on the file path, or none; train and evaluate also take similar[:R] and "
                        "adjacent[:R] (groups from the spectra's correlation, for files without sample ids)")
    g.add_argument("--format", choices=FORMATS, help="force a reader instead of sniffing the content")
    g.add_argument("--bad-spectra", choices=BAD_SPECTRA_POLICIES,
                   help="a table or map whose spectra are partly bad (NaN/inf, a truncated row): error (default: "
                        "refused, naming each bad spectrum) or skip (left out and listed under skipped_spectra)")


_READ_OPTIONS = (
    "axis", "labels", "class_names", "pattern", "label_from_column", "label_column", "layout", "delimiter",
    "encoding", "x_var", "y_var", "axis_var", "excitation_nm", "format", "resample", "groups", "intensity_column",
    "max_decompressed_mb", "bad_spectra",
)


def read_options(args: argparse.Namespace) -> dict[str, Any]:
    """Reader options given on the command line, as keyword arguments of ``read_dataset``."""
    opts: dict[str, Any] = {}
    for name in _READ_OPTIONS:
        value = getattr(args, name, None)
        if value is not None:
            opts[name] = value
    if "delimiter" in opts and opts["delimiter"] in ("\\t", "tab"):
        opts["delimiter"] = "\t"
    return opts


def add_data_option(
    p: argparse.ArgumentParser, *, flag: str = "--data", required: bool = True, help: str = "the data"
) -> None:
    """A repeatable data option (``--data A --data B``) plus the shared reading options.

    Every command that reads data takes the same options from here, so a file that ``ramanedge info`` reads is
    read the same way by train, evaluate, validate, explain, embed and convert.
    """
    p.add_argument(flag, action="append", required=required, metavar="PATH",
                   help=f"{help}: a file or a folder with one sub-folder per class; repeat it to stack several "
                        "(one axis, or put them on one with --resample)")
    _add_read_options(p)


def read_data(args: argparse.Namespace, attr: str = "data") -> SpectralDataset:
    """Read every path given to a repeatable data option, with the reading options, as one dataset.

    Raises:
        ReaderError: a path cannot be read, or the files sit on different axes (the message says to resample).
    """
    value = getattr(args, attr)
    paths = value if isinstance(value, list) else [value]
    return read_datasets(paths, **read_options(args))


def configure_info(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "data", nargs="+",
        help="a data file or a folder with one sub-folder per class; several files on one axis are stacked",
    )
    _add_read_options(p, classes_alias=True)


def run_info(args: argparse.Namespace) -> int:
    paths = args.data if isinstance(args.data, list) else [args.data]
    ds = read_datasets(paths, **read_options(args))
    json.dump(summarise(ds), sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


def configure_convert(p: argparse.ArgumentParser) -> None:
    p.add_argument("inputs", nargs="+", metavar="IN",
                   help="data files or class folders, in any readable format; several are stacked")
    p.add_argument("--out", required=True, help="the .npz to write (X, y, axis, classes, groups, provenance)")
    p.add_argument("--keep-classes", metavar="A,B", help="keep only these classes, in this order")
    _add_read_options(p)


def run_convert(args: argparse.Namespace) -> int:
    """``ramanedge convert``: any readable data -> one .npz that every command reads without options."""
    from spectral_core.errors import DataError

    if not str(args.out).lower().endswith(".npz"):
        raise DataError(f"--out must name a .npz file, got {args.out!r}")
    ds = read_datasets(args.inputs, **read_options(args))
    if args.keep_classes:
        ds = ds.select_classes([c.strip() for c in args.keep_classes.split(",") if c.strip()])
    write_npz(ds, args.out)
    print(json.dumps({"out": str(args.out), **summarise(ds)}))
    return 0


def configure_synth(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, help="output .npz file")
    p.add_argument("--classes", type=int, default=8)
    p.add_argument("--per-class", type=int, default=200)
    p.add_argument("--points", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0, help="seeds the per-spectrum variation and noise")
    p.add_argument("--catalog-seed", type=int, default=0, help="seeds the class templates")
    p.add_argument(
        "--instrument-axis", action="store_true",
        help="use a non-uniform dispersive-spectrometer axis (785 nm, linear in wavelength) instead of 400-1800 cm^-1",
    )


def run_synth(args: argparse.Namespace) -> int:
    from spectral_core.synth import instrument_axis, synth_dataset

    axis = instrument_axis(args.points) if args.instrument_axis else None
    ds = synth_dataset(
        args.classes, args.per_class, args.points, args.seed, catalog_seed=args.catalog_seed, axis=axis
    )
    write_npz(ds, args.out)
    print(json.dumps({"out": str(args.out), "spectra": ds.n_spectra, "points": ds.n_points,
                      "classes": list(ds.classes)}))
    return 0
