"""One serial port, Protocol 2.0, through the unmodified dynamixel_sdk.

A control step costs one sync read (all servos of an arm) and one sync write. Timeouts and CRC errors are retried
a bounded number of times, and only while the caller's deadline (the end of the control period) allows; what
persists becomes a `ServoFault` naming the port, the servo and the fault.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from dynamixel_sdk import (
    BROADCAST_ID,
    COMM_RX_CORRUPT,
    COMM_RX_TIMEOUT,
    COMM_SUCCESS,
    GroupSyncWrite,
    PacketHandler,
)

from hardware.dynamixel.control_table import describe_hardware_error, encode
from hardware.dynamixel.errors import (
    DynamixelError,
    ServoCommandError,
    ServoCorrupt,
    ServoFault,
    ServoHardwareError,
    ServoSilent,
)
from hardware.dynamixel.port import USB_SERIAL_SYSFS, LatencyStatus, open_port

ALERT_BIT = 0x80
HARDWARE_ERROR_STATUS = 70  # address, same on every X-series model

_STATUS_ERRORS = {
    1: "result fail", 2: "instruction error", 3: "CRC error (servo side)", 4: "data range error",
    5: "data length error", 6: "data limit error", 7: "access error (EEPROM locked while torque is on?)",
}


@dataclass
class BusStats:
    transactions: int = 0
    retries: int = 0
    failures: int = 0


class DynamixelBus:
    def __init__(self, port: str, baudrate: int = 1_000_000, *, retries: int = 2, min_retries: int = 1,
                 latency_ms: float = 1.0, timeout_margin_ms: float = 2.0, sysfs_root: Path = USB_SERIAL_SYSFS):
        self.port_name = port
        self.baudrate = baudrate
        self.retries = retries
        self.min_retries = min(min_retries, retries)  # granted even past the deadline: one glitch is not a fault
        self.latency_ms = latency_ms
        self.timeout_margin_ms = timeout_margin_ms
        self.sysfs_root = sysfs_root
        self.packet = PacketHandler(2.0)
        self.port = None
        self.latency: LatencyStatus | None = None
        self.stats = BusStats()

    # ------------------------------------------------------------------ port
    @property
    def is_open(self) -> bool:
        return self.port is not None and self.port.is_open

    def open(self) -> None:
        if self.is_open:
            return
        self.port, self.latency = open_port(self.port_name, self.baudrate, latency_ms=self.latency_ms,
                                            margin_ms=self.timeout_margin_ms, sysfs_root=self.sysfs_root)

    def close(self) -> None:
        if self.port is not None and self.port.is_open:
            self.port.closePort()
        self.port = None

    def _require_open(self):
        if not self.is_open:
            raise DynamixelError(f"{self.port_name}: bus is not open")
        return self.port

    # ------------------------------------------------------------------ faults
    def _comm_fault(self, servo_id: int | None, result: int, attempts: int) -> ServoFault:
        self.stats.failures += 1
        tries = f"after {attempts} attempt{'s' if attempts > 1 else ''}"
        if result == COMM_RX_TIMEOUT:
            return ServoSilent(self.port_name, servo_id, f"no status packet {tries} (servo silent or missing)")
        if result == COMM_RX_CORRUPT:
            return ServoCorrupt(self.port_name, servo_id, f"corrupt status packet (CRC error) {tries}")
        return ServoFault(self.port_name, servo_id, f"{self.packet.getTxRxResult(result)} {tries}")

    def _status_fault(self, servo_id: int, error: int) -> ServoFault:
        if error & ALERT_BIT:
            status, result, _ = self.packet.read1ByteTxRx(self._require_open(), servo_id, HARDWARE_ERROR_STATUS)
            what = describe_hardware_error(status) if result == COMM_SUCCESS else "hardware alert (status unreadable)"
            return ServoHardwareError(self.port_name, servo_id, f"hardware error: {what} (status 0x{status:02x})")
        return ServoCommandError(self.port_name, servo_id, _STATUS_ERRORS.get(error & 0x7F, f"status error {error}"))

    def _retry_allowed(self, attempt: int, started: float, deadline: float | None) -> bool:
        """Retry while under the bound and, past the first retry, only while another attempt fits the period."""
        if attempt >= self.retries:
            return False
        if deadline is None or attempt < self.min_retries:
            return True
        spent = time.monotonic() - started
        return time.monotonic() + spent / (attempt + 1) < deadline  # another attempt must fit in the period

    # ------------------------------------------------------------------ single servo
    def ping(self, servo_id: int) -> int:
        port = self._require_open()
        for attempt in range(self.retries + 1):
            self.stats.transactions += 1
            model_number, result, error = self.packet.ping(port, servo_id)
            if result == COMM_SUCCESS:
                if error & 0x7F:
                    raise self._status_fault(servo_id, error)
                return model_number
            if attempt < self.retries:
                self.stats.retries += 1
        raise self._comm_fault(servo_id, result, self.retries + 1)

    def read(self, servo_id: int, address: int, size: int) -> int:
        """Unsigned value of `size` bytes at `address` (retried on timeout/CRC error)."""
        port = self._require_open()
        for attempt in range(self.retries + 1):
            self.stats.transactions += 1
            data, result, error = self.packet.readTxRx(port, servo_id, address, size)
            if result == COMM_SUCCESS:
                if error:
                    raise self._status_fault(servo_id, error)
                return sum(int(b) << (8 * i) for i, b in enumerate(data[:size]))
            if attempt < self.retries:
                self.stats.retries += 1
        raise self._comm_fault(servo_id, result, self.retries + 1)

    def write(self, servo_id: int, address: int, size: int, value: int, *, check_alert: bool = True) -> None:
        port = self._require_open()
        for attempt in range(self.retries + 1):
            self.stats.transactions += 1
            result, error = self.packet.writeTxRx(port, servo_id, address, size, encode(value, size))
            if result == COMM_SUCCESS:
                if error & 0x7F or (check_alert and error & ALERT_BIT):
                    raise self._status_fault(servo_id, error)
                return
            if attempt < self.retries:
                self.stats.retries += 1
        raise self._comm_fault(servo_id, result, self.retries + 1)

    def broadcast_write(self, address: int, size: int, value: int) -> None:
        """One packet to every servo, no replies: reaches servos that stopped talking (torque off on a fault)."""
        port = self._require_open()
        port.is_using = False  # Ctrl-C inside the SDK's receive loop leaves the port "busy": the packet must go out
        self.stats.transactions += 1
        result = self.packet.writeTxOnly(port, BROADCAST_ID, address, size, encode(value, size))
        if result != COMM_SUCCESS:
            raise DynamixelError(f"{self.port_name}: broadcast write to address {address} failed: "
                                 f"{self.packet.getTxRxResult(result)}")

    def reboot(self, servo_id: int) -> None:
        port = self._require_open()
        self.packet.reboot(port, servo_id)

    # ------------------------------------------------------------------ group transactions
    def sync_read(self, ids: list[int], address: int, length: int, deadline: float | None = None) -> dict[int, bytes]:
        """One Sync Read of `length` bytes at `address` from every servo in `ids`.

        Uses the SDK's syncReadTx/readRx pair rather than GroupSyncRead because GroupSyncRead drops each status
        packet's error byte, which carries the hardware-alert bit we must not miss.
        """
        port = self._require_open()
        started = time.monotonic()
        attempt = 0
        while True:
            self.stats.transactions += 1
            data: dict[int, bytes] = {}
            failed_id, result, alerts = None, COMM_SUCCESS, []
            result = self.packet.syncReadTx(port, address, length, list(ids), len(ids), False)
            if result == COMM_SUCCESS:
                for servo_id in ids:
                    payload, result, error = self.packet.readRx(port, servo_id, length)
                    if result != COMM_SUCCESS:
                        failed_id = servo_id
                        break
                    if error & 0x7F:
                        raise self._status_fault(servo_id, error)
                    if error & ALERT_BIT:
                        alerts.append(servo_id)
                    data[servo_id] = bytes(payload)
            if result == COMM_SUCCESS:
                if alerts:
                    raise self._status_fault(alerts[0], ALERT_BIT)
                return data
            if not self._retry_allowed(attempt, started, deadline):
                raise self._comm_fault(failed_id, result, attempt + 1)
            attempt += 1
            self.stats.retries += 1

    def sync_write(self, address: int, size: int, values: dict[int, int]) -> None:
        """One Sync Write of `size`-byte values (no replies, so nothing to retry)."""
        port = self._require_open()
        group = GroupSyncWrite(port, self.packet, address, size)
        for servo_id, value in values.items():
            group.addParam(servo_id, encode(value, size))
        self.stats.transactions += 1
        result = group.txPacket()
        if result != COMM_SUCCESS:
            raise self._comm_fault(None, result, 1)
