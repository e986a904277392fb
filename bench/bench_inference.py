"""PyTorch eager vs onnxruntime for the exported RamanNet, in one run on this machine.

RamanNet at the paper's sizes (L = 1000 points, 30 classes, window 50 / step 25 -> 39 windows, n1 25, n2 512,
embedding 256), random weights with non-trivial batch-norm statistics (speed does not depend on the values),
exported by :func:`export.onnx_export.export_run` to fp32, fp16, int8-dynamic and int8-static. Batches 1, 32
and 256. Every configuration is timed in interleaved rounds so a background load spike hits them all alike.

Writes the "## Inference: PyTorch vs onnxruntime (export)" section of docs/benchmarks.md (other sections are
left as they are) and prints it.

    .venv/bin/python bench/bench_inference.py [--rounds 5] [--no-write]
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from _docs import cpu_model, publish

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SECTION = "## Inference: PyTorch vs onnxruntime (export)"
BATCHES = (1, 32, 256)
L, CLASSES = 1000, 30


def _time(fn: Callable[[], object], n: int) -> list[float]:
    out = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def _calls(batch: int) -> int:
    return {1: 400, 32: 120, 256: 40}[batch]


def build(workdir: Path) -> tuple[object, dict[str, Path]]:
    from _models import random_run

    from export.onnx_export import export_run
    from spectral_core.synth import synth_dataset

    model, run, axis = random_run(workdir, L, CLASSES, spread_batch_norm=True)
    calib = synth_dataset(classes=CLASSES, per_class=8, points=L, seed=1, axis=axis)
    paths = {}
    for precision in ("fp32", "fp16", "int8-dynamic", "int8-static"):
        paths[precision] = export_run(
            run, workdir / f"{precision}.onnx", precision=precision,
            calibration=calib if precision == "int8-static" else None,
        )
    return model, paths

def torchscript_nodes(model: object) -> int | str:
    """Node count of the same inference module through the TorchScript exporter (dynamo=False), for comparison."""
    import contextlib
    import io
    import warnings

    import onnx
    import torch

    from export._graph import InferenceRamanNet

    net = InferenceRamanNet(model, "minmax")  # type: ignore[arg-type]
    buf = io.BytesIO()
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            torch.onnx.export(
                net, (torch.rand(2, L),), buf, dynamo=False, opset_version=18, input_names=["spectrum"],
                output_names=["probabilities", "logits", "embedding"], dynamic_axes={"spectrum": {0: "batch"}},
            )
    except Exception as exc:  # the legacy exporter may be gone in a later torch
        return f"unavailable ({type(exc).__name__})"
    return len(onnx.load_from_string(buf.getvalue()).graph.node)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5, help="interleaved timing rounds per configuration")
    ap.add_argument("--no-write", action="store_true", help="print the section, leave docs/benchmarks.md alone")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    for noisy in ("onnxscript", "onnx_ir", "root", "torch"):
        logging.getLogger(noisy).setLevel(logging.ERROR)

    import onnx
    import onnxruntime as ort
    import torch

    from export._graph import torch_normalise

    threads = os.cpu_count() or 1
    load0 = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench-inference-") as tmp:
        model, paths = build(Path(tmp))
        nodes = {p: len(onnx.load(path).graph.node) for p, path in paths.items()}
        ts_nodes = torchscript_nodes(model)
        sizes = {p: path.stat().st_size for p, path in paths.items()}
        xs = {b: (np.random.default_rng(b).random((b, L), dtype=np.float32) * 5e4) for b in BATCHES}

        def torch_fn(b: int, n_threads: int) -> Callable[[], object]:
            x = torch.from_numpy(xs[b])

            def run() -> object:
                if torch.get_num_threads() != n_threads:  # a global setting: set once per timing block
                    torch.set_num_threads(n_threads)
                with torch.inference_mode():
                    lg, em = model(torch_normalise(x, "minmax"))  # type: ignore[operator]
                    return torch.softmax(lg, 1), lg, em

            return run

        def session(path: Path, n_threads: int, level: ort.GraphOptimizationLevel) -> ort.InferenceSession:
            so = ort.SessionOptions()
            so.intra_op_num_threads = n_threads
            so.inter_op_num_threads = 1
            so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
            so.graph_optimization_level = level
            so.log_severity_level = 3
            sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
            if sess.get_providers()[0] != "CPUExecutionProvider":
                raise RuntimeError(f"unexpected providers {sess.get_providers()}")
            return sess

        def ort_fn(sess: ort.InferenceSession, b: int, binding: bool = False) -> Callable[[], object]:
            feed = {"spectrum": xs[b]}
            if not binding:
                return lambda: sess.run(None, feed)
            io = sess.io_binding()
            io.bind_cpu_input("spectrum", xs[b])
            for o in ("probabilities", "logits", "embedding"):
                io.bind_output(o, "cpu")
            return lambda: sess.run_with_iobinding(io)

        ALL = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        configs: dict[tuple[str, str, int], Callable[[], object]] = {}
        for b in BATCHES:
            for t in sorted({1, threads}):
                configs[("PyTorch eager", f"torch {t} thread{'s' if t > 1 else ''}", b)] = torch_fn(b, t)
        sessions = {
            (p, t, lvl): session(paths[p], t, lvl)
            for p in paths
            for t in sorted({1, threads})
            for lvl in (ALL, ort.GraphOptimizationLevel.ORT_ENABLE_BASIC)
            if lvl == ALL or p == "fp32"
        }
        for (p, t, lvl), sess in sessions.items():
            lv = "all" if lvl == ALL else "basic"
            for b in BATCHES:
                configs[(p, f"ORT {t} thr, opt {lv}", b)] = ort_fn(sess, b)
                if b == 1 and lvl == ALL:
                    configs[(p, f"ORT {t} thr, opt {lv}, io_binding", b)] = ort_fn(sess, b, binding=True)

        samples: dict[tuple[str, str, int], list[float]] = {k: [] for k in configs}
        rounds: dict[tuple[str, str, int], list[float]] = {k: [] for k in configs}
        for fn in configs.values():  # warm-up: first calls allocate arenas and pick kernels
            for _ in range(10):
                fn()
        for r in range(args.rounds):
            for key, fn in configs.items():
                t = _time(fn, max(5, _calls(key[2]) // args.rounds))
                samples[key] += t
                rounds[key].append(float(np.median(t)))
            print(f"round {r + 1}/{args.rounds} done", file=sys.stderr, flush=True)
    load1 = os.getloadavg()

    stats = {}
    for key, s in samples.items():
        a = np.asarray(s)
        stats[key] = (float(np.median(a)), float(np.quantile(a, 0.99)), min(rounds[key]))
    # the ratio is to the faster PyTorch eager thread setting at the same batch
    torch_rate = {b: max(b / stats[k][0] for k in stats if k[0] == "PyTorch eager" and k[2] == b) for b in BATCHES}

    def row(key: tuple[str, str, int]) -> str:
        med, p99, best_round = stats[key]
        b = key[2]
        rate = b / med
        return (
            f"| {key[0]} | {key[1]} | {b} | {med * 1e6:,.1f} | {p99 * 1e6:,.1f} | {med * 1e6 / b:,.2f} | "
            f"{rate:,.0f} | {rate / torch_rate[b]:.2f}x | {b / best_round:,.0f} |"
        )

    # the best onnxruntime configuration per precision and batch (by median)
    best: dict[tuple[str, int], tuple[str, int]] = {}
    for key in stats:
        if key[0] == "PyTorch eager":
            continue
        cur = best.get((key[0], key[2]))
        if cur is None or stats[key][0] < stats[(key[0], cur[0], key[2])][0]:
            best[(key[0], key[2])] = (key[1], key[2])
    head = (
        "| model | runtime | batch | call median (us) | call p99 (us) | per spectrum (us) | spectra/s | "
        "vs PyTorch eager | spectra/s, quietest round |\n|---|---|---|---|---|---|---|---|---|"
    )
    main_rows = [row(k) for k in sorted(stats, key=lambda k: (k[2], k[1])) if k[0] == "PyTorch eager"]
    for p in paths:
        for b in BATCHES:
            cfg = best[(p, b)][0]
            main_rows.append(row((p, cfg, b)))
    all_rows = [row(k) for k in sorted(stats, key=lambda k: (k[0], k[2], k[1]))]

    import onnxruntime as ort2

    fast = [k for k in stats if k[0] in ("fp32", "int8-dynamic", "int8-static")]
    fp32_256 = max(256 / stats[k][0] for k in fast if k[2] == 256)
    fp32_256_q = max(256 / stats[k][2] for k in fast if k[2] == 256)
    one = min(stats[k][0] for k in stats if k[0] != "PyTorch eager" and k[2] == 1)
    one_q = min(stats[k][2] for k in stats if k[0] != "PyTorch eager" and k[2] == 1)
    text = f"""{SECTION}

