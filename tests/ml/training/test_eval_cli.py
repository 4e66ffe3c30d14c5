"""`convassist eval`, run as a person runs it."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from convassist.ml.training.dataset import write_samples
from tests.ml.training.conftest import TrainedAdapter, make_samples
from tests.support.services import clean_env


def _eval(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`convassist eval ARGS` in a fresh data dir, with a terminal wide enough for the table."""
    return subprocess.run(
        [sys.executable, "-m", "convassist", "eval", *args],
        env=clean_env(CONVASSIST_DATA_DIR=str(tmp_path / "data"), COLUMNS="120"),
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_eval_compares_the_base_model_and_an_adapter(
    trained_adapter: TrainedAdapter, tmp_path: Path
) -> None:
    samples = tmp_path / "samples.jsonl"
    write_samples(samples, make_samples(10, seed=5))
    result = _eval(
        tmp_path,
        "--samples",
        str(samples),
        "--adapter",
        str(trained_adapter.path),
        "--holdout-fraction",
        "0.2",
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "Held-out replies (2 conversations)" in out
    base = re.search(r"smollm2-135m-instruct\s*│\s*6\s*│\s*\d+\s*│\s*([\d.]+)", out)
    tuned = re.search(r"\+ adapter\.gguf\s*│\s*6\s*│\s*\d+\s*│\s*([\d.]+)", out)
    assert base and tuned, out
    assert float(tuned.group(1)) < float(base.group(1))  # the adapter learnt this voice
    assert re.search(r"-\d+\.\d %", out)


def test_eval_explains_a_missing_adapter(tmp_path: Path) -> None:
    samples = tmp_path / "samples.jsonl"
    write_samples(samples, make_samples(3))
    result = _eval(tmp_path, "--samples", str(samples), "--adapter", "lora-missing")
    assert result.returncode == 1
    assert "No adapter 'lora-missing'" in result.stderr


def test_eval_names_the_line_that_is_not_a_sample(tmp_path: Path) -> None:
    samples = tmp_path / "samples.jsonl"
    write_samples(samples, make_samples(2))
    good = samples.read_text()
    line = len(good.splitlines()) + 1
    for bad, why in (
        ('{"inputContext": "Them: secret plans\\nMe:", "completion": "ok"}', "no 'prompt' key"),
        ("not json at all", "not JSON"),
        ('["Them: hi\\nMe:", "ok"]', "not a JSON object"),
        (
            '{"prompt": "Them: hi\\nMe:", "completion": "ok", "quality": "high"}',
            "a field of the wrong type",
        ),
    ):
        samples.write_text(good + bad + "\n")
        result = _eval(tmp_path, "--samples", str(samples))
        assert result.returncode == 1, result.stdout
        assert f"line {line}: not a training sample ({why})" in result.stderr, result.stderr
        assert "Traceback" not in result.stderr and "secret" not in result.stderr
