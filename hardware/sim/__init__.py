"""MuJoCo ALOHA simulator: the gym-aloha scenes on the plain `mujoco` bindings, scripted demonstrators, seeds.

Public entry points (imported lazily, so `hardware.registry` can list the sim robots without loading MuJoCo):
    make_sim_robot(task, cameras=None, resolution=None, view="default") -> SimRobot    a `hardware.interfaces.Robot`
        task: "transfer_cube" | "insertion" (ACT's) | "mobile_transfer_cube" (Mobile ALOHA: 16-D actions, the rig on
        a velocity-driven base that starts out of reach of the table; `mobile_base`, `mobile_scene`)
        view: "default" | "shifted" (cameras moved and lights changed, physics untouched: evaluation; `view`)
    ScriptedDemonstrator()                                                   a `hardware.interfaces.Teleoperator`
    heldout_seeds(n) -> list[int]                         seeds recording never uses (evaluation: `hardware.rollout`)
    covering_seeds(task, n) -> list[int]                        recording seeds spread evenly over the placements
    session_seeds(layout, task, n) -> (seeds, note)          a new session's seeds: none the store already recorded

The OpenGL backend must be chosen before `mujoco` is first imported, so this package picks it on import.
"""

from importlib import import_module

from hardware.sim.gl import select_gl_backend

select_gl_backend()

_EXPORTS = {
    "TASKS": "hardware.sim.tasks",
    "SimTask": "hardware.sim.tasks",
    "get_task": "hardware.sim.tasks",
    "SimConfig": "hardware.sim.robot",
    "SimRobot": "hardware.sim.robot",
    "make_sim_robot": "hardware.sim.robot",
    "ScriptedDemonstrator": "hardware.sim.scripted",
    "plan_demo": "hardware.sim.scripted",
    "heldout_seeds": "hardware.sim.placements",
    "covering_seeds": "hardware.sim.placements",
    "session_seeds": "hardware.sim.placements",
    "VIEWS": "hardware.sim.view",
    "get_view": "hardware.sim.view",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'hardware.sim' has no attribute {name!r}")
