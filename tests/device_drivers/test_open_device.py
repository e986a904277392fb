"""Opening by URL: scheme dispatch without fallback, option checking, sim:// and replay://."""

from __future__ import annotations

import numpy as np
import pytest

from device_drivers import (
    DeviceURLError,
    DriverError,
    SourceExhaustedError,
    Spectrometer,
    UnknownSchemeError,
    open_device,
)
from device_drivers.sim import SimSpectrometer
from spectral_core.errors import RamanEdgeError
from spectral_core.io import write_npz
from spectral_core.synth import SyntheticCatalog, instrument_axis, synth_dataset


@pytest.mark.parametrize("url", ["ftp://host/x", "loop://", "SIMULATOR://", "/dev/ttyUSB0", "COM3"])
def test_unknown_scheme_is_a_value_error_never_a_fallback(url: str) -> None:
    with pytest.raises(UnknownSchemeError) as err:
        open_device(url)
    assert isinstance(err.value, ValueError) and isinstance(err.value, RamanEdgeError)
    assert "serial" in str(err.value)  # the message lists what is known


@pytest.mark.parametrize("url", [
    "sim://?rate=fast",  # not a number
    "sim://?colour=blue",  # unknown option
    "sim://somewhere",  # sim takes no path
    "serial://",  # no port
    "serial:///dev/null?protocol=morse",
    "tcp://localhost",  # no port
    "replay://",
])
def test_bad_urls_are_refused(url: str) -> None:
    with pytest.raises(DeviceURLError):
        open_device(url)


def test_sim_url_same_classes_as_training_data() -> None:
    with open_device("sim://?classes=4&rate=0&seed=3&pixels=200") as dev:
        assert isinstance(dev, Spectrometer)
        assert isinstance(dev, SimSpectrometer)
        sp = dev.acquire()
        gen = dev.stream()
        more = [next(gen) for _ in range(3)]
    m = sp.metadata
    assert m["label"] in SyntheticCatalog(4, 0).names and m["classes"] == SyntheticCatalog(4, 0).names
    assert [s.metadata["seq"] for s in [sp, *more]] == [0, 1, 2, 3]
    np.testing.assert_array_equal(sp.axis, instrument_axis(200))
    assert [r.label for r in dev.truth] == [s.metadata["label_index"] for s in [sp, *more]]
    # the templates are those of the training catalog: the spectrum correlates best with its own class
    cat = SyntheticCatalog(4, 0)
    for s in [sp, *more]:
        x = s.intensities - np.polyval(np.polyfit(s.axis, s.intensities, 3), s.axis)
        scores = [np.corrcoef(x, cat.clean(k, s.axis))[0, 1] for k in range(4)]
        assert int(np.argmax(scores)) == s.metadata["label_index"]
    with pytest.raises(DriverError):
        dev.acquire()  # closed


def test_sim_url_flags_saturation() -> None:
    with open_device("sim://?rate=0&saturate_every=2&pixels=50") as dev:
        flags = [dev.acquire().metadata["saturated"] for _ in range(4)]
    assert flags == [False, True, False, True]
    assert dev.stats["saturated"] == 2


def test_replay_round_trip(tmp_path) -> None:
    ds = synth_dataset(classes=3, per_class=2, points=64, seed=5)
    path = write_npz(ds, tmp_path / "rec.npz")
    with open_device(f"replay://{path}?rate=0") as dev:
        got = []
        with pytest.raises(SourceExhaustedError):
            for sp in dev.stream():  # a finished recording is told apart from a closed device
                got.append(sp)
        with pytest.raises(SourceExhaustedError):
            dev.acquire()
    assert len(got) == ds.n_spectra
    for i, sp in enumerate(got):
        np.testing.assert_array_equal(sp.intensities, ds.X[i])
        assert sp.metadata["label"] == ds.classes[int(ds.y[i])] and sp.metadata["index"] == i
    with open_device(f"replay://{path}?loop=1") as dev:
        gen = dev.stream()
        idx = [next(gen).metadata["index"] for _ in range(8)]
    assert idx == [0, 1, 2, 3, 4, 5, 0, 1]


def test_replay_missing_file_is_a_driver_error(tmp_path) -> None:
    with pytest.raises(DriverError):
        open_device(f"replay://{tmp_path}/absent.npz")
