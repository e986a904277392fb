"""Bruker OPUS files, read with brukeropus (the ``[opus]`` extra; MIT, maintained, numpy only).

OPUS is a directory of typed blocks (data, data-status parameters, instrument parameters, history). Its layout
is checked here first with bounded reads: the 24-byte header (magic ``0a 0a fe fe``, version, directory offset,
block count) and every directory entry (type, size in 32-bit words, offset) must lie inside the file, so a
truncated file is a :class:`ReaderError` naming the block and byte instead of whatever the parser meets.
brukeropus then pairs each data block with its data-status block (NPT, FXV, LXV, CSF, DXU).

Which spectrum: a Raman block (key ``ra...``) when the file has one, else the single-channel sample spectrum
(``sm``), else the only data block; the keys found are recorded in ``provenance["opus_data_keys"]``. A data
series (3D block) gives one spectrum per row. The X axis must be in wavenumbers (DXU ``WN``): a Raman block's
is the Raman shift; any other block's is used as cm^-1 as it is, with a warning.
"""

from __future__ import annotations

import logging
import struct
from pathlib import Path
from typing import Any

import numpy as np

from spectral_core.errors import MissingExtraError, ReaderError
from spectral_core.io._binary import ByteView, build_dataset, load_binary
from spectral_core.spectrum import SpectralDataset

__all__ = ["OPUS_MAGIC", "is_opus", "read_opus"]

logger = logging.getLogger(__name__)

OPUS_MAGIC = b"\n\n\xfe\xfe"
_HEADER = 24
_PRIORITY = ("ra", "rasm", "sm", "ra_c", "sm_c")


def is_opus(head: bytes) -> bool:
    """Whether ``head`` starts with the OPUS magic bytes."""
    return head.startswith(OPUS_MAGIC)


def _check_layout(v: ByteView) -> int:
    """Check the header and that every directory entry lies inside the file; returns the number of blocks."""
    _version, dir_start, max_blocks, n_blocks = v.unpack("<diii", 4, "the OPUS header (version, directory)")
    if n_blocks < 1 or max_blocks < n_blocks or dir_start < _HEADER:
        raise ReaderError(v.path, f"OPUS header at byte 12: directory at {dir_start} with {n_blocks} of {max_blocks} "
                                  "blocks; expected at least one block and a directory after the header")
    for i in range(n_blocks):
        at = dir_start + 12 * i
        _type, words, start = v.unpack("<iii", at, f"directory entry {i + 1} of {n_blocks}")
        if start <= 0 or words < 0:
            raise ReaderError(v.path, f"OPUS directory entry {i + 1} at byte {at}: offset {start}, size {words} words")
        v.need(start, 4 * words, f"block {i + 1} of {n_blocks} (directory entry at byte {at})")
        if _is_series(_type):
            # brukeropus allocates num_spectra x points before reading a data series: bound it by the block first
            _ver, n_spectra, first, data_size, info_size = v.unpack("<5i", start, f"the data-series header at byte {start}")
            if n_spectra < 0 or data_size < 0 or info_size < 0 or first < 0 or (
                first + n_spectra * (data_size + info_size) > 4 * words
            ):
                raise ReaderError(v.path, f"OPUS data series at byte {start}: {n_spectra} spectra of {data_size} bytes "
                                          f"do not fit in its block of {4 * words} bytes")
    return int(n_blocks)


def _is_series(type_int: int) -> bool:
    """A 3D data-series block: parameter bits (4-9) 0, data kind (10-16) not 0 or 13, bits 19-21 == 2."""
    return (type_int >> 4) & 0x3F == 0 and (type_int >> 10) & 0x7F not in (0, 13) and (type_int >> 19) & 0x7 == 2


def read_opus(path: str | Path, *, excitation_nm: float | None = None) -> SpectralDataset:
    """Read the Raman (or sample) spectrum of a Bruker OPUS file; the axis in cm^-1, increasing.

    Args:
        excitation_nm: accepted for a uniform interface; OPUS Raman blocks are already in Raman shift.

    Raises:
        ReaderError: the file name and what is wrong (byte offset and block for a truncated file).
        MissingExtraError: brukeropus is not installed (``pip install 'ramanedge[opus]'``).
    """
    p = Path(path)
    v = load_binary(p, "OPUS")
    if not is_opus(v.data):
        raise ReaderError(p, f"not an OPUS file: bytes 0-3 are {v.data[:4]!r}, expected {OPUS_MAGIC!r}")
    n_blocks = _check_layout(v)
    try:
        import brukeropus
    except ImportError:
        raise MissingExtraError("reading Bruker OPUS files", "opus", "brukeropus") from None
    try:
        # corrupt scale factors overflow inside brukeropus; the data model then refuses the non-finite values
        with np.errstate(over="ignore", invalid="ignore"):
            f = brukeropus.read_opus(str(p))
        items = [(d.key, d.x, np.atleast_2d(d.y), d) for d in f.iter_data()]
        items += [(d.key, d.x, np.atleast_2d(d.y), d) for d in f.iter_series()]
    except (ValueError, TypeError, KeyError, IndexError, AttributeError, struct.error) as exc:
        raise ReaderError(p, f"OPUS blocks could not be decoded ({type(exc).__name__}: {exc})") from None
    if not items:
        # brukeropus sets blocks it cannot decode aside (parse_error_blocks) instead of raising: say so
        failed = len(getattr(f, "parse_error_blocks", []) or [])
        why = f"; {failed} block(s) could not be decoded" if failed else ""
        raise ReaderError(p, f"OPUS file of {n_blocks} blocks holds no data block paired with its data-status block{why}")
    keys = [k for k, *_ in items]
    chosen = next((i for k in _PRIORITY for i, kk in enumerate(keys) if kk == k), None)
    if chosen is None:
        chosen = next((i for i, k in enumerate(keys) if k.startswith("ra")), 0)
    key, x, Y, data = items[chosen]
    # brukeropus Parameters is not a Mapping (no __contains__): .keys() is its membership test.
    dxu = str(data.params["dxu"] if "dxu" in data.params.keys() else "WN").upper()  # noqa: SIM118
    if dxu != "WN":
        raise ReaderError(p, f"OPUS block {key!r}: X units DXU={dxu}, expected WN (wavenumber, cm^-1)")
    meta: dict[str, Any] = {"format": "OPUS", "opus_data_keys": keys, "opus_block": key, "label": str(data.label)}
    if not key.startswith("ra"):
        logger.warning("%s: no Raman block in the OPUS file; reading %r (%s) as cm^-1", p, key, data.label)
    if excitation_nm is not None:
        logger.info("%s: excitation_nm is not used for OPUS Raman blocks (already Raman shift)", p)
    laser = f.params["rlw"] if "rlw" in f.params.keys() else None  # noqa: SIM118 (Raman laser wavenumber, cm^-1)
    if isinstance(laser, (int, float)) and laser > 0:
        meta["laser_nm"] = 1e7 / float(laser)
    per = [{"row": i} for i in range(Y.shape[0])] if Y.shape[0] > 1 else None
    return build_dataset(p, np.asarray(Y, dtype=np.float64), np.asarray(x, dtype=np.float64), reader="opus",
                         metadata=meta, spectrum_metadata=per)
