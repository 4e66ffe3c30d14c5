"""Inference backends: the protocol (`base`), llama.cpp in process, OpenAI-compatible."""
