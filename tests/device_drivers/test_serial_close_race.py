"""Closing a serial port from another thread while a read is blocked ends the read with a typed error."""

from __future__ import annotations

import os
import threading
import time

import pytest

from device_drivers.errors import DeviceDisconnectedError
from device_drivers.serial import SerialTransport


@pytest.mark.parametrize("attempt", range(12))
def test_close_during_blocking_read_raises_disconnected(attempt: int) -> None:
    master, slave = os.openpty()
    try:
        t = SerialTransport(os.ttyname(slave))
        outcome: list[BaseException | bytes] = []

        def reader() -> None:
            try:
                while True:
                    outcome.append(t.read(4096, 0.05 * (attempt + 1)))
            except BaseException as exc:  # the test inspects whatever ended the loop
                outcome.append(exc)

        th = threading.Thread(target=reader)
        th.start()
        time.sleep(0.02 * attempt + 0.01)
        t.close()
        th.join(timeout=5)
        assert not th.is_alive()
        assert isinstance(outcome[-1], DeviceDisconnectedError), repr(outcome[-1])
    finally:
        os.close(master)
        os.close(slave)
