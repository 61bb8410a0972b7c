"""Render demonstrations and a query into a few-shot prompt (Alpaca-style by default).

The vLLM and LangChain integrations, the prompt builder (:mod:`pie_retriever.prompting.builder`) and the ICL
benchmark all build prompts through these functions.
"""

from __future__ import annotations

from typing import Mapping, Sequence

from pie_retriever._util import check_choice
from pie_retriever.types import Demonstration, Hit

ALPACA_HEADER = "Below are examples of instructions with their responses, followed by a new instruction. Write a response that appropriately completes the new instruction.\n\n"
ALPACA_EXAMPLE = "### Instruction:\n{instruction}\n\n{input_block}### Response:\n{output}"
ALPACA_INPUT_BLOCK = "### Input:\n{input}\n\n"

TEMPLATES: dict[str, dict[str, str]] = {
    "alpaca": {"header": ALPACA_HEADER, "example": ALPACA_EXAMPLE, "input_block": ALPACA_INPUT_BLOCK, "separator": "\n\n"},
    "plain": {"header": "", "example": "Instruction: {instruction}\n{input_block}Response: {output}", "input_block": "Input: {input}\n", "separator": "\n\n"},
}

#: Keys of a template spec (the shape of every ``TEMPLATES`` value; a custom template mapping needs exactly these).
TEMPLATE_KEYS = ("header", "example", "input_block", "separator")

TemplateLike = str | Mapping[str, str]


def _demo(x: Demonstration | Hit) -> Demonstration:
    return x.demonstration if isinstance(x, Hit) else x


def template_spec(template: TemplateLike) -> Mapping[str, str]:
    """The spec of a template name from ``TEMPLATES``, or ``template`` itself when it is already a mapping."""
    if isinstance(template, Mapping):
        return template
    return TEMPLATES[check_choice("few-shot template", template, TEMPLATES)]


def format_example(demo: Demonstration, template: TemplateLike = "alpaca", *, with_output: bool = True) -> str:
    """One demonstration in ``template`` (a name or a spec mapping); ``with_output=False`` leaves the response open."""
    spec = template_spec(template)
    input_block = spec["input_block"].format(input=demo.input) if demo.input else ""
    text = spec["example"].format(instruction=demo.instruction, input_block=input_block, output=demo.output if with_output else "")
    return text if with_output else text.rstrip(" ")


def format_few_shot(demonstrations: Sequence[Demonstration | Hit], query: str, query_input: str = "",
                    template: TemplateLike = "alpaca") -> str:
    """The few-shot prompt: header, each demonstration with its output, then the query with an open response."""
    spec = template_spec(template)
    parts = [format_example(_demo(d), spec) for d in demonstrations]
    parts.append(format_example(Demonstration(query, query_input), spec, with_output=False))
    return spec["header"] + spec["separator"].join(parts)
