"""Distributed indexing with Ray Data: encode a pool on a pool of Ray actors, write it into any index.

    from pie_retriever.retrieval.distributed import index_with_ray
    index_with_ray("pool.jsonl", "pool.pie", workers=2)                          # a local Ray instance
    index_with_ray("pool.jsonl", "pool.pie", workers=8, address="ray://head:10001",
                   index="milvus", index_options={"uri": "http://milvus:19530", "collection": "pool"})

CLI: ``pie-retriever index POOL -o DIR --engine ray --workers N`` (``RAY_ADDRESS`` picks a cluster).

How it runs: the driver parses the pool file with the same reader as the local path (:func:`load_pool`),
so the same demonstrations and ids come out, and plans the encoder batches; Ray Data carries the batches
(``from_items``) through ``map_batches`` on an actor pool of ``workers`` actors, each holding its own
encoder rebuilt from the encoder's config (its fingerprint is checked against the driver's); the driver
collects the vectors in pool order and writes them into the chosen index (faiss, numpy or Milvus) through
``PIERetriever.add``, then saves. Encoding is the part that is distributed; the retriever keeps every
demonstration in the driver's memory either way.

The same vectors: the transformer and ONNX encoders sort texts by token length and cut batches of
``batch_size``, and a text's vector depends (in the last bits, more with the opt-in bf16) on the batch it is padded
with and the thread count. :func:`plan_batches` makes the same batches the single-process ``encode`` call would
make, and each actor encodes one planned batch per call, so the vectors agree with the local path's within the
encoder's ``PRECISION_TOLERANCE`` (``tests/retrieval/test_distributed.py`` checks it with the default model under fp32 and bf16).
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

import numpy as np

from pie_retriever._util import check_int
from pie_retriever.encoders.base import DelegatingEncoder, Encoder
from pie_retriever.encoders.prompts import apply_prompt
from pie_retriever.errors import ConfigError, EncoderMismatchError, require
from pie_retriever.types import Demonstration

__all__ = ["build_with_ray", "encode_with_ray", "index_with_ray", "plan_batches"]

# as in index/milvus_index.py: grpc's fork handlers can hang Ray's process starts next to a busy gRPC server
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")

logger = logging.getLogger(__name__)
#: Batch size for encoders whose vectors do not depend on the batch (no ``batch_size`` / tokenizer).
PLAIN_BATCH = 256


def _token_lengths(encoder: Any, texts: Sequence[str]) -> list[int] | None:
    """Token counts as the encoder's own ``encode`` computes them (prompt applied, truncated), or None."""
    prompted = [apply_prompt(encoder.prompt, t) for t in texts]
    if hasattr(encoder, "token_ids"):  # OnnxEncoder
        return [len(ids) for ids in encoder.token_ids(prompted)]
    if hasattr(encoder, "tokenizer") and hasattr(encoder, "max_length"):  # TransformerEncoder
        ids = encoder.tokenizer(prompted, truncation=False, add_special_tokens=True)["input_ids"]
        return [min(len(x), encoder.max_length) for x in ids]
    return None


def plan_batches(encoder: Encoder, texts: Sequence[str]) -> list[list[int]]:
    """Positions of ``texts`` grouped as one ``encoder.encode_documents(texts)`` call groups them.

    Encoding each group alone then gives the same vectors as encoding all texts at once.
    """
    lengths = _token_lengths(encoder, texts) if hasattr(encoder, "batch_size") else None
    if lengths is None:
        return [list(range(s, min(s + PLAIN_BATCH, len(texts)))) for s in range(0, len(texts), PLAIN_BATCH)]
    order = np.argsort([-n for n in lengths], kind="stable")
    size = int(encoder.batch_size)
    return [order[s:s + size].tolist() for s in range(0, len(order), size)]


