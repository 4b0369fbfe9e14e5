"""The unmodified dynamixel_sdk against the pty emulator: protocol round trips, bus retries, faults, latency timer."""

from __future__ import annotations

import random
import time

import pytest
from dynamixel_sdk import COMM_SUCCESS, GroupBulkRead, GroupSyncRead, PacketHandler, PortHandler

from hardware.dynamixel import protocol as P
from hardware.dynamixel.bus import DynamixelBus
from hardware.dynamixel.control_table import decode, to_signed, to_unsigned
from hardware.dynamixel.emulator import ServoEmulator, ServoSetup
from hardware.dynamixel.errors import ServoCorrupt, ServoHardwareError, ServoSilent
from hardware.dynamixel.port import configure_latency_timer

SETUPS = [ServoSetup(1, "XM540-W270"), ServoSetup(2, "XM430-W350"), ServoSetup(3, "XM430-W350", coupled_to=2),
          ServoSetup(4, "XL430-W250")]


@pytest.fixture(scope="module")
def emulator():
    with ServoEmulator({"bus": SETUPS}) as emu:
        yield emu


@pytest.fixture
def bus(emulator):
    emulator.clear_faults("bus")
    b = DynamixelBus(emulator.port("bus"), retries=3, timeout_margin_ms=40.0)  # generous: the machine may be loaded
    b.open()
    yield b
    b.close()
    emulator.clear_faults("bus")


def test_crc_matches_sdk():
    sdk = PacketHandler(2.0)
    rng = random.Random(0)
    for _ in range(200):
        data = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 64)))
        assert P.crc16(data) == sdk.updateCRC(0, list(data), len(data))


def test_stuffing_round_trip():
    body = bytes([0x55, 0x00, 0xFF, 0xFF, 0xFD, 0x01, 0xFF, 0xFF, 0xFD])
    assert P.unstuff(P.stuff(body)) == body
    assert P.stuff(body).count(b"\xff\xff\xfd\xfd") == 2


def test_signed_conversion():
    assert to_signed(0xFFFFFFFF, 4) == -1
    assert to_signed(0x7FFFFFFF, 4) == 2**31 - 1
    assert to_signed(0x80000000, 4) == -(2**31)
    assert to_unsigned(-2, 2) == 0xFFFE
    assert decode([0xFE, 0xFF], 2, signed=True) == -2


def test_sdk_instructions_against_emulator(emulator):
    """ping, read, write, sync read (plain and fast), bulk read, broadcast ping - SDK code path of a real U2D2."""
    port, ph = PortHandler(emulator.port("bus")), PacketHandler(2.0)
    assert port.openPort()
    try:
        assert ph.ping(port, 1)[:2] == (1120, COMM_SUCCESS)
        assert ph.ping(port, 4)[:2] == (1060, COMM_SUCCESS)
        assert ph.ping(port, 9)[1] != COMM_SUCCESS  # nobody there
        ids, result = ph.broadcastPing(port)
        assert result == COMM_SUCCESS and sorted(ids) == [1, 2, 3, 4]
        assert ph.write4ByteTxRx(port, 1, 116, 3000) == (COMM_SUCCESS, 0)
        assert ph.read4ByteTxRx(port, 1, 116)[:2] == (3000, COMM_SUCCESS)
        # EEPROM is locked while torque is on: access error, as on a real servo
        assert ph.write1ByteTxRx(port, 1, 64, 1) == (COMM_SUCCESS, 0)
        assert ph.write1ByteTxRx(port, 1, 11, 4) == (COMM_SUCCESS, P.ERR_ACCESS)
        assert ph.write1ByteTxRx(port, 1, 64, 0) == (COMM_SUCCESS, 0)
        group = GroupSyncRead(port, ph, 132, 4)
        for i in (1, 2, 3, 4):
            group.addParam(i)
        assert group.txRxPacket() == COMM_SUCCESS
        assert group.getData(2, 132, 4) == group.getData(3, 132, 4)  # the shadow follows its primary
        assert group.fastSyncRead() == COMM_SUCCESS
        bulk = GroupBulkRead(port, ph)
        bulk.addParam(1, 132, 4)
        bulk.addParam(4, 64, 1)
        assert bulk.txRxPacket() == COMM_SUCCESS and bulk.getData(4, 64, 1) == 0
    finally:
        port.closePort()


