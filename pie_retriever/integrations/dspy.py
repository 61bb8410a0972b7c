"""DSPy integration: task-matched few-shot demonstrations for ``dspy.KNNFewShot`` and a ``dspy.Retrieve`` module.

Needs the ``dspy`` extra (``dspy`` 3.x)::

    from pie_retriever.integrations.dspy import PIEEmbedder, PIEKNN, PIEKNNFewShot, PIERetrieve

- :class:`PIEEmbedder` is a ``dspy.Embedder`` to pass as ``vectorizer=`` to ``dspy.KNNFewShot`` (or ``dspy.KNN``,
  ``dspy.retrievers.Embeddings``). DSPy's KNN embeds ``"instruction: … | input: …"`` strings; this embedder
  cuts out one field (``instruction`` by default) and embeds only that, which is what PIE models are trained on.
- :class:`PIEKNN` is a drop-in for ``dspy.KNN`` over a :class:`~pie_retriever.PIERetriever`: built from a
  trainset or wrapping a saved index, with metadata filters; :class:`PIEKNNFewShot` is ``dspy.KNNFewShot``
  with it inside.
- :class:`PIERetrieve` is a ``dspy.Retrieve`` module: ``PIERetrieve(retriever, k=3)(query)`` returns a
  ``dspy.Prediction`` with ``passages`` (and the demonstrations, scores and ids).

Only the public API of ``pie_retriever`` is used here.
"""

from __future__ import annotations

import os
import re
from typing import Any, Callable, Mapping, Sequence

from pie_retriever._util import DEFAULT_K
from pie_retriever.errors import ConfigError, require

require("dspy", "dspy", "pie_retriever.integrations.dspy")

import dspy  # noqa: E402
from dspy.teleprompt import KNNFewShot  # noqa: E402

from pie_retriever._util import check_k, check_query  # noqa: E402
from pie_retriever.encoders.base import Encoder  # noqa: E402
from pie_retriever.retrieval.retriever import PIERetriever  # noqa: E402
from pie_retriever.types import Demonstration, Hit  # noqa: E402

__all__ = ["PIEEmbedder", "PIEKNN", "PIEKNNFewShot", "PIERetrieve", "demonstration_to_example", "field_value"]

# DSPy's KNN joins an example's input fields as "key: value | key: value".
_FIELD = re.compile(r"(?:^| \| )([A-Za-z_][A-Za-z0-9_]*): ")
_EXAMPLE_ID = "dspy_example"


def field_value(text: str, field: str = "instruction") -> str:
    """The value of ``field`` in a DSPy KNN string (``"instruction: Write a poem | input: ..."``); ``text`` itself
    when it has no such field (a plain string passes through unchanged)."""
    marks = list(_FIELD.finditer(text))
    for i, m in enumerate(marks):
        if m.group(1) == field:
            end = marks[i + 1].start() if i + 1 < len(marks) else len(text)
            return text[m.end():end]
    return text


def _encoder(model: Any, encoder_kwargs: Mapping[str, Any]) -> Encoder:
    if isinstance(model, PIERetriever):
        model = model.encoder
    if isinstance(model, Encoder):
        if encoder_kwargs:
            msg = f"Pass either an encoder/retriever or encoder options, not both (got {sorted(encoder_kwargs)})."
            raise ConfigError(msg)
        return model
    from pie_retriever.encoders.transformer import TransformerEncoder

    return TransformerEncoder(None if model is None else os.fspath(model), **encoder_kwargs)


