"""``ramanedge explain``: which spectral regions drive each decision of a trained RamanNet run (offline only).

The attributions are DeepSHAP values (see :mod:`trainer.attribution` for why that explainer), aggregated into
spectral regions (:mod:`trainer.regions`) and drawn by :mod:`trainer.plots`. Each spectrum is explained for one
class, its own (its label, else the predicted class). The background set is drawn from the training data
(``--data``), stratified by class, seeded; its size is an option. Nothing here is imported by the edge runtime,
and nothing heavy (torch, shap, matplotlib) is imported before the command runs.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

import numpy as np

from spectral_core.errors import DataError
from trainer.attribution import cross_check, explain_spectra, permutation_windows
from trainer.plots import plot_class_attributions, plot_region_violins, plot_spectrum
from trainer.regions import RegionImportance, region_bounds, region_importance
from trainer.rundata import draw_background, load_for_run, require_train_extra, stratified_pick

__all__ = ["configure_explain", "run_explain"]

logger = logging.getLogger(__name__)


def _markdown(top: list[RegionImportance], classes: list[str], total: float) -> str:
    shown = [c for c in classes if any(c in r.per_class for r in top)]
    head = "| rank | region (cm^-1) | importance | share | signed | " + " | ".join(shown) + " |"
    rule = "|" + "---|" * (5 + len(shown))
    rows = [
        f"| {i} | {r.start_cm:.0f}-{r.end_cm:.0f} | {r.importance:.3f} | {100 * r.importance / total:.1f}% | "
        f"{r.signed:+.3f} | " + " | ".join(f"{r.per_class.get(c, float('nan')):.3f}" for c in shown) + " |"
        for i, r in enumerate(top, 1)
    ]
    note = (
        "\nimportance: mean |SHAP| of the region for each spectrum's own class (logit units); share: of the sum "
        "over all regions; signed: mean signed value (+ pushes towards the class); per class: mean |SHAP| for "
        "that class's logit over its spectra.\n"
    )
    return "\n".join([head, rule, *rows]) + "\n" + note


def configure_explain(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``ramanedge explain``."""
    parser.add_argument("run", metavar="RUN", help="run directory written by `ramanedge train`")
    from spectral_core.cli import add_data_option

    add_data_option(parser, help="training data: background set and spectra to explain")
    parser.add_argument("--out", required=True, help="output folder (created)")
    parser.add_argument("--background", type=int, default=100, metavar="N", help="background spectra (default 100)")
    parser.add_argument("--spectrum", metavar="FILE", help="explain one spectrum of this file instead of --data")
    parser.add_argument("--index", type=int, default=0, metavar="I", help="which spectrum of --spectrum (default 0)")
    parser.add_argument("--top", type=int, default=10, metavar="K", help="regions in the table and plots (default 10)")
    parser.add_argument(
        "--max-spectra", type=int, default=200, metavar="N",
        help="explain at most N spectra of --data, stratified (default 200)",
    )
    parser.add_argument(
        "--region-width", type=float, default=None, metavar="CM",
        help="region width in cm^-1 (default: one window step, aligned with the window starts)",
    )
    parser.add_argument(
        "--cross-check", type=int, default=0, metavar="N",
        help="also estimate window Shapley values of N spectra with shap.PermutationExplainer and report "
        "their agreement with DeepSHAP (slow: 2 x windows x 10 model passes over the background each)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the background and spectra draws")


