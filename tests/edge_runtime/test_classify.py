"""``ramanedge classify``: the daemon Engine's results, streamed in chunks, error rows, .npz/.csv, map images."""

from __future__ import annotations

import csv
import json
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest

from edge_runtime._classify_out import BACKGROUND_RGB, ERROR_RGB, CsvWriter, NpzWriter, class_colours
from edge_runtime.classify import engine_facts, expand_inputs, iter_chunks, run_classification
from edge_runtime.engine import Engine
from edge_runtime.records import Frame
from ramanedge.cli import main
from spectral_core.io import write_npz
from spectral_core.spectrum import SpectralDataset
from spectral_core.synth import synth_dataset

POINTS = 300  # the tiny model's axis: 400-1800 cm^-1, 300 points


@pytest.fixture(scope="module")
def engine(model: Path) -> Engine:
    return Engine(model, provider="cpu", max_batch=4)


def _spectra(n: int = 24, seed: int = 3) -> SpectralDataset:
    return synth_dataset(classes=4, per_class=n // 4, points=POINTS, seed=seed)


def _raw_npz(path: Path, X: np.ndarray, axis: np.ndarray, compressed: bool = True, **extra: np.ndarray) -> Path:
    (np.savez_compressed if compressed else np.savez)(path, X=X, axis=axis, **extra)
    return path


def _classify(engine: Engine, files: list[str], out: Path, rows: int = 4096, **kw: object) -> dict[str, np.ndarray]:
    writer = NpzWriter(out, engine.classes, engine_facts(engine)) if out.suffix == ".npz" else CsvWriter(out, engine.classes)
    with writer:
        run_classification(engine, iter_chunks(files, rows), writer, **kw)  # type: ignore[arg-type]
    with np.load(out, allow_pickle=False) as z:
        got = {k: z[k] for k in z.files}
    files, k = got["files"][got["file_index"]], got["spectrum_index"]
    got["ref"] = np.array([f if i < 0 else f"{f}#{i}" for f, i in zip(files, k, strict=True)])
    return got


def _mixed(tmp_path: Path) -> tuple[Path, np.ndarray, np.ndarray]:
    """Good spectra with a NaN row and a flat row among them, on the model axis and on a shifted one."""
    ds = _spectra()
    X = ds.X.astype(np.float32).copy()
    X[5, 17] = np.nan
    X[9] = 7.0
    return _raw_npz(tmp_path / "mixed.npz", X, ds.axis), X, ds.axis


def test_results_agree_with_the_daemon_engine(engine: Engine, tmp_path: Path) -> None:
    path, X, axis = _mixed(tmp_path)
    shifted = axis + 0.5 * (axis[1] - axis[0])  # within the axis tolerance: classified, the edge filled
    far = axis + 300.0  # beyond it: a preprocess error for each spectrum
    path2 = _raw_npz(tmp_path / "shifted.npz", X[:3], shifted)
    path3 = _raw_npz(tmp_path / "far.npz", X[:2], far)
    got = _classify(engine, [str(path), str(path2), str(path3)], tmp_path / "r.npz", rows=8)

    frames = [Frame(source="t", ref=str(i), axis=axis, intensities=x) for i, x in enumerate(X)]
    frames += [Frame(source="t", ref=f"s{i}", axis=shifted, intensities=x) for i, x in enumerate(X[:3])]
    frames += [Frame(source="t", ref=f"f{i}", axis=far, intensities=x) for i, x in enumerate(X[:2])]
    want = engine.classify(frames)
    assert len(got["ref"]) == len(want) == X.shape[0] + 5
    for i, o in enumerate(want):
        if o.ok:
            assert got["class_index"][i] == o.class_index, i
            assert got["error"][i] == ""
            np.testing.assert_allclose(got["probabilities"][i], o.probabilities, rtol=0, atol=1e-6)
            fill = o.frame.metadata.get("axis_edge_fill_cm1", [0.0, 0.0])
            np.testing.assert_allclose(got["edge_fill_cm1"][i], fill, atol=1e-4)
            if o.unknown is None:
                assert got["unknown"][i] == -1
            else:
                assert got["unknown"][i] == int(o.unknown)
                assert got["unknown_score"][i] == pytest.approx(o.open_set_distance, abs=1e-6)
            if o.drift is None:
                assert got["drift"][i] == -1 and np.isnan(got["drift_t2"][i])
            else:
                assert got["drift"][i] == int(o.drift)
                assert got["drift_t2"][i] == pytest.approx(o.drift_t2, rel=1e-5, abs=1e-6)
                assert got["drift_q"][i] == pytest.approx(o.drift_q, rel=1e-5, abs=1e-6)
        else:
            assert got["class_index"][i] == -1, i
            assert got["error_kind"][i] == o.error_kind
            assert got["error"][i] == o.error
            assert np.isnan(got["probabilities"][i]).all()
    assert [o.error_kind for o in want if not o.ok] == ["input", "input", "preprocess", "preprocess"]
    assert engine.drift is not None and (got["drift"][got["class_index"] >= 0] >= 0).all()  # drift is scored
    assert (got["edge_fill_cm1"][X.shape[0] : X.shape[0] + 3, 0] > 0).all()  # the axis-policy note is kept
    assert got["ref"][5] == f"{path}#5" and got["ref"][-1] == f"{path3}#1"
    assert list(got["classes"]) == engine.classes
    assert str(got["provider"]) == "CPUExecutionProvider"


def test_a_data_set_larger_than_the_chunk_is_streamed_and_gives_the_same_rows(engine: Engine, tmp_path: Path) -> None:
    ds = _spectra(n=40)
    for compressed in (True, False):
        path = _raw_npz(tmp_path / f"big{compressed}.npz", ds.X, ds.axis, compressed=compressed)
        chunks = list(iter_chunks([str(path)], 7))
        assert [c.X.shape[0] for c in chunks if c.X is not None] == [7, 7, 7, 7, 7, 5]
        assert [c.start for c in chunks] == [0, 7, 14, 21, 28, 35]
        assert [c.last for c in chunks] == [False] * 5 + [True]
        np.testing.assert_array_equal(np.concatenate([c.X for c in chunks if c.X is not None]), ds.X)
        small = _classify(engine, [str(path)], tmp_path / "small.npz", rows=7)
        whole = _classify(engine, [str(path)], tmp_path / "whole.npz", rows=4096)
        for key in ("class_index", "unknown", "ref"):
            np.testing.assert_array_equal(small[key], whole[key])
        # other batch sizes, other kernels: equal up to float32 rounding
        np.testing.assert_allclose(small["probabilities"], whole["probabilities"], rtol=0, atol=1e-6)
        assert (small["class_index"] >= 0).all()
        assert (small["class_index"] == ds.y).mean() >= 0.9  # the tiny model knows these classes


def test_bad_inputs_are_error_rows_and_nothing_is_lost(engine: Engine, tmp_path: Path) -> None:
    good, X, _ = _mixed(tmp_path)
    garbage = tmp_path / "garbage.csv"
    garbage.write_text("this,is\nnot,a spectrum\n")
    missing = tmp_path / "missing.csv"
    truncated = tmp_path / "trunc.npz"
    _raw_npz(truncated, X, _spectra().axis, compressed=False)
    raw = truncated.read_bytes()
    truncated.write_bytes(raw[: len(raw) // 2])  # the zip directory is gone: the whole file is one read error
    got = _classify(engine, [str(good), str(garbage), str(missing), str(truncated)], tmp_path / "r.npz", rows=5)
    refs = list(got["ref"])
    assert len(refs) == X.shape[0] + 3
    kinds = dict(zip(refs, got["error_kind"], strict=True))
    assert kinds[str(garbage)] == "read" and kinds[str(missing)] == "read" and kinds[str(truncated)] == "read"
    assert kinds[f"{good}#5"] == "input" and "NaN" in got["error"][refs.index(f"{good}#5")]
    assert kinds[f"{good}#9"] == "input" and "flat" in got["error"][refs.index(f"{good}#9")]
    assert "no such file" in got["error"][refs.index(str(missing))]


def test_a_member_cut_short_gives_an_error_row_per_missing_spectrum(engine: Engine, tmp_path: Path) -> None:
    ds = _spectra(n=20)
    path = tmp_path / "cut.npz"
    import zipfile

    with zipfile.ZipFile(path, "w") as zf, zf.open("X.npy", "w") as f:
        np.lib.format.write_array_header_1_0(f, {"descr": "<f4", "fortran_order": False, "shape": ds.X.shape})
        f.write(ds.X[:13].astype("<f4").tobytes())  # the header promises 20 spectra, 13 are there
    with zipfile.ZipFile(path, "a") as zf, zf.open("axis.npy", "w") as f:
        np.lib.format.write_array(f, ds.axis)
    got = _classify(engine, [str(path)], tmp_path / "r.npz", rows=5)
    assert list(got["ref"]) == [f"{path}#{k}" for k in range(20)]
    assert (got["class_index"][:10] >= 0).all()  # the chunks read whole are classified
    assert list(got["error_kind"][10:]) == ["read"] * 10
    assert "truncated" in got["error"][10]


def test_csv_and_npz_outputs_read_back_alike(engine: Engine, tmp_path: Path) -> None:
    path, X, _ = _mixed(tmp_path)
    z = _classify(engine, [str(path)], tmp_path / "r.npz", rows=6)
    out = tmp_path / "r.csv"
    with CsvWriter(out, engine.classes) as w:
        run_classification(engine, iter_chunks([str(path)], 6), w)
    with open(out, newline="", encoding="utf-8") as f:
        table = list(csv.DictReader(f))
    assert len(table) == X.shape[0]
    for i, row in enumerate(table):
        assert row["ref"] == z["ref"][i]
        if z["class_index"][i] >= 0:
            assert row["status"] == "ok" and row["class"] == engine.classes[z["class_index"][i]]
            probs = [float(row[f"p_{c}"]) for c in engine.classes]
            np.testing.assert_allclose(probs, z["probabilities"][i], rtol=1e-6)
            assert float(row["confidence"]) == pytest.approx(z["probabilities"][i].max())
            assert row["unknown"] == ("" if z["unknown"][i] < 0 else str(z["unknown"][i]))
        else:
            assert row["status"] == "error" and row["class"] == "" and row["error_kind"] == z["error_kind"][i]
            assert row["error"] == z["error"][i]
    assert not list(tmp_path.glob(".r.*"))  # no temporary file left behind


def _decode_png(path: Path) -> np.ndarray:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, size = 8, b"", (0, 0)
    while pos < len(data):
        (n,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + n]
        (crc,) = struct.unpack(">I", data[pos + 8 + n : pos + 12 + n])
        assert crc == zlib.crc32(kind + body) & 0xFFFFFFFF
        if kind == b"IHDR":
            w, h, depth, colour = struct.unpack(">IIBB", body[:10])
            assert (depth, colour) == (8, 2)
            size = (h, w)
        elif kind == b"IDAT":
            idat += body
        pos += 12 + n
    raw = np.frombuffer(zlib.decompress(idat), dtype=np.uint8).reshape(size[0], 1 + size[1] * 3)
    assert (raw[:, 0] == 0).all()  # filter type 0 on every row
    return raw[:, 1:].reshape(size[0], size[1], 3)


def test_a_map_gets_a_class_image_whose_colours_are_the_classes(engine: Engine, tmp_path: Path) -> None:
    ds = _spectra(n=24)
    nx, ny = 5, 4  # 20 map points, one left without a spectrum, one failed
    xs, ys = np.meshgrid(np.arange(nx) * 2.5 - 5.0, np.arange(ny) * 1.0, indexing="xy")
    X = ds.X[:19].copy()
    X[3] = np.nan
    path = _raw_npz(tmp_path / "map.npz", X, ds.axis, meta_x=xs.ravel()[:19], meta_y=ys.ravel()[:19])
    png = tmp_path / "out.map.png"
    got = _classify(engine, [str(path)], tmp_path / "r.npz", rows=6, map_png=lambda n: png)
    img = _decode_png(png)
    legend = json.loads(png.with_suffix(".json").read_text())
    s = legend["scale_px"]
    assert img.shape == (ny * s, nx * s, 3) and (legend["columns"], legend["rows"]) == (nx, ny)
    colours = class_colours(len(engine.classes))
    assert legend["classes"] == {c: list(colours[i]) for i, c in enumerate(engine.classes)}
    for k in range(19):
        cell = img[(k // nx) * s, (k % nx) * s]
        if k == 3:
            assert tuple(cell) == ERROR_RGB
        elif got["unknown"][k] == 1:
            assert tuple(cell) == tuple(legend["unknown"])
        else:
            assert tuple(cell) == colours[got["class_index"][k]], k
    assert tuple(img[(ny - 1) * s, (nx - 1) * s]) == BACKGROUND_RGB  # the 20th point has no spectrum
    assert len({tuple(img[(k // nx) * s, (k % nx) * s]) for k in range(19)}) >= 3  # several classes seen


def test_a_labspec_map_read_by_the_registry_gets_an_image(engine: Engine, tmp_path: Path) -> None:
    ds = _spectra(n=8)
    lines = ["#Acq. time (s)=\t1", "\t\t" + "\t".join(f"{v:.6f}" for v in ds.axis)]
    for k in range(6):
        lines.append(f"{k % 3 * 10.0}\t{k // 3 * 10.0}\t" + "\t".join(f"{v:.3f}" for v in ds.X[k]))
    path = tmp_path / "map.txt"
    path.write_text("\n".join(lines) + "\n")
    png = tmp_path / "m.png"
    got = _classify(engine, [str(path)], tmp_path / "r.npz", map_png=lambda n: png)
    assert (got["class_index"] >= 0).all() and got["x"][4] == 10.0 and got["y"][4] == 10.0
    img = _decode_png(png)
    legend = json.loads(png.with_suffix(".json").read_text())
    assert img.shape[:2] == (2 * legend["scale_px"], 3 * legend["scale_px"])


def test_folders_are_expanded_in_order_with_pattern(tmp_path: Path) -> None:
    (tmp_path / "b").mkdir()
    (tmp_path / "a").mkdir()
    (tmp_path / ".hidden").mkdir()
    for name in ("a/2.csv", "a/1.csv", "b/x.txt", ".hidden/h.csv", "a/.dot.csv"):
        (tmp_path / name).write_text("1,2\n")
    got = expand_inputs([tmp_path, tmp_path / "nope.csv"])
    assert got == [str(tmp_path / "a/1.csv"), str(tmp_path / "a/2.csv"), str(tmp_path / "b/x.txt"),
                   str(tmp_path / "nope.csv")]
    assert expand_inputs([tmp_path], "*.csv") == got[:2]


def test_cli_exit_codes_and_summary(model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ds = _spectra(n=12)
    good = tmp_path / "good.npz"
    write_npz(ds, good)
    out = tmp_path / "res.csv"
    assert main(["classify", str(model), str(good), "--out", str(out), "--provider", "cpu", "--batch", "5"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["spectra"] == 12 and summary["errors"] == 0 and summary["classified"] == 12
    assert summary["provider"] == "CPUExecutionProvider" and sum(summary["per_class"].values()) == 12
    assert out.is_file()

    bad = tmp_path / "bad.csv"
    bad.write_text("nothing here\n")
    out2 = tmp_path / "res.npz"
    assert main(["classify", str(model), str(good), "--data", str(bad), "--out", str(out2), "--provider", "cpu"]) == 1
    summary = json.loads(capsys.readouterr().out)
    assert summary["spectra"] == 13 and summary["errors"] == 1 and summary["error_kinds"] == {"read": 1}
    with np.load(out2) as z:
        assert z["class_index"].shape == z["file_index"].shape == (13,) and list(z["files"]) == [str(good), str(bad)]

    assert main(["classify", str(model), str(good), "--out", str(tmp_path / "res.txt")]) == 2
    assert "--out must name" in capsys.readouterr().err
    assert main(["classify", str(tmp_path / "no.onnx"), str(good), "--out", str(tmp_path / "x.npz")]) == 2
    assert not (tmp_path / "x.npz").exists()
    assert main(["classify", str(model), "--out", str(tmp_path / "x.npz")]) == 2
    assert "no data given" in capsys.readouterr().err


def test_classify_runs_without_torch_onnx_or_shap(model: Path, tmp_path: Path) -> None:
    """The command works with the daemon's light install: importing torch, onnx or shap fails in this process."""
    import subprocess
    import sys

    data = tmp_path / "d.npz"
    write_npz(_spectra(n=8), data)
    out = tmp_path / "r.csv"
    heavy = ("torch", "onnx", "onnxscript", "shap", "matplotlib")
    code = (
        "import sys\n"
        "class _Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        f"        if name.split('.')[0] in {heavy!r}:\n"
        "            raise ModuleNotFoundError(name, name=name)\n"
        "sys.meta_path.insert(0, _Block())\n"
        "from ramanedge.cli import main\n"
        f"rc = main(['classify', {str(model)!r}, {str(data)!r}, '--out', {str(out)!r}, '--provider', 'cpu'])\n"
        f"assert not [m for m in sys.modules if m.split('.')[0] in {heavy!r}]\n"
        "sys.exit(rc)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=False)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["classified"] == 8 and out.is_file()
