"""One loaded encoder per method for a whole benchmark run (quality, ICL and speed share them)."""

from __future__ import annotations

from typing import Any

from pie_retriever.evaluation.bench.config import Method

__all__ = ["EncoderCache"]


class EncoderCache:
    """Loads each method's encoder once; methods whose encoders have the same fingerprint share one instance."""

    def __init__(self) -> None:
        self._encoders: dict[str, Any] = {}

    @staticmethod
    def key(method: Method) -> str:
        return f"{method.model}|{method.prompt}"

    def __len__(self) -> int:
        return len(self._encoders)

    def __contains__(self, method: Method) -> bool:
        return self.key(method) in self._encoders

    def get(self, method: Method) -> Any:
        """The encoder of ``method`` (a :class:`~pie_retriever.encoders.transformer.TransformerEncoder`), loaded once."""
        from pie_retriever.encoders.transformer import TransformerEncoder

        key = self.key(method)
        if key not in self._encoders:
            encoder = TransformerEncoder(method.model, prompt=method.prompt)
            # e.g. the default model is plain MiniLM until the tuned artifact ships: share one instance
            same = [e for e in self._encoders.values() if e.fingerprint == encoder.fingerprint]
            self._encoders[key] = same[0] if same else encoder
        return self._encoders[key]

    def retain(self, method: Method) -> Any:
        """Drop every encoder except ``method``'s (loaded if needed) and return it: frees the other models' memory."""
        encoder = self.get(method)
        self._encoders = {self.key(method): encoder}
        return encoder

    def clear(self) -> None:
        self._encoders.clear()
