"""RealSense colour cameras through pyrealsense2, with a frame-source seam (device, recording, software sensor)."""

from hardware.cameras.camera import Camera, CameraDisconnected, CameraStats, match_by_timestamp
from hardware.cameras.sources import Frame, FrameSource, PlaybackSource, RealSenseSource, SoftwareSource, SourceError
from hardware.cameras.synthetic import SyntheticFeeder, frame_number_in

__all__ = [
    "Camera", "CameraDisconnected", "CameraStats", "match_by_timestamp", "Frame", "FrameSource", "PlaybackSource",
    "RealSenseSource", "SoftwareSource", "SourceError", "SyntheticFeeder", "frame_number_in",
]
