import pytest

from pie_retriever.encoders.models import MODEL_ALIASES, resolve_model
from pie_retriever.encoders.prompts import PIE_PROMPT, PROMPTS, apply_prompt, resolve_prompt
from pie_retriever.errors import PromptError, UnknownModelError


def test_named_prompts():
    assert resolve_prompt("pie") == PIE_PROMPT
    assert resolve_prompt("plain") == "{instruction}"
    assert set(PROMPTS) >= {"pie", "plain"}


def test_pie_prompt_adds_final_period_like_the_paper():
    text = apply_prompt(PIE_PROMPT, "Write a poem")
    assert "\n\nWrite a poem.\n\n" in text
    assert text.endswith("the task of the given instruction is:")
    assert "\n\nIs it true?\n\n" in apply_prompt(PIE_PROMPT, "Is it true?")


def test_custom_prompt_validated():
    assert resolve_prompt("Task of: {instruction}") == "Task of: {instruction}"
    with pytest.raises(PromptError, match=r"unknown placeholder\(s\) \['task'\]"):
        resolve_prompt("Do {task} for {instruction}")
    with pytest.raises(PromptError, match="neither a built-in prompt name"):
        resolve_prompt("no placeholder here")
    with pytest.raises(PromptError, match="not a valid format string"):
        resolve_prompt("broken {instruction")


def test_literal_braces_in_custom_prompt():
    template = resolve_prompt('JSON {{"x": 1}} {instruction}')
    assert apply_prompt(template, "hi") == 'JSON {"x": 1} hi'


def test_resolve_minilm_alias():
    m = resolve_model("minilm")
    assert m.kind == "encoder" and (m.path / "config.json").is_file()
    assert m.default_pooling == "mean"


def test_resolve_local_folder_and_unknown(tmp_path):
    m = resolve_model(str(resolve_model("minilm").path))
    assert m.kind == "encoder" and m.default_pooling == "mean"  # read from 1_Pooling/config.json
    with pytest.raises(UnknownModelError, match="Unknown model spec 'no-such-model'.*minilm"):
        resolve_model("no-such-model")
    with pytest.raises(UnknownModelError, match="not in the local Hugging Face cache"):
        resolve_model("nobody/not-a-real-model-xyz")
    with pytest.raises(UnknownModelError, match="no config.json"):
        resolve_model(str(tmp_path))
    assert "minilm" in MODEL_ALIASES
