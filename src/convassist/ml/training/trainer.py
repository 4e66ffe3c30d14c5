"""LoRA fine-tuning with peft on the dequantized weights of the served GGUF.

transformers loads the GGUF file itself (`gguf_file=`), dequantized to float32, so the
adapter is trained against the very weights llama.cpp serves (up to quantization). What makes
it fast on a CPU (see docs/ml-service.md, "Training speed"):

- batches of similar length (little padding, widths rounded to a multiple of 16 so that
  few distinct shapes need kernels) and contexts cut to `max_length` tokens;
- no attention mask (right padding is invisible to a causal model's real tokens);
- the output layer (49k vocabulary) runs only on the positions that carry a loss;
- bf16 autocast where the CPU has AMX's bf16 tiles (amx_bf16); on a GPU
  (CUDA or MPS) bf16 or fp16 as the device supports (`device.py`);
- LoRA on every linear layer of each block (attention and MLP) by default.

The loss of a batch is the sum over reply tokens of quality times NLL, divided by the number of
reply tokens: each token counts by its sample's quality.
"""

from __future__ import annotations

import math
import random
import re
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.nn import functional

from convassist.core.training import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_EPOCHS,
    DEFAULT_LEARNING_RATE,
    DEFAULT_LORA_LAYER_SHARE,
    DEFAULT_LORA_RANK,
    DEFAULT_TARGET_MODULES,
)
from convassist.ml.training.architectures import (
    config_overrides,
    export_rules,
    gguf_architecture,
    rules_for_model_type,
)
from convassist.ml.training.dataset import IGNORE_INDEX, Example, length_batches
from convassist.ml.training.device import TrainDeviceSetting, choose_device

PAD_MULTIPLE = 16
LAYER_NUMBER = re.compile(r"\.layers\.(\d+)\.")


class Cancelled(Exception):
    """Training was asked to stop."""


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = DEFAULT_EPOCHS
    learning_rate: float = DEFAULT_LEARNING_RATE
    rank: int = DEFAULT_LORA_RANK
    alpha: float | None = None
    seed: int = 0
    batch_size: int = DEFAULT_BATCH_SIZE
    target_modules: tuple[str, ...] = DEFAULT_TARGET_MODULES
    layers: int | None = None
    """Adapt only the top this many layers (the backward pass stops there); None = the top
    `DEFAULT_LORA_LAYER_SHARE` of them."""
    threads: int | None = None
    device: TrainDeviceSetting = "auto"
    """Where to train (`device.choose_device`); the number type follows the device."""
    warmup_fraction: float = 0.05
    max_grad_norm: float = 1.0

    @property
    def lora_alpha(self) -> float:
        return self.alpha if self.alpha is not None else 2.0 * self.rank


@dataclass(frozen=True)
class Progress:
    step: int
    total_steps: int
    epoch: int
    loss: float
    tokens_per_second: float


@dataclass
class TrainResult:
    steps: int
    tokens: int
    """Tokens processed (padding excluded), all epochs."""
    seconds: float
    final_loss: float
    device: str
    dtype: str
    losses: list[float] = field(default_factory=list)
    stopped_early: bool = False
    """Stopped at its deadline, before the planned steps were done."""
    warmed_up: tuple[int, float] = (0, 0.0)
    """Tokens and seconds at the end of the calibration's warm-up."""

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.seconds if self.seconds > 0 else 0.0

    @property
    def step_seconds(self) -> float:
        """Mean time of a step so far (0 before the first)."""
        return self.seconds / self.steps if self.steps else 0.0

    def calibration(self) -> Calibration:
        """Throughput after the warm-up steps; of every step when there were no more."""
        warm_up = CALIBRATION_WARMUP_STEPS if self.steps > CALIBRATION_WARMUP_STEPS else 0
        tokens, seconds = self.warmed_up if warm_up else (0, 0.0)
        return Calibration(
            self.steps - warm_up,
            self.tokens - tokens,
            self.seconds - seconds,
            self.device,
            self.dtype,
        )


def load_model(model_path: Path) -> Any:
    """The GGUF model in transformers, dequantized to float32 (a `…ForCausalLM` of one of the
    `TRAINABLE` architectures; ArchitectureNotTrainable for any other)."""
    from transformers import AutoModelForCausalLM

    architecture = gguf_architecture(model_path)
    rules = export_rules(architecture)
    model = AutoModelForCausalLM.from_pretrained(
        str(model_path.parent),
        gguf_file=model_path.name,
        dtype=torch.float32,
        **config_overrides(model_path),
    )
    if rules_for_model_type(str(model.config.model_type)) is not rules:
        raise ValueError(f"a {architecture} GGUF loaded as {model.config.model_type}")
    model.config.use_cache = False
    return model