class PIEEmbedder(dspy.Embedder):
    """A ``dspy.Embedder`` of instruction embeddings that embeds one field of DSPy's ``key: value`` strings.

    Args:
        model: a model spec (default: the library's default model), an ``Encoder``, or a ``PIERetriever`` (its
            encoder, so vectors match a saved index).
        field: the input field to embed (``instruction``); strings without it are embedded whole.
        query_prompt: embed with the encoder's query prompt (default: the document prompt; DSPy's KNN uses one
            embedder for both sides).
        batch_size: texts per encoder call.
        **encoder_kwargs: ``TransformerEncoder`` options (``prompt``, ``pooling``, ...).

    Example: ``dspy.KNNFewShot(k=4, trainset=trainset, vectorizer=PIEEmbedder())``.
    """

    def __init__(self, model: Any = None, *, field: str = "instruction", query_prompt: bool = False,
                 batch_size: int = 200, **encoder_kwargs: Any) -> None:
        self.encoder = _encoder(model, encoder_kwargs)
        self.field = field
        self.query_prompt = query_prompt
        super().__init__(self._embed, batch_size=batch_size, caching=False)

    def _embed(self, texts: list[str]) -> Any:
        parts = [field_value(t, self.field) for t in texts]
        prompt = self.encoder.query_prompt if self.query_prompt else self.encoder.prompt
        return self.encoder.encode(parts, prompt=prompt)

    def __repr__(self) -> str:
        return f"PIEEmbedder(model={self.encoder.config().get('model', '')!r}, field={self.field!r})"


def demonstration_to_example(demo: Demonstration, field: str = "instruction") -> dspy.Example:
    """A ``dspy.Example`` of a demonstration: ``field`` = the instruction, ``input`` (when set), ``output`` and the
    metadata keys; ``field`` is its input."""
    meta = {k: v for k, v in demo.metadata.items() if k != _EXAMPLE_ID}
    values: dict[str, Any] = {**meta, field: demo.instruction, "output": demo.output}
    if demo.input:
        values["input"] = demo.input
    inputs = [field, "input"] if demo.input else [field]
    return dspy.Example(**values).with_inputs(*inputs)


def _to_demonstration(example: dspy.Example, position: int, field: str) -> Demonstration:
    if field not in example:
        msg = f"trainset example {position} has no {field!r} field (fields: {sorted(example.keys())}); pass field=."
        raise ConfigError(msg)
    meta = {k: v for k, v in example.items() if k != field and isinstance(v, (str, int, float, bool))}
    meta[_EXAMPLE_ID] = position
    return Demonstration(str(example[field]), id=f"ex-{position}", metadata=meta)


class PIEKNN:
    """``dspy.KNN`` over a :class:`~pie_retriever.PIERetriever`: ``knn(**inputs) -> list[dspy.Example]``, best first.

    Args:
        k: examples per call.
        trainset: ``dspy.Example`` objects with a ``field`` input; indexed once (their other scalar fields become
            metadata, so ``filter`` can use them). Or pass ``retriever`` instead.
        retriever: an existing ``PIERetriever`` (e.g. ``PIERetriever.load("pool.pie")``); hits become examples by
            ``to_example`` (default :func:`demonstration_to_example`).
        field: the input field that holds the instruction; only it is embedded.
        filter: ``{metadata_key: value or [values]}`` or a predicate on ``Demonstration``, applied to every call.
        model: model spec or ``Encoder`` when building from a trainset (default: the library default).
    """

    def __init__(self, k: int, trainset: Sequence[dspy.Example] | None = None, *, retriever: PIERetriever | None = None,
                 field: str = "instruction", filter: Any = None, model: Any = None,
                 to_example: Callable[[Demonstration], dspy.Example] | None = None) -> None:
        if (trainset is None) == (retriever is None):
            msg = "Pass either trainset= (dspy.Example objects) or retriever= (a PIERetriever), not both or neither."
            raise ConfigError(msg)
        self.k = check_k(k)
        self.field = field
        self.filter = filter
        self.trainset = list(trainset) if trainset is not None else None
        if retriever is None:
            demos = [_to_demonstration(ex, i, field) for i, ex in enumerate(self.trainset)]
            retriever = PIERetriever.from_demonstrations(demos, _encoder(model, {}) if model is not None else None)
        self.retriever = retriever
        self.to_example = to_example or (lambda d: demonstration_to_example(d, field))

    @classmethod
    def from_index(cls, path: str | os.PathLike, k: int = DEFAULT_K, **kwargs: Any) -> PIEKNN:
        """Wrap a saved index (``pie-retriever index`` or ``PIERetriever.save``)."""
        return cls(k, retriever=PIERetriever.load(path), **kwargs)

    def _example(self, hit: Hit) -> dspy.Example:
        position = hit.demonstration.metadata.get(_EXAMPLE_ID)
        if self.trainset is not None and position is not None:
            return self.trainset[position]
        return self.to_example(hit.demonstration)

    def _query(self, inputs: Mapping[str, Any]) -> str:
        if self.field in inputs:
            return check_query(str(inputs[self.field]))
        return check_query(" | ".join(f"{key}: {value}" for key, value in inputs.items()))

    def hits(self, **inputs: Any) -> list[Hit]:
        """The hits (scores, demonstrations) behind :meth:`__call__`."""
        return self.retriever.retrieve(self._query(inputs), k=self.k, filter=self.filter)

    def __call__(self, **inputs: Any) -> list[dspy.Example]:
        return [self._example(h) for h in self.hits(**inputs)]

    def batch(self, inputs: Sequence[Mapping[str, Any]]) -> list[list[dspy.Example]]:
        """One encoder call for many queries."""
        results = self.retriever.retrieve_batch([self._query(i) for i in inputs], k=self.k, filter=self.filter)
        return [[self._example(h) for h in hits] for hits in results]


