"""The prompting stage: framework-free few-shot rendering (``fewshot``) and ``FewShotPromptBuilder`` (``builder``:
retrieve, render as completion or chat, keep within a token budget)."""
