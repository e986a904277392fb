"""The model contract: everything a runtime needs to use a model, stored inside the ONNX file.

It round-trips through ONNX ``metadata_props`` as one versioned JSON document under the key
:data:`METADATA_KEY`. onnxruntime exposes that map (``session.get_modelmeta().custom_metadata_map``), so the
edge runtime reads the contract without torch or onnx installed.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from spectral_core.drift import DriftModel
from spectral_core.errors import ContractError
from spectral_core.preprocess import STEPS, PreprocessConfig, default_axis_tolerance
from spectral_core.spectrum import check_axis

__all__ = ["CONTRACT_VERSION", "METADATA_KEY", "EnsembleSpec", "ModelContract", "OpenSet", "ReferenceSpectra"]

CONTRACT_VERSION = 1
METADATA_KEY = "ramanedge.contract"


class OpenSet(BaseModel):
    """Open-set ("unknown") detection: a spectrum farther than ``thresholds[c]`` from the centroid of its
    predicted class ``c`` in the L2-normalised embedding space is reported as unknown."""

    model_config = ConfigDict(extra="forbid")

    metric: Literal["cosine"] = "cosine"
    centroids: list[list[float]]
    thresholds: list[float]
    quantile: float = Field(
        default=0.99, gt=0, le=1,
        description="quantile of the thresholds: of training distances (older contracts), else 1 - target rate",
    )
    # How the thresholds were calibrated (absent in contracts written before calibrated unknowns: then the
    # thresholds are a training-distance quantile and nothing below is known).
    target_unknown_rate: float | None = Field(
        default=None, gt=0, lt=1, description="the false-unknown rate on known spectra the thresholds aim at"
    )
    calibration_spectra: int | None = Field(default=None, ge=0, description="held-out known spectra the fit used")
    calibration_counts: list[int] | None = Field(
        default=None, description="calibration spectra per predicted class, in class order"
    )
    threshold_rules: list[Literal["class", "pooled"]] | None = Field(
        default=None, description="per class: its own quantile, or the pooled quantile scaled to the class"
    )
    scales: list[float] | None = Field(
        default=None, description="per class: the distance scale (training quantile) the pooled rule multiplies"
    )
    calibration: str | None = Field(default=None, description="what the calibration spectra were, in words")
    calibration_sha256: str | None = Field(default=None, description="fingerprint of the calibration spectra")


class ReferenceSpectra(BaseModel):
    """A few spectra on the model axis with the probabilities the exporter computed for them: the runtime's
    self-test before it serves a model."""

    model_config = ConfigDict(extra="forbid")

    inputs: list[list[float]]
    probabilities: list[list[float]]
    atol: float = 1e-3
    #: the class name the exported model predicts for each reference spectrum (absent in older contracts):
    #: the runtime checks its predictions by name, so a contract whose class list was reordered or edited
    #: fails the self-test even though the probabilities still match
    predicted_classes: list[str] | None = None


class EnsembleSpec(BaseModel):
    """The model is an ensemble of ``size`` RamanNets in one graph (``trainer.ensemble``). Its inputs and outputs
    are a single model's; ``combination`` says how each output is made from the members'. The contract's
    ``weights_sha256`` is the hash of ``member_weights_sha256`` (``trainer.ensemble.ensemble_weights_sha256``)."""

    model_config = ConfigDict(extra="forbid")

    size: int = Field(ge=2)
    member_weights_sha256: list[str] = Field(description="each member's weights hash (its run's), in member order")
    combination: dict[str, str] = Field(default_factory=dict, description="per output, in words")

    @model_validator(mode="after")
    def _one_hash_a_member(self) -> EnsembleSpec:
        if len(self.member_weights_sha256) != self.size:
            raise ValueError(f"ensemble of {self.size} with {len(self.member_weights_sha256)} member hashes")
        return self


class ModelContract(BaseModel):
    """What a model expects and what it answers. Versioned; unknown fields are refused."""

    model_config = ConfigDict(extra="forbid")

    contract_version: int = CONTRACT_VERSION
    model_name: str = "ramannet"
    classes: list[str]
    axis: list[float] = Field(description="the model axis, cm^-1, one value per input point")
    axis_unit: Literal["cm^-1"] = "cm^-1"
    input_name: str = "spectrum"
    input_dtype: Literal["float32", "float16"] = "float32"
    output_names: dict[str, str] = Field(
        default_factory=lambda: {"probabilities": "probabilities", "logits": "logits", "embedding": "embedding"}
    )
    preprocess: PreprocessConfig
    preprocess_hash: str
    axis_tolerance_cm1: float | None = Field(
        default=None,
        ge=0,
        description="how far (cm^-1, at each end) a spectrum's measured range may fall short of the model axis "
        "and still be classified, its edge filled from the nearest measured point; None (and contracts written "
        "before this field): the default, the larger of 2 cm^-1 and one model-axis step",
    )
    in_graph_steps: list[str] = Field(
        default_factory=list, description="preprocessing steps the graph runs itself (skipped on the host)"
    )
    open_set: OpenSet | None = None
    reference: ReferenceSpectra | None = None
    #: PCA drift model of the preprocessed training spectra (absent in older contracts: drift not available)
    drift: DriftModel | None = None
    #: set when the graph is an ensemble of several RamanNets (absent: a single model)
    ensemble: EnsembleSpec | None = None
    weights_sha256: str = ""
    data_sha256: str = ""
    package_version: str = ""
    opset: int = 0
    precision: Literal["fp32", "fp16", "int8-dynamic", "int8-static"] = "fp32"
    created: str = ""
    extra: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _consistent(self) -> ModelContract:
        if self.contract_version != CONTRACT_VERSION:
            raise ValueError(
                f"contract version {self.contract_version} is not supported (this ramanedge reads {CONTRACT_VERSION})"
            )
        if len(self.classes) < 2 or len(set(self.classes)) != len(self.classes):
            raise ValueError(f"classes must be at least 2 distinct names, got {self.classes}")
        check_axis(self.axis, what="contract axis")
        if self.preprocess.hash() != self.preprocess_hash:
            raise ValueError("preprocess_hash does not match the preprocessing config (edited or corrupted)")
        unknown = set(self.in_graph_steps) - set(STEPS)
        if unknown:
            raise ValueError(f"unknown in-graph step(s) {sorted(unknown)}")
        if self.open_set is not None:
            k = len(self.classes)
            if len(self.open_set.centroids) != k or len(self.open_set.thresholds) != k:
                raise ValueError(f"open_set needs one centroid and one threshold per class ({k})")
            for name in ("calibration_counts", "threshold_rules", "scales"):
                per_class = getattr(self.open_set, name)
                if per_class is not None and len(per_class) != k:
                    raise ValueError(f"open_set.{name} needs one entry per class ({k})")
        if self.drift is not None and len(self.drift.mean) != len(self.axis):
            raise ValueError(f"drift model has {len(self.drift.mean)} points, the model axis {len(self.axis)}")
        return self

    @property
    def n_points(self) -> int:
        return len(self.axis)

    def axis_array(self) -> NDArray[np.float64]:
        return np.asarray(self.axis, dtype=np.float64)

    def axis_tolerance(self) -> float:
        """The axis tolerance in force, cm^-1: ``axis_tolerance_cm1``, or the default for the model axis."""
        if self.axis_tolerance_cm1 is not None:
            return float(self.axis_tolerance_cm1)
        return default_axis_tolerance(self.axis)

    def to_metadata(self) -> dict[str, str]:
        """The ``metadata_props`` entries to embed in an ONNX model."""
        return {METADATA_KEY: self.model_dump_json()}

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, str]) -> ModelContract:
        """Read and check the contract from ONNX metadata (e.g. ``custom_metadata_map`` of an ORT session)."""
        text = metadata.get(METADATA_KEY)
        if text is None:
            raise ContractError(
                f"the model carries no ramanedge contract (metadata key {METADATA_KEY!r} missing); "
                "export it with `ramanedge export`"
            )
        try:
            json.loads(text)
            return cls.model_validate_json(text)
        except (ValidationError, ValueError) as exc:
            raise ContractError(f"the model's contract is invalid: {exc}") from None

    def check_axis_matches(self, axis: NDArray[np.float64], *, what: str = "data", atol: float = 1e-6) -> None:
        """Raise :class:`ContractError` unless ``axis`` is the model axis."""
        a = np.asarray(axis, dtype=np.float64)
        ref = self.axis_array()
        if a.shape != ref.shape or not np.allclose(a, ref, rtol=0, atol=atol):
            raise ContractError(
                f"{what} axis ({a.size} points, {a[0]:g}-{a[-1]:g} cm^-1) is not the model axis "
                f"({ref.size} points, {ref[0]:g}-{ref[-1]:g} cm^-1)"
            )

    def check_classes_match(self, classes: list[str] | tuple[str, ...], *, what: str = "data") -> None:
        """Raise :class:`ContractError` unless ``classes`` equal the model's classes, in order."""
        if list(classes) != list(self.classes):
            raise ContractError(f"{what} classes {list(classes)} differ from the model's {self.classes}")
