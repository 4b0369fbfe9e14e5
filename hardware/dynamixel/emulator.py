"""A Protocol 2.0 servo emulator on pseudo-terminals, for tests and `--robot emulated` dry runs.

Each emulated bus is a pty in raw mode; the driver opens the slave path with the unmodified `dynamixel_sdk`
exactly as it would open a U2D2. Servos keep a real control table; torque-on servos move from present to goal
with a simple first-order motion model, torque-off servos follow a "human" script (leader arms). Faults are
injected per bus: no reply, bad CRC, hardware-error bits, missing IDs, slow bus.

The emulator runs in its own process (`ServoEmulator`), so the SDK's busy-wait in the caller never starves it
of the GIL; the caller steers it through a pipe (inject faults, move leader joints, inspect torque and goals).
"""

from __future__ import annotations

import math
import os
import select
import signal
import socket
import subprocess
import sys
import time
import tty
from multiprocessing.connection import Connection
from pathlib import Path
from dataclasses import asdict, dataclass
from typing import Any

from hardware.dynamixel import protocol as P
from hardware.dynamixel.control_table import MODELS, ModelSpec, OperatingMode, decode, encode, to_signed

TABLE_SIZE = 256
DEFAULT_VMAX = 6000.0  # ticks/s when no profile velocity is set (~88 rpm)
TAU = 0.02  # s, first-order lag of the position loop


@dataclass
class ServoSetup:
    """How one emulated servo starts: ID, model, initial raw position, optional primary it is coupled to."""

    id: int
    model: str = "XM430-W350"
    position: float = 2048.0
    coupled_to: int | None = None  # shadow servo: mechanically tied to this primary


@dataclass
class Fault:
    kind: str  # no_reply | bad_crc | hardware_error | missing | slow
    ids: list[int] | None = None  # None = every servo on the bus
    count: int | None = None  # replies affected before it clears itself; None = until cleared
    bits: int = 0  # hardware_error: Hardware Error Status bits (0x20 overload, 0x04 overheating, 0x01 voltage)
    delay_ms: float = 0.0  # slow: added before every reply

    KINDS = ("no_reply", "bad_crc", "hardware_error", "missing", "slow")

    def applies(self, servo_id: int) -> bool:
        return self.ids is None or servo_id in self.ids


