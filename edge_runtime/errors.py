"""Errors of the edge runtime, rooted in :mod:`spectral_core.errors`."""

from __future__ import annotations

import sqlite3

from spectral_core.errors import ContractError, ProviderError, RamanEdgeError

__all__ = ["LedgerError", "ModelRefusedError", "ProviderError", "SelfTestError", "SettingsError"]


class LedgerError(RamanEdgeError, sqlite3.DatabaseError):
    """A results ledger this ramanedge cannot use as it is (written by a newer version); still an
    ``sqlite3.DatabaseError`` for code that handles every database problem alike."""


class SelfTestError(RamanEdgeError, RuntimeError):
    """The model did not reproduce its own reference spectra at load time."""


class ModelRefusedError(ContractError):
    """A model the daemon refuses to serve: no or a failed validation report, or a report for another model."""


class SettingsError(RamanEdgeError, ValueError):
    """Daemon settings that cannot be used (bad source URL, unreadable config file, conflicting flags)."""