def test_goal_moves_present_position(bus, emulator):
    bus.write(2, 116, 4, 2600)
    bus.write(2, 64, 1, 1)
    try:
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline:
            data = bus.sync_read([1, 2, 3], 132, 4)
            if abs(decode(data[2], 4, True) - 2600) < 5:
                break
        assert abs(decode(data[2], 4, True) - 2600) < 5
        assert abs(decode(data[3], 4, True) - 2600) < 5
    finally:
        bus.write(2, 64, 1, 0)


def test_sync_write_reaches_every_servo(bus, emulator):
    bus.sync_write(116, 4, {1: 1000, 2: 1100, 4: 1200})
    state = emulator.state("bus")
    assert [state[i]["goal_position"] for i in (1, 2, 4)] == [1000, 1100, 1200]


def test_transient_crc_error_is_retried(bus, emulator):
    emulator.inject("bus", "bad_crc", ids=[2], count=1)
    data = bus.sync_read([1, 2, 3, 4], 132, 4)
    assert set(data) == {1, 2, 3, 4} and bus.stats.retries >= 1


def test_transient_timeout_is_retried(bus, emulator):
    emulator.inject("bus", "no_reply", ids=[4], count=2)
    assert set(bus.sync_read([1, 2, 3, 4], 132, 4)) == {1, 2, 3, 4}
    assert bus.stats.retries >= 2


def test_persistent_crc_error_names_port_and_servo(bus, emulator):
    emulator.inject("bus", "bad_crc", ids=[3])
    with pytest.raises(ServoCorrupt) as err:
        bus.sync_read([1, 2, 3, 4], 132, 4)
    assert emulator.port("bus") in str(err.value) and "servo ID 3" in str(err.value) and "CRC" in str(err.value)
    assert bus.stats.retries == 3 and "after 4 attempts" in str(err.value)  # bounded


def test_silent_servo_is_bounded_by_the_deadline(bus, emulator):
    emulator.inject("bus", "missing", ids=[4])
    start = time.monotonic()
    with pytest.raises(ServoSilent) as err:
        bus.sync_read([1, 2, 3, 4], 132, 4, deadline=start + 0.001)
    assert "servo ID 4" in str(err.value) and "no status packet" in str(err.value)
    assert bus.stats.retries == bus.min_retries == 1  # past the period: only the guaranteed retry


def test_hardware_error_status_is_named(bus, emulator):
    emulator.inject("bus", "hardware_error", ids=[1], bits=0x20)
    with pytest.raises(ServoHardwareError) as err:
        bus.sync_read([1, 2, 3, 4], 132, 4)
    assert "servo ID 1" in str(err.value) and "overload" in str(err.value)
    bus.reboot(1)  # clears the error, as on a real servo
    assert set(bus.sync_read([1, 2], 132, 4)) == {1, 2}


def test_slow_bus_still_answers_within_timeout(bus, emulator):
    emulator.inject("bus", "slow", delay_ms=3)
    start = time.monotonic()
    assert set(bus.sync_read([1, 2], 132, 4)) == {1, 2}
    assert time.monotonic() - start >= 0.003


def test_latency_timer_set_warned_or_absent(tmp_path, caplog):
    dev = tmp_path / "ttyUSB7"
    dev.mkdir()
    (dev / "latency_timer").write_text("16\n")
    status = configure_latency_timer("/dev/ttyUSB7", 1, sysfs_root=tmp_path)
    assert status.value_ms == 1 and status.warning is None
    assert (dev / "latency_timer").read_text().strip() == "1"

    # a knob we may not write (root ignores file modes, so use a read-only sysctl file for root)
    locked = tmp_path / "ttyUSB8"
    locked.mkdir()
    import os
    if os.geteuid() == 0:
        (locked / "latency_timer").symlink_to("/proc/sys/kernel/ngroups_max")
    else:
        (locked / "latency_timer").write_text("16\n")
        (locked / "latency_timer").chmod(0o444)
    with caplog.at_level("WARNING"):
        status = configure_latency_timer("/dev/ttyUSB8", 1, sysfs_root=tmp_path)
    assert status.value_ms != 1 and "could not be set" in status.warning and "sudo tee" in status.warning
    assert "could not be set" in caplog.text

    status = configure_latency_timer("/dev/pts/99", 1, sysfs_root=tmp_path)
    assert status.path is None and status.warning is None  # a pty has no latency timer: tolerated