class ServoSim:
    def __init__(self, setup: ServoSetup, now: float):
        self.id = setup.id
        self.model: ModelSpec = MODELS[setup.model]
        self.table = bytearray(TABLE_SIZE)
        self.physical = float(setup.position)  # mechanical position in ticks, unbounded
        self.coupled_to = setup.coupled_to
        self.script: dict[str, Any] | None = None  # human motion while torque is off
        self.override: tuple[float, float] | None = None  # (position, until) e.g. a gripper press
        self.last = now
        self.velocity = 0.0
        self.reads = 0
        self.writes = 0
        self._set("model_number", self.model.model_number)
        self._set("firmware_version", 46)
        self._set("id", setup.id)
        self._set("baud_rate", 3)  # 1 Mbps
        self._set("operating_mode", OperatingMode.POSITION)
        self._set("max_position_limit", 4095)
        self._set("min_position_limit", 0)
        self._set("temperature_limit", 80)
        self._set("shutdown", 0x34)  # overheating, electrical shock, overload
        self._set("status_return_level", 2)
        self._set("position_p_gain", 800)
        self._set("present_input_voltage", 120)
        self._set("present_temperature", 35)
        if self.model.has("current_limit"):
            self._set("current_limit", 1193)
        self._set("goal_position", int(round(self.physical)) % 4096)
        self._refresh_present()

    # ---------------------------------------------------------------- table access
    def _get(self, name: str) -> int:
        f = self.model.field(name)
        return decode(self.table[f.address : f.address + f.size], f.size, f.signed)

    def _set(self, name: str, value: int) -> None:
        f = self.model.field(name)
        self.table[f.address : f.address + f.size] = bytes(encode(int(value), f.size))

    @property
    def torque(self) -> bool:
        return bool(self.table[self.model.field("torque_enable").address])

    @property
    def mode(self) -> int:
        return self._get("operating_mode")

    def reported_position(self) -> int:
        value = int(round(self.physical)) + self._get("homing_offset")
        if self.mode == OperatingMode.POSITION:
            return value % self.model.resolution  # single-turn in position mode
        return to_signed(value, 4)  # extended modes: int32, wraps on overflow

    # ---------------------------------------------------------------- motion
    def step(self, now: float, primary: "ServoSim | None") -> None:
        dt = max(0.0, now - self.last)
        self.last = now
        before = self.physical
        if primary is not None:
            self.physical = primary.physical
        elif self.override is not None and now < self.override[1]:
            self.physical = self.override[0]
        elif self.torque:
            self.override = None
            goal = self._get("goal_position") - self._get("homing_offset")
            if self.mode == OperatingMode.POSITION:
                lo, hi = self._get("min_position_limit"), self._get("max_position_limit")
                goal = min(max(goal, lo), hi)
                # single-turn: go the way a position-mode servo goes, within the turn
                goal += self.physical - (self.physical % self.model.resolution)
            err = goal - self.physical
            pv = self._get("profile_velocity")
            vmax = pv * self.model.velocity_unit_rpm / 60.0 * self.model.resolution if pv else DEFAULT_VMAX
            move = err * (1.0 - math.exp(-dt / TAU)) if dt > 0 else 0.0
            limit = vmax * dt
            self.physical += max(-limit, min(limit, move))
        else:
            self.override = None
            if self.script is not None:
                self.physical = _script_position(self.script, now)
        self.velocity = (self.physical - before) / dt if dt > 1e-6 else self.velocity
        self._refresh_present()

    def _refresh_present(self) -> None:
        self._set("present_position", self.reported_position())
        rpm = self.velocity / self.model.resolution * 60.0
        self._set("present_velocity", int(round(rpm / self.model.velocity_unit_rpm)))
        self.table[self.model.field("moving").address] = 1 if abs(self.velocity) > 20 else 0
        effort = 0
        if self.torque:
            goal = self._get("goal_position") - self._get("homing_offset")
            err = goal - self.physical if self.mode != OperatingMode.POSITION else 0.0
            cap = self._get("current_limit") if self.model.has("current_limit") else 1000
            if self.mode == OperatingMode.CURRENT_BASED_POSITION and self.model.has("goal_current"):
                cap = min(cap, abs(self._get("goal_current")) or cap)
            effort = int(max(-cap, min(cap, 2.0 * err + 0.02 * self.velocity)))
        self._set(self.model.effort_field, effort)

    # ---------------------------------------------------------------- protocol
    def read(self, address: int, length: int) -> tuple[int, bytes]:
        if address + length > TABLE_SIZE or length == 0:
            return P.ERR_ACCESS, b""
        self.reads += 1
        return 0, bytes(self.table[address : address + length])

    def write(self, address: int, data: bytes) -> int:
        if address + len(data) > TABLE_SIZE or not data:
            return P.ERR_ACCESS
        for name, f in self.model.fields.items():
            overlaps = f.address < address + len(data) and address < f.address + f.size
            if not overlaps:
                continue
            if f.eeprom and self.torque:
                return P.ERR_ACCESS  # EEPROM is locked while torque is on
            if name in ("model_number", "firmware_version", "hardware_error_status") or name.startswith("present_"):
                return P.ERR_ACCESS
        torque_addr = self.model.field("torque_enable").address
        if address <= torque_addr < address + len(data) and data[torque_addr - address] and self.hardware_error:
            return P.ERR_RESULT_FAIL  # a servo in shutdown refuses torque until rebooted
        if address <= self.model.field("operating_mode").address < address + len(data):
            mode = data[self.model.field("operating_mode").address - address]
            if mode not in self.model.modes:
                return P.ERR_DATA_RANGE
        self.writes += 1
        was_on = self.torque
        self.table[address : address + len(data)] = data
        if self.torque and not was_on:
            self.override = None
        return 0

    @property
    def hardware_error(self) -> int:
        return self._get("hardware_error_status")

    def set_hardware_error(self, bits: int) -> None:
        self.table[self.model.field("hardware_error_status").address] = bits & 0xFF
        if bits & self._get("shutdown"):
            self.table[self.model.field("torque_enable").address] = 0

    def reboot(self) -> None:
        self.table[self.model.field("hardware_error_status").address] = 0
        self.table[self.model.field("torque_enable").address] = 0

    def snapshot(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "model": self.model.name,
            "torque": self.torque,
            "mode": self.mode,
            "goal_position": self._get("goal_position"),
            "present_position": self._get("present_position"),
            "physical": self.physical,
            "hardware_error_status": self.hardware_error,
            "profile_velocity": self._get("profile_velocity"),
            "profile_acceleration": self._get("profile_acceleration"),
            "goal_current": self._get("goal_current") if self.model.has("goal_current") else None,
            "reads": self.reads,
            "writes": self.writes,
        }