def lora_layer_count(config: TrainConfig, total: int) -> int:
    """How many of the model's `total` layers (the top ones) the LoRA adapts."""
    top = config.layers or math.ceil(total * DEFAULT_LORA_LAYER_SHARE)
    return max(1, min(top, total))


def add_lora(model: Any, config: TrainConfig) -> Any:
    """Wrap `model` in a peft LoRA (seeded initialisation); returns the PeftModel.

    `config.target_modules` are llama names; the architecture's rules map them to its own."""
    from peft import LoraConfig, get_peft_model

    rules = rules_for_model_type(str(model.config.model_type))
    torch.manual_seed(config.seed)
    total = int(model.config.num_hidden_layers)
    top = lora_layer_count(config, total)
    lora = LoraConfig(
        layers_to_transform=list(range(total - top, total)) if top < total else None,
        r=config.rank,
        # peft scales by lora_alpha / r whatever the number type; its stub says int.
        lora_alpha=config.lora_alpha,  # type: ignore[arg-type]
        target_modules=rules.target_modules(config.target_modules),
        lora_dropout=0.0,
        bias="none",
    )
    with warnings.catch_warnings():  # peft calls a transformers method deprecated in 5.x
        warnings.simplefilter("ignore", FutureWarning)
        return get_peft_model(model, lora)