class PIEKNNFewShot(KNNFewShot):
    """``dspy.KNNFewShot`` with :class:`PIEKNN` inside: per call, the ``k`` trainset examples whose *task* matches
    the input become the demonstrations (``compile(student)`` as usual).

    Takes :class:`PIEKNN`'s arguments (``trainset`` or ``retriever``, ``field``, ``filter``, ``model``) plus
    ``BootstrapFewShot`` options (``max_bootstrapped_demos=0`` uses the labelled examples only, no LM calls to
    bootstrap).
    """

    def __init__(self, k: int, trainset: Sequence[dspy.Example] | None = None, *, retriever: PIERetriever | None = None,
                 field: str = "instruction", filter: Any = None, model: Any = None, **few_shot_bootstrap_args: Any) -> None:
        self.KNN = PIEKNN(k, trainset, retriever=retriever, field=field, filter=filter, model=model)
        self.few_shot_bootstrap_args = few_shot_bootstrap_args


class PIERetrieve(dspy.Retrieve):
    """A ``dspy.Retrieve`` module over a ``PIERetriever`` (no ``dspy.settings.rm`` needed).

    ``forward(query, k=None, filter=None)`` returns ``dspy.Prediction(passages, demonstrations, scores, ids)``:
    ``passages`` are the demonstrations' text (``passage_fields`` joined by newlines), best first.
    """

    def __init__(self, retriever: PIERetriever | str | os.PathLike, k: int = 3, *, filter: Any = None,
                 passage_fields: tuple[str, ...] = ("instruction", "input", "output"), callbacks: list[Any] | None = None) -> None:
        super().__init__(k=check_k(k), callbacks=callbacks)
        self.retriever = retriever if isinstance(retriever, PIERetriever) else PIERetriever.load(retriever)
        self.filter = filter
        self.passage_fields = tuple(passage_fields)

    def forward(self, query: str, k: int | None = None, filter: Any = None, **kwargs: Any) -> dspy.Prediction:
        if kwargs:
            msg = f"Unknown option(s) {sorted(kwargs)}; PIERetrieve takes k and filter."
            raise TypeError(msg)
        hits = self.retriever.retrieve(check_query(query), k=check_k(k if k is not None else self.k),
                                       filter=filter if filter is not None else self.filter)
        return dspy.Prediction(
            passages=[h.demonstration.text(self.passage_fields) for h in hits],
            demonstrations=[h.demonstration for h in hits],
            scores=[float(h.score) for h in hits],
            ids=[h.demonstration.id for h in hits],
        )