Measured by `bench/bench_inference.py` ({datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")}):
`.venv/bin/python bench/bench_inference.py --rounds {args.rounds}`

- Machine: {cpu_model()}, {threads} logical CPUs (KVM guest), {platform.platform()}; load average
  {load0[0]:.2f} before, {load1[0]:.2f} after (other engineers' jobs share these two cores, so numbers move by
  10-30% between runs; every configuration was timed in {args.rounds} interleaved rounds).
- Versions: python {platform.python_version()}, torch {torch.__version__} (CPU), onnx {onnx.__version__},
  onnxruntime {ort2.__version__} (CPUExecutionProvider), numpy {np.__version__}.
- Model: RamanNet L = {L}, {CLASSES} classes, paper sizes (39 windows of 50 points, n1 25, n2 512,
  embedding 256), random weights. Exported graph nodes: {", ".join(f"{p} {n}" for p, n in nodes.items())};
  file sizes: {", ".join(f"{p} {s / 1e6:.2f} MB" for p, s in sizes.items())}.
- Timing: one `session.run` (or one PyTorch forward incl. the minmax normalisation and softmax) per call,
  input already in memory; spectra/s = batch / median call time; "vs PyTorch eager" = ratio of spectra/s at
  the same batch (the faster of PyTorch's 1- and 2-thread settings); "quietest round" = batch / the lowest per-round median (the least disturbed by other jobs).

Best onnxruntime configuration per precision and batch:

{head}
{chr(10).join(main_rows)}

Targets (judged on the median over all rounds; the quietest round in brackets):
batch 256 >= 90,000 spectra/s with fp32 or int8 -> best {fp32_256:,.0f} spectra/s [{fp32_256_q:,.0f}]
({"met" if fp32_256 >= 90000 else "NOT met"}); one spectrum <= 60 us -> best {one * 1e6:.1f} us [{one_q * 1e6:.1f}]
({"met" if one <= 60e-6 else "NOT met"}).

Design choices, measured:

- Exporter: `torch.onnx.export(dynamo=True)` gives {nodes["fp32"]} nodes for the fp32 graph; the TorchScript
  exporter (`dynamo=False`) gives {ts_nodes} for the same module (Constant/Shape/Unsqueeze/Concat chains around
  each reshape). Opset 18 pinned (the dynamo exporter's native opset).
- Graph rewrites, all exact in eval mode: every batch norm folded into the preceding dense layer (bn3 stays a
  Mul + Add because the un-normalised embedding is also needed), dropout removed, the window layer as one
  Gather + one batched MatMul on the transposed batch. The node count is the same for 3 or 23 windows
  (tests/export).
- Window layer forms tried (fp32, 2 threads, earlier the same day on this machine, load not recorded): Gather + batched
  MatMul on `[n_windows, B, w]` 73 us / 94,500 spectra/s at batch 1 / 256; Gather + Einsum 88 us / 79,600;
  one dense block-sparse `L x (n_windows*n1)` GEMM 185 us / 80,700 (20x the multiply-adds and 3.9 MB of
  weights, memory-bound at batch 1). The transposed-batch form used now was then measured 20-25% faster than
  the `[n_windows, B, w]` form at batch 256 in an interleaved A/B run, bit-identical outputs.
- ORT session options: graph optimisation level "all" vs "basic" is within noise (the exporter already folded
  what matters; ORT then fuses MatMul+Add(+LeakyRelu) into Gemm/FusedGemm and int8 QDQ into QLinearMatMul /
  DynamicQuantizeMatMul); io_binding (pre-bound buffers) saves about 8-18 us per call at batch 1;
  `intra_op_num_threads` = 2 pays when the second core is free and loses badly when other jobs hold it:
  in a run at load ~3.8 earlier the same day, 1 thread won at every batch (fp32 batch 256: 73,600 spectra/s
  with 1 thread, 33,000 with 2; int8-dynamic 163,000 with 1) and PyTorch's 2-thread setting collapsed to
  42 spectra/s at batch 1 (its OpenMP workers spin against the other jobs). A deployment on a busy edge box
  should pin 1 thread; the edge runtime's session options are its own.
- int8: only the two big dense layers (92% of the multiply-adds) are quantised; the window layer, the
  classifier, the normalisations and softmax stay float32 (see export/onnx_export.py). int8 is the fastest
  precision here at every batch and the one that meets both targets on a loaded machine; validation
  (`ramanedge validate`) judges its argmax agreement and accuracy change per model.
- fp16 is slower than fp32 on this CPU: onnxruntime's CPU provider has few float16 kernels. fp16 is for GPU
  providers (and halves the file).

Validation (`ramanedge validate`, not part of this benchmark's timing; run on 2026-11-25 with the commands
`ramanedge export RUN --out m.onnx --precision P --calibration DATA` then
`ramanedge validate m.onnx --run RUN --data DATA`): every precision passes its default criteria on

| model (spectra) | precision | argmax agreement | accuracy torch -> onnx | max abs logit error | min embedding cosine | unknown-flag agreement |
|---|---|---|---|---|---|---|
| demo (8 classes, independent test set, 320) | fp32 | 100.00% | 88.75% -> 88.75% | 3.8e-06 | 1.0000 | 100.00% |
| demo | fp16 | 100.00% | 88.75% -> 88.75% | 7.7e-03 | 1.0000 | 100.00% |
| demo | int8-dynamic | 100.00% | 88.75% -> 88.75% | 6.0e-02 | 0.9995 | 99.38% |
| demo | int8-static | 99.69% | 88.75% -> 88.75% | 6.9e-02 | 0.9984 | 99.38% |
| RRUFF 27 minerals (322, the training set: no held-out split) | fp32 | 100.00% | 93.79% -> 93.79% | 2.9e-06 | 1.0000 | 100.00% |
| RRUFF | fp16 | 100.00% | 93.79% -> 93.79% | 2.2e-03 | 1.0000 | 100.00% |
| RRUFF | int8-dynamic | 100.00% | 93.79% -> 93.79% | 7.4e-02 | 0.9994 | 99.38% |
| RRUFF | int8-static | 98.76% | 93.79% -> 93.79% | 1.5e-01 | 0.9900 | 97.83% |

Before the classifier was kept float32 under int8, int8-static lost 2 of 320 demo spectra (-0.62 pp) and
failed the 0.5 pp criterion, as it should.

All configurations (threads = intra_op_num_threads; opt = graph optimisation level; io_binding = pre-bound
input/output buffers):

<details><summary>full table</summary>

{head}
{chr(10).join(all_rows)}

</details>
"""
    return publish(SECTION, text, write=not args.no_write)


if __name__ == "__main__":
    raise SystemExit(main())
