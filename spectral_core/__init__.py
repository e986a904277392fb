"""spectral_core: the torch-free core shared by every ramanedge package.

Data model, readers and writers, THE preprocessing, the model contract, synthetic data and errors.
Depends on numpy, scipy, pydantic and pybaselines only.
"""

from spectral_core._version import __version__
from spectral_core.contract import METADATA_KEY, ModelContract
from spectral_core.errors import (
    AxisError,
    ContractError,
    DataError,
    PreprocessError,
    RamanEdgeError,
    ReaderError,
)
from spectral_core.io import read_dataset, read_datasets, read_spectrum, write_csv, write_npz
from spectral_core.preprocess import AxisSpec, PreprocessConfig, Preprocessor
from spectral_core.spectrum import SpectralDataset, Spectrum
from spectral_core.synth import SyntheticCatalog, synth_dataset

__all__ = [
    "METADATA_KEY",
    "AxisError",
    "AxisSpec",
    "ContractError",
    "DataError",
    "ModelContract",
    "PreprocessConfig",
    "PreprocessError",
    "Preprocessor",
    "RamanEdgeError",
    "ReaderError",
    "SpectralDataset",
    "Spectrum",
    "SyntheticCatalog",
    "__version__",
    "read_dataset",
    "read_datasets",
    "read_spectrum",
    "synth_dataset",
    "write_csv",
    "write_npz",
]
