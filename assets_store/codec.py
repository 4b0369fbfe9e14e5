"""A Zarr v3 array->bytes codec that stores each camera frame chunk as one JPEG (libjpeg-turbo via imagecodecs).

Zarr has no image codec, and imagecodecs' numcodecs wrappers cannot go in `compressors=` of a v3 array, so this
is passed as `serializer=`. Importing `assets_store` registers it; a reader without the registration gets
zarr's UnknownCodecError, which `EpisodeReader` turns into a message naming the array.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import imagecodecs
import numpy as np
from zarr.abc.codec import ArrayBytesCodec
from zarr.core.array_spec import ArraySpec
from zarr.core.buffer import Buffer, NDBuffer
from zarr.core.common import parse_named_configuration
from zarr.registry import register_codec

CODEC_NAME = "aloha_jpeg"
DEFAULT_JPEG_QUALITY = 90


def encode_jpeg(frame: np.ndarray, quality: int = DEFAULT_JPEG_QUALITY) -> bytes:
    """(H, W, 3) uint8 RGB -> JPEG bytes. Releases the GIL, so worker threads encode in parallel."""
    return imagecodecs.jpeg8_encode(frame, level=quality)


def decode_jpeg(data: bytes | np.ndarray) -> np.ndarray:
    return imagecodecs.jpeg8_decode(data)


@dataclass(frozen=True)
class JpegCodec(ArrayBytesCodec):
    """One chunk = one (1, H, W, 3) or (H, W, 3) uint8 frame = one JPEG."""

    is_fixed_size = False
    quality: int = DEFAULT_JPEG_QUALITY

    def __post_init__(self):
        if not 1 <= int(self.quality) <= 100:
            raise ValueError(f"JPEG quality must be in 1..100, got {self.quality}")

    @classmethod
    def from_dict(cls, data: dict) -> "JpegCodec":
        _, config = parse_named_configuration(data, CODEC_NAME, require_configuration=False)
        return cls(**(config or {}))

    def to_dict(self) -> dict:
        return {"name": CODEC_NAME, "configuration": {"quality": int(self.quality)}}

    def validate(self, *, shape, dtype, chunk_grid) -> None:
        native = dtype.to_native_dtype()
        if native != np.dtype("uint8"):
            raise ValueError(f"{CODEC_NAME} stores uint8 frames, got dtype {native}")
        if len(shape) not in (3, 4) or shape[-1] != 3:
            raise ValueError(f"{CODEC_NAME} stores (..., H, W, 3) frames, got shape {shape}")

    def evolve_from_array_spec(self, array_spec: ArraySpec) -> "JpegCodec":
        return replace(self)

    def _decode_sync(self, chunk_bytes: Buffer, chunk_spec: ArraySpec) -> NDBuffer:
        image = decode_jpeg(chunk_bytes.as_numpy_array())
        return chunk_spec.prototype.nd_buffer.from_numpy_array(image.reshape(chunk_spec.shape))

    def _encode_sync(self, chunk_array: NDBuffer, chunk_spec: ArraySpec) -> Buffer | None:
        frame = np.ascontiguousarray(chunk_array.as_numpy_array()).reshape(chunk_spec.shape[-3:])
        return chunk_spec.prototype.buffer.from_bytes(encode_jpeg(frame, self.quality))

    async def _decode_single(self, chunk_bytes: Buffer, chunk_spec: ArraySpec) -> NDBuffer:
        return self._decode_sync(chunk_bytes, chunk_spec)

    async def _encode_single(self, chunk_array: NDBuffer, chunk_spec: ArraySpec) -> Buffer | None:
        return self._encode_sync(chunk_array, chunk_spec)

    def compute_encoded_size(self, input_byte_length: int, chunk_spec: ArraySpec) -> int:
        raise NotImplementedError("JPEG output size is data dependent")


register_codec(CODEC_NAME, JpegCodec)