def _script_position(script: dict[str, Any], now: float) -> float:
    if script["kind"] == "sine":
        phase = 2 * math.pi * (now - script.get("t0", 0.0)) / script["period"] + script.get("phase", 0.0)
        return script["center"] + script["amplitude"] * math.sin(phase)
    return float(script["position"])


class EmulatedBus:
    """One pty with a set of servos; answers instruction packets."""

    def __init__(self, name: str, setups: list[ServoSetup], now: float):
        self.name = name
        self.servos = {s.id: ServoSim(s, now) for s in setups}
        self.faults: list[Fault] = []
        self.master, slave = os.openpty()
        tty.setraw(slave)  # no echo, no line discipline: bytes in, bytes out
        self.slave_path = os.ttyname(slave)
        self._slave_fd = slave  # keep the slave open so the master never sees EOF between SDK sessions
        self.buffer = bytearray()
        self.packets = 0

    def close(self) -> None:
        for fd in (self.master, self._slave_fd):
            try:
                os.close(fd)
            except OSError:
                pass

    def update(self, now: float) -> None:
        for servo in self.servos.values():
            if servo.coupled_to is None:
                servo.step(now, None)
        for servo in self.servos.values():
            if servo.coupled_to is not None:
                servo.step(now, self.servos.get(servo.coupled_to))

    # ---------------------------------------------------------------- faults
    def _fault(self, kind: str, servo_id: int) -> Fault | None:
        for f in self.faults:
            if f.kind == kind and f.applies(servo_id):
                return f
        return None

    def _consume(self, fault: Fault) -> None:
        if fault.count is not None:
            fault.count -= 1
            if fault.count <= 0:
                self.faults.remove(fault)

    def delay(self) -> float:
        slow = [f.delay_ms for f in self.faults if f.kind == "slow"]
        return max(slow) / 1000.0 if slow else 0.0

    def _present(self, servo_id: int) -> bool:
        return servo_id in self.servos and self._fault("missing", servo_id) is None

    def _status(self, servo_id: int, error: int, params: bytes = b"") -> bytes:
        """A status packet, or b'' when a fault silences it."""
        servo = self.servos[servo_id]
        if servo.hardware_error:
            error |= P.ALERT_BIT
        silent = self._fault("no_reply", servo_id)
        if silent is not None:
            self._consume(silent)
            return b""
        packet = P.build_status(servo_id, error, params)
        corrupt = self._fault("bad_crc", servo_id)
        if corrupt is not None:
            self._consume(corrupt)
            packet = packet[:-2] + bytes([packet[-2] ^ 0x5A, packet[-1] ^ 0xA5])
        return packet

    # ---------------------------------------------------------------- instructions
    def feed(self, data: bytes, now: float) -> bytes:
        self.buffer.extend(data)
        out = bytearray()
        for packet in P.parse_packets(self.buffer):
            self.packets += 1
            if not packet.crc_ok:
                continue  # a real servo ignores a corrupt instruction
            self.update(now)
            out.extend(self.handle(packet))
        return bytes(out)

    def handle(self, pkt) -> bytes:
        sid, inst, prm = pkt.servo_id, pkt.instruction, pkt.params
        targets = [i for i in sorted(self.servos) if self._present(i)] if sid == P.BROADCAST_ID else (
            [sid] if self._present(sid) else []
        )
        if inst == P.PING:
            return b"".join(self._ping(i) for i in targets)
        if inst == P.READ and sid != P.BROADCAST_ID and targets and len(prm) == 4:
            addr, length = decode(prm, 2), decode(prm[2:], 2)
            err, data = self.servos[sid].read(addr, length)
            return self._status(sid, err, data)
        if inst == P.WRITE and len(prm) >= 3:
            addr, data = decode(prm, 2), prm[2:]
            out = b""
            for i in targets:
                err = self.servos[i].write(addr, data)
                if sid != P.BROADCAST_ID:
                    out += self._status(i, err)
            return out
        if inst == P.REBOOT and targets:
            for i in targets:
                self.servos[i].reboot()
            return b"" if sid == P.BROADCAST_ID else self._status(sid, 0)
        if inst in (P.SYNC_READ, P.FAST_SYNC_READ) and len(prm) >= 5:
            addr, length = decode(prm, 2), decode(prm[2:], 2)
            ids = [i for i in prm[4:] if self._present(i)]
            if inst == P.SYNC_READ:
                return b"".join(self._status(i, *self.servos[i].read(addr, length)) for i in ids)
            return self._fast_reply([(i, addr, length) for i in ids])
        if inst == P.SYNC_WRITE and len(prm) >= 4:
            addr, length = decode(prm, 2), decode(prm[2:], 2)
            body = prm[4:]
            for k in range(0, len(body) - length, length + 1):
                i = body[k]
                if self._present(i):
                    self.servos[i].write(addr, body[k + 1 : k + 1 + length])
            return b""
        if inst == P.BULK_READ:
            out = b""
            for k in range(0, len(prm) - 4, 5):
                i, addr, length = prm[k], decode(prm[k + 1 :], 2), decode(prm[k + 3 :], 2)
                if self._present(i):
                    err, data = self.servos[i].read(addr, length)
                    out += self._status(i, err, data)
            return out
        if inst == P.BULK_WRITE:
            k = 0
            while k + 5 <= len(prm):
                i, addr, length = prm[k], decode(prm[k + 1 :], 2), decode(prm[k + 3 :], 2)
                if self._present(i):
                    self.servos[i].write(addr, prm[k + 5 : k + 5 + length])
                k += 5 + length
            return b""
        if sid != P.BROADCAST_ID and targets:
            return self._status(sid, P.ERR_INSTRUCTION)
        return b""

    def _ping(self, servo_id: int) -> bytes:
        servo = self.servos[servo_id]
        return self._status(servo_id, 0, bytes(encode(servo.model.model_number, 2)) + bytes([46]))

    def _fast_reply(self, reads: list[tuple[int, int, int]]) -> bytes:
        """Fast sync read: one status packet (ID broadcast) carrying ERR+ID+DATA+CRC per servo."""
        body = bytearray()
        for n, (i, addr, length) in enumerate(reads):
            if self._fault("no_reply", i) is not None:
                return b""
            err, data = self.servos[i].read(addr, length)
            if self.servos[i].hardware_error:
                err |= P.ALERT_BIT
            body += bytes([err, i]) + data
            if n < len(reads) - 1:
                crc = P.crc16(body)
                body += bytes([crc & 0xFF, crc >> 8])
        if not reads:
            return b""
        return P.build_packet(P.BROADCAST_ID, P.STATUS, bytes(body), stuffing=False)

    # ---------------------------------------------------------------- control (from the owner process)
    def command(self, op: str, now: float, **kw) -> Any:
        self.update(now)
        if op == "inject":
            fault = Fault(**kw)
            if fault.kind not in Fault.KINDS:
                raise ValueError(f"unknown fault kind {fault.kind!r}; expected one of {Fault.KINDS}")
            if fault.kind == "hardware_error":
                for i in fault.ids or list(self.servos):
                    self.servos[i].set_hardware_error(fault.bits or 0x20)
            else:
                self.faults.append(fault)
            return None
        if op == "clear_faults":
            self.faults.clear()
            return None
        if op == "state":
            return {i: s.snapshot() for i, s in self.servos.items()}
        if op == "set_position":
            servo = self.servos[kw["id"]]
            servo.physical = float(kw["position"]) - servo._get("homing_offset")
            servo.script = None
            servo._refresh_present()
            return None
        if op == "set_motion":
            script = dict(kw["script"])
            script.setdefault("t0", now)
            self.servos[kw["id"]].script = script
            return None
        if op == "press":
            self.servos[kw["id"]].override = (float(kw["position"]), now + float(kw["duration"]))
            return None
        raise ValueError(f"unknown emulator command {op!r}")


