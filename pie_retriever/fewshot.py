"""Render demonstrations and a query into a few-shot prompt (Alpaca-style by default).

The vLLM and LangChain integrations and the ICL benchmark all build prompts through these functions.
"""

from __future__ import annotations

from typing import Sequence

from .types import Demonstration, Hit

ALPACA_HEADER = "Below are examples of instructions with their responses, followed by a new instruction. Write a response that appropriately completes the new instruction.\n\n"
ALPACA_EXAMPLE = "### Instruction:\n{instruction}\n\n{input_block}### Response:\n{output}"
ALPACA_INPUT_BLOCK = "### Input:\n{input}\n\n"

TEMPLATES: dict[str, dict[str, str]] = {
    "alpaca": {"header": ALPACA_HEADER, "example": ALPACA_EXAMPLE, "input_block": ALPACA_INPUT_BLOCK, "separator": "\n\n"},
    "plain": {"header": "", "example": "Instruction: {instruction}\n{input_block}Response: {output}", "input_block": "Input: {input}\n", "separator": "\n\n"},
}


def _demo(x: Demonstration | Hit) -> Demonstration:
    return x.demonstration if isinstance(x, Hit) else x


def format_example(demo: Demonstration, template: str = "alpaca", *, with_output: bool = True) -> str:
    spec = TEMPLATES[template] if template in TEMPLATES else None
    if spec is None:
        msg = f"Unknown few-shot template {template!r}; choose one of: {', '.join(TEMPLATES)}."
        raise ValueError(msg)
    input_block = spec["input_block"].format(input=demo.input) if demo.input else ""
    text = spec["example"].format(instruction=demo.instruction, input_block=input_block, output=demo.output if with_output else "")
    return text if with_output else text.rstrip(" ")


def format_few_shot(demonstrations: Sequence[Demonstration | Hit], query: str, query_input: str = "", template: str = "alpaca") -> str:
    """The few-shot prompt: header, each demonstration with its output, then the query with an open response."""
    spec = TEMPLATES.get(template)
    if spec is None:
        msg = f"Unknown few-shot template {template!r}; choose one of: {', '.join(TEMPLATES)}."
        raise ValueError(msg)
    parts = [format_example(_demo(d), template) for d in demonstrations]
    parts.append(format_example(Demonstration(query, query_input), template, with_output=False))
    return spec["header"] + spec["separator"].join(parts)
