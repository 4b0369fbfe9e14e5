"""act_policy's run config (what the Dagster launchpad shows), generated from model/config.py.

Every tunable field of ACTConfig and TrainConfig becomes a field here with the model's type and description, so a
field added to the model config appears in the launchpad without another edit:

- architecture fields are empty by default: `preset` (a named preset of model/config.py) fills those left empty;
- training fields carry the values of the pipeline's preset, `small_15min` (what a plain train_and_deploy run
  trains), and are used as given;
- a (height, width) pair such as image_size becomes two fields, image_height and image_width.

The pipeline's own settings (where and on what device the training process runs) are written in PipelineSettings.
"""

from __future__ import annotations

from typing import Any, Literal, Optional, get_args, get_origin

import pydantic
from dagster import Config
from pydantic import Field
from pydantic.fields import FieldInfo

from model.config import PRESETS, ACTConfig, TrainConfig, get_preset, tunable_fields, value_type

PIPELINE_PRESET = "small_15min"


class PipelineSettings(Config):
    """The act_policy settings that are the pipeline's own, not the model's."""

    preset: str = Field(PIPELINE_PRESET, description=(
        f"Named preset of model/config.py ({', '.join(PRESETS)}) whose architecture fills every architecture field "
        f"left empty. The training fields are used as given; their defaults are {PIPELINE_PRESET}'s."))
    device: str = Field("auto", description="torch device; auto: the first CUDA GPU when there is one, else the CPU.")
    launcher: Literal["in_process", "subprocess", "k8s"] = Field("in_process", description=(
        "Where the training process runs: this step's process, a Dagster Pipes subprocess, or a Pipes-launched "
        "Kubernetes pod (docs/SCALE_OUT.md)."))
    k8s_image: Optional[str] = Field(None, description="launcher k8s: an image with this project installed (and CUDA).")
    k8s_namespace: Optional[str] = Field(None, description="launcher k8s: the pod's namespace.")
    k8s_gpus: int = Field(1, description="launcher k8s: nvidia.com/gpu limit of the training pod.")


def _dagster_type(f: FieldInfo, optional: bool = False) -> Any:
    """What Dagster's config schema can hold: string literals become enums, but int literals and optional literals
    become their plain type (the model config still checks the value)."""
    kind, empty = value_type(f)
    optional = optional or empty
    values = get_args(kind)
    if get_origin(kind) is Literal and (optional or not all(isinstance(v, str) for v in values)):
        kind = type(values[0])
    return Optional[kind] if optional else kind


def _generated_fields() -> tuple[dict[str, Any], list[str], dict[str, tuple[str, str]]]:
    """-> (pydantic fields, the training fields taken as they are, the (H, W) pairs and their two fields)."""
    fields: dict[str, Any] = {}
    for name, f in tunable_fields(ACTConfig).items():
        fields[name] = (_dagster_type(f, optional=True),
                        Field(None, description=f"{f.description} Empty: the preset's value."))
    defaults = get_preset(PIPELINE_PRESET).values(TrainConfig)
    plain, pairs = [], {}
    for name, f in tunable_fields(TrainConfig).items():
        if name in PipelineSettings.model_fields:
            continue
        if get_origin(f.annotation) is tuple:
            stem = name.removesuffix("_size")
            pairs[name] = (f"{stem}_height", f"{stem}_width")
            for half, value in zip(pairs[name], defaults[name]):
                fields[half] = (int, Field(value, description=f"{f.description} ({half.rpartition('_')[2]})"))
        else:
            fields[name] = (_dagster_type(f), Field(defaults[name], description=f.description))
            plain.append(name)
    return fields, plain, pairs


_FIELDS, _PLAIN_TRAIN_FIELDS, _PAIRS = _generated_fields()
_TRAIN_FIELDS = frozenset(_PLAIN_TRAIN_FIELDS).union(*_PAIRS.values())


class TrainingConfig(pydantic.create_model("_ModelConfigFields", __base__=PipelineSettings, **_FIELDS)):
    """One training run: the model config's fields (generated) and the pipeline's own settings."""

    def model_configs(self) -> tuple[ACTConfig, TrainConfig]:
        """The run config as model configs (raises on a bad value, before any process or MLflow run starts)."""
        arch = {k: getattr(self, k) for k in tunable_fields(ACTConfig) if getattr(self, k) is not None}
        train = {k: getattr(self, k) for k in _PLAIN_TRAIN_FIELDS}
        for name, (height, width) in _PAIRS.items():
            train[name] = (getattr(self, height), getattr(self, width))
        train["device"] = self.resolved_device()
        return get_preset(self.preset).act_config(**arch), TrainConfig(**train)

    def resolved_device(self) -> str:
        import torch

        if self.device == "auto":
            return "cuda" if torch.cuda.is_available() else "cpu"
        return self.device


def preset_run_config(preset: str, **changes: Any) -> dict[str, Any]:
    """The run config that trains a named preset with `changes` (model config field names): its architecture
    through `preset`, its training values field by field (those that differ from the launchpad's defaults)."""
    arch = {k: v for k, v in changes.items() if k in ACTConfig.model_fields}
    values = get_preset(preset).train_values(**{k: v for k, v in changes.items() if k not in arch})
    for name, (height, width) in _PAIRS.items():
        values[height], values[width] = values.pop(name)
    defaults = TrainingConfig.model_fields
    train = {k: v for k, v in values.items() if k in _TRAIN_FIELDS and v != defaults[k].default}
    return {"preset": preset, **train, **arch}
