"""Which spectra belong together (repeat acquisitions of one sample, one patient, one map): the ``groups``
reading option. Spectra of one group are never split between training and test.

``groups`` takes:

* ``file``: the file each spectrum came from (the default when files hold several spectra each);
* ``folder``: the folder holding that file (``class/sample_12/scan_3.csv`` -> ``class/sample_12``);
* ``column:NAME``: a column of a table (one spectrum per row), as the ``group_column`` option;
* ``regex:PATTERN``: the first capture group (or the whole match) of ``PATTERN`` searched in the file's path
  relative to the folder read, e.g. ``regex:patient(\\d+)``;
* ``none``: no groups (every spectrum on its own; a warning says splits may then leak repeat acquisitions).
"""

from __future__ import annotations

import logging
import re
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from spectral_core.errors import ReaderError
from spectral_core.spectrum import SpectralDataset

__all__ = ["FILE_META", "GROUPINGS", "parse_grouping", "regroup"]

logger = logging.getLogger(__name__)

GROUPINGS = ("file", "folder", "column:NAME", "regex:PATTERN", "none")
#: the per-spectrum meta column naming the file (relative path) a spectrum was read from
FILE_META = "file"


def parse_grouping(value: str, path: str | Path) -> tuple[str, str | None]:
    """``(kind, argument)`` of a ``groups`` option value.

    Raises:
        ReaderError: an unknown form, or a regex that does not compile.
    """
    text = str(value).strip()
    kind, sep, arg = text.partition(":")
    kind = kind.strip().lower()
    if kind in ("file", "folder", "none") and not sep:
        return kind, None
    if kind in ("column", "regex") and sep and arg:
        if kind == "regex":
            try:
                re.compile(arg)
            except re.error as exc:
                raise ReaderError(path, f"groups=regex:{arg[:40]!r} is not a regular expression ({exc})") from None
        return kind, arg
    raise ReaderError(path, f"groups={text[:40]!r}: choose one of {', '.join(GROUPINGS)}")


def regroup(ds: SpectralDataset, kind: str, arg: str | None, path: str | Path) -> SpectralDataset:
    """``ds`` with its groups set as ``kind`` says (``column`` is done by the table reader itself).

    Raises:
        ReaderError: the data do not say which file each spectrum came from (one file read on its own has a
            single file: grouping by file would put every spectrum in one group), or a path the regex misses.
    """
    if kind == "column":
        return ds
    if kind == "none":
        if ds.groups is not None:
            logger.warning("%s: groups=none drops the data's groups: repeat acquisitions of one sample can now "
                           "fall on both sides of a split", path)
        return _with_groups(ds, None, "none (asked)")
    files = ds.meta.get(FILE_META)
    if files is None:
        raise ReaderError(path, f"groups={kind}: the data do not say which file each spectrum came from (read a "
                                "folder or several files, or use groups=column:NAME)")
    names = [str(f) for f in np.asarray(files).tolist()]
    if kind == "file":
        groups = names
    elif kind == "folder":
        groups = [str(PurePosixPath(n).parent) for n in names]
    else:
        pattern = re.compile(str(arg))
        groups = []
        for n in names:
            m = pattern.search(n)
            if m is None:
                raise ReaderError(path, f"groups=regex:{str(arg)[:40]!r} does not match the file {n[:80]!r}")
            groups.append(m.group(1) if m.groups() else m.group(0))
    n_groups = len(set(groups))
    logger.info("%s: %d spectra in %d groups (groups=%s)", path, ds.n_spectra, n_groups,
                kind if arg is None else f"{kind}:{arg}")
    return _with_groups(ds, np.asarray(groups, dtype=str), kind if arg is None else f"{kind}:{arg}")


def _with_groups(ds: SpectralDataset, groups: Any, how: str) -> SpectralDataset:
    return SpectralDataset(X=ds.X, axis=ds.axis, y=ds.y, classes=ds.classes, groups=groups,
                           provenance={**ds.provenance, "groups_from": how}, meta=ds.meta)
