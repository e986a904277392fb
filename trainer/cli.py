"""``ramanedge train`` and ``ramanedge evaluate``. Nothing heavy at module level: torch is imported in run_*."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any

from spectral_core.cli import add_data_option, read_data
from trainer.threads import set_wait_policy

if TYPE_CHECKING:
    from spectral_core.spectrum import SpectralDataset
    from trainer.train import EpochStats, TrainConfig

__all__ = ["configure_evaluate", "configure_explain", "configure_train", "run_evaluate", "run_explain", "run_train"]


def _add_data_options(p: argparse.ArgumentParser) -> None:
    add_data_option(p, help="training data")
    p.add_argument("--classes", help="keep only these classes, in this order: A,B (e.g. a binary task)")
    p.add_argument("--calibration", metavar="FILE",
                   help="an instrument calibration (`ramanedge calibrate`) to correct the data's axis with")


def _add_config_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("training options (override --config)")
    g.add_argument("--config", help="a TrainConfig as .toml or .json (or a run.json to repeat a run)")
    g.add_argument("--epochs", type=int, help="maximum epochs (default: from the number of training spectra)")
    g.add_argument("--batch-size", type=int, help="spectra a batch (default: from the number of training spectra)")
    g.add_argument("--bn-momentum", type=float, metavar="M",
                   help="batch-norm momentum, PyTorch convention (default: from the number of training spectra)")
    g.add_argument("--lr", type=float, help="Adam learning rate")
    g.add_argument("--seed", type=int)
    g.add_argument("--val-fraction", type=float, help="share of the training data held out for validation")
    g.add_argument("--early-stopping", type=int, metavar="EPOCHS",
                   help="stop after EPOCHS without improvement (default: from the number of training spectra)")
    g.add_argument("--triplet-margin", type=float)
    g.add_argument("--select", metavar="MODE[:KEY=VALUE,...]",
                   help="which weights are kept: best-loss (the best validation loss, default), smoothed (the best "
                        "centred running median of the validation loss; window=9,min_epoch=10) or swa (a fixed "
                        "schedule, weights averaged over the last part; swa_start=0.75,swa_lr=RATE); see "
                        "trainer/selection.py")
    g.add_argument("--augment", metavar="OP=VALUE,...|none",
                   help="augment the training batches after preprocessing: shift=CM1,scale=S,baseline=B,noise=N,"
                        "mixup=P (each optional; e.g. shift=3,noise=0.01); default none; see trainer/augment.py")
    g.add_argument("--unknown-rate", type=float, metavar="RATE",
                   help="target share of known spectra flagged unknown (default 0.05), fitted on held-out spectra")
    g.add_argument("--window", type=int, help="RamanNet window length w, points")
    g.add_argument("--step", type=int, help="RamanNet window step dw, points")
    g.add_argument("--paper-compat", action="store_true", default=None,
                   help="reproduce the original code's window loop (drops the spectrum's tail)")
    g.add_argument("--threads", type=int, help="torch CPU threads (default: the cores free at the start)")
    g.add_argument("--target-axis", metavar="START:STOP:POINTS",
                   help="resample every spectrum onto this uniform axis (cm^-1)")
    g.add_argument("--normalise", choices=["none", "minmax", "vector", "area", "snv"])
    g.add_argument("--axis-tolerance", type=float, metavar="CM1",
                   help="without --target-axis, the model axis lies this far inside the range all training spectra "
                   "cover (default: the larger of 2 cm^-1 and one axis step; 0: the data's own axis)")
    _add_preprocess_options(p)


def _add_preprocess_options(p: argparse.ArgumentParser) -> None:
    """THE preprocessing (docs/preprocessing.md), step by step; each flag overrides the config's step."""
    g = p.add_argument_group("preprocessing (override --config; see docs/preprocessing.md)")
    g.add_argument("--despike", nargs="?", const="7", metavar="THRESHOLD[:WIDTH]",
                   help="remove cosmic-ray spikes (modified z-score threshold, default 7; widest spike, default 2 "
                        "pixels); 'off' disables")
    g.add_argument("--crop", metavar="LOW:HIGH", help="keep LOW-HIGH cm^-1 before resampling; 'off' disables")
    g.add_argument("--baseline", metavar="METHOD[:KEY=VALUE,...]",
                   help="background removal with any pybaselines method and its keyword arguments, e.g. "
                        "arpls:lam=1e6, modpoly:poly_order=5 or iasls:lam=1e6,lam_1=1e-3; 'off' disables")
    g.add_argument("--smooth", nargs="?", const="9:3", metavar="WINDOW[:POLYORDER]",
                   help="Savitzky-Golay smoothing (default window 9, order 3); 'off' disables")
    g.add_argument("--interpolation", choices=["cubic", "linear"], help="resampling interpolation (default cubic)")


