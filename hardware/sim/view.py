"""Named rendering variants of a sim scene: the cameras moved a little and the light changed, for evaluation only.

A policy trained on the default view is evaluated on `shifted` to see how much a small change of camera pose and
lighting costs it (what image augmentation should buy back). A view edits only what the renderer reads (camera
poses, light colours and directions), never bodies, joints or contacts, so the same seed gives the same physics.
Each view is fixed numbers: the same view always renders the same frames.
"""

from __future__ import annotations

from dataclasses import dataclass

import mujoco
import numpy as np

DEFAULT_VIEW = "default"


@dataclass(frozen=True)
class SimView:
    name: str
    description: str
    # Every camera, in its own frame (x right, y up, z backwards, as MuJoCo's cameras look down -z).
    camera_shift_m: tuple[float, float, float] = (0.0, 0.0, 0.0)
    camera_rotation_deg: tuple[float, float, float] = (0.0, 0.0, 0.0)  # about the camera's x (tilt), y (pan), z (roll)
    light_scale: float = 1.0  # diffuse and specular of every scene light and of the headlight
    light_azimuth_deg: float = 0.0  # every scene light's direction and position turned about the vertical axis

    @property
    def is_default(self) -> bool:
        return self == VIEWS[DEFAULT_VIEW]


VIEWS: dict[str, SimView] = {
    DEFAULT_VIEW: SimView(DEFAULT_VIEW, "the scene as its files define it (what recording uses)"),
    "shifted": SimView(
        "shifted", "every camera moved ~3 cm and turned ~3 degrees; lights 40% dimmer, turned 30 degrees",
        camera_shift_m=(0.02, -0.01, 0.02), camera_rotation_deg=(-3.0, 2.0, 1.5),
        light_scale=0.6, light_azimuth_deg=30.0,
    ),
}


def get_view(name: str) -> SimView:
    if name not in VIEWS:
        raise ValueError(f"unknown sim view {name!r}; expected one of {sorted(VIEWS)}")
    return VIEWS[name]


def _axis_angle_quat(axis: np.ndarray, degrees: float) -> np.ndarray:
    quat = np.zeros(4)
    mujoco.mju_axisAngle2Quat(quat, np.asarray(axis, dtype=np.float64), np.deg2rad(degrees))
    return quat


def _rigidly_attached(model: mujoco.MjModel, body: int, ancestor: int) -> bool:
    """Whether `body` is `ancestor` or hangs from it with no joint in between (their relative pose never changes)."""
    while body != ancestor:
        if model.body_jntnum[body] or body == 0:
            return False
        body = model.body_parentid[body]
    return True


def _fix_aimed_cameras(model: mujoco.MjModel) -> None:
    """The scenes aim most cameras at a body ("targetbody"): MuJoCo then recomputes their orientation every frame
    with world z as up, which makes a camera looking straight down (`top`) spin about its axis for a 2 cm shift.
    A camera whose target never moves relative to its own body gets that orientation frozen (what the default
    view renders), so a view can turn it by the few degrees it asks."""
    data = mujoco.MjData(model)
    mujoco.mj_forward(model, data)
    for i in range(model.ncam):
        target = model.cam_targetbodyid[i]
        if model.cam_mode[i] != mujoco.mjtCamLight.mjCAMLIGHT_TARGETBODY or target < 0:
            continue
        body = model.cam_bodyid[i]
        if not _rigidly_attached(model, target, body):
            continue  # aimed at a moving body (front_close follows a gripper): it keeps aiming
        relative = data.xmat[body].reshape(3, 3).T @ data.cam_xmat[i].reshape(3, 3)
        mujoco.mju_mat2Quat(model.cam_quat[i], relative.flatten())
        model.cam_mode[i] = mujoco.mjtCamLight.mjCAMLIGHT_FIXED


def apply_view(model: mujoco.MjModel, view: SimView) -> None:
    """Edit `model`'s cameras and lights in place to render `view` (apply once, to a freshly loaded model)."""
    if view.is_default:
        return
    _fix_aimed_cameras(model)
    for i in range(model.ncam):
        quat = model.cam_quat[i].copy()
        offset = np.zeros(3)
        mujoco.mju_rotVecQuat(offset, np.asarray(view.camera_shift_m, dtype=np.float64), quat)
        model.cam_pos[i] += offset
        for axis, degrees in zip(np.eye(3), view.camera_rotation_deg):  # local axes: compose on the right
            if degrees:
                turned = np.zeros(4)
                mujoco.mju_mulQuat(turned, quat, _axis_angle_quat(axis, degrees))
                quat = turned
        model.cam_quat[i] = quat
    turn = np.zeros(9)
    mujoco.mju_quat2Mat(turn, _axis_angle_quat(np.array([0.0, 0.0, 1.0]), view.light_azimuth_deg))
    turn = turn.reshape(3, 3)
    for i in range(model.nlight):
        model.light_dir[i] = turn @ model.light_dir[i]
        model.light_pos[i] = turn @ model.light_pos[i]
        model.light_diffuse[i] *= view.light_scale
        model.light_specular[i] *= view.light_scale
    model.vis.headlight.diffuse[:] = np.asarray(model.vis.headlight.diffuse) * view.light_scale
    model.vis.headlight.specular[:] = np.asarray(model.vis.headlight.specular) * view.light_scale
