"""The adapter tests use the training tests' trained adapter (one session-wide training run)."""

from tests.ml.training.conftest import tokenizer, torch_model, trained_adapter

__all__ = ["tokenizer", "torch_model", "trained_adapter"]