_OFF = ("off", "none", "no")


def preprocess_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The preprocessing flags as a partial ``PreprocessConfig`` dict; a step turned off maps to None.

    Raises:
        DataError: a malformed value, naming the flag and the form it takes.
    """
    from spectral_core.errors import DataError

    out: dict[str, Any] = {}

    def numbers(flag: str, text: str, kinds: tuple[type, ...]) -> list[Any]:
        parts = text.split(":")
        if not 1 <= len(parts) <= len(kinds):
            raise DataError(f"{flag} takes {':'.join(k.__name__.upper() for k in kinds)}, got {text!r}")
        try:
            return [k(v) for k, v in zip(kinds, parts, strict=False)]
        except ValueError:
            raise DataError(f"{flag}: {text!r} is not {':'.join(k.__name__ for k in kinds)}") from None

    despike = getattr(args, "despike", None)
    if despike is not None:
        if despike.lower() in _OFF:
            out["despike"] = None
        else:
            v = numbers("--despike", despike, (float, int))
            out["despike"] = {"threshold": v[0], **({"width": v[1]} if len(v) > 1 else {})}
    crop = getattr(args, "crop", None)
    if crop is not None:
        if crop.lower() in _OFF:
            out["crop"] = None
        else:
            v = numbers("--crop", crop, (float, float))
            if len(v) != 2:
                raise DataError(f"--crop takes LOW:HIGH (cm^-1), got {crop!r}")
            out["crop"] = (v[0], v[1])
    baseline = getattr(args, "baseline", None)
    if baseline is not None:
        if baseline.lower() in _OFF:
            out["baseline"] = None
        else:
            out["baseline"] = _baseline_option(baseline)
    smooth = getattr(args, "smooth", None)
    if smooth is not None:
        if smooth.lower() in _OFF:
            out["smooth"] = None
        else:
            v = numbers("--smooth", smooth, (int, int))
            out["smooth"] = {"window": v[0], **({"polyorder": v[1]} if len(v) > 1 else {})}
    if getattr(args, "interpolation", None) is not None:
        out["interpolation"] = args.interpolation
    return out


_BASELINE_FIELDS = ("lam", "p", "poly_order", "max_half_window")


def _baseline_option(text: str) -> dict[str, Any]:
    """``METHOD[:KEY=VALUE,...]`` as a ``BaselineConfig`` dict: ``lam``, ``p``, ``poly_order`` and
    ``max_half_window`` are fields of their own, any other key goes to ``params`` (checked against the method's
    signature when the config is validated). Values are numbers, true/false, or else text."""
    from spectral_core.errors import DataError

    method, _, rest = text.partition(":")
    out: dict[str, Any] = {"method": method.strip().lower()}
    params: dict[str, Any] = {}
    for item in filter(None, (x.strip() for x in rest.split(","))):
        key, eq, raw = item.partition("=")
        key, raw = key.strip(), raw.strip()
        if not eq or not key:
            raise DataError(f"--baseline: {item!r} is not KEY=VALUE (e.g. arpls:lam=1e6)")
        value: Any
        try:
            value = int(raw) if raw.lstrip("-").isdigit() else float(raw)
        except ValueError:
            if key in _BASELINE_FIELDS:
                raise DataError(f"--baseline: {key}={raw!r} is not a number") from None
            value = {"true": True, "false": False}.get(raw.lower(), raw)
        if key in _BASELINE_FIELDS:
            out[key] = value
        else:
            params[key] = value
    if params:
        out["params"] = params
    return out


def _parse_axis(text: str) -> dict[str, Any]:
    from spectral_core.errors import DataError

    parts = text.split(":")
    try:
        start, stop, points = float(parts[0]), float(parts[1]), int(parts[2])
    except (IndexError, ValueError):
        raise DataError(f"--target-axis wants START:STOP:POINTS (cm^-1), got {text!r}") from None
    return {"start": start, "stop": stop, "points": points}


def build_config(args: argparse.Namespace) -> TrainConfig:
    """The TrainConfig of ``--config`` (or the defaults) with the command-line flags applied."""
    from trainer.train import TrainConfig

    cfg = TrainConfig.from_file(args.config) if getattr(args, "config", None) else TrainConfig()
    overrides: dict[str, Any] = {
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "seed": args.seed,
        "val_fraction": args.val_fraction,
        "early_stopping_patience": args.early_stopping,
        "triplet_margin": args.triplet_margin,
        "unknown_rate": args.unknown_rate,
        "num_threads": args.threads,
        "model.window": args.window,
        "model.step": args.step,
        "model.paper_compat": args.paper_compat,
        "model.bn_momentum": getattr(args, "bn_momentum", None),
        "preprocess.normalise": args.normalise,
        "axis_tolerance_cm1": args.axis_tolerance,
    }
    if args.target_axis:
        overrides["preprocess.target_axis"] = _parse_axis(args.target_axis)
    cfg = cfg.with_overrides(overrides)
    if getattr(args, "select", None):
        from trainer.selection import parse_selection

        given = parse_selection(args.select)  # the keys it names override the config's, the rest are kept
        merged = {**cfg.selection.model_dump(), **given.model_dump(include=given.model_fields_set)}
        cfg = cfg.model_copy(update={"selection": type(given).model_validate(merged)})
    if getattr(args, "augment", None) is not None:
        from trainer.augment import parse_augment

        cfg = cfg.model_copy(update={"augment": parse_augment(args.augment)})
    steps = preprocess_overrides(args)
    if steps:
        from pydantic import ValidationError

        from spectral_core.errors import DataError
        from spectral_core.preprocess import PreprocessConfig

        try:  # a step set to None (turned off) must survive: with_overrides ignores None values
            pre = PreprocessConfig.model_validate({**cfg.preprocess.model_dump(), **steps})
        except ValidationError as exc:
            raise DataError(f"invalid preprocessing option: {exc}") from None
        cfg = cfg.model_copy(update={"preprocess": pre})
    return cfg


def given_sizes(args: argparse.Namespace) -> set[str]:
    """The data-size settings (``trainer.train.SIZE_KEYS``) that ``--config`` or a flag sets."""
    from trainer.train import TrainConfig

    given: set[str] = set()
    if getattr(args, "config", None):
        file_cfg = TrainConfig.from_file(args.config)
        given |= file_cfg.model_fields_set & {"batch_size", "epochs", "early_stopping_patience"}
        if "bn_momentum" in file_cfg.model:
            given.add("model.bn_momentum")
        if "selection" in file_cfg.model_fields_set:
            given.add("selection.mode")
    flags = {"batch_size": "batch_size", "epochs": "epochs", "early_stopping": "early_stopping_patience",
             "bn_momentum": "model.bn_momentum", "select": "selection.mode"}
    given |= {key for flag, key in flags.items() if getattr(args, flag, None) is not None}
    return given


def expected_training_spectra(args: argparse.Namespace, ds: SpectralDataset, cfg: TrainConfig) -> int:
    """How many spectra one training run of the command sees: the data less the test part of a split (for
    evaluate) and the validation part."""
    n = float(ds.n_spectra)
    protocol = getattr(args, "protocol", None)
    if protocol == "kfold":
        n *= (args.folds - 1) / max(args.folds, 1)
    elif protocol == "holdout":
        n *= 1.0 - args.test_fraction
    elif protocol == "openset":
        k = len(ds.classes)
        n *= (1.0 - args.test_fraction) * (k - 1) / max(k, 1)
    return max(1, int(n * (1.0 - cfg.val_fraction)))


def with_data_defaults(args: argparse.Namespace, cfg: TrainConfig, ds: SpectralDataset) -> TrainConfig:
    """``cfg`` with the data-size defaults for what ``--config`` and the flags leave open, said on stderr."""
    from trainer.train import with_size_defaults

    cfg, line = with_size_defaults(cfg, expected_training_spectra(args, ds, cfg), given_sizes(args))
    print(line, file=sys.stderr, flush=True)
    return cfg


def load_data(args: argparse.Namespace) -> SpectralDataset:
    """Read every ``--data`` with the shared reader options (stacked), correct the axis with
    ``--calibration`` and keep ``--classes`` if given."""
    from trainer.grouping import apply_derived_grouping, parse_derived_grouping

    derived = parse_derived_grouping(getattr(args, "groups", None))  # similar[:R] / adjacent[:R]: from the spectra
    ds = read_data(argparse.Namespace(**{**vars(args), "groups": None}) if derived else args)
    if getattr(args, "calibration", None):
        ds = apply_calibration(ds, args.calibration)
    if derived is not None:  # before --classes: adjacent needs the file's own row order
        ds = apply_derived_grouping(ds, *derived)
    if getattr(args, "classes", None):
        ds = ds.select_classes([c.strip() for c in args.classes.split(",") if c.strip()])
    return ds


def apply_calibration(ds: SpectralDataset, path: str) -> SpectralDataset:
    """``ds`` on the axis corrected by the calibration file ``path`` (its hash goes to the provenance)."""
    from spectral_core.calibration import apply_calibration, load_calibration
    from spectral_core.spectrum import SpectralDataset

    cal = load_calibration(path)
    axis, meta = apply_calibration(cal, ds.axis)
    return SpectralDataset(
        X=ds.X, axis=axis.copy(), y=ds.y, classes=ds.classes, groups=ds.groups,
        provenance={**ds.provenance, **meta, "calibration_standard": cal.standard},
    )


class _Progress:
    """A tqdm bar on a terminal, one concise line per epoch otherwise (both on stderr)."""

    def __init__(self, epochs: int) -> None:
        self.tty = sys.stderr.isatty()
        self.bar: Any = None
        if self.tty:
            from tqdm import tqdm

            self.bar = tqdm(total=epochs, unit="epoch", file=sys.stderr, dynamic_ncols=True)

    def __call__(self, s: EpochStats) -> None:
        if self.bar is not None:
            self.bar.set_postfix(loss=f"{s.loss:.4f}", ce=f"{s.ce:.3f}", trip=f"{s.triplet:.3f}",
                                 val_loss=f"{s.val_loss:.4f}", val_acc=f"{s.val_acc:.3f}", refresh=False)
            self.bar.update(1)
        else:
            mark = " *" if s.best else ""
            print(
                f"epoch {s.epoch}/{s.epochs} loss {s.loss:.4f} (ce {s.ce:.4f} triplet {s.triplet:.4f}) "
                f"acc {s.acc:.3f} val_loss {s.val_loss:.4f} val_acc {s.val_acc:.3f} lr {s.lr:.3g} "
                f"{s.seconds:.2f}s{mark}",
                file=sys.stderr, flush=True,
            )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def configure_train(p: argparse.ArgumentParser) -> None:
    _add_data_options(p)
    p.add_argument("--out", required=True, help="the RUN directory to write")
    p.add_argument("--force", action="store_true", help="overwrite a RUN directory that holds another run")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    _add_ensemble_option(p)
    _add_config_options(p)


def _add_ensemble_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--ensemble", type=_ensemble_size, default=1, metavar="K",
                   help="train K RamanNets (seeds SEED..SEED+K-1, one validation part) combined by the mean of "
                   "their softmax; exported as one ONNX graph (default 1: a single model)")


def _ensemble_size(text: str) -> int:
    from trainer.ensemble import MAX_MEMBERS

    n = _positive_int(text)
    if n > MAX_MEMBERS:
        raise argparse.ArgumentTypeError(f"{n} members is more than {MAX_MEMBERS}")
    return n


def run_train(args: argparse.Namespace) -> int:
    set_wait_policy()  # before torch is imported (trainer.threads)
    from trainer.train import train

    cfg = build_config(args)
    ds = load_data(args)
    cfg = with_data_defaults(args, cfg, ds)
    prog = None if args.quiet else _Progress(cfg.epochs)
    try:
        if args.ensemble > 1:
            from trainer.ensemble import train_ensemble

            def member(i: int, k: int) -> None:
                if not args.quiet:
                    print(f"ensemble member {i + 1}/{k} (seed {cfg.seed + i})", file=sys.stderr, flush=True)

            info: Any = train_ensemble(ds, args.out, cfg, args.ensemble, force=args.force, progress=prog,
                                       on_member=member)
        else:
            info = train(ds, args.out, cfg, force=args.force, progress=prog)
    finally:
        if prog is not None:
            prog.close()
    if not args.quiet:
        a = info.axis
        print(f"model axis: {a[0]:g}-{a[-1]:g} cm^-1, {len(a)} points (the data cover {ds.axis[0]:g}-"
              f"{ds.axis[-1]:g} cm^-1)", file=sys.stderr, flush=True)
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0:
        print(json.dumps({"run": str(args.out), "classes": len(info.classes), **info.metrics}))
    return 0


def configure_evaluate(p: argparse.ArgumentParser) -> None:
    _add_data_options(p)
    p.add_argument("--out", required=True, help="directory for splits, results.json, tables and figures")
    p.add_argument("--protocol", choices=["kfold", "holdout", "fixed", "openset"], default="kfold",
                   help="openset: hold each class (or --unknown) out of training and measure unknown flags")
    p.add_argument("--folds", type=int, default=5, help="k of k-fold")
    p.add_argument("--repeats", type=int, default=50, help="random hold-out repeats")
    p.add_argument("--test-fraction", type=float, default=0.3, help="hold-out test share")
    p.add_argument("--finetune", help="fixed protocol: the fine-tuning data file")
    p.add_argument("--test", help="fixed protocol: the test data file")
    p.add_argument("--unknown", help="openset protocol: the classes to hold out in turn (default: all)")
    p.add_argument("--model", default="ramannet",
                   help="comma-separated: ramannet, svm, logreg, pca-svm, knn, anova-svm, library (the same splits for all)")
    p.add_argument("--force", action="store_true", help="overwrite an evaluation directory")
    p.add_argument("--jobs", type=_positive_int, default=None,
                   help="processes for the baselines' folds and models (default: the cores not busy now)")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    _add_ensemble_option(p)
    _add_config_options(p)


def _positive_int(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"{n} is not at least 1")
    return n


class _EvalProgress:
    """Evaluation progress on stderr: a tqdm bar over (model, split) fits on a terminal, otherwise one line
    each, numbered ``[done/total]``."""

    def __init__(self) -> None:
        self.bar: Any = None
        self.tty = sys.stderr.isatty()

    def __call__(self, done: int, total: int, line: str) -> None:
        if not self.tty:
            if done:
                print(f"[{done}/{total}] {line}", file=sys.stderr, flush=True)
            return
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit="fit", file=sys.stderr, dynamic_ncols=True)
        if done:
            self.bar.set_postfix_str(line, refresh=False)
            self.bar.update(done - self.bar.n)

    def say(self, msg: str) -> None:
        if self.bar is not None:
            self.bar.write(msg, file=sys.stderr)
        else:
            print(msg, file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def run_evaluate(args: argparse.Namespace) -> int:
    set_wait_policy()  # before torch is imported (trainer.threads)
    from spectral_core.errors import DataError
    from trainer.evaluate import evaluate, open_set_evaluation, results_table

    cfg = build_config(args)
    ds = load_data(args)
    cfg = with_data_defaults(args, cfg, ds)

    def say(msg: str) -> None:
        if not args.quiet:
            print(msg, file=sys.stderr, flush=True)

    from trainer.evaluate import grouping_of, grouping_text

    print(f"evaluate: {ds.n_spectra} spectra; {grouping_text(grouping_of(ds))}", file=sys.stderr, flush=True)
    if args.protocol == "openset":
        if args.ensemble > 1:
            raise DataError("--ensemble is not available with --protocol openset (single models only)")
        unknown = [c.strip() for c in args.unknown.split(",")] if args.unknown else None
        doc = open_set_evaluation(ds, args.out, cfg, unknown_classes=unknown, test_fraction=args.test_fraction,
                                  force=args.force, log=say)
        print(json.dumps(doc["summary"]))
        return 0
    finetune = test = None
    if args.protocol == "fixed":
        if not args.finetune or not args.test:
            raise DataError("--protocol fixed needs --finetune FILE and --test FILE")
        finetune = load_data(argparse.Namespace(**{**vars(args), "data": args.finetune}))
        test = load_data(argparse.Namespace(**{**vars(args), "data": args.test}))
    models = [m.strip() for m in args.model.split(",") if m.strip()]
    prog = None if args.quiet else _EvalProgress()
    try:
        merged = evaluate(
            ds, args.out, cfg, protocol=args.protocol, models=models, folds=args.folds, repeats=args.repeats,
            test_fraction=args.test_fraction, finetune=finetune, test=test, force=args.force,
            log=prog.say if prog is not None else None, progress=prog, jobs=args.jobs, ensemble=args.ensemble,
        )
    finally:
        if prog is not None:
            prog.close()
    sys.stdout.write(results_table(merged))
    return 0


# ``ramanedge explain`` lives in trainer.explain (torch-free at module level); the composition root looks the
# command up here, so these two delegate to it.
def configure_explain(p: argparse.ArgumentParser) -> None:
    from trainer.explain import configure_explain as configure

    configure(p)


def run_explain(args: argparse.Namespace) -> int:
    from trainer.explain import run_explain as run

    return int(run(args))


# ``ramanedge embed`` lives in trainer.embed (torch-free at module level); re-exported for the composition root.
from trainer.embed import configure_embed, run_embed  # noqa: E402, F401
