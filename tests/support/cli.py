"""The `convassist` command run as a person runs it: a real subprocess."""

from __future__ import annotations

import subprocess
import sys

CONVASSIST = [sys.executable, "-m", "convassist"]


def set_password(
    env: dict[str, str], password: str, *, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """`convassist admin set-password --password-stdin`, the password on standard input.

    With `check`, a failure fails the test with the command's standard error.
    """
    result = subprocess.run(
        [*CONVASSIST, "admin", "set-password", "--password-stdin"],
        env=env,
        input=password + "\n",
        capture_output=True,
        text=True,
        timeout=120,
    )
    if check:
        assert result.returncode == 0, result.stderr
    return result
