"""``ramanedge`` console entry point.

Each package owns its subcommands in its own ``cli.py`` module, which defines ``configure_<cmd>(parser)`` and
``run_<cmd>(args) -> int`` and imports nothing heavy at module level: the light commands (serve, devices,
info, ...) work with the base install, and a command whose extra is missing says which extra to install.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import logging
import os
import sys
from collections.abc import Callable, Sequence
from typing import NamedTuple

from spectral_core._version import __version__
from spectral_core.errors import MissingExtraError, RamanEdgeError

__all__ = ["COMMANDS", "build_parser", "main"]

logger = logging.getLogger("ramanedge")


class Command(NamedTuple):
    module: str
    extra: str | None  # the extra that provides its heavy dependencies, None for the base install
    help: str
    needs: tuple[str, ...] = ()  # importable modules the command cannot run without


COMMANDS: dict[str, Command] = {
    "info": Command("spectral_core.cli", None, "summarise a data file or folder as JSON"),
    "synth": Command("spectral_core.cli", None, "write a synthetic, physically shaped Raman data set"),
    "convert": Command("spectral_core.cli", None, "read any data files or class folders and write one .npz"),
    "calibrate": Command("spectral_core.calibration_cli", None,
                         "fit an instrument's wavenumber-axis correction from a spectrum of a standard"),
    "train": Command("trainer.cli", "train", "train RamanNet on a data set", ("torch", "safetensors")),
    "evaluate": Command(
        "trainer.cli", "train", "cross-validate RamanNet and baselines on identical folds", ("torch", "sklearn")
    ),
    "explain": Command("trainer.cli", "train", "SHAP attributions of a trained run by spectral region",
                       ("torch", "shap", "matplotlib")),
    "embed": Command("trainer.cli", "train", "compare the RamanNet embedding with PCA", ("torch", "sklearn")),
    "export": Command("export.cli", "train", "export a trained run to one ONNX file with its contract",
                      ("torch", "onnx")),
    "validate": Command("export.cli", "train", "prove an ONNX model answers as the PyTorch run does",
                        ("torch", "onnx")),
    "devices": Command("device_drivers.cli", None, "list serial ports and spectrometers"),
    "acquire": Command("device_drivers.cli", None, "record spectra from a device URL to a file"),
    "simulate": Command("device_drivers.cli", None, "run a simulated instrument on a pty or TCP port"),
    "serve": Command("edge_runtime.cli", None, "classify spectra from devices and drop folders in real time"),
    "calibrate-unknown": Command("edge_runtime.calibrate_unknown", None,
                                 "re-fit a model's unknown thresholds on known spectra of a new instrument"),
    "classify": Command("edge_runtime.classify_cli", None,
                        "classify files, folders, maps or a .npz offline with an ONNX model: results as .npz/.csv"),
}

_HEAVY = {"torch", "onnx", "onnxscript", "shap", "matplotlib", "sklearn", "safetensors", "h5py"}


def _load(name: str) -> tuple[Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]:
    cmd = COMMANDS[name]
    mod = importlib.import_module(cmd.module)
    attr = name.replace("-", "_")  # calibrate-unknown -> configure_calibrate_unknown
    return getattr(mod, f"configure_{attr}"), getattr(mod, f"run_{attr}")


def _missing(modules: tuple[str, ...]) -> list[str]:
    out = []
    for name in modules:
        try:
            found = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            out.append(name)
    return out


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The whole parser; with ``only``, just that command is configured (the others are listed by name),
    so ``ramanedge serve`` does not import every other package's CLI module before it starts."""
    parser = argparse.ArgumentParser(
        prog="ramanedge",
        description="Train RamanNet, export it to ONNX, and classify spectra beside the instrument.",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)")
    parser.add_argument("--version", action="version", version=f"ramanedge {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, cmd in COMMANDS.items():
        p = sub.add_parser(name, help=cmd.help, description=cmd.help)
        if only is not None and name != only:
            continue
        try:
            configure, _ = _load(name)
        except (ImportError, AttributeError) as exc:
            # A package that is not installed (or not built yet) must not break the other commands.
            p.set_defaults(_unavailable=f"{exc}")
            continue
        configure(p)
    return parser


def _setup_logging(verbose: int) -> None:
    level = logging.WARNING - 10 * min(verbose, 2)
    level = min(level, logging.INFO) if os.environ.get("RAMANEDGE_LOG_INFO") else level
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )


def _reader_gone() -> int:
    """stdout's reader closed the pipe (``ramanedge info x | head``): stop quietly, as a SIGPIPE'd tool does.

    stdout is pointed at /dev/null so the interpreter's final flush cannot raise a second time.
    """
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # stdout is no real file (captured): nothing left to flush there
        pass
    finally:
        os.close(devnull)
    return 141  # 128 + SIGPIPE, the status a shell reports for `yes | head`


def main(argv: Sequence[str] | None = None) -> int:
    arglist = list(sys.argv[1:] if argv is None else argv)
    chosen = next((a for a in arglist if not a.startswith("-")), None)
    parser = build_parser(only=chosen if chosen in COMMANDS else None)
    args, unknown = parser.parse_known_args(arglist)
    if unknown and not getattr(args, "_unavailable", None):
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    if not args.command:
        parser.print_help()
        return 2
    _setup_logging(args.verbose)
    cmd = COMMANDS[args.command]
    missing = _missing(cmd.needs)
    if missing and cmd.extra:
        print(
            f"ramanedge {args.command} needs the [{cmd.extra}] extra ({', '.join(missing)} not installed): "
            f"pip install 'ramanedge[{cmd.extra}]'",
            file=sys.stderr,
        )
        return 3
    if getattr(args, "_unavailable", None):
        print(f"ramanedge {args.command}: not available ({args._unavailable})", file=sys.stderr)
        return 3
    _, run = _load(args.command)
    try:
        status = int(run(args) or 0)
        sys.stdout.flush()  # inside the try: a reader that went away (`| head`) is seen here, not at exit
        return status
    except BrokenPipeError:
        return _reader_gone()
    except MissingExtraError as exc:
        print(f"ramanedge {args.command}: {exc}", file=sys.stderr)
        return 3
    except ModuleNotFoundError as exc:
        if cmd.extra and (exc.name or "").split(".")[0] in _HEAVY:
            print(
                f"ramanedge {args.command} needs the [{cmd.extra}] extra ({exc.name} is not installed): "
                f"pip install 'ramanedge[{cmd.extra}]'",
                file=sys.stderr,
            )
            return 3
        raise
    except RamanEdgeError as exc:
        print(f"ramanedge {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
