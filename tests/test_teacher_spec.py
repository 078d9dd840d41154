from __future__ import annotations

import pytest

from amr_dspy.errors import TeacherSpecError
from amr_dspy.teacher import TeacherSpec


def test_default_is_the_embedded_half_billion_model(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AMR_DSPY_TEACHER", raising=False)
    spec = TeacherSpec.parse(None)
    assert (spec.kind, spec.model) == ("local", "0.5b")
    assert spec.name == "qwen2.5-coder-0.5b-instruct-q4_k_m"
    assert spec.slug == "local-0.5b"


def test_environment_variable_selects_the_teacher(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AMR_DSPY_TEACHER", "local:1.5b")
    assert TeacherSpec.parse(None).model == "1.5b"


@pytest.mark.parametrize(
    ("text", "model"),
    [
        ("openai/gpt-4o-mini", "openai/gpt-4o-mini"),
        ("hosted_vllm/Qwen/Qwen2.5-Coder-7B-Instruct", "hosted_vllm/Qwen/Qwen2.5-Coder-7B-Instruct"),
        ("ollama_chat/qwen2.5-coder:7b", "ollama_chat/qwen2.5-coder:7b"),
    ],
)
def test_litellm_model_strings_are_remote_teachers(text: str, model: str) -> None:
    spec = TeacherSpec.parse(text, api_base="http://127.0.0.1:9/v1", api_key="secret")
    assert spec.kind == "remote" and spec.model == model
    assert spec.api_base == "http://127.0.0.1:9/v1"
    assert "secret" not in repr(spec)  # the key never shows in logs or manifests
    lm = spec.make_lm()
    assert lm.model == model and lm.kwargs["temperature"] == 0.0


def test_remote_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AMR_DSPY_API_BASE", "http://127.0.0.1:8000/v1")
    monkeypatch.setenv("AMR_DSPY_API_KEY", "k")
    spec = TeacherSpec.parse("openai/m")
    assert spec.api_base == "http://127.0.0.1:8000/v1"
    assert spec.api_key is not None and spec.api_key.get_secret_value() == "k"


@pytest.mark.parametrize("text", ["local:7b", "gpt-4o", "notaprovider/model", "openai/", "open ai/x", "local:"])
def test_malformed_specs_get_one_line_listing_accepted_forms(text: str) -> None:
    if text == "local:":  # an empty key means the default, not an error
        assert TeacherSpec.parse(text).model == "0.5b"
        return
    with pytest.raises(TeacherSpecError) as info:
        TeacherSpec.parse(text)
    message = str(info.value)
    assert "\n" not in message and repr(text.strip()) in message
    assert "local:1.5b" in message and "<provider>/<model>" in message


def test_local_lm_talks_openai_protocol_to_the_given_endpoint() -> None:
    lm = TeacherSpec.parse("local", max_tokens=64, cache=False).make_lm(api_base="http://127.0.0.1:5/v1")
    assert lm.model == "hosted_vllm/qwen2.5-coder-0.5b-instruct-q4_k_m"
    assert lm.kwargs["max_tokens"] == 64 and lm.cache is False


def test_openai_compatible_servers_receive_max_tokens_on_the_wire() -> None:
    # LiteLLM alone sends only max_completion_tokens, which llama.cpp's server ignores (runaway answers).
    from tests.fake_openai_server import FakeOpenAI

    with FakeOpenAI() as server:
        TeacherSpec.parse("local", max_tokens=77, cache=False).make_lm(api_base=server.api_base)("say hi")
        TeacherSpec.parse("openai/my-model", api_base=server.api_base, max_tokens=33, cache=False).make_lm()("hi")
    assert [r["max_tokens"] for r in server.requests] == [77, 33]


def test_local_teachers_never_get_json_constrained_decoding() -> None:
    import dspy

    local = TeacherSpec.parse("local", adapter="json").make_adapter()
    assert isinstance(local, dspy.ChatAdapter) and not isinstance(local, dspy.JSONAdapter)
    assert local.use_json_adapter_fallback is False
    remote = TeacherSpec.parse("openai/gpt-4o-mini").make_adapter()
    assert remote.use_json_adapter_fallback is True
    assert isinstance(TeacherSpec.parse("openai/gpt-4o-mini", adapter="json").make_adapter(), dspy.JSONAdapter)
