"""Files in the original ALOHA/ACT HDF5 layout, written with h5py (what `aloha import-hdf5` reads)."""

from __future__ import annotations

import h5py
import numpy as np

from assets_store.codec import encode_jpeg
from assets_store.synthetic import CameraLikeFrames, joint_trajectory


def write_aloha_hdf5(path, steps=20, cams=("cam_high", "cam_left_wrist"), hw=(48, 64), sim=True, effort=False,
                     compress=False, action_dim=14):
    rng = np.random.default_rng(len(str(path)))
    qpos = joint_trajectory(steps, 14, seed=3).astype(np.float64)  # the original code stores float64
    qvel = rng.normal(size=(steps, 14))
    action = rng.normal(size=(steps, action_dim))
    frames = {c: np.stack([CameraLikeFrames(*hw, seed=i)(t) for t in range(steps)]) for i, c in enumerate(cams)}
    with h5py.File(path, "w") as f:
        f.attrs["sim"] = sim
        f.attrs["compress"] = compress
        obs = f.create_group("observations")
        obs.create_dataset("qpos", data=qpos)
        obs.create_dataset("qvel", data=qvel)
        if effort:
            obs.create_dataset("effort", data=rng.normal(size=(steps, 14)))
        img = obs.create_group("images")
        if compress:  # the real-robot recorder's layout: OpenCV JPEG (BGR) padded to one length
            lens = np.zeros((len(cams), steps), np.int64)
            encoded = {c: [encode_jpeg(np.ascontiguousarray(frames[c][t][..., ::-1])) for t in range(steps)] for c in cams}
            pad = max(len(b) for c in cams for b in encoded[c])
            for i, c in enumerate(cams):
                buf = np.zeros((steps, pad), np.uint8)
                for t, b in enumerate(encoded[c]):
                    buf[t, : len(b)] = np.frombuffer(b, np.uint8)
                    lens[i, t] = len(b)
                img.create_dataset(c, data=buf)
            f.create_dataset("compress_len", data=lens)
        else:
            for c in cams:
                img.create_dataset(c, data=frames[c])
        f.create_dataset("action", data=action)
    return qpos, qvel, action, frames
