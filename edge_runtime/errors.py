"""Errors of the edge runtime, rooted in :mod:`spectral_core.errors`."""

from __future__ import annotations

from spectral_core.errors import ContractError, RamanEdgeError

__all__ = ["ModelRefusedError", "ProviderError", "SelfTestError", "SettingsError"]


class ProviderError(RamanEdgeError, RuntimeError):
    """The requested onnxruntime execution provider did not load (never answered with a silent fallback)."""


class SelfTestError(RamanEdgeError, RuntimeError):
    """The model did not reproduce its own reference spectra at load time."""


class ModelRefusedError(ContractError):
    """A model the daemon refuses to serve: no or a failed validation report, or a report for another model."""


class SettingsError(RamanEdgeError, ValueError):
    """Daemon settings that cannot be used (bad source URL, unreadable config file, conflicting flags)."""
