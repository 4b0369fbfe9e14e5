"""The policy server's wire schema: one versioned message = a JSON header frame + one raw array frame per array.

    frame 0   {"schema": "aloha-policy-wire", "version": 1, "kind": "predict", "id": 7,
               "bundle_sha256": "...", "arrays": [{"name": "qpos", "dtype": "<f4", "shape": [14]}, ...], ...}
    frame 1+  the arrays' bytes, C order, little-endian, in the header's order

No pickle: a peer sends only JSON and bytes the header describes. A header is checked before any array is built
(`decode(..., check=...)` sees the declared shapes first), so a receiver refuses what it would not accept by its
size alone. An unknown schema or version is a `WireError` that names both, on either end.

Kinds: `hello` -> `welcome` (the server's bundle, what it expects, and where and how it runs the policy: `device`,
`backend` and, optional within version 1, `inference_path`), `predict` -> `chunk`, and `error` for any refusal. Every message carries the bundle's manifest sha256: the client the one it expects, the server the one it
serves.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

SCHEMA = "aloha-policy-wire"
VERSION = 1
KINDS = ("hello", "welcome", "predict", "chunk", "error")
DTYPES = ("<f4", "<f8", "|u1")  # float32 state, float64 chunks, uint8 images
MAX_HEADER_BYTES = 64 << 10
DEFAULT_PORT = 5555
DEFAULT_TIMEOUT_S = 1.0  # per request: a synchronous loop waits this long for a chunk at most, then stops the robot


class WireError(ValueError):
    """A message this end cannot accept: not our schema, another version, or arrays other than declared."""


@dataclass(frozen=True)
class ArraySpec:
    name: str
    dtype: str
    shape: tuple[int, ...]

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * np.dtype(self.dtype).itemsize


@dataclass
class Message:
    kind: str
    request_id: int
    bundle_sha256: str
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)  # kind-specific JSON fields (an error's message, ...)


def encode(msg: Message) -> list[bytes]:
    if msg.kind not in KINDS:
        raise ValueError(f"kind: expected one of {list(KINDS)}, got {msg.kind!r}")
    frames, specs = [], []
    for name, value in msg.arrays.items():
        arr = np.asarray(value)
        dtype = arr.dtype.newbyteorder("<") if arr.dtype.itemsize > 1 else arr.dtype
        if dtype.str not in DTYPES:
            raise ValueError(f"{name}: dtype {arr.dtype} cannot go on the wire; expected one of {list(DTYPES)}")
        frames.append(np.ascontiguousarray(arr, dtype=dtype).tobytes())
        specs.append({"name": name, "dtype": dtype.str, "shape": list(arr.shape)})
    header = {"schema": SCHEMA, "version": VERSION, "kind": msg.kind, "id": int(msg.request_id),
              "bundle_sha256": msg.bundle_sha256, "arrays": specs, **msg.info}
    return [json.dumps(header).encode(), *frames]


def _header(frame: bytes) -> dict[str, Any]:
    if len(frame) > MAX_HEADER_BYTES:
        raise WireError(f"header: {len(frame)} bytes, expected at most {MAX_HEADER_BYTES}")
    try:
        header = json.loads(frame)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise WireError(f"header: expected a JSON object, got unreadable bytes ({exc})") from None
    if not isinstance(header, dict) or header.get("schema") != SCHEMA:
        got = header.get("schema") if isinstance(header, dict) else type(header).__name__
        raise WireError(f"schema: expected {SCHEMA!r}, got {got!r}")
    if header.get("version") != VERSION:
        raise WireError(f"schema version: {header.get('version')!r} is unknown here; this end speaks {SCHEMA} v{VERSION}")
    if header.get("kind") not in KINDS:
        raise WireError(f"kind: expected one of {list(KINDS)}, got {header.get('kind')!r}")
    if not isinstance(header.get("id"), int) or not isinstance(header.get("bundle_sha256"), str):
        raise WireError("id, bundle_sha256: expected an integer and a string")
    return header


def _specs(header: dict[str, Any]) -> list[ArraySpec]:
    raw = header.get("arrays")
    if not isinstance(raw, list):
        raise WireError("arrays: expected a list of {name, dtype, shape}")
    specs = []
    for i, entry in enumerate(raw):
        ok = (isinstance(entry, dict) and isinstance(entry.get("name"), str) and entry.get("dtype") in DTYPES
              and isinstance(entry.get("shape"), list)
              and all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in entry["shape"]))
        if not ok:
            raise WireError(f"arrays[{i}]: expected a name, a dtype in {list(DTYPES)} and a shape of sizes >= 0, "
                            f"got {entry!r}")
        specs.append(ArraySpec(entry["name"], entry["dtype"], tuple(entry["shape"])))
    if len({s.name for s in specs}) != len(specs):
        raise WireError(f"arrays: names repeat: {[s.name for s in specs]}")
    return specs


def decode(frames: list[bytes], check: Callable[[str, list[ArraySpec]], None] | None = None) -> Message:
    """Frames -> Message. `check(kind, specs)` runs on the declared arrays before any is built: raise WireError to
    refuse (sizes the receiver does not expect)."""
    if not frames:
        raise WireError("expected a header frame, got an empty message")
    header = _header(frames[0])
    specs = _specs(header)
    if check is not None:
        check(header["kind"], specs)
    if len(frames) != 1 + len(specs):
        raise WireError(f"expected {len(specs)} array frame(s) after the header, got {len(frames) - 1}")
    arrays = {}
    for spec, frame in zip(specs, frames[1:]):
        if len(frame) != spec.nbytes:
            raise WireError(f"{spec.name}: {len(frame)} bytes, expected {spec.nbytes} for {spec.dtype} {list(spec.shape)}")
        arrays[spec.name] = np.frombuffer(frame, dtype=spec.dtype).reshape(spec.shape)
    info = {k: v for k, v in header.items()
            if k not in ("schema", "version", "kind", "id", "bundle_sha256", "arrays")}
    return Message(header["kind"], header["id"], header["bundle_sha256"], arrays, info)
