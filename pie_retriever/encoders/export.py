"""Export a model (default ``pie-minilm``) as a self-contained folder that other tools load as it is.

``format="hf"`` writes a plain Hugging Face folder with the trained artifact merged into the weights
(float32, bit for bit the weights :class:`~pie_retriever.encoders.TransformerEncoder` computes with), the
tokenizer, and a sentence-transformers configuration (``modules.json``, ``1_Pooling/config.json``, a Dense
module for a projection head, ``Normalize``, ``sentence_bert_config.json``, ``config_sentence_transformers.json``
with the prompt as named prompts when it is a plain prefix). sentence-transformers, vLLM's pooling runner
(which reads ``modules.json`` + ``1_Pooling``: no ``--pooler-config`` needed), DSPy or LlamaIndex load it, and
``resolve_model(folder)`` gives the same vectors and the same fingerprint as the in-package model. The card
``pie_export.json`` (:mod:`pie_retriever.encoders.export_card`) records base model, recipe, prompt, pooling,
fingerprint and IEB figures.

Formats are plug-ins: ``EXPORT_FORMATS`` maps a name to ``"module:function"``, called as
``function(model_spec, out_dir, **options) -> Path`` (the function writes the whole folder, card included, and
returns it). :func:`export_model` and the ``--format`` choices of ``pie-retriever export`` come from it.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Mapping

from pie_retriever._util import apply_default_permissions, check_choice, check_int, library_versions
from pie_retriever.encoders.export_card import EXPORT_CARD, EXPORT_FORMAT_NAME, EXPORT_FORMAT_VERSION, files_digest, model_card_markdown
from pie_retriever.encoders.models import DEFAULT_MODEL, MODEL_ALIASES, ResolvedModel, resolve_model, weights_fingerprint
from pie_retriever.encoders.prompts import prompt_name, resolve_prompt
from pie_retriever.errors import ConfigError

__all__ = ["EXPORT_FORMATS", "ST_POOLING_MODES", "export_hf", "export_model", "st_prompts"]

#: Export format name -> ``"module:function"`` (see the module docstring for the function's contract).
EXPORT_FORMATS: dict[str, str] = {
    "hf": "pie_retriever.encoders.export:export_hf",
    "onnx": "pie_retriever.encoders.onnx_export:export_onnx",
}

#: Project pooling -> the sentence-transformers ``1_Pooling/config.json`` flag vLLM and sentence-transformers read.
ST_POOLING_MODES: dict[str, str] = {
    "mean": "pooling_mode_mean_tokens",
    "cls": "pooling_mode_cls_token",
    "last": "pooling_mode_lasttoken",
}
_ST_FLAGS = ("pooling_mode_cls_token", "pooling_mode_mean_tokens", "pooling_mode_max_tokens",
             "pooling_mode_mean_sqrt_len_tokens", "pooling_mode_weightedmean_tokens", "pooling_mode_lasttoken")
# The classic sentence-transformers module names: read by sentence-transformers 2.x to 6.x and by vLLM.
_ST_TYPES = {
    "transformer": "sentence_transformers.models.Transformer",
    "pooling": "sentence_transformers.models.Pooling",
    "dense": "sentence_transformers.models.Dense",
    "normalize": "sentence_transformers.models.Normalize",
}
# Tokenizer files copied byte for byte from the base folder (the tokenizer must not change).
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt", "vocab.json",
                    "merges.txt", "added_tokens.json", "spiece.model", "sentencepiece.bpe.model", "tokenizer.model",
                    "chat_template.jinja", "chat_template.json")
# Card fields copied from a trained artifact's manifest (the recipe).
_RECIPE_KEYS = ("type", "lora", "training", "data", "steps", "planned_steps", "final_loss_ema", "seconds", "created")
_IEB_KEYS = ("n_instructions", "n_labels", "p@1", "p@4", "mrr", "ndcg@10", "ari", "purity", "homogeneity",
             "iis_spearman", "iis_auc", "bf16", "max_length")


# --------------------------------------------------------------------------------------------------
# The hf format
# --------------------------------------------------------------------------------------------------


def st_prompts(template: str) -> dict[str, str] | None:
    """sentence-transformers prompts for a prompt template, or ``None`` when it does not fit their shape.

    sentence-transformers (and vLLM's ``config_sentence_transformers.json`` reader) prepend a prompt to the
    text; a template fits when it is a prefix followed by ``{instruction}`` and nothing else. The PIE prompt
    has text after the instruction, so it is applied by the client (``ServerEncoder``, ``TransformerEncoder``).
    """
    head, sep, tail = template.partition("{instruction}")
    if not sep or tail or "{" in head or "}" in head:
        return None
    return {"query": head, "document": head}


def _merged_model(resolved: ResolvedModel) -> tuple[Any, Any]:
    """The model with its artifact applied in float32, exactly as TransformerEncoder loads it."""
    import torch
    import transformers
    from transformers import AutoModel

    transformers.utils.logging.disable_progress_bar()
    model = AutoModel.from_pretrained(str(resolved.path), dtype=torch.float32)
    head = None
    if resolved.artifact is not None:
        from pie_retriever.encoders.artifact import apply_artifact

        model, head = apply_artifact(model, resolved.artifact)
    return model.eval(), head


def _copy_tokenizer(source: Path, folder: Path) -> list[str]:
    copied = []
    for name in _TOKENIZER_FILES:
        if (source / name).is_file():
            shutil.copy2(source / name, folder / name)
            copied.append(name)
    if "tokenizer.json" not in copied and "vocab.txt" not in copied and "tokenizer.model" not in copied:
        msg = f"{source} has no tokenizer files ({', '.join(_TOKENIZER_FILES[:4])}, ...); cannot export a self-contained folder."
        raise ConfigError(msg)
    return copied


def _write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _write_dense(head: Any, folder: Path) -> dict[str, Any]:
    from safetensors.torch import save_file

    tensors = {"linear.weight": head.weight.detach().float().contiguous()}
    if head.bias is not None:
        tensors["linear.bias"] = head.bias.detach().float().contiguous()
    folder.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(folder / "model.safetensors"))
    config = {"in_features": head.in_features, "out_features": head.out_features, "bias": head.bias is not None,
              "activation_function": "torch.nn.modules.linear.Identity"}
    _write_json(folder / "config.json", config)
    return config


def _write_st_config(folder: Path, *, hidden: int, pooling: str, head: Any, max_length: int,
                     prompts: dict[str, str] | None) -> int:
    """The sentence-transformers files; returns the output dimension."""
    modules = [{"idx": 0, "name": "0", "path": "", "type": _ST_TYPES["transformer"]},
               {"idx": 1, "name": "1", "path": "1_Pooling", "type": _ST_TYPES["pooling"]}]
    pool_cfg: dict[str, Any] = {"word_embedding_dimension": hidden}
    pool_cfg.update({flag: flag == ST_POOLING_MODES[pooling] for flag in _ST_FLAGS})
    pool_cfg["include_prompt"] = True
    _write_json(folder / "1_Pooling" / "config.json", pool_cfg)
    dim = hidden
    if head is not None:
        dim = _write_dense(head, folder / "2_Dense")["out_features"]
        modules.append({"idx": 2, "name": "2", "path": "2_Dense", "type": _ST_TYPES["dense"]})
    n = len(modules)
    modules.append({"idx": n, "name": str(n), "path": f"{n}_Normalize", "type": _ST_TYPES["normalize"]})
    (folder / f"{n}_Normalize").mkdir()
    _write_json(folder / f"{n}_Normalize" / "config.json", {})
    _write_json(folder / "modules.json", modules)
    _write_json(folder / "sentence_bert_config.json", {"max_seq_length": max_length, "do_lower_case": False})
    versions = library_versions(["sentence-transformers", "transformers", "torch"])
    _write_json(folder / "config_sentence_transformers.json", {
        "__version__": {"sentence_transformers": versions.get("sentence-transformers", "2.0.0"),
                        "transformers": versions.get("transformers", ""), "pytorch": versions.get("torch", "")},
        # default_prompt_name: encode() without prompt_name= applies the prompt, so the folder alone reproduces the vectors
        "prompts": prompts or {}, "default_prompt_name": "query" if prompts and prompts["query"] else None,
        "similarity_fn_name": "cosine",
    })
    return dim


def _check_prompt(template: str, client_prompt: bool) -> dict[str, str] | None:
    """The folder's sentence-transformers prompts; a template they cannot express is refused unless ``client_prompt``."""
    prompts = st_prompts(template)
    if prompts is None and not client_prompt:
        msg = (f"The prompt {prompt_name(template)!r} ({template[:60]!r}...) has text after {{instruction}}; sentence-transformers "
               "prompts can only put text before it, so SentenceTransformer(folder).encode() would give other vectors than "
               "this library (cosine 0.46-0.58 measured for 'pie'). Export with --prompt plain or a prefix-only template "
               "such as 'Task: {instruction}', or pass --client-prompt (client_prompt=True) to write the folder for clients "
               "that apply the prompt themselves (ServerEncoder, TransformerEncoder); its README.md then says so.")
        raise ConfigError(msg)
    return prompts


def _write_hf(resolved: ResolvedModel, folder: Path, *, prompt: str | None = None, pooling: str | None = None,
              max_length: int = 256, client_prompt: bool = False) -> dict[str, Any]:
    """Write the merged Hugging Face + sentence-transformers folder into ``folder`` (empty); return card fields."""
    pooling = pooling or resolved.default_pooling
    if pooling not in ST_POOLING_MODES:
        msg = (f"Pooling {pooling!r} cannot be written as a sentence-transformers/vLLM pooling config (valid: "
               f"{', '.join(ST_POOLING_MODES)}); 'last2' averages two layers, which neither can do. Pass pooling='last' (--pooling last).")
        raise ConfigError(msg)
    template = resolve_prompt(prompt if prompt is not None else resolved.default_prompt)
    prompts = _check_prompt(template, client_prompt)
    model, head = _merged_model(resolved)
    model_max = int(getattr(model.config, "max_position_embeddings", None) or max_length)
    max_length = min(check_int(max_length, "max_length", minimum=8), model_max)
    model.save_pretrained(str(folder))
    tokenizer_files = _copy_tokenizer(resolved.path, folder)
    dim = _write_st_config(folder, hidden=int(model.config.hidden_size), pooling=pooling, head=head,
                           max_length=max_length, prompts=prompts)
    return {
        "kind": resolved.kind, "prompt": template, "prompt_name": prompt_name(template), "pooling": pooling,
        "normalize": True, "max_length": max_length, "dim": dim, "head": head is not None,
        "st_prompts": prompts, "prompt_applied_by": "sentence-transformers prompts" if prompts else "the client",
        # A projection head lives in 2_Dense, which sentence-transformers and vLLM apply and TransformerEncoder
        # does not: only head-less exports give the project's loader the source's vectors (and fingerprint).
        "identical_vectors": head is None, "tokenizer_files": tokenizer_files,
    }


# --------------------------------------------------------------------------------------------------
# export_model: checks, card, atomic move
# --------------------------------------------------------------------------------------------------


def _format_function(fmt: str) -> Any:
    check_choice("export format", fmt, EXPORT_FORMATS)
    module, _, name = EXPORT_FORMATS[fmt].partition(":")
    return getattr(importlib.import_module(module), name)


def _check_target(out_dir: Any, overwrite: bool) -> Path:
    if out_dir is None or (isinstance(out_dir, str) and not out_dir.strip()):
        msg = "An export needs out_dir, the folder to write (e.g. export_hf('pie-minilm', 'exported/pie-minilm'))."
        raise ConfigError(msg)
    target = Path(out_dir).expanduser().absolute()
    if target.exists() and not target.is_dir():
        msg = f"Cannot export to {target}: it is a file. Pass a new or empty folder."
        raise ConfigError(msg)
    if target.is_dir() and any(target.iterdir()) and not overwrite:
        msg = f"Cannot export to {target}: the folder is not empty. Pass overwrite=True (--overwrite) to replace it, or a new folder."
        raise ConfigError(msg)
    return target


def _ieb_figures(model_spec: str, ieb_results: Any) -> dict[str, Any] | None:
    """The IEB row of ``model_spec`` from an ``eval ieb`` results file (or mapping), or ``None``."""
    if ieb_results is None:
        return None
    source = "given mapping"
    if not isinstance(ieb_results, Mapping):
        source = os.fspath(ieb_results)
        try:
            ieb_results = json.loads(Path(source).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            msg = f"Cannot read IEB results {source!r} ({exc}); pass the JSON written by `pie-retriever eval ieb`."
            raise ConfigError(msg) from exc
    rows = [r for r in ieb_results.get("results", []) if r.get("model") == model_spec]
    if not rows:
        names = sorted({str(r.get("model")) for r in ieb_results.get("results", [])})
        msg = f"IEB results {source!r} have no row for model {model_spec!r} (models: {', '.join(names)})."
        raise ConfigError(msg)
    row = rows[0]
    figures = {k: row[k] for k in _IEB_KEYS if k in row}
    return {"source": Path(source).name, "created": ieb_results.get("created"), "suite": ieb_results.get("suite"),
            "protocol": ieb_results.get("protocol"), "method": row.get("name"), **figures}


def _common_card(model_spec: str, resolved: ResolvedModel, fmt: str) -> dict[str, Any]:
    card: dict[str, Any] = {"format": EXPORT_FORMAT_NAME, "version": EXPORT_FORMAT_VERSION, "export_format": fmt,
                            "source": model_spec, "base": model_spec, "artifact": None, "recipe": None}
    alias = MODEL_ALIASES.get(model_spec)
    if alias is not None:
        card["description"] = alias.description
    if resolved.artifact is not None:
        from pie_retriever.encoders.artifact import read_manifest

        meta = read_manifest(resolved.artifact)
        card["base"] = meta["base"]
        card["artifact"] = alias.artifact if alias is not None and alias.artifact else str(resolved.artifact)
        card["recipe"] = {k: meta[k] for k in _RECIPE_KEYS if k in meta}
        if isinstance(meta.get("evaluation"), Mapping):
            card["ieb"] = dict(meta["evaluation"])
    elif "export" in resolved.extra:  # re-export of an exported folder: keep its lineage
        prior = resolved.extra["export"]
        card.update({k: prior.get(k) for k in ("base", "artifact", "recipe", "description", "ieb") if k in prior})
    return card


def _move_into_place(tmp: Path, target: Path) -> None:
    apply_default_permissions(tmp, like=target)  # mkdtemp's 0700 → the umask's modes; a replaced folder's are kept
    old = None
    if target.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
        old.rmdir()
        os.replace(target, old)
    os.replace(tmp, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def export_hf(model_spec: str = DEFAULT_MODEL, out_dir: str | os.PathLike | None = None, *, prompt: str | None = None,
              pooling: str | None = None, max_length: int = 256, overwrite: bool = False,
              ieb_results: str | os.PathLike | Mapping[str, Any] | None = None, client_prompt: bool = False) -> Path:
    """The ``hf`` format: a merged Hugging Face + sentence-transformers folder with its card; returns the folder.

    ``prompt``/``pooling``: default the model's. ``max_length`` goes to ``sentence_bert_config.json`` (vLLM's
    ``max_model_len`` for the folder). ``ieb_results``: an ``eval ieb`` results JSON (or its parsed mapping)
    whose row for ``model_spec`` is copied into the card. The folder is written to a temporary sibling and
    renamed into place; an existing non-empty ``out_dir`` is replaced only with ``overwrite=True``.
    A prompt sentence-transformers cannot express (text after ``{instruction}``, like ``pie``) is refused unless
    ``client_prompt=True``. The folder gets a model card, ``README.md``.
    """
    target = _check_target(out_dir, overwrite)
    resolved = resolve_model(model_spec)
    card = _common_card(str(model_spec), resolved, "hf")
    ieb = _ieb_figures(str(model_spec), ieb_results)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.export-", dir=target.parent))
    try:
        card.update(_write_hf(resolved, tmp, prompt=prompt, pooling=pooling, max_length=max_length, client_prompt=client_prompt))
        if ieb is not None:
            card["ieb"] = ieb
        card.setdefault("ieb", None)
        (tmp / "README.md").write_text(model_card_markdown(card, target.name), encoding="utf-8")
        card["fingerprint"] = {"source": weights_fingerprint(resolved), "files": files_digest(tmp)}
        card["created"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        card["library_versions"] = library_versions()
        _write_json(tmp / EXPORT_CARD, card)
        _move_into_place(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def export_model(model_spec: str = DEFAULT_MODEL, out_dir: str | os.PathLike | None = None, format: str = "hf",
                 **options: Any) -> Path:
    """Export ``model_spec`` (alias, artifact or model folder; default the library's default model) to
    ``out_dir`` in ``format`` (a key of ``EXPORT_FORMATS``); returns the folder.

    ``options`` go to the format's function (``hf``: ``prompt``, ``pooling``, ``max_length``, ``overwrite``,
    ``ieb_results``; see :func:`export_hf`).
    """
    function = _format_function(format)
    if out_dir is None or (isinstance(out_dir, str) and not out_dir.strip()):
        msg = f"export_model needs out_dir, the folder to write (e.g. export_model({model_spec!r}, 'exported/{model_spec}'))."
        raise ConfigError(msg)
    return Path(function(model_spec, out_dir, **options))


# --------------------------------------------------------------------------------------------------
# Command line: pie-retriever export MODEL -o DIR
# --------------------------------------------------------------------------------------------------


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", nargs="?", default=DEFAULT_MODEL, help="model alias, artifact or model folder (default: %(default)s)")
    p.add_argument("-o", "--output", required=True, help="folder to write (must be new or empty unless --overwrite)")
    p.add_argument("--format", default="hf", choices=list(EXPORT_FORMATS), help="export format (default: %(default)s)")
    p.add_argument("--prompt", default=None, help="prompt name or template; default: the model's")
    p.add_argument("--pooling", default=None, choices=list(ST_POOLING_MODES), help="pooling; default: the model's")
    p.add_argument("--max-length", type=int, default=None, help="token limit (hf: written to sentence_bert_config.json; default 256)")
    p.add_argument("--ieb-results", default=None, metavar="JSON", help="hf: `eval ieb` results whose row for MODEL goes into the card")
    p.add_argument("--quantize", default=None, choices=["int8", "none"],
                   help="onnx: weight quantisation (default: int8, dynamic per-channel; none keeps fp32)")
    p.add_argument("--overwrite", action="store_true", help="replace the output folder if it exists")
    p.add_argument("--client-prompt", action="store_true",
                   help="hf: allow a prompt sentence-transformers cannot apply (text after {instruction}, e.g. pie); "
                        "clients must apply it themselves")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="another option of the format's export function (VALUE parsed as JSON when it can be); repeatable")


def _cli_options(args: argparse.Namespace) -> dict[str, Any]:
    """The options given on the command line (unset ones are left to the format function's defaults)."""
    options: dict[str, Any] = {}
    for key in ("prompt", "pooling", "max_length", "ieb_results"):
        if getattr(args, key) is not None:
            options[key] = getattr(args, key)
    if args.overwrite:
        options["overwrite"] = True
    if getattr(args, "client_prompt", False):
        options["client_prompt"] = True
    if args.quantize is not None:
        if args.format == "hf":
            msg = "--quantize applies to --format onnx (the hf export keeps the model's weights); drop --quantize or add --format onnx."
            raise ConfigError(msg)
        options["quantize"] = args.quantize
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            msg = f"--set expects KEY=VALUE, got {item!r}."
            raise ConfigError(msg)
        try:
            options[key.strip().replace("-", "_")] = json.loads(value)
        except json.JSONDecodeError:
            options[key.strip().replace("-", "_")] = value
    return options


def run(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    path = export_model(args.model, args.output, args.format, **_cli_options(args))
    size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    detail = ""
    if (path / EXPORT_CARD).is_file():
        card = json.loads((path / EXPORT_CARD).read_text(encoding="utf-8"))
        detail = f" ({card.get('pooling')} pooling, {card.get('dim')}-d, prompt {card.get('prompt_name')!r})"
    print(f"Exported {args.model} as {args.format}{detail} to {path} ({size / 1e6:.1f} MB) in "
          f"{time.perf_counter() - started:.1f}s", file=sys.stderr)
    print(path)
    return 0
