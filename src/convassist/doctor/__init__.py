"""`convassist doctor`: checks of an installation, each a small function returning an `Outcome`.

`CHECKS` is the order they run and are shown in.
"""

from __future__ import annotations

from convassist.doctor.agent import check_agent_server, check_agent_token, check_chat_db
from convassist.doctor.local import (
    check_cpu,
    check_disk,
    check_generation,
    check_model,
    check_permissions,
    check_python,
)
from convassist.doctor.result import Check
from convassist.doctor.services import (
    check_database,
    check_ml_service,
    check_owner,
    check_redis,
)

CHECKS = (
    Check("python", "Python", check_python),
    Check("cpu", "CPU and llama.cpp", check_cpu),
    Check("model", "Model file", check_model),
    Check("generation", "Generation", check_generation),
    Check("database", "Database", check_database),
    Check("owner", "Owner password", check_owner),
    Check("redis", "Redis", check_redis),
    Check("ml_service", "ML service", check_ml_service),
    Check("disk", "Free disk", check_disk),
    Check("permissions", "Data-dir permissions", check_permissions),
    Check("agent_chat_db", "Agent: chat.db", check_chat_db),
    Check("agent_token", "Agent: token", check_agent_token),
    Check("agent_server", "Agent: server", check_agent_server),
)
