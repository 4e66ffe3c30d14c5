"""`model_version`: one parser and one composer for `<model id>@<digest>[+<adapter id>]`."""

from __future__ import annotations

import pytest

from convassist.core.model_version import MalformedModelVersion, ModelVersion


def test_a_served_adapter_version_parses_into_its_parts() -> None:
    version = ModelVersion.parse("smollm2-135m-instruct@b179c9523d0e+lora-20260101")
    assert version == ModelVersion("smollm2-135m-instruct", "b179c9523d0e", "lora-20260101")
    assert str(version.base) == "smollm2-135m-instruct@b179c9523d0e"


@pytest.mark.parametrize(
    "text",
    [
        "smollm2-135m-instruct@b179c9523d0e",
        "smollm2-135m-instruct@b179c9523d0e+lora-ab12",
        "openai:qwen2.5:0.5b",
        "Qwen2.5-0.5B-Instruct-Q4_K_M+lora-x1",
    ],
)
def test_compose_is_the_inverse_of_parse(text: str) -> None:
    assert str(ModelVersion.parse(text)) == text


def test_an_adapter_is_composed_onto_the_base() -> None:
    base = ModelVersion("smollm2-135m-instruct", digest="b179c9523d0e")
    assert str(base.with_adapter("lora-7")) == "smollm2-135m-instruct@b179c9523d0e+lora-7"
    assert base.with_adapter(None) == base
    assert ModelVersion.parse("openai:gpt").digest is None


@pytest.mark.parametrize(
    "text",
    [
        "",
        "@b179c9523d0e",
        "model@",
        "model@NOTHEX000000",
        "model@abc",  # too short for a digest
        "model+",
        "model@b179c9523d0e+not-an-adapter",
        "model@b179c9523d0e+lora-1+lora-2",
        "two words",
    ],
)
def test_malformed_text_is_refused_with_what_was_expected(text: str) -> None:
    with pytest.raises(MalformedModelVersion, match="expected <model id>"):
        ModelVersion.parse(text)


def test_parts_are_checked_when_composing_too() -> None:
    with pytest.raises(MalformedModelVersion, match="adapter id"):
        ModelVersion("model", "b179c9523d0e", "lora-UPPER")
    with pytest.raises(MalformedModelVersion, match="model id"):
        ModelVersion("a@b")
