#!/usr/bin/env bash
# Install the Conversation Assistant sync agent on this Mac and connect it to a server:
#
#   macos/install.sh https://assistant.example.com
#
# 1. creates a Python virtual environment (default: ~/Library/Application Support/convassist/
#    agent-venv; override with CONVASSIST_AGENT_VENV) and installs this checkout with the
#    [macos] extra (menu bar app) into it;
# 2. registers this Mac with the server: the owner approves the 6-digit code shown here on the
#    server's Devices page; the token goes to the macOS Keychain;
# 3. installs and starts the LaunchAgent (starts at login, logs to ~/Library/Logs/convassist/).
#
# Python 3.11+ is required (python3 on PATH, or set PYTHON=/path/to/python3).
set -euo pipefail

usage() {
    echo "usage: $0 SERVER_URL    e.g. $0 https://assistant.example.com" >&2
    exit 64
}

[[ $# -eq 1 && $1 != -* ]] || usage
server_url=$1
repo_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv=${CONVASSIST_AGENT_VENV:-"$HOME/Library/Application Support/convassist/agent-venv"}
python=${PYTHON:-python3}

if [[ $(uname -s) != Darwin ]]; then
    echo "This installer is for macOS. Elsewhere, see docs/agent.md." >&2
    exit 69
fi
if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    echo "Python 3.11 or newer is required: install it (e.g. brew install python@3.12)" \
        "or set PYTHON=/path/to/python3." >&2
    exit 69
fi

if [[ ! -x "$venv/bin/python" ]]; then
    echo "Creating the agent's Python environment in $venv"
    mkdir -p "$(dirname "$venv")"
    "$python" -m venv "$venv"
fi
echo "Installing Conversation Assistant from $repo_dir"
"$venv/bin/python" -m pip install --quiet --upgrade pip
"$venv/bin/python" -m pip install --quiet "$repo_dir[macos]"

convassist=("$venv/bin/python" -m convassist)
"${convassist[@]}" agent register --server "$server_url"
"${convassist[@]}" agent install --server "$server_url"

echo
echo "Done. Check on it with: \"$venv/bin/python\" -m convassist agent status"
echo "Menu bar app (optional): \"$venv/bin/python\" -m convassist agent menubar"
