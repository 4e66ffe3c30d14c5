"""Probe child entry points that really die (run in a spawned child by `probe_decode`)."""

from __future__ import annotations

import os
import signal
import time

from convassist.ml.models.native import ProbeRequest, decode_few_tokens


def segfault_with_extra_bufts(request: ProbeRequest) -> None:
    """As llama.cpp's AMX repack does: SIGSEGV with extra buffer types on; the real probe
    (the real model decoding) with them off."""
    if request.config.use_extra_bufts:
        os.kill(os.getpid(), signal.SIGSEGV)
    decode_few_tokens(request)


def segfault(request: ProbeRequest) -> None:
    """Dies by SIGSEGV whatever the configuration."""
    os.kill(os.getpid(), signal.SIGSEGV)


def hang(request: ProbeRequest) -> None:
    time.sleep(3600)