class _EncodeActor:
    """A Ray Data actor: rebuilds the encoder once, then encodes one planned batch at a time."""

    def __init__(self, config: dict[str, Any], fingerprint: str, threads: int) -> None:
        from pie_retriever.encoders.base import encoder_from_config

        self.encoder = encoder_from_config(dict(config))
        if self.encoder.fingerprint != fingerprint:
            msg = (f"The Ray worker's encoder has fingerprint {self.encoder.fingerprint}, the driver's {fingerprint} "
                   f"({config.get('model', config.get('type'))}): install the same pie-retriever and model on every node.")
            raise EncoderMismatchError(msg)
        if type(self.encoder).__name__ == "TransformerEncoder":
            from pie_retriever._threads import apply_threads

            apply_threads(threads, 2)

    def __call__(self, batch: dict[str, Any]) -> dict[str, np.ndarray]:
        positions, vectors = [], []
        for pos, texts in zip(batch["positions"], batch["texts"]):
            vectors.append(self.encoder.encode_documents([str(t) for t in texts], show_progress=False))
            positions.append(np.asarray(pos, dtype=np.int64))
        return {"position": np.concatenate(positions), "vector": np.concatenate(vectors).astype(np.float32)}


def _init(ray: Any, address: str | None) -> None:
    """``ray.init``; a new local head whose GCS did not come up is started once more (seen twice on this
    machine under load: no GCS log at all, then "Timed out waiting for file .../gcs_server_port_...")."""
    # a new head waits 30 s for its GCS to bind by default; on a loaded machine that start took longer
    os.environ.setdefault("RAY_gcs_server_port_wait_time_s", "120")
    local = not (address or os.environ.get("RAY_ADDRESS"))
    for attempt in (1, 2):
        try:
            ray.init(address=address, include_dashboard=False, logging_level=logging.WARNING, log_to_driver=False)
            return
        except RuntimeError as exc:
            if not local or attempt == 2 or "Timed out waiting for file" not in str(exc):
                raise
            logger.warning("A local Ray head did not start (%s); trying once more.", exc)
            ray.shutdown()


@contextlib.contextmanager
def _ray(address: str | None, workers: int) -> Iterator[Any]:
    """Ray, connected: the running instance, else ``address`` / ``RAY_ADDRESS``, else a new local instance
    (shut down at the end; one this function did not start is left running)."""
    ray = require("ray", "scale", "Indexing with --engine ray")
    started = not ray.is_initialized()
    if started:
        _init(ray, address)
    try:
        cpus = int(ray.cluster_resources().get("CPU", 0))
        local = started and not (address or os.environ.get("RAY_ADDRESS"))
        if workers > cpus:
            msg = f"workers={workers} needs {workers} CPUs but the Ray cluster has {cpus}; use --workers {max(cpus, 1)} or fewer."
            if local:
                raise ConfigError(msg)
            logger.warning("%s (waiting for an autoscaler to add nodes)", msg)
        yield ray
    finally:
        if started:
            ray.shutdown()


def encode_with_ray(encoder: Encoder, texts: Sequence[str], *, workers: int = 2, batches_per_call: int = 4,
                    address: str | None = None, show_progress: bool | None = None) -> np.ndarray:
    """``encoder.encode_documents(texts)`` computed on ``workers`` Ray actors (one CPU each); same vectors."""
    workers = check_int(workers, "workers")
    texts = list(texts)
    if not texts:
        return np.zeros((0, encoder.dim), dtype=np.float32)
    plan = plan_batches(encoder, texts)
    with _ray(address, workers) as ray:
        ray.data.DataContext.get_current().enable_progress_bars = bool(show_progress)
        if logging.getLogger().getEffectiveLevel() > logging.INFO:  # Ray Data's INFO lines flood a terminal; -v keeps them
            logging.getLogger("ray.data").setLevel(logging.WARNING)
        items = [{"positions": group, "texts": [texts[i] for i in group]} for group in plan]
        blocks = max(1, min(len(items), 4 * workers))  # enough blocks for every actor to get work
        ds = ray.data.from_items(items, override_num_blocks=blocks).map_batches(
            _EncodeActor, batch_size=batches_per_call, batch_format="numpy", num_cpus=1,
            compute=ray.data.ActorPoolStrategy(size=workers),
            fn_constructor_kwargs={"config": encoder.config(), "fingerprint": encoder.fingerprint, "threads": 1},
        )
        out = np.zeros((len(texts), encoder.dim), dtype=np.float32)
        done = np.zeros(len(texts), dtype=bool)
        for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
            out[batch["position"]] = batch["vector"]
            done[batch["position"]] = True
    if not done.all():
        msg = f"Ray returned vectors for {int(done.sum())} of {len(texts)} texts; nothing was indexed."
        raise RuntimeError(msg)
    return out


