"""Where a training job runs: the device (CUDA, Apple's MPS, or the CPU) and its number type.

`ML_SERVICE_TRAIN_DEVICE=auto` (the default) takes CUDA when torch sees a GPU, else MPS on
Apple silicon, else the CPU. A device asked for by name that is not there is refused when a
job is requested, before it is queued (`train_device_unavailable`). Number types:

- CUDA: bf16 autocast where the GPU supports it, else fp16 autocast with a gradient scaler;
- MPS: fp16 autocast with a gradient scaler where torch can autocast on MPS, else fp32;
- CPU: bf16 autocast where the CPU has bf16 instructions (avx512_bf16 / amx_bf16), else fp32.

Generation is unaffected (it keeps `ML_SERVICE_GPU_LAYERS`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from convassist.core.errors import ServiceUnavailable

if TYPE_CHECKING:
    import torch

TrainDeviceSetting = Literal["auto", "cpu", "cuda", "mps"]
DeviceType = Literal["cpu", "cuda", "mps"]
NumberType = Literal["bf16", "fp16", "fp32"]
BF16_FLAGS = ("avx512_bf16", "amx_bf16")


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


def cpu_has_bf16() -> bool:
    """Whether the CPU has native bf16 instructions (Linux: /proc/cpuinfo flags)."""
    try:
        flags = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="ignore").split()
    except OSError:
        return False
    return any(flag in flags for flag in BF16_FLAGS)


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
        return "bf16" if cpu_has_bf16() else "fp32"
    import torch

    if device == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "fp16" if torch.amp.is_autocast_available("mps") else "fp32"
