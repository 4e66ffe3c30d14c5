"""Where a training job runs: the device (CUDA, Apple's MPS, or the CPU) and its number type.

`ML_SERVICE_TRAIN_DEVICE=auto` (the default) takes CUDA when torch sees a GPU, else MPS on
Apple silicon, else the CPU. A device asked for by name that is not there is refused when a
job is requested, before it is queued (`train_device_unavailable`). Number types:

- CUDA: bf16 autocast where the GPU supports it, else fp16 autocast with a gradient scaler;
- MPS: fp16 autocast with a gradient scaler where torch can autocast on MPS, else fp32;
- CPU: bf16 autocast where the CPU has Intel AMX's bf16 tiles (amx_bf16), else fp32. With
  AVX512_BF16 alone, bf16 trained slower than fp32 (`bench/train.py --number-types`).

Generation is unaffected (it keeps `ML_SERVICE_GPU_LAYERS`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from convassist.core.cpu import cpu_flags
from convassist.core.errors import ServiceUnavailable

if TYPE_CHECKING:
    import torch

TrainDeviceSetting = Literal["auto", "cpu", "cuda", "mps"]
DeviceType = Literal["cpu", "cuda", "mps"]
NumberType = Literal["bf16", "fp16", "fp32"]
BF16_TILES = "amx_bf16"


class DeviceUnavailable(ServiceUnavailable):
    """`ML_SERVICE_TRAIN_DEVICE` names a device this machine does not have."""

    code = "train_device_unavailable"


@dataclass(frozen=True)
class TrainDevice:
    """The device a job trains on and the number type of its forward pass."""

    type: DeviceType
    dtype: NumberType

    @property
    def autocast_dtype(self) -> torch.dtype | None:
        """What `torch.autocast` computes in; None = plain float32."""
        import torch

        return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.dtype)

    @property
    def scaled(self) -> bool:
        """fp16 gradients underflow without loss scaling (a GradScaler)."""
        return self.dtype == "fp16"


def cpu_bf16_pays(flags: frozenset[str] | None = None) -> bool:
    """Whether bf16 autocast trains faster than fp32 on this CPU (`flags`: /proc/cpuinfo's).

    Only with AMX: measured on one Xeon with 2 cores, bf16 ran at 1.72x fp32 with AMX and
    0.82x with oneDNN kept to AVX512_BF16 (`ONEDNN_MAX_CPU_ISA=AVX512_CORE_BF16`)."""
    return BF16_TILES in (cpu_flags() if flags is None else flags)


def available(device: DeviceType) -> bool:
    """Whether torch can train on `device` here."""
    if device == "cpu":
        return True
    import torch

    if device == "cuda":
        return bool(torch.cuda.is_available())
    return bool(torch.backends.mps.is_available())


def check_device(setting: TrainDeviceSetting) -> None:
    """Refuse (DeviceUnavailable, 503) a device asked for by name that is not here."""
    if setting == "auto" or available(setting):
        return
    raise DeviceUnavailable(
        f"ML_SERVICE_TRAIN_DEVICE={setting}, but torch finds no {setting.upper()} device "
        "on this machine: set it to auto or cpu, or install a torch build for that device.",
        device=setting,
    )


def choose_device(setting: TrainDeviceSetting = "auto") -> TrainDevice:
    """The device for `setting` and its number type; DeviceUnavailable if it is missing."""
    check_device(setting)
    if setting != "auto":
        device: DeviceType = setting
    elif available("cuda"):
        device = "cuda"
    elif available("mps"):
        device = "mps"
    else:
        device = "cpu"
    return TrainDevice(device, number_type(device))


def number_type(device: DeviceType) -> NumberType:
    if device == "cpu":
        return "bf16" if cpu_bf16_pays() else "fp32"
    import torch

    if device == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "fp16" if torch.amp.is_autocast_available("mps") else "fp32"
