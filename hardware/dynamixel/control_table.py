"""Per-model control tables of the X-series servos used on ALOHA arms (Protocol 2.0 addresses).

Addresses are the e-manual's. All values travel unsigned on the wire; `to_signed` restores the sign of fields
that have one (positions, velocities, currents, homing offset).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Field:
    address: int
    size: int
    signed: bool = False
    eeprom: bool = False  # writable only while torque is off


# The X-series share one layout; models differ in what the 126 register means and in limits.
_COMMON: dict[str, Field] = {
    "model_number": Field(0, 2, eeprom=True),
    "firmware_version": Field(6, 1, eeprom=True),
    "id": Field(7, 1, eeprom=True),
    "baud_rate": Field(8, 1, eeprom=True),
    "return_delay_time": Field(9, 1, eeprom=True),
    "drive_mode": Field(10, 1, eeprom=True),
    "operating_mode": Field(11, 1, eeprom=True),
    "homing_offset": Field(20, 4, signed=True, eeprom=True),
    "temperature_limit": Field(31, 1, eeprom=True),
    "max_position_limit": Field(48, 4, eeprom=True),
    "min_position_limit": Field(52, 4, eeprom=True),
    "shutdown": Field(63, 1, eeprom=True),
    "torque_enable": Field(64, 1),
    "led": Field(65, 1),
    "status_return_level": Field(68, 1),
    "hardware_error_status": Field(70, 1),
    "position_p_gain": Field(84, 2),
    "profile_acceleration": Field(108, 4),
    "profile_velocity": Field(112, 4),
    "goal_position": Field(116, 4, signed=True),
    "moving": Field(122, 1),
    "present_velocity": Field(128, 4, signed=True),
    "present_position": Field(132, 4, signed=True),
    "present_input_voltage": Field(144, 2),
    "present_temperature": Field(146, 1),
}

_CURRENT: dict[str, Field] = {
    "current_limit": Field(38, 2, eeprom=True),
    "goal_current": Field(102, 2, signed=True),
    "present_current": Field(126, 2, signed=True),
}
_LOAD: dict[str, Field] = {"present_load": Field(126, 2, signed=True)}  # XL430 reports load (0.1 %), no current


class OperatingMode:
    CURRENT = 0
    VELOCITY = 1
    POSITION = 3
    EXTENDED_POSITION = 4
    CURRENT_BASED_POSITION = 5
    PWM = 16


# Hardware Error Status bits (address 70)
HARDWARE_ERROR_BITS = {
    0: "input voltage error",
    2: "overheating",
    3: "motor encoder error",
    4: "electrical shock",
    5: "overload",
}


def describe_hardware_error(status: int) -> str:
    names = [name for bit, name in HARDWARE_ERROR_BITS.items() if status & (1 << bit)]
    return ", ".join(names) if names else f"unknown hardware error 0x{status:02x}"


@dataclass(frozen=True)
class ModelSpec:
    name: str
    model_number: int
    fields: dict[str, Field] = field(repr=False)
    resolution: int = 4096  # ticks per revolution
    velocity_unit_rpm: float = 0.229
    current_unit_ma: float | None = 2.69  # None: the model reports load instead of current
    modes: tuple[int, ...] = (0, 1, 3, 4, 5, 16)

    @property
    def effort_field(self) -> str:
        return "present_current" if "present_current" in self.fields else "present_load"

    def has(self, name: str) -> bool:
        return name in self.fields

    def field(self, name: str) -> Field:
        try:
            return self.fields[name]
        except KeyError:
            raise KeyError(f"{self.name} has no control-table field {name!r}") from None


MODELS: dict[str, ModelSpec] = {
    "XL430-W250": ModelSpec("XL430-W250", 1060, {**_COMMON, **_LOAD}, current_unit_ma=None, modes=(1, 3, 4, 16)),
    "XM430-W210": ModelSpec("XM430-W210", 1030, {**_COMMON, **_CURRENT}),
    "XM430-W350": ModelSpec("XM430-W350", 1020, {**_COMMON, **_CURRENT}),
    "XM540-W150": ModelSpec("XM540-W150", 1130, {**_COMMON, **_CURRENT}),
    "XM540-W270": ModelSpec("XM540-W270", 1120, {**_COMMON, **_CURRENT}),
}
MODEL_BY_NUMBER = {m.model_number: m for m in MODELS.values()}


def model(name: str) -> ModelSpec:
    try:
        return MODELS[name]
    except KeyError:
        raise ValueError(f"unknown Dynamixel model {name!r}; known: {sorted(MODELS)}") from None


def to_signed(value: int, size: int) -> int:
    bits = 8 * size
    value &= (1 << bits) - 1
    return value - (1 << bits) if value >= 1 << (bits - 1) else value


def to_unsigned(value: int, size: int) -> int:
    return int(value) & ((1 << (8 * size)) - 1)


def encode(value: int, size: int) -> list[int]:
    value = to_unsigned(value, size)
    return [(value >> (8 * i)) & 0xFF for i in range(size)]


def decode(data, size: int, signed: bool = False) -> int:
    value = 0
    for i in range(size):
        value |= int(data[i]) << (8 * i)
    return to_signed(value, size) if signed else value
