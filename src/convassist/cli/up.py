"""`convassist up`: which components run, on which ports, with which environment."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Mapping

from pydantic import ValidationError

from convassist.cli.common import console, fail, port_problem
from convassist.cli.supervisor import Component, Supervisor
from convassist.core.settings import ServerSettings
from convassist.ml.settings import MLSettings

WILDCARD_HOSTS = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}


def components(
    server: ServerSettings, ml: MLSettings, *, port: int, ml_port: int
) -> list[Component]:
    python = sys.executable
    parts = [
        Component("ml", (python, "-m", "convassist", "ml", "--port", str(ml_port)), "magenta"),
        Component("server", (python, "-m", "convassist", "server", "--port", str(port)), "cyan"),
    ]
    if ml.use_redis:
        parts.append(Component("worker", (python, "-m", "convassist", "worker"), "yellow"))
    return parts


def url_host(host: str) -> str:
    """The host to reach a service bound to `host` on this machine, as a URL writes it."""
    host = WILDCARD_HOSTS.get(host, host)
    return f"[{host}]" if ":" in host else host


def child_environment(
    environ: Mapping[str, str],
    server: ServerSettings,
    ml: MLSettings,
    *,
    ml_port: int,
    terminal: bool,
) -> dict[str, str]:
    """The children's environment: console logs for a terminal, the server pointed at the ML port.

    The children's output is a pipe, so on their own they would log JSON; what the person
    configured (`CONVASSIST_LOG_FORMAT`, `ML_SERVICE_URL`, in the environment or `.env`) wins.
    """
    env = dict(environ)
    if terminal and "log_format" not in server.model_fields_set:
        env["CONVASSIST_LOG_FORMAT"] = "console"
    if "ml_service_url" not in server.model_fields_set:
        env["ML_SERVICE_URL"] = f"http://{url_host(ml.host)}:{ml_port}"
    return env


def busy_ports(server: ServerSettings, ml: MLSettings, *, port: int, ml_port: int) -> list[str]:
    """One line per port `up` could not listen on, naming the option that changes it."""
    problems = []
    for what, host, number, option in (
        ("The server", server.host, port, "--port"),
        ("The ML service", ml.host, ml_port, "--ml-port"),
    ):
        problem = port_problem(host, number)
        if problem:
            problems.append(
                f"{what} cannot listen on port {number} of {host}: {problem}. "
                f"Choose another port with `convassist up {option} {number + 1}`."
            )
    return problems


def run_system(port: int | None = None, ml_port: int | None = None) -> int:
    try:
        server, ml = ServerSettings(), MLSettings()
    except ValidationError as exc:
        fail(f"Invalid configuration: {exc}")
    port = server.port if port is None else port
    ml_port = ml.port if ml_port is None else ml_port
    if port == ml_port:
        fail(f"The server and the ML service cannot share port {port}: choose another one.")
    problems = busy_ports(server, ml, port=port, ml_port=ml_port)
    if problems:
        fail("\n".join(problems))
    parts = components(server, ml, port=port, ml_port=ml_port)
    env = child_environment(os.environ, server, ml, ml_port=ml_port, terminal=sys.stderr.isatty())
    names = ", ".join(p.name for p in parts)
    console.print(f"Starting {names}. Press Ctrl-C to stop.", highlight=False)
    return asyncio.run(Supervisor(parts, env=env).run())