class EmulatorServer:
    """select() loop over every bus's pty master plus the control pipe."""

    def __init__(self, buses: dict[str, list[ServoSetup]]):
        now = time.monotonic()
        self.buses = {name: EmulatedBus(name, setups, now) for name, setups in buses.items()}
        self.by_fd = {b.master: b for b in self.buses.values()}
        self.pending: list[tuple[float, int, bytes]] = []  # (send_at, fd, data) for a slow bus

    def paths(self) -> dict[str, str]:
        return {name: b.slave_path for name, b in self.buses.items()}

    def serve(self, conn) -> None:
        control = conn.fileno()
        while True:
            now = time.monotonic()
            timeout = min((t for t, _, _ in self.pending), default=now + 0.5) - now
            readable, _, _ = select.select([control, *self.by_fd], [], [], max(0.0, timeout))
            self._serve_buses([fd for fd in readable if fd != control])
            if control in readable:
                # bytes the driver sent before this request must be applied before we answer it
                ready, _, _ = select.select(list(self.by_fd), [], [], 0)
                self._serve_buses(ready)
                try:
                    message = conn.recv()
                except EOFError:
                    return
                if message is None:
                    conn.send(("ok", None))
                    return
                conn.send(self._control(message, time.monotonic()))
            due = [p for p in self.pending if p[0] <= time.monotonic()]
            for p in due:
                self.pending.remove(p)
                _write_all(p[1], p[2])

    def _serve_buses(self, fds: list[int]) -> None:
        for fd in fds:
            bus = self.by_fd[fd]
            try:
                data = os.read(fd, 4096)
            except OSError:
                continue
            now = time.monotonic()
            reply = bus.feed(data, now)
            if reply:
                delay = bus.delay()
                if delay:
                    self.pending.append((now + delay, fd, reply))
                else:
                    _write_all(fd, reply)

    def _control(self, message, now: float):
        bus_name, op, kw = message
        try:
            if op == "paths":
                return ("ok", self.paths())
            return ("ok", self.buses[bus_name].command(op, now, **kw))
        except Exception as exc:  # reported to the caller, the server keeps running
            return ("error", f"{type(exc).__name__}: {exc}")

    def close(self) -> None:
        for b in self.buses.values():
            b.close()


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def _serve_fd(fd: int) -> None:
    # Ctrl-C reaches the whole process group: the emulator must outlive the driver's torque-off on the way out.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # Real servos answer within microseconds whatever the host is doing; a higher scheduling priority (best
    # effort, needs privileges) keeps the emulator's reply latency close to that on a loaded machine.
    try:
        os.setpriority(os.PRIO_PROCESS, 0, -10)
    except OSError:
        pass
    conn = Connection(fd)
    buses = conn.recv()
    try:
        server = EmulatorServer({name: [ServoSetup(**s) for s in setups] for name, setups in buses.items()})
    except Exception as exc:
        conn.send(("error", f"{type(exc).__name__}: {exc}"))
        return
    try:
        conn.send(("ok", server.paths()))
        server.serve(conn)
    finally:
        server.close()


