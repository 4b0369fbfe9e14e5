"""Dynamixel Protocol 2.0 framing: CRC-16, byte stuffing, packet build/parse.

Only the emulator needs this: the driver side goes through the unmodified `dynamixel_sdk`.
"""

from __future__ import annotations

from dataclasses import dataclass

HEADER = b"\xff\xff\xfd\x00"
BROADCAST_ID = 0xFE

# Instructions
PING = 0x01
READ = 0x02
WRITE = 0x03
REBOOT = 0x08
STATUS = 0x55
SYNC_READ = 0x82
SYNC_WRITE = 0x83
FAST_SYNC_READ = 0x8A
BULK_READ = 0x92
BULK_WRITE = 0x93

# Status error field: low 7 bits = error number, bit 7 = hardware alert
ERR_RESULT_FAIL = 0x01
ERR_INSTRUCTION = 0x02
ERR_CRC = 0x03
ERR_DATA_RANGE = 0x04
ERR_DATA_LENGTH = 0x05
ERR_DATA_LIMIT = 0x06
ERR_ACCESS = 0x07
ALERT_BIT = 0x80


def _make_crc_table() -> list[int]:
    # CRC-16 with polynomial 0x8005, MSB first, initial value 0 (Protocol 2.0 e-manual).
    table = []
    for byte in range(256):
        crc = byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x8005) if crc & 0x8000 else (crc << 1)
        table.append(crc & 0xFFFF)
    return table


_CRC_TABLE = _make_crc_table()


def crc16(data: bytes | bytearray) -> int:
    crc = 0
    for b in data:
        crc = ((crc << 8) ^ _CRC_TABLE[((crc >> 8) ^ b) & 0xFF]) & 0xFFFF
    return crc


def stuff(body: bytes) -> bytes:
    """Insert 0xFD after every FF FF FD in the instruction..parameter part so it never looks like a header."""
    out = bytearray()
    for b in body:
        out.append(b)
        if b == 0xFD and len(out) >= 3 and out[-3] == 0xFF and out[-2] == 0xFF:
            out.append(0xFD)
    return bytes(out)


def unstuff(body: bytes) -> bytes:
    out = bytearray()
    i = 0
    while i < len(body):
        b = body[i]
        out.append(b)
        if b == 0xFD and len(out) >= 3 and out[-3] == 0xFF and out[-2] == 0xFF and i + 1 < len(body) and body[i + 1] == 0xFD:
            i += 1  # skip the stuffed byte
        i += 1
    return bytes(out)


def build_packet(servo_id: int, instruction: int, params: bytes, *, stuffing: bool = True) -> bytes:
    body = bytes([instruction]) + bytes(params)
    if stuffing:
        body = stuff(body)
    length = len(body) + 2  # + CRC
    head = HEADER + bytes([servo_id, length & 0xFF, length >> 8])
    packet = head + body
    crc = crc16(packet)
    return packet + bytes([crc & 0xFF, crc >> 8])


def build_status(servo_id: int, error: int, params: bytes = b"") -> bytes:
    return build_packet(servo_id, STATUS, bytes([error & 0xFF]) + bytes(params))


@dataclass
class Packet:
    servo_id: int
    instruction: int
    params: bytes
    crc_ok: bool


def parse_packets(buffer: bytearray) -> list[Packet]:
    """Consume complete packets from `buffer` (in place); garbage before a header is dropped."""
    packets = []
    while True:
        start = buffer.find(HEADER)
        if start < 0:
            # keep a possible partial header at the end
            keep = 3 if len(buffer) >= 3 else len(buffer)
            del buffer[: len(buffer) - keep]
            return packets
        if start:
            del buffer[:start]
        if len(buffer) < 7:
            return packets
        length = buffer[5] | (buffer[6] << 8)
        total = 7 + length
        if length < 3:
            del buffer[:4]
            continue
        if len(buffer) < total:
            return packets
        raw = bytes(buffer[:total])
        del buffer[:total]
        crc_ok = crc16(raw[:-2]) == (raw[-2] | (raw[-1] << 8))
        body = unstuff(raw[7:-2])
        packets.append(Packet(servo_id=raw[4], instruction=body[0], params=body[1:], crc_ok=crc_ok))
