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


# Start-of-frame markers (baseline, extended, progressive, lossless; Huffman or arithmetic): they carry the size.
_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_STANDALONE_MARKERS = frozenset(range(0xD0, 0xD8)) | {0x01}  # RSTn and TEM carry no length


def jpeg_header_shape(data: bytes | np.ndarray) -> tuple[int, int, int]:
    """(height, width, components) from a JPEG's frame header, read without decoding anything."""
    buf = memoryview(data).cast("B")
    if len(buf) < 4 or buf[0] != 0xFF or buf[1] != 0xD8:
        raise ValueError("not a JPEG: no start-of-image marker")
    i = 2
    while i + 4 <= len(buf):
        if buf[i] != 0xFF:
            raise ValueError(f"not a JPEG: expected a marker at byte {i}")
        marker = buf[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in _STANDALONE_MARKERS:
            i += 2
            continue
        length = (buf[i + 2] << 8) | buf[i + 3]
        if marker in _SOF_MARKERS:
            if length < 8 or i + 10 > len(buf):
                break
            height = (buf[i + 5] << 8) | buf[i + 6]
            width = (buf[i + 7] << 8) | buf[i + 8]
            return height, width, buf[i + 9]
        if marker in (0xD9, 0xDA) or length < 2:  # end of image or start of scan before any frame header
            break
        i += 2 + length
    raise ValueError("not a JPEG: no frame header")


def decode_jpeg(data: bytes | np.ndarray, shape: tuple[int, ...] | None = None) -> np.ndarray:
    """JPEG bytes -> (H, W, 3) uint8. With `shape`, the header's size is compared with it before anything is decoded,
    so a small chunk that claims a huge image is refused instead of allocated."""
    if shape is not None:
        claimed = jpeg_header_shape(data)
        want = tuple(shape[-3:])  # (H, W, 3) of a frame or of a (1, H, W, 3) chunk
        if claimed != want:
            raise ValueError(
                f"JPEG header declares {claimed[0]}x{claimed[1]} with {claimed[2]} components, expected "
                f"{want[0]}x{want[1]} with {want[2]}; not decoded"
            )
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
        image = decode_jpeg(chunk_bytes.as_numpy_array(), chunk_spec.shape)
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