class EmulatorError(RuntimeError):
    pass


class ServoEmulator:
    """Owner-side handle of an emulator process: start, steer, stop. Use as a context manager."""

    def __init__(self, buses: dict[str, list[ServoSetup]]):
        self.setups = buses
        self._process = None
        self._conn = None
        self.ports: dict[str, str] = {}

    def start(self, timeout: float = 20.0) -> "ServoEmulator":
        # A plain subprocess (not multiprocessing spawn) so callers need no `if __name__ == "__main__"` guard;
        # the control pipe is one end of a socketpair handed down as an inherited fd.
        ours, theirs = socket.socketpair()
        env = dict(os.environ)
        root = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        self._process = subprocess.Popen(
            [sys.executable, "-m", "hardware.dynamixel.emulator", "--serve-fd", str(theirs.fileno())],
            pass_fds=[theirs.fileno()], env=env, stdin=subprocess.DEVNULL,
        )
        theirs.close()
        self._conn = Connection(ours.detach())
        self._conn.send({name: [asdict(s) for s in setups] for name, setups in self.setups.items()})
        if not self._conn.poll(timeout):
            self.stop()
            raise EmulatorError(f"servo emulator did not start within {timeout} s")
        status, paths = self._conn.recv()
        if status != "ok":
            self.stop()
            raise EmulatorError(paths)
        self.ports = paths
        return self

    def _call(self, bus: str | None, op: str, **kw):
        if self._conn is None:
            raise EmulatorError("emulator is not running")
        self._conn.send((bus, op, kw))
        if not self._conn.poll(10.0):
            raise EmulatorError(f"emulator did not answer {op!r}")
        status, value = self._conn.recv()
        if status != "ok":
            raise EmulatorError(value)
        return value

    def port(self, bus: str) -> str:
        return self.ports[bus]

    def inject(self, bus: str, kind: str, ids: list[int] | None = None, count: int | None = None,
               bits: int = 0, delay_ms: float = 0.0) -> None:
        self._call(bus, "inject", kind=kind, ids=ids, count=count, bits=bits, delay_ms=delay_ms)

    def clear_faults(self, bus: str) -> None:
        self._call(bus, "clear_faults")

    def state(self, bus: str) -> dict[int, dict[str, Any]]:
        return self._call(bus, "state")

    def set_position(self, bus: str, servo_id: int, position: float) -> None:
        self._call(bus, "set_position", id=servo_id, position=position)

    def set_motion(self, bus: str, servo_id: int, center: float, amplitude: float, period: float,
                   phase: float = 0.0) -> None:
        script = {"kind": "sine", "center": center, "amplitude": amplitude, "period": period, "phase": phase}
        self._call(bus, "set_motion", id=servo_id, script=script)

    def press(self, bus: str, servo_id: int, position: float, duration: float) -> None:
        """Hold a torque-off servo at `position` for `duration` seconds (a hand squeezing a leader gripper)."""
        self._call(bus, "press", id=servo_id, position=position, duration=duration)

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def stop(self) -> None:
        if self._process is None:
            return
        try:
            if self._conn is not None and self._process.poll() is None:
                self._conn.send(None)
                self._conn.poll(2.0)
        except (OSError, EOFError):
            pass
        try:
            self._process.wait(timeout=3.0)
        except subprocess.TimeoutExpired:
            self._process.terminate()
            self._process.wait(timeout=3.0)
        if self._conn is not None:
            self._conn.close()
        self._process = None
        self._conn = None

    def __enter__(self) -> "ServoEmulator":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def main() -> None:
    """`python -m hardware.dynamixel.emulator --arms 2`: serve emulated 9-servo arms until Ctrl-C."""
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--arms", type=int, default=1)
    parser.add_argument("--model", default="XM430-W350")
    parser.add_argument("--serve-fd", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_fd is not None:
        _serve_fd(args.serve_fd)
        return
    layout = [ServoSetup(1), ServoSetup(2), ServoSetup(3, coupled_to=2), ServoSetup(4), ServoSetup(5, coupled_to=4),
              ServoSetup(6), ServoSetup(7), ServoSetup(8), ServoSetup(9)]
    buses = {f"arm{i}": [ServoSetup(s.id, args.model, s.position, s.coupled_to) for s in layout] for i in range(args.arms)}
    with ServoEmulator(buses) as emu:
        for name, path in emu.ports.items():
            print(f"{name}: {path}", flush=True)
        try:
            while emu.running:
                time.sleep(0.5)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