class _Precomputed(DelegatingEncoder):
    """Serves vectors computed elsewhere for exactly ``texts`` (documents, in order); anything else is encoded."""

    def __init__(self, encoder: Encoder, texts: list[str], vectors: np.ndarray) -> None:
        super().__init__(encoder)
        self.texts, self.vectors = texts, vectors

    def encode(self, texts: Sequence[str], *, prompt: str | None = None, show_progress: bool | None = None) -> np.ndarray:
        if prompt == self.prompt and list(texts) == self.texts:
            return self.vectors
        return self.inner.encode(texts, prompt=prompt, show_progress=show_progress)


def _todo_texts(demos: list[Demonstration], embed_fields: tuple[str, ...], dedupe: bool) -> list[str]:
    """The texts ``PIERetriever.add`` encodes for ``demos`` in an empty pool (first occurrences with dedupe)."""
    texts = [d.text(embed_fields) for d in demos]
    return list(dict.fromkeys(texts)) if dedupe else texts


def build_with_ray(demonstrations: Iterable[Any], encoder: Encoder, *, workers: int = 2, index: str = "flat",
                   index_options: Mapping[str, Any] | None = None, embed_fields: Sequence[str] = ("instruction",),
                   dedupe: bool = False, address: str | None = None, show_progress: bool | None = None,
                   content_weight: float | None = None, content_scorer: Any = "auto") -> Any:
    """``PIERetriever.from_demonstrations(...)`` with the encoding done by :func:`encode_with_ray` (the content
    scorer, if any, is built in this process)."""
    from pie_retriever.retrieval.retriever import PIERetriever
    from pie_retriever.types import check_embed_fields

    demos = [Demonstration.from_any(d) for d in demonstrations]
    fields = check_embed_fields(embed_fields)
    retriever = PIERetriever(encoder, index=index, index_options=index_options, embed_fields=fields, dedupe=dedupe,
                             content_weight=content_weight, content_scorer=content_scorer)
    texts = _todo_texts(demos, fields, dedupe)
    start = time.perf_counter()
    vectors = encode_with_ray(encoder, texts, workers=workers, address=address, show_progress=show_progress)
    logger.info("Encoded %d texts on %d Ray workers in %.1fs", len(texts), workers, time.perf_counter() - start)
    retriever.encoder = _Precomputed(encoder, texts, vectors)
    try:
        retriever.add(demos)
    finally:
        retriever.encoder = encoder
    return retriever


def index_with_ray(pool_path: str | os.PathLike, out_dir: str | os.PathLike, *, model: str | None = None, workers: int = 2,
                   index: str = "flat", index_options: Mapping[str, Any] | None = None,
                   embed_fields: Sequence[str] = ("instruction",), dedupe: bool = False, label_field: str | None = None,
                   prompt: str | None = None, pooling: str | None = None, address: str | None = None,
                   show_progress: bool | None = None) -> Path:
    """Index the pool file ``pool_path`` into the folder ``out_dir`` with Ray (what ``--engine ray`` runs)."""
    from pie_retriever.encoders import make_encoder
    from pie_retriever.encoders.models import DEFAULT_MODEL
    from pie_retriever.pool.pools import load_pool
    from pie_retriever.retrieval.persistence import check_save_target

    check_save_target(out_dir)
    demos = load_pool(pool_path, label_field=label_field)
    encoder = make_encoder(model or DEFAULT_MODEL, prompt=prompt, pooling=pooling)
    retriever = build_with_ray(demos, encoder, workers=workers, index=index, index_options=index_options,
                               embed_fields=embed_fields, dedupe=dedupe, address=address, show_progress=show_progress)
    return retriever.save(out_dir)
