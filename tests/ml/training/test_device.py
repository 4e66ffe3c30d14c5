"""The device and number type training picks, and a missing device refused before queueing."""

from __future__ import annotations

import uuid

import pytest
import torch

from convassist.ml.training.device import (
    DeviceUnavailable,
    TrainDevice,
    available,
    check_device,
    choose_device,
    cpu_bf16_pays,
)
from convassist.ml.training.runner import failure_message
from tests.ml.conftest import AppFactory
from tests.ml.training.conftest import make_samples, sample_json

NO_GPU = not (torch.cuda.is_available() or torch.backends.mps.is_available())


@pytest.mark.skipif(not NO_GPU, reason="auto picks the GPU on this machine")
def test_auto_trains_on_the_cpu_without_a_gpu() -> None:
    chosen = choose_device()
    assert chosen == choose_device("auto") == choose_device("cpu")
    # The CPU keeps its bf16 decision: bf16 autocast only with bf16 instructions.
    assert chosen == TrainDevice("cpu", "bf16" if cpu_bf16_pays() else "fp32")
    assert chosen.autocast_dtype == (torch.bfloat16 if cpu_bf16_pays() else None)
    assert not chosen.scaled


def test_the_cpu_trains_in_bf16_only_with_amx_bf16_tiles() -> None:
    sapphire_rapids = frozenset({"avx2", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16"})
    zen4 = frozenset({"avx2", "avx512f", "avx512_bf16"})  # bf16 instructions, no AMX
    assert cpu_bf16_pays(sapphire_rapids)
    assert not cpu_bf16_pays(zen4)  # measured slower than fp32 (bench/train.py --number-types)
    assert not cpu_bf16_pays(frozenset({"avx2"}))
    assert not cpu_bf16_pays(frozenset())  # macOS: no /proc/cpuinfo


def test_number_types() -> None:
    assert TrainDevice("cuda", "fp16").scaled
    assert TrainDevice("cuda", "fp16").autocast_dtype == torch.float16
    assert not TrainDevice("cuda", "bf16").scaled
    assert TrainDevice("mps", "fp32").autocast_dtype is None


@pytest.mark.parametrize("device", ["cuda", "mps"])
def test_a_missing_device_is_a_clear_error(device: str) -> None:
    if available(device):  # type: ignore[arg-type]
        pytest.skip(f"this machine has {device}")
    with pytest.raises(DeviceUnavailable) as missing:
        choose_device(device)  # type: ignore[arg-type]
    assert f"ML_SERVICE_TRAIN_DEVICE={device}" in missing.value.detail
    assert missing.value.status_code == 503
    check_device("auto")
    check_device("cpu")
    # A worker without the device fails its job with the same sentence.
    assert failure_message(missing.value) == f"Training failed: {missing.value.detail}"


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
async def test_a_job_for_a_missing_device_is_refused_before_queueing(
    make_client: AppFactory,
) -> None:
    job_id = str(uuid.uuid4())
    body = {"jobId": job_id, "samples": sample_json(make_samples(2))}
    async with make_client(train_device="cuda") as client:
        refused = await client.post("/training/jobs", json=body)
        assert refused.status_code == 503, refused.text
        error = refused.json()
        assert error["error"] == "train_device_unavailable" and error["device"] == "cuda"
        assert "no CUDA device" in error["detail"]
        assert (await client.get(f"/training/jobs/{job_id}")).status_code == 404