def run_explain(args: argparse.Namespace) -> int:
    """``ramanedge explain``: write attributions, ``regions.json``/``regions.md`` and plots into ``--out``."""
    require_train_extra("ramanedge explain")
    from trainer.checkpoint import load_run
    from trainer.model import window_starts

    if args.top < 1:
        raise DataError(f"--top must be at least 1, got {args.top}")
    model, info = load_run(args.run)
    from spectral_core.cli import read_data

    data = load_for_run(read_data(args), info)
    background = draw_background(data, args.background, args.seed)
    is_training = data.fingerprint == info.data_sha256
    if not is_training:
        logger.info("%s is not the run's training data (fingerprint differs): the background comes from it anyway",
                    data.source)
    single = args.spectrum is not None
    if single:
        targets = load_for_run(read_data(args, "spectrum"), info, require_labels=False)
        n_file = targets.rows.size + len(targets.skipped)
        if not 0 <= args.index < n_file:
            raise DataError(f"{targets.source} holds {n_file} spectra; --index {args.index} is out of range")
        if args.index in targets.skipped:
            raise DataError(f"{targets.source}: spectrum {args.index} cannot be explained: {targets.skipped[args.index]}")
        if n_file > 1:
            logger.info("%s holds %d spectra; explaining spectrum %d (--index)", targets.source, n_file, args.index)
        pos = int(np.flatnonzero(targets.rows == args.index)[0])
        rows = targets.rows[pos : pos + 1]
        X, y = targets.X[pos : pos + 1], None
    else:
        targets = data
        pick = stratified_pick(data.X.shape[0], data.y, min(args.max_spectra, data.X.shape[0]), args.seed + 1)
        X, y = data.X[pick], None if data.y is None else data.y[pick]
        rows = data.rows[pick]
    logger.info("explaining %d spectra against %d background spectra", X.shape[0], background.shape[0])
    attr = explain_spectra(model, background, X, None if (single or y is None) else y)
    target = attr.target

    axis = np.asarray(info.axis, dtype=np.float64)
    cfg = info.model
    starts = window_starts(cfg.input_length, cfg.window, cfg.step, paper_compat=cfg.paper_compat)
    regions = region_importance(attr.values, region_bounds(axis, cfg.step, args.region_width), axis, target, info.classes)
    windows = region_importance(
        attr.windows, [(s, s + cfg.window) for s in starts], axis, target, info.classes, per_region=True
    )
    top = regions[: args.top]
    total = sum(r.importance for r in regions) or 1.0

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        out / "attributions.npz",
        values=attr.values.astype(np.float32),
        windows=attr.windows.astype(np.float32),
        expected=attr.expected,
        logits=attr.logits,
        axis=axis,
        target=target,
        rows=rows,
        classes=np.asarray(info.classes, dtype=str),
    )
    probs = np.exp(attr.logits - attr.logits.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    report: dict[str, Any] = {
        "run": str(args.run),
        "data": data.source,
        "spectrum": targets.source if single else None,
        "explainer": "shap.DeepExplainer (DeepSHAP), float64, logits",
        "n_background": int(background.shape[0]),
        "background_is_training_data": is_training,
        "n_explained": int(X.shape[0]),
        "explained_for": "predicted class" if (single or y is None) else "true class",
        "expected_logits": dict(zip(info.classes, attr.expected.tolist(), strict=True)),
        "additivity_max_abs_error": attr.additivity_error,
        "window_additivity_max_abs_error": attr.window_additivity_error,
        "skipped": {} if single else {str(k): v for k, v in targets.skipped.items()},
        "regions": [r.to_json(i) for i, r in enumerate(regions, 1)],
        "windows": [w.to_json(i) for i, w in enumerate(windows, 1)],
    }
    if single:
        report["index"] = int(rows[0])
        report["prediction"] = {
            "class": info.classes[int(target[0])],
            "probabilities": dict(zip(info.classes, probs[0].tolist(), strict=True)),
            "label": None if targets.y is None else info.classes[int(targets.y[pos])],
        }
    if args.cross_check > 0:
        k = min(args.cross_check, X.shape[0])
        sel = stratified_pick(X.shape[0], target, k, args.seed + 2)
        perm = permutation_windows(model, background, X[sel], target[sel], seed=args.seed)
        report["cross_check"] = {"explainer": "shap.PermutationExplainer over windows, 10 antithetic permutations",
                                 **cross_check(attr.windows[sel], perm)}
        logger.info("DeepSHAP vs Permutation windows: %s", report["cross_check"])
    (out / "regions.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "regions.md").write_text(_markdown(top, info.classes, total))
    if single:
        c = int(target[0])
        label = report["prediction"]["label"]
        truth = "" if label is None else f", true class {label}" + (" (correct)" if label == info.classes[c] else
                                                                      " (WRONG)")
        plot_spectrum(
            out / f"spectrum_{int(rows[0])}.png", axis=axis, x=X[0], phi=attr.values[0],
            title=f"{Path(targets.source).name} #{int(rows[0])}: predicted {info.classes[c]} (p={probs[0, c]:.2f})"
            f"{truth}; SHAP for the predicted class",
            top=top,
        )
    else:
        plot_class_attributions(
            out / "class_attributions.png", axis=axis, X=X, target=target, attr=attr, classes=info.classes, top=top
        )
        plot_region_violins(out / "region_violin.png", top, target, info.classes)
    sys.stdout.write(f"wrote {out}/regions.json, regions.md and plots\n" + (out / "regions.md").read_text())
    return 0
