"""The host part of a model's preprocessing applied to a data set, shared by export (calibration and reference
spectra) and validation (the spectra both runtimes are compared on)."""

from __future__ import annotations

import logging

import numpy as np

from spectral_core.contract import ModelContract
from spectral_core.errors import ContractError, DataError
from spectral_core.preprocess import Preprocessor
from spectral_core.spectrum import SpectralDataset

__all__ = ["host_preprocess"]

logger = logging.getLogger(__name__)


def host_preprocess(
    pre: Preprocessor, ds: SpectralDataset, contract: ModelContract, *, what: str
) -> tuple[SpectralDataset, dict[int, str]]:
    """Run the host part of the preprocessing on ``ds`` and check the result lives on the model axis.

    Spectra that cannot be preprocessed (NaN, flat) are left out with a warning naming how many and why.

    Returns:
        (kept, bad): the preprocessed spectra that can be used, and the left-out rows (index -> reason).

    Raises:
        ContractError: the data cannot be put on the model axis.
        DataError: no spectrum survives preprocessing.
    """
    try:
        axis = pre.output_axis(ds.axis)
    except DataError as exc:
        raise ContractError(
            f"{what} ({ds.n_points} points, {ds.axis[0]:g}-{ds.axis[-1]:g} cm^-1) cannot be put on the model "
            f"axis: {exc}"
        ) from None
    contract.check_axis_matches(axis, what=f"{what} (after preprocessing)")
    X, bad = pre.transform_rows(ds.X, ds.axis)
    if bad:
        first = min(bad)
        logger.warning("%s: %d spectrum/spectra left out (row %d: %s)", what, len(bad), first, bad[first])
    keep = np.array([i for i in range(ds.n_spectra) if i not in bad], dtype=np.int64)
    if keep.size == 0:
        raise DataError(f"{what}: no spectrum survives preprocessing (first: {bad[min(bad)] if bad else ''})")
    kept = SpectralDataset(
        X=X[keep], axis=axis, y=None if ds.y is None else ds.y[keep], classes=ds.classes, provenance=ds.provenance
    )
    return kept, bad
