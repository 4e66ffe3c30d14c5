"""`python tests/support/llama_server.py ARGS`: llama-cpp-python's OpenAI-compatible server
(`python -m llama_cpp.server ARGS`) with its model loaded in the llama.cpp configuration
`convassist.ml.models.native` chooses for this CPU, so it cannot hit the AMX crash either."""

from __future__ import annotations

import runpy

from convassist.ml.models.native import choose_load_config, loading_with

if __name__ == "__main__":
    with loading_with(choose_load_config()):
        runpy.run_module("llama_cpp.server", run_name="__main__", alter_sys=True)