def collate(
    batch: Sequence[Example], pad_id: int, multiple: int = PAD_MULTIPLE
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-padded `input_ids`, `labels` (-100 on padding) and per-example weights.

    Widths are rounded up to a multiple of `multiple`: every new tensor shape costs oneDNN
    a kernel set-up (up to seconds for bf16), so few distinct shapes beat minimal padding.
    """
    width = -(-max(len(example) for example in batch) // multiple) * multiple
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    labels = torch.full((len(batch), width), IGNORE_INDEX, dtype=torch.long)
    for row, example in enumerate(batch):
        ids[row, : len(example)] = torch.tensor(example.input_ids)
        labels[row, : len(example)] = torch.tensor(example.labels)
    weights = torch.tensor([example.weight for example in batch], dtype=torch.float32)
    return ids, labels, weights


def token_nll(causal_lm: Any, input_ids: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """NLL of every labelled token (position t predicts token t+1), flattened in row order.

    Runs the transformer on all positions but the output layer only where there is a label,
    then what the model's own forward does to the logits: Gemma's final soft-capping.
    """
    hidden = causal_lm.model(input_ids=input_ids).last_hidden_state[:, :-1]
    targets = labels[:, 1:]
    mask = targets != IGNORE_INDEX
    logits = causal_lm.lm_head(hidden[mask]).float()
    cap = getattr(causal_lm.config, "final_logit_softcapping", None)
    if cap:
        logits = torch.tanh(logits / cap) * cap
    return functional.cross_entropy(logits, targets[mask], reduction="none")


def weighted_loss(
    causal_lm: Any, input_ids: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor
) -> torch.Tensor:
    nll = token_nll(causal_lm, input_ids, labels)
    mask = labels[:, 1:] != IGNORE_INDEX
    token_weights = weights[:, None].expand_as(mask)[mask]
    return (nll * token_weights).sum() / max(int(mask.sum()), 1)


class Schedule:
    """Linear warm-up, then linear decay to zero at `total_steps` (which a plan may change
    once training has begun: the decay then ends at the new total)."""

    def __init__(self, total_steps: int, warmup_fraction: float) -> None:
        self.total_steps = total_steps
        self.warmup = max(1, round(total_steps * warmup_fraction))

    def __call__(self, step: int) -> float:
        if step < self.warmup:
            return (step + 1) / self.warmup
        return max(0.0, (self.total_steps - step) / max(1, self.total_steps - self.warmup))


CALIBRATION_WARMUP_STEPS = 2
"""Steps left out of the calibration: the first bf16/oneDNN steps set up their kernels."""
CALIBRATION_STEPS = 4


@dataclass(frozen=True)
class Calibration:
    """Throughput of the first training steps after the warm-up (all of them if too few)."""

    steps: int
    tokens: int
    seconds: float
    device: str
    dtype: str

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.seconds if self.seconds > 0 else 0.0


@dataclass(frozen=True)
class Continuation:
    """What training does after its calibration: `epochs` passes over `examples`, with the
    LoRA of the top `layers` layers still learning (those below are frozen as they are).
    `examples[i]` is the sample of the calibrated `examples[i]` (perhaps cut shorter): the
    calibration steps count as part of the first pass, which trains the rest."""

    examples: Sequence[Example]
    epochs: int
    layers: int


def steps_for(examples: Sequence[Example], batch_size: int, epochs: int) -> int:
    return math.ceil(len(examples) / batch_size) * epochs


def _passes(examples: Sequence[Example], epochs: int, done: set[int]) -> list[Sequence[Example]]:
    """The examples of each pass: the first without those of `done` (their indices)."""
    rest = [example for i, example in enumerate(examples) if i not in done]
    return [rest, *([examples] * (epochs - 1))]


def train_top_layers(peft_model: Any, layers: int) -> None:
    """Freeze the LoRA weights below the top `layers` layers: the backward pass stops there."""
    total = int(peft_model.get_base_model().config.num_hidden_layers)
    for name, param in peft_model.named_parameters():
        found = LAYER_NUMBER.search(name)
        if "lora_" in name and found and int(found.group(1)) < total - layers:
            param.requires_grad_(False)


def train(
    peft_model: Any,
    examples: Sequence[Example],
    config: TrainConfig,
    *,
    pad_id: int,
    on_progress: Callable[[Progress], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    calibrate: Callable[[Calibration], Continuation] | None = None,
    deadline: float | None = None,
) -> TrainResult:
    """Fit the LoRA weights of `peft_model` on `examples`; raises Cancelled if asked to stop.

    Trains on `config.device` (the model moves there and back to the CPU at the end). With
    `calibrate`, the first steps (of `config.epochs` passes over `examples`) measure the
    throughput and `calibrate`'s answer says how training goes on; the learning rate then
    decays to zero at the new end. When the next step would end after `deadline` (a
    `time.monotonic()` value), training stops there (`TrainResult.stopped_early`), but not
    before calibrating on one step after the warm-up."""
    if not examples:
        raise ValueError("no training examples")
    if config.threads:
        torch.set_num_threads(config.threads)
    device = choose_device(config.device)
    peft_model.to(device.type)
    rng = random.Random(config.seed)
    torch.manual_seed(config.seed)
    causal_lm = peft_model.get_base_model()
    params = [p for p in peft_model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=0.0)
    lr = Schedule(steps_for(examples, config.batch_size, config.epochs), config.warmup_fraction)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr)
    scaler = torch.amp.GradScaler(device.type, enabled=device.scaled)
    peft_model.train()
    result = TrainResult(
        steps=0, tokens=0, seconds=0.0, final_loss=math.nan, device=device.type, dtype=device.dtype
    )
    started = time.perf_counter()

    position = {id(example): i for i, example in enumerate(examples)}
    done: set[int] = set()

    def run(passes: Sequence[Sequence[Example]], limit: int | None = None, least: int = 0) -> None:
        """Train on `passes` (up to `limit` steps), at least `least` steps whatever the time."""
        for epoch, batch in _batches(passes, config.batch_size, rng):
            if (limit is not None and result.steps >= limit) or result.stopped_early:
                return
            if should_stop is not None and should_stop():
                raise Cancelled
            late = deadline is not None and time.monotonic() + result.step_seconds > deadline
            if late and result.steps >= least:
                result.stopped_early = True
                return
            ids, labels, weights = (t.to(device.type) for t in collate(batch, pad_id))
            with torch.autocast(
                device.type,
                dtype=device.autocast_dtype,
                enabled=device.autocast_dtype is not None,
            ):
                loss = weighted_loss(causal_lm, ids, labels, weights)
            torch.autograd.backward(scaler.scale(loss))
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm)
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            result.steps += 1
            done.update(position.get(id(example), -1) for example in batch)
            result.tokens += sum(len(example) for example in batch)
            result.losses.append(float(loss.detach()))
            result.seconds = time.perf_counter() - started
            if result.steps == CALIBRATION_WARMUP_STEPS:
                result.warmed_up = (result.tokens, result.seconds)
            if on_progress is not None:
                on_progress(
                    Progress(
                        step=result.steps,
                        total_steps=lr.total_steps,
                        epoch=epoch,
                        loss=result.losses[-1],
                        tokens_per_second=result.tokens_per_second,
                    )
                )

    first = [examples] * config.epochs
    if calibrate is None:
        run(first)
    else:
        # A step after the warm-up at least, however late: the plan needs a measured speed.
        run(first, CALIBRATION_WARMUP_STEPS + CALIBRATION_STEPS, CALIBRATION_WARMUP_STEPS + 1)
        then = calibrate(result.calibration())
        train_top_layers(peft_model, then.layers)
        passes = _passes(then.examples, then.epochs, done)
        lr.total_steps = result.steps + sum(steps_for(p, config.batch_size, 1) for p in passes)
        run(passes)
    peft_model.eval()
    peft_model.to("cpu")
    tail = result.losses[-max(1, len(result.losses) // 10) :]
    result.final_loss = sum(tail) / len(tail)
    return result


def _batches(
    passes: Sequence[Sequence[Example]], batch_size: int, rng: random.Random
) -> Iterator[tuple[int, list[Example]]]:
    """(epoch, batch) for each pass, each in a new random order (`length_batches`)."""
    for epoch, examples in enumerate(passes, start=1):
        if examples:
            yield from ((epoch, batch) for batch in length_batches(examples, batch_size, rng))
