"""Adapters: the stored LoRA adapters and which one is served (`/adapters`)."""
