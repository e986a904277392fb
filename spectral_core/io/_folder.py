"""A folder with one sub-folder per class, each holding spectra in any supported file format.

The class of every spectrum is the name of its sub-folder; classes are ordered by sorted folder name
(or ``class_names=``). ``pattern=`` (a glob, e.g. ``COOH.csv``) picks the files inside each class folder;
with the default ``*`` every file with a known data extension (``.gz`` of one included) is read. A class
folder without spectra is an error, never a silently missing class.

When any file holds several spectra (a table, a map, a series), each file is the group of its spectra
(``groups`` = the file's path relative to the folder) unless the file gives its own groups: spectra of one
file are never split between training and test. The provenance says so (``groups_from``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from spectral_core.errors import ReaderError
from spectral_core.io._common import concat_datasets, make_dataset, parse_class_names
from spectral_core.io._groups import FILE_META
from spectral_core.spectrum import SpectralDataset

__all__ = ["DATA_SUFFIXES", "read_class_folders"]

logger = logging.getLogger(__name__)

DATA_SUFFIXES = frozenset({".csv", ".tsv", ".txt", ".dat", ".asc", ".jdx", ".dx", ".jcamp", ".npy", ".npz", ".mat"})


def read_class_folders(
    path: str | Path,
    read_file: Callable[..., SpectralDataset],
    *,
    suffixes: frozenset[str] = DATA_SUFFIXES,
    pattern: str = "*",
    class_names: Any = None,
    **file_options: Any,
) -> SpectralDataset:
    """Read every class sub-folder of ``path``; ``read_file(path, **file_options)`` reads one file.

    Raises:
        ReaderError: no class sub-folders, a class folder with no matching spectra, files whose axes differ,
            or ``class_names`` that do not match the folders.
    """
    root = Path(path)
    subdirs = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not subdirs:
        raise ReaderError(root, "a folder of spectra needs one sub-folder per class, found none")
    names = [d.name for d in subdirs]
    if class_names is not None:
        order = parse_class_names(class_names, root)
        if sorted(order) != sorted(names):
            raise ReaderError(root, f"class_names {order} do not match the class folders {names}")
        names = order
    for key in ("labels", "label_column", "label_from_column"):
        if file_options.get(key) is not None:
            raise ReaderError(root, f"option {key} conflicts with class folders (the folder name is the class)")
    read: list[tuple[Path, int, SpectralDataset]] = []
    files_read: dict[str, list[str]] = {}
    for cls_index, name in enumerate(names):
        folder = root / name
        files = sorted(
            f for f in folder.glob(pattern)
            if f.is_file() and not f.name.startswith(".") and (pattern != "*" or _known(f, suffixes))
        )
        if not files:
            raise ReaderError(folder, f"class folder {name!r} holds no spectra (no file matching {pattern!r})")
        read.extend((f, cls_index, read_file(f, **file_options)) for f in files)
        files_read[name] = [str(f.relative_to(root)) for f in files]
    by_file = any(ds.n_spectra > 1 for _, _, ds in read)
    parts: list[SpectralDataset] = []
    for f, cls_index, ds in read:
        groups = ds.groups
        if groups is None and by_file:
            groups = np.full(ds.n_spectra, str(f.relative_to(root).as_posix()))
        parts.append(
            make_dataset(
                f, X=ds.X, axis=ds.axis, y=np.full(ds.n_spectra, cls_index, dtype=np.int64),
                classes=tuple(names), groups=groups, provenance=ds.provenance,
                meta={**ds.meta, FILE_META: np.full(ds.n_spectra, f.relative_to(root).as_posix())},
            )
        )
    ds = concat_datasets(parts, class_names=names, source=str(root))
    provenance: dict[str, Any] = {
        "source": str(root), "reader": "class-folders", "pattern": pattern, "files": files_read,
    }
    if "skipped_spectra" in ds.provenance:
        provenance["skipped_spectra"] = ds.provenance["skipped_spectra"]
    if by_file:
        provenance["groups_from"] = "file (files hold several spectra; a file's own group column wins)"
        logger.info(
            "%s: files hold several spectra; each file is the group of its spectra (%d files, %d spectra)",
            root, len(read), ds.n_spectra,
        )
    return make_dataset(root, X=ds.X, axis=ds.axis, y=ds.y, classes=ds.classes, groups=ds.groups,
                        provenance=provenance, meta=ds.meta)


def _known(f: Path, suffixes: frozenset[str]) -> bool:
    """A data file by its extension, or a gzip of one (``x.csv.gz``)."""
    suffix = f.suffix.lower()
    if suffix == ".gz":
        suffix = Path(f.stem).suffix.lower()
    return suffix in suffixes
