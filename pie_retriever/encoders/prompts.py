"""Named prompt templates that turn an instruction into the text an encoder sees.

``pie`` is the prompt of the paper (Li et al. 2024): it asks the model for the *task intention* of the
instruction, so the embedding follows the task, not the topic. ``plain`` embeds the text as it is.
Any custom template with exactly one ``{instruction}`` placeholder is accepted.
"""

from __future__ import annotations

import string

from pie_retriever.errors import PromptError

PIE_PROMPT = (
    "The essence of an instruction is its task intention. With this in mind, given the instruction below:"
    "\n\n{instruction}\n\nafter thinking step by step, the task of the given instruction is:"
)

PROMPTS: dict[str, str] = {
    "pie": PIE_PROMPT,
    "plain": "{instruction}",
}

_SENTENCE_END = ('.', '?', '"', "'")


def resolve_prompt(prompt: str | None) -> str:
    """Return the template for a prompt name (a key of ``PROMPTS``) or validate a custom template."""
    if prompt is None:
        return PROMPTS["plain"]
    if not isinstance(prompt, str):
        msg = f"prompt must be a name ({', '.join(PROMPTS)}) or a template string, got {type(prompt).__name__}."
        raise PromptError(msg)
    if prompt in PROMPTS:
        return PROMPTS[prompt]
    try:
        fields = [f for _, f, _, _ in string.Formatter().parse(prompt) if f is not None]
    except ValueError as exc:
        msg = f"Prompt template {prompt!r:.80} is not a valid format string ({exc}). Escape literal braces as '{{{{' and '}}}}'."
        raise PromptError(msg) from exc
    unknown = sorted({f for f in fields if f != "instruction"})
    if unknown:
        msg = (
            f"Prompt template has unknown placeholder(s) {unknown}; the only placeholder allowed is '{{instruction}}'. "
            f"Built-in prompts: {', '.join(PROMPTS)}. Escape literal braces as '{{{{' and '}}}}'."
        )
        raise PromptError(msg)
    if "instruction" not in fields:
        msg = (
            f"Prompt {prompt!r:.80} is neither a built-in prompt name ({', '.join(PROMPTS)}) nor a template "
            "with an '{instruction}' placeholder."
        )
        raise PromptError(msg)
    return prompt


def prompt_name(template: str) -> str:
    """The registry name of a template, or ``"custom"``."""
    for name, value in PROMPTS.items():
        if value == template:
            return name
    return "custom"


def apply_prompt(template: str, text: str) -> str:
    """Fill the template. For the PIE prompt a final '.' is added when the text does not end a sentence."""
    if template == PIE_PROMPT:
        stripped = text.rstrip()
        if stripped and not stripped.endswith(_SENTENCE_END):
            text = stripped + "."
    return template.format(instruction=text)
