"""How suggestions are asked for: the server's request defaults, which the training job's
held-out measure of suggestions (`ml/training/quality`) uses too, so that it measures what
the owner is offered."""

from __future__ import annotations

CANDIDATES = 3
"""Suggestions the server asks for a message (the Suggester's and the web page's)."""
MAX_TOKENS = 64
TEMPERATURE = 0.7
TOP_P = 0.95
"""The ML service's nucleus mass (the server does not set it)."""
