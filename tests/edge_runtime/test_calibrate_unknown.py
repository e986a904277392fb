"""``ramanedge calibrate-unknown``: new thresholds for a new instrument in a NEW, self-tested model file."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edge_runtime.calibrate_unknown import calibrate_unknown, replace_metadata
from edge_runtime.engine import Engine
from edge_runtime.records import Frame
from ramanedge.cli import main
from spectral_core.contract import METADATA_KEY
from spectral_core.errors import ContractError, DataError
from spectral_core.hashing import sha256_file
from spectral_core.io import write_npz
from spectral_core.openset import flag_unknown
from spectral_core.spectrum import SpectralDataset
from spectral_core.synth import synth_dataset


def _known(seed: int, per_class: int = 40) -> SpectralDataset:
    """Spectra of the tiny model's 4 classes (same generator and axis), another draw than its training data."""
    return synth_dataset(classes=4, per_class=per_class, points=300, seed=seed)


def _frames(ds: SpectralDataset) -> list[Frame]:
    return [Frame(source="t", ref=str(i), axis=ds.axis, intensities=ds.X[i]) for i in range(ds.n_spectra)]


def test_new_file_new_hash_new_thresholds_old_file_untouched(model: Path, tmp_path: Path) -> None:
    old_sha = sha256_file(model)
    old = Engine(model, provider="cpu")
    assert old.contract.open_set is not None
    ds = _known(seed=11)
    out = tmp_path / "recalibrated.onnx"
    result = calibrate_unknown(model, ds, out, unknown_rate=0.1)

    assert sha256_file(model) == old_sha  # the old file is never written to
    assert result.model_sha256 == old_sha and result.out_sha256 == sha256_file(out) != old_sha
    assert result.self_test == "passed" and result.spectra == ds.n_spectra and not result.excluded
    new = Engine(out, provider="cpu")  # loads and passes the daemon's self-test
    os_ = new.contract.open_set
    assert os_ is not None
    assert os_.thresholds != old.contract.open_set.thresholds
    assert os_.target_unknown_rate == 0.1 and os_.calibration_spectra == ds.n_spectra
    assert os_.calibration_sha256 == ds.fingerprint()
    assert new.contract.extra["unknown_calibration"]["from_model_sha256"] == old_sha
    assert new.describe()["unknown_rate"] == 0.1  # what /readyz and the dashboard show
    assert new.describe()["unknown_calibration_spectra"] == ds.n_spectra
    # everything but the open set is the old contract: same weights hash, same preprocessing, same reference
    assert new.contract.model_copy(update={"open_set": None, "extra": {}}) == old.contract.model_copy(
        update={"open_set": None, "extra": {}})
    # same graph and weights: the same answers, only the unknown flags may differ
    a, b = old.classify(_frames(ds)), new.classify(_frames(ds))
    assert [o.probabilities for o in a] == [o.probabilities for o in b]
    # on the calibration spectra the flagged share is at most about the target
    flagged = np.mean([bool(o.unknown) for o in b])
    assert flagged <= 0.1 + 1.0 / ds.n_spectra
    assert result.false_unknown_after == pytest.approx(flagged)


def test_rewritten_file_is_a_valid_onnx_model(model: Path, tmp_path: Path) -> None:
    onnx = pytest.importorskip("onnx")
    out = calibrate_unknown(model, _known(seed=12), tmp_path / "m.onnx", unknown_rate=0.05).out
    m = onnx.load(out)
    onnx.checker.check_model(m)
    keys = [p.key for p in m.metadata_props]
    assert keys.count(METADATA_KEY) == 1
    src = onnx.load(str(model))
    assert m.graph == src.graph and list(m.opset_import) == list(src.opset_import)


def test_classes_the_model_does_not_know_are_refused(model: Path, tmp_path: Path) -> None:
    ds = _known(seed=13)
    alien = SpectralDataset(X=ds.X, axis=ds.axis, y=ds.y, classes=(*ds.classes[:3], "quartz"),
                            provenance=ds.provenance)
    out = tmp_path / "x.onnx"
    with pytest.raises(DataError, match=r"class\(es\) \['quartz'\] that the model does not know"):
        calibrate_unknown(model, alien, out)
    assert not out.exists()


def test_a_subset_of_the_classes_is_enough(model: Path, tmp_path: Path) -> None:
    full = _known(seed=14)
    ds = full.select_classes(list(full.classes[:2]))
    result = calibrate_unknown(model, ds, tmp_path / "sub.onnx", unknown_rate=0.05)
    e = Engine(tmp_path / "sub.onnx", provider="cpu")
    assert e.contract.open_set is not None and e.contract.open_set.calibration_counts is not None
    assert result.spectra == ds.n_spectra


