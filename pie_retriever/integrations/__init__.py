"""Integrations with LangChain (`langchain` extra) and vLLM (`vllm` extra); each imports its framework lazily."""
