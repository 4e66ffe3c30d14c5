"""llama.cpp's load configuration: AMX avoided, every load through `load_llama`, and a
native crash at start-up contained (with children that really die by SIGSEGV)."""

from __future__ import annotations

import ast
from pathlib import Path

import httpx
import pytest
from structlog.testing import capture_logs

from convassist.core.cpu import cpu_flags
from convassist.ml.app import create_app
from convassist.ml.backends.base import Sampling
from convassist.ml.backends.llama import LlamaBackend
from convassist.ml.errors import ModelLoadError
from convassist.ml.generation.manager import LLMManager
from convassist.ml.models.native import (
    ProbeRequest,
    choose_load_config,
    has_amx,
    load_llama,
    named_config,
    probe_decode,
    start_up_check,
)
from tests.ml.conftest import PROMPT, ml_settings
from tests.ml.models import crashing_probes

REPO = Path(__file__).resolve().parents[3]
# A Sapphire Rapids Xeon's flags line (abridged), as in the crash report.
AMX_CPUINFO = (
    "processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) Platinum 8481C\n"
    "flags\t\t: fpu vme sse sse2 avx avx2 avx512f avx512_bf16 amx_bf16 amx_tile amx_int8\n\n"
)
EPYC_CPUINFO = (
    "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 9B14\n"
    "flags\t\t: fpu vme sse sse2 avx avx2 avx512f avx512_bf16\n\n"
)


def test_cpu_flags_come_from_proc_cpuinfo_and_are_empty_without_it(tmp_path: Path) -> None:
    amx = tmp_path / "amx"
    amx.write_text(AMX_CPUINFO)
    epyc = tmp_path / "epyc"
    epyc.write_text(EPYC_CPUINFO)
    assert {"amx_tile", "amx_int8", "amx_bf16", "avx2"} <= cpu_flags(amx)
    assert has_amx(cpu_flags(amx))
    assert "avx2" in cpu_flags(epyc) and not has_amx(cpu_flags(epyc))
    assert cpu_flags(tmp_path / "absent") == frozenset()  # macOS: no /proc, no AMX
    assert not has_amx(frozenset())


def test_a_cpu_with_amx_loads_without_extra_buffer_types(tmp_path: Path) -> None:
    amx = tmp_path / "cpuinfo"
    amx.write_text(AMX_CPUINFO)
    config = choose_load_config(cpu_flags(amx), "auto")
    assert config.name == "safe" and config.use_extra_bufts is False
    assert "amx_bf16, amx_int8, amx_tile" in config.reason and "#20824" in config.reason
    for flag in ("amx_tile", "amx_int8", "amx_bf16"):  # any one of them is enough
        assert not choose_load_config(frozenset({"avx2", flag}), "auto").use_extra_bufts


def test_a_cpu_without_amx_keeps_extra_buffer_types_and_the_setting_overrides() -> None:
    epyc = frozenset({"avx2", "avx512f"})
    assert choose_load_config(epyc, "auto") == named_config("default", "no Intel AMX on this CPU")
    assert choose_load_config(epyc, "off").use_extra_bufts is False
    assert choose_load_config(frozenset({"amx_tile"}), "on").use_extra_bufts is True


def test_the_setting_is_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ML_SERVICE_LLAMA_EXTRA_BUFTS", "off")
    assert choose_load_config(frozenset()).name == "safe"
    monkeypatch.setenv("ML_SERVICE_LLAMA_EXTRA_BUFTS", "on")
    assert choose_load_config(frozenset({"amx_tile"})).name == "default"


@pytest.mark.parametrize("name", ["default", "safe"])
def test_load_llama_loads_with_the_configuration(
    default_model_path: Path, name: str, capfd: pytest.CaptureFixture[str]
) -> None:
    import llama_cpp.llama_cpp as lib

    config = named_config(name, "test")  # type: ignore[arg-type]
    if config.use_extra_bufts and has_amx(cpu_flags()):
        pytest.skip("extra buffer types crash llama.cpp on this AMX CPU (see the next test)")
    capfd.readouterr()
    llm = load_llama(default_model_path, config, n_ctx=128, n_threads=1, verbose=True)
    try:
        assert bool(llm.model_params.use_extra_bufts) is config.use_extra_bufts
        tokens = llm.tokenize(b"Them: hi\nMe:", add_bos=True)
        llm.eval(tokens)  # it really decodes
        assert llm.n_tokens == len(tokens)
    finally:
        llm.close()
    # llama.cpp itself offers the weights its repack buffer type (CPU_REPACK; CPU_AMX on an
    # AMX CPU) only with extra buffer types on: its load log says so.
    assert ("CPU_REPACK" in capfd.readouterr().err) is config.use_extra_bufts
    assert lib.llama_model_default_params().use_extra_bufts is True  # llama.cpp's own, restored


@pytest.mark.skipif(not has_amx(cpu_flags()), reason="needs a CPU with Intel AMX")
def test_on_an_amx_cpu_the_real_crash_is_caught_and_the_safe_configuration_served(
    default_model_path: Path,
) -> None:
    """llama.cpp's AMX repack really dies here (#20824): the probe sees it, not the service."""
    default = ProbeRequest(str(default_model_path), named_config("default", "test"), 0, 1)
    outcome = probe_decode(default)
    assert outcome.crashed and outcome.signal is not None
    status = start_up_check(default_model_path, gpu_layers=0, threads=1, setting="on")
    assert status.config.name == "safe" and status.probe == f"fell back after {outcome.cause}"


