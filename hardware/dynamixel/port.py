"""Opening a serial port for the SDK: baud rate, packet timeouts and the USB latency timer.

The SDK sizes its reply timeouts for a 16 ms FTDI latency timer (~34 ms per packet). We set the timer to 1 ms
where it exists and size timeouts for it, so a retry still fits inside a 20 ms control period.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from dynamixel_sdk import PortHandler

from hardware.dynamixel.errors import PortError

log = logging.getLogger(__name__)
USB_SERIAL_SYSFS = Path("/sys/bus/usb-serial/devices")


class TimedPortHandler(PortHandler):
    """The SDK's PortHandler with reply timeouts sized for the real latency timer (not the SDK's 16 ms)."""

    def __init__(self, port_name: str, latency_ms: float, margin_ms: float):
        super().__init__(port_name)
        self.latency_ms = latency_ms
        self.margin_ms = margin_ms

    def setPacketTimeout(self, packet_length):  # noqa: N802 (SDK name)
        self.packet_start_time = self.getCurrentTime()
        self.packet_timeout = self.tx_time_per_byte * packet_length + 2.0 * self.latency_ms + self.margin_ms


@dataclass
class LatencyStatus:
    path: Path | None  # sysfs file, None when the port has none (pty, non-FTDI adapter)
    value_ms: int | None  # the timer after our attempt
    warning: str | None = None


def configure_latency_timer(port: str, target_ms: int = 1, sysfs_root: Path = USB_SERIAL_SYSFS) -> LatencyStatus:
    """Set the FTDI latency timer of `port` to `target_ms`; warn (never fail) when it cannot be set."""
    device = Path(os.path.realpath(port)).name  # /dev/serial/by-id/... -> ttyUSB0
    path = sysfs_root / device / "latency_timer"
    if not path.exists():
        return LatencyStatus(None, None)  # a pty or an adapter without the knob: nothing to tune
    try:
        current = int(path.read_text().strip())
    except (OSError, ValueError) as exc:
        return _warn(LatencyStatus(path, None, f"cannot read {path}: {exc}"))
    if current == target_ms:
        return LatencyStatus(path, current)
    try:
        path.write_text(f"{target_ms}\n")
        current = int(path.read_text().strip())
    except (OSError, ValueError) as exc:
        return _warn(LatencyStatus(path, current, (
            f"{port}: USB latency timer is {current} ms and could not be set to {target_ms} ms ({exc}); the control "
            f"loop will be ~5x slower. Fix: `echo {target_ms} | sudo tee {path}` or a udev rule "
            f'(ATTR{{latency_timer}}="{target_ms}")'
        )))
    if current != target_ms:
        return _warn(LatencyStatus(path, current, f"{port}: latency timer reads {current} ms after setting {target_ms} ms"))
    return LatencyStatus(path, current)


def _warn(status: LatencyStatus) -> LatencyStatus:
    log.warning(status.warning)
    return status


def open_port(port: str, baudrate: int, *, latency_ms: float = 1.0, margin_ms: float = 2.0,
              sysfs_root: Path = USB_SERIAL_SYSFS) -> tuple[TimedPortHandler, LatencyStatus]:
    latency = configure_latency_timer(port, int(max(1, round(latency_ms))), sysfs_root)
    # Without a sysfs knob (pty), reply latency is the emulator's, not an FTDI buffer's.
    effective_latency = latency.value_ms if latency.value_ms is not None else (latency_ms if latency.path else 0.0)
    handler = TimedPortHandler(port, effective_latency, margin_ms)
    try:
        ok = handler.openPort()
    except Exception as exc:  # pyserial raises SerialException / OSError
        raise PortError(f"{port}: cannot open serial port: {exc}") from exc
    if not ok or not handler.setBaudRate(baudrate):
        handler.closePort() if handler.is_open else None
        raise PortError(f"{port}: cannot set baud rate {baudrate}")
    return handler, latency
