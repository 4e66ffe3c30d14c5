#!/usr/bin/env bash
# Stop and remove the Conversation Assistant LaunchAgent.
#
#   macos/uninstall.sh            keep the agent's state, token and Python environment
#   macos/uninstall.sh --purge    also delete them (the server keeps what was synced)
set -euo pipefail

purge=0
case ${1:-} in
    "") ;;
    --purge) purge=1 ;;
    *)
        echo "usage: $0 [--purge]" >&2
        exit 64
        ;;
esac
venv=${CONVASSIST_AGENT_VENV:-"$HOME/Library/Application Support/convassist/agent-venv"}

if [[ ! -x "$venv/bin/python" ]]; then
    echo "No agent environment at $venv: nothing to uninstall." >&2
    exit 0
fi
if [[ $purge -eq 1 ]]; then
    "$venv/bin/python" -m convassist agent uninstall --purge
    rm -rf "$venv"
    echo "Removed $venv"
else
    "$venv/bin/python" -m convassist agent uninstall
fi