def _llama_constructions(path: Path) -> list[int]:
    """Lines of `path` that name llama-cpp-python's `Llama` class or start its server."""
    lines = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if (isinstance(node, ast.Attribute) and node.attr == "Llama") or (
            isinstance(node, ast.Name) and node.id == "Llama"
        ):
            lines.append(node.lineno)
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("llama_cpp"):
            if any(alias.name == "Llama" for alias in node.names):
                lines.append(node.lineno)
        elif isinstance(node, ast.Constant) and node.value == "llama_cpp.server":
            lines.append(node.lineno)
    return lines


def test_every_llama_cpp_load_goes_through_load_llama() -> None:
    allowed = {
        REPO / "src/convassist/ml/models/native.py",  # load_llama itself
        REPO / "tests/support/llama_server.py",  # llama-cpp-python's server, under the config
        Path(__file__),  # this check
    }
    files = [p for d in ("src", "bench", "tests") for p in (REPO / d).rglob("*.py")]
    assert len(files) > 50
    found = {
        f"{path.relative_to(REPO)}:{line}"
        for path in files
        if path not in allowed
        for line in _llama_constructions(path)
    }
    assert found == set()
    assert _llama_constructions(REPO / "src/convassist/ml/models/native.py")  # the check sees them


def test_the_probe_decodes_with_the_real_model_in_a_child(default_model_path: Path) -> None:
    request = ProbeRequest(str(default_model_path), choose_load_config(), 0, 1)
    outcome = probe_decode(request)
    assert outcome.ok and not outcome.crashed and outcome.signal is None
    assert outcome.seconds < 60  # a second or two on an idle machine


def test_the_probe_names_a_childs_fatal_signal(default_model_path: Path) -> None:
    request = ProbeRequest(str(default_model_path), choose_load_config(), 0, 1)
    outcome = probe_decode(request, entry=crashing_probes.segfault)
    assert outcome.crashed and outcome.signal == "SIGSEGV" and outcome.cause == "SIGSEGV"


def test_a_hung_probe_is_killed_and_counts_as_a_crash(default_model_path: Path) -> None:
    request = ProbeRequest(str(default_model_path), choose_load_config(), 0, 1)
    outcome = probe_decode(request, entry=crashing_probes.hang, timeout=1.0)
    assert outcome.timed_out and outcome.crashed and "no answer within" in outcome.cause


async def test_a_crashing_default_configuration_falls_back_to_the_safe_one(
    tmp_path: Path,
) -> None:
    settings = ml_settings(tmp_path, llama_extra_bufts="on", threads=1, context_size=512)
    with capture_logs() as logs:
        backend = LlamaBackend.from_settings(
            settings, probe=crashing_probes.segfault_with_extra_bufts
        )
    manager = LLMManager(backend)
    try:
        assert backend.native.config.name == "safe"
        assert backend.native.probe == "fell back after SIGSEGV"
        assert bool(backend._llm.model_params.use_extra_bufts) is False  # served as probed
        crashed = [e for e in logs if e["event"] == "llama_probe_crashed"]
        assert crashed and crashed[0]["cause"] == "SIGSEGV" and crashed[0]["config"] == "default"
        fell_back = [e for e in logs if e["event"] == "llama_probe" and e["config"] == "safe"]
        assert fell_back and fell_back[0]["probe"] == "fell back after SIGSEGV"
        done = backend.complete(PROMPT, Sampling(4, 0.0, 1.0, (), 0))
        assert done.completion_tokens > 0  # and it serves
        app = create_app(settings, llm=manager)
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app),
                base_url="http://ml",
                headers={"Authorization": f"Bearer {settings.ml_token()}"},
            ) as client,
        ):
            health = (await client.get("/health")).json()
        assert health["llama"] == {
            "config": "safe",
            "extra_bufts": False,
            "reason": "the default configuration died (SIGSEGV) at start-up",
            "probe": "fell back after SIGSEGV",
        }
    finally:
        manager.close()


def test_when_the_safe_configuration_crashes_too_the_service_refuses_to_start(
    tmp_path: Path,
) -> None:
    settings = ml_settings(tmp_path, llama_extra_bufts="on", threads=1)
    with (
        capture_logs() as logs,
        pytest.raises(ModelLoadError, match=r"crashed \(SIGSEGV, then SIGSEGV") as raised,
    ):
        LlamaBackend.from_settings(settings, probe=crashing_probes.segfault)
    assert "\n" not in str(raised.value)
    crashed = [(e["config"], e["cause"]) for e in logs if e["event"] == "llama_probe_crashed"]
    assert crashed == [("default", "SIGSEGV"), ("safe", "SIGSEGV")]
    off = ml_settings(tmp_path, llama_extra_bufts="off", threads=1)
    with pytest.raises(ModelLoadError, match=r"crashed \(SIGSEGV\).*safe configuration"):
        LlamaBackend.from_settings(off, probe=crashing_probes.segfault)


async def test_health_reports_the_configuration_and_a_passed_probe(
    client: httpx.AsyncClient,
) -> None:
    health = (await client.get("/health")).json()
    chosen = choose_load_config()
    assert health["llama"] == {
        "config": chosen.name,
        "extra_bufts": chosen.use_extra_bufts,
        "reason": chosen.reason,
        "probe": "ok",
    }
