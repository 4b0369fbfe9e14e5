"""The Mobile ALOHA scene: the gym-aloha bimanual rig and a head camera on a planar base, the table left in place.

Built from the installed gym-aloha MJCF files (included, never copied): the two `vx300s_*.xml` arms go inside a
`mobile_base` body with two slide joints and a hinge, driven by velocity actuators (the real Tracer takes
velocities). Cameras as on Mobile ALOHA: `cam_high` is a new head camera fixed to the base (looking down at the
table from behind the arms, where ALOHA's `top` view would be from a robot that carries its camera), and the
gym-aloha wrist cameras are renamed (`left_wrist` -> `cam_left_wrist`, `right_wrist` -> `cam_right_wrist`). The
scene's world cameras (`top`, `angle`, pillars) stay, fixed to the room.

qpos: base x, y, heading; the 16 arm entries; the free objects. ctrl: the 16 arm position actuators, then the base
velocity actuators (x', y', heading').
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import TYPE_CHECKING

from hardware.sim.scenes import assets_dir

if TYPE_CHECKING:
    import mujoco

MOBILE_PREFIX = "mobile:"  # a task's joint_scene "mobile:<static scene>" is that scene on the mobile base

# gym-aloha name -> Mobile ALOHA name
RENAMED_CAMERAS = {"left_wrist": "cam_left_wrist", "right_wrist": "cam_right_wrist"}
MOBILE_CAMERAS = ("cam_high", "cam_left_wrist", "cam_right_wrist")

BASE_JOINTS = ("base_x", "base_y", "base_heading")
# Velocity gains: stiff enough that the arms' reaction forces barely move a base told to stand still (drift below
# a millimetre over an episode), soft enough for the explicit 2 ms integrator (kv * dt / mass well below 2).
BASE_MASS = 60.0  # kg, without the arms
BASE_KV_LINEAR = 20_000.0
BASE_KV_ANGULAR = 3_000.0

# The arm links near the table top would scrape it while the base drives the rig in over it; the fingers and
# wrist keep their contacts with the table.
_NO_TABLE_CONTACT = ("shoulder_link", "upper_arm_link")

_SCENE = """
<mujoco model="mobile_aloha_{name}">
  <compiler meshdir="{meshdir}"/>
  <include file="scene.xml"/>
  <include file="vx300s_dependencies.xml"/>
  <worldbody>
    <body name="mobile_base">
      <inertial pos="0 0.5 -0.4" mass="{mass}" diaginertia="4 4 6"/>
      <joint name="base_x" type="slide" axis="1 0 0"/>
      <joint name="base_y" type="slide" axis="0 1 0"/>
      <joint name="base_heading" type="hinge" axis="0 0 1" pos="0 0.5 0"/>
      <geom name="base_chassis" type="box" pos="0 0.1 -0.62" size="0.3 0.32 0.12" rgba="0.15 0.15 0.15 1"
            contype="0" conaffinity="0" group="1" mass="0"/>
      <geom name="base_mast" type="box" pos="0 -0.05 -0.1" size="0.02 0.02 0.65" rgba="0.3 0.3 0.3 1"
            contype="0" conaffinity="0" group="1" mass="0"/>
      <camera name="cam_high" pos="0 -0.05 0.58" xyaxes="1 0 0 0 0.666 0.746" fovy="78"/>
      <include file="vx300s_left.xml"/>
      <include file="vx300s_right.xml"/>
    </body>
    {objects}
  </worldbody>
  <contact>{excludes}</contact>
  <actuator>
    {arm_actuators}
    <velocity name="base_x" joint="base_x" kv="{kv_lin}"/>
    <velocity name="base_y" joint="base_y" kv="{kv_lin}"/>
    <velocity name="base_heading" joint="base_heading" kv="{kv_ang}"/>
  </actuator>
</mujoco>
"""


def _element_block(xml: str, tag: str) -> str:
    """The text between <tag> and </tag> in a static scene file (its first occurrence)."""
    start, end = xml.index(f"<{tag}>") + len(tag) + 2, xml.index(f"</{tag}>")
    return xml[start:end]


@lru_cache(maxsize=1)
def _assets() -> dict[str, str]:
    return {p.name: p.read_text() for p in assets_dir().iterdir() if p.suffix == ".xml"}


def _inline_includes(xml: str, assets: dict[str, str]) -> str:
    """Replace each <include file="..."/> by that file's content: MuJoCo resolves includes against the main
    file's folder, and a scene built in memory has none (its meshes are found through meshdir)."""

    def content(match: re.Match) -> str:
        included = assets[match.group(1)]
        body = included[included.index("<mujocoinclude>") + len("<mujocoinclude>"): included.rindex("</mujocoinclude>")]
        return _inline_includes(body, assets)

    return re.sub(r'<include\s+file="([^"]+)"\s*/>', content, xml)


def mobile_scene_xml(static_scene: str) -> str:
    """The MJCF text of `static_scene` (a joint-space gym-aloha scene) with its rig on the mobile base: the scene's
    free objects and arm actuators are taken from that file as they are."""
    assets = _assets()
    if static_scene not in assets:
        raise FileNotFoundError(f"{assets_dir() / static_scene}: scene file missing from the installed gym-aloha")
    static = assets[static_scene]
    world = _element_block(static, "worldbody")
    objects = world[world.index("<body"):]  # the arms are the two <include>s before the first object body
    excludes = "".join(
        f'<exclude body1="table" body2="vx300s_{side}/{link}"/>'
        for side in ("left", "right")
        for link in _NO_TABLE_CONTACT
    )
    scene = _SCENE.format(
        meshdir=assets_dir(), name=static_scene.removesuffix(".xml"), mass=BASE_MASS, objects=objects,
        excludes=excludes,
        arm_actuators=_element_block(static, "actuator"), kv_lin=BASE_KV_LINEAR, kv_ang=BASE_KV_ANGULAR,
    )
    return _inline_includes(scene, assets)


def load_mobile_model(static_scene: str) -> "mujoco.MjModel":
    import mujoco  # here, not at import: the registry lists this task's cameras without loading MuJoCo

    spec = mujoco.MjSpec.from_string(mobile_scene_xml(static_scene))
    for old, new in RENAMED_CAMERAS.items():
        spec.camera(old).name = new
    return spec.compile()
