"""Where fcntl, termios and tty are missing (Windows), device_drivers, the CLI and edge_runtime still import, and
``serial://COM3``, ``tcp://`` and pyserial URLs still work; only the pty simulator refuses, and says why.

Run in a fresh interpreter with an import hook that refuses those modules to everything imported after it.
pyserial is imported before the hook: it has its own Windows backend, and what is tested is our code.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

SCRIPT = textwrap.dedent('''
    import importlib.abc, json, sys

    import serial  # pyserial: on Windows it loads its own backend, never fcntl/termios

    BLOCKED = {"fcntl", "termios", "tty", "pty"}
    attempts = []

    OURS = ("device_drivers", "edge_runtime", "spectral_core", "ramanedge")

    class Windows(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name in BLOCKED:
                # who asked: the first frame outside the import machinery (the stdlib's own tries are fine)
                f = sys._getframe(1)
                while f is not None and f.f_code.co_filename.startswith("<frozen"):
                    f = f.f_back
                where = f.f_globals.get("__name__", "?") if f is not None else "?"
                if where.split(".")[0] in OURS or where == "__main__":
                    attempts.append(f"{name} from {where}")
                raise ImportError(f"No module named {name!r}")
            return None

    for name in BLOCKED:
        sys.modules.pop(name, None)
    sys.meta_path.insert(0, Windows())
    try:
        import fcntl  # noqa: F401
        raise SystemExit("the import hook does not block")
    except ImportError:
        attempts.clear()

    out = {}
    import device_drivers, device_drivers.cli, device_drivers.memory, device_drivers.serial, device_drivers.sim
    import edge_runtime, edge_runtime.cli, edge_runtime.sources, ramanedge.cli
    from device_drivers import DriverError, SimConfig, SimulatedInstrument, open_device
    from device_drivers.serial import SerialTransport
    from device_drivers.url import parse_device_url, serial_port, _Opts

    out["imported"] = sorted(attempts)
    import argparse
    for name in ("devices", "acquire", "simulate", "serve"):  # the CLI configures them, none "unavailable"
        parser = ramanedge.cli.build_parser(only=name)
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        out.setdefault("cli", {})[name] = sub.choices[name].get_default("_unavailable")
    scheme, target, opts = parse_device_url("serial://COM3?protocol=ascii&baud=9600")
    out["com3"] = [scheme, target, serial_port("serial://COM3", target, _Opts("serial://COM3", opts))]
    try:
        open_device("serial://COM3?reconnects=0&handshake_timeout=0.2")
    except DriverError as exc:  # no COM3 here: the port cannot be opened, but nothing is missing
        out["com3_open"] = type(exc).__name__

    loop = SerialTransport("loop://")
    loop.write(b"hello", 1.0)
    out["loop"] = loop.read(100, 1.0).decode()
    loop.close()

    sim = SimulatedInstrument(SimConfig(rate_hz=0, pixels=32), transport="tcp").start()
    try:
        for url in (sim.url, f"serial://socket://{sim.path}?protocol=framed"):
            with open_device(url) as dev:
                out.setdefault("seqs", []).append([dev.acquire().metadata["seq"] for _ in range(2)])
    finally:
        sim.stop()
    try:
        SimulatedInstrument(SimConfig(), transport="pty")
    except DriverError as exc:
        out["pty"] = str(exc)
    print(json.dumps(out))
''')


def test_device_drivers_cli_and_runtime_work_without_posix_terminal_modules() -> None:
    proc = subprocess.run([sys.executable, "-c", SCRIPT], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["imported"] == [], "nothing imported at module level asks for a POSIX module"
    assert out["cli"] == {"devices": None, "acquire": None, "simulate": None, "serve": None}
    assert out["com3"] == ["serial", "COM3", "COM3"]
    assert out["com3_open"] == "DeviceDisconnectedError"
    assert out["loop"] == "hello"
    assert out["seqs"] == [[0, 1], [2, 3]], "tcp:// and serial://socket:// both stream from the simulator"
    assert "POSIX" in out["pty"] and "tcp://" in out["pty"]