def test_out_must_be_a_new_file(model: Path, tmp_path: Path) -> None:
    with pytest.raises(DataError, match="never overwritten"):
        calibrate_unknown(model, _known(seed=15), model)
    existing = tmp_path / "there.onnx"
    existing.write_bytes(b"x")
    with pytest.raises(DataError, match="exists"):
        calibrate_unknown(model, _known(seed=15), existing)
    assert existing.read_bytes() == b"x"


def test_cli_writes_the_new_model_and_refuses_unknown_classes(
    model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "known.npz"
    write_npz(_known(seed=16), data)
    out = tmp_path / "cli.onnx"
    assert main(["calibrate-unknown", str(model), "--data", str(data), "--unknown-rate", "0.08", "--out", str(out)]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["out_sha256"] == sha256_file(out) and report["unknown_rate"] == 0.08
    assert Engine(out, provider="cpu").contract.open_set.target_unknown_rate == 0.08  # type: ignore[union-attr]

    ds = _known(seed=16)
    alien = tmp_path / "alien.npz"
    write_npz(SpectralDataset(X=ds.X, axis=ds.axis, y=ds.y, classes=("a", "b", "c", "d"),
                              provenance=ds.provenance), alien)
    assert main(["calibrate-unknown", str(model), "--data", str(alien), "--out", str(tmp_path / "n.onnx")]) == 2
    assert "does not know" in capsys.readouterr().err
    assert not (tmp_path / "n.onnx").exists()


def test_old_contract_without_calibration_fields_serves_and_recalibrates(
    standin_model: Path, tmp_path: Path
) -> None:
    """A model written before calibrated unknowns: same hash, still serves and flags, and can be calibrated."""
    raw = Engine(standin_model, provider="cpu")
    os_ = raw.contract.open_set
    assert os_ is not None and os_.target_unknown_rate is None and os_.scales is None
    assert raw.model_sha256 == sha256_file(standin_model)
    assert raw.describe()["unknown_rate"] is None
    from spectral_core.synth import instrument_axis

    ds = synth_dataset(classes=4, per_class=30, seed=21, catalog_seed=0, axis=instrument_axis(1024))
    outcomes = raw.classify(_frames(ds))
    assert all(o.ok and o.unknown is not None for o in outcomes)
    result = calibrate_unknown(standin_model, ds, tmp_path / "new.onnx", unknown_rate=0.05)
    assert sha256_file(standin_model) == raw.model_sha256
    new = Engine(tmp_path / "new.onnx", provider="cpu")
    assert new.contract.open_set is not None and new.contract.open_set.scales == pytest.approx(os_.thresholds)
    assert result.false_unknown_after <= 0.05 + 1.0 / ds.n_spectra


def test_replace_metadata_keeps_other_entries_and_refuses_junk(standin_model: Path) -> None:
    onnx = pytest.importorskip("onnx")
    m = onnx.load(str(standin_model))
    e = m.metadata_props.add()
    e.key, e.value = "other", "kept"
    blob = replace_metadata(m.SerializeToString(), METADATA_KEY, '{"x": 1}')
    back = onnx.load_from_string(blob)
    props = {p.key: p.value for p in back.metadata_props}
    assert props == {"other": "kept", METADATA_KEY: '{"x": 1}'}
    assert back.graph == m.graph
    with pytest.raises(ContractError, match="not a valid ONNX protobuf"):
        replace_metadata(b"\x0a\xff\xff\xff", METADATA_KEY, "{}")


def test_recalibration_moves_the_flagged_share_to_the_target(model: Path, tmp_path: Path) -> None:
    """Fresh known spectra (not the calibration ones): the flagged share lands near the target."""
    result = calibrate_unknown(model, _known(seed=31, per_class=60), tmp_path / "r.onnx", unknown_rate=0.1)
    new = Engine(tmp_path / "r.onnx", provider="cpu")
    fresh = _known(seed=32, per_class=100)
    X = new.preprocessor.transform(fresh.X, fresh.axis)
    p, emb = new.infer(X)
    assert emb is not None and new.contract.open_set is not None
    rate = float(flag_unknown(emb, p.argmax(1), new.contract.open_set).mean())
    assert rate <= 0.2, (rate, result)


def test_unusable_spectra_are_reported_never_dropped_silently(model: Path, tmp_path: Path) -> None:
    ds = _known(seed=41, per_class=10)
    X = ds.X.copy()
    X[3] = 1.0  # flat: the normalisation cannot scale it, so the engine would refuse it too
    bad = SpectralDataset(X=X, axis=ds.axis, y=ds.y, classes=ds.classes, provenance=ds.provenance)
    result = calibrate_unknown(model, bad, tmp_path / "b.onnx", unknown_rate=0.05)
    assert list(result.excluded) == [3] and result.excluded[3]
    assert result.spectra == ds.n_spectra - 1
    assert Engine(tmp_path / "b.onnx", provider="cpu").contract.open_set.calibration_spectra == ds.n_spectra - 1  # type: ignore[union-attr]
