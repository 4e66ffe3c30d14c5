"""Conversation Assistant: iMessage reply suggestions in your own voice, self-hosted."""

__version__ = "0.1.0"
