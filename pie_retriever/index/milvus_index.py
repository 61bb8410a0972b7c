"""Milvus index: the vectors live in a Milvus collection, reached with pymilvus' ``MilvusClient``.

The same code talks to Milvus Lite (a local ``*.db`` path, embedded in this process; what the tests use),
a Milvus standalone server or a cluster (``http://host:19530``): the URI is the only change.

Collection layout: ``id`` (INT64 primary key = the retriever's label), ``vector`` (FLOAT_VECTOR, inner
product) and one nullable VARCHAR field ``meta_<key>`` per key of ``filter_fields`` (default ``task``)
holding that metadata value when it is a string. A dict filter on those keys with string values is
pushed down as a Milvus expression (``meta_task in ["a", "b"]``); any other filter is sent as the list of
allowed ids (``id in [...]``). Collection properties record the encoder fingerprint
(``pie.encoder_fingerprint``), the one object allowed to write (``pie.writer``) and the number of writes
so far (``pie.revision``).

Saving writes no vector: the manifest records the URI, the collection, the options and the revision.
Loading attaches to the collection and checks its schema, dim and revision here, its count and ids in
``manifest.validate_data``, and its encoder fingerprint in :meth:`MilvusIndex.bind_encoder`. The
collection is live, so a save is a pointer, not a snapshot: a write after the save makes that save
unloadable (save again), and once a loaded retriever writes, the one it was saved from can no longer
write (its ``pie.writer`` lease is gone).
"""

from __future__ import annotations

import os
import re
import uuid
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from pie_retriever.errors import ConfigError, EncoderMismatchError, ExternalIndexError, IndexLoadError, require
from pie_retriever.index.base import VectorIndex

# grpc's fork handlers can hang a fork made while a Milvus Lite server or client is busy in this process (Ray
# starting its GCS: measured: 2 of 6 ray.init failed with them, 0 of 9 without). Read when grpc is first imported.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")

INDEX_TYPES: dict[str, str] = {
    "FLAT": "exact inner product (the same top-k as faiss flat)",
    "HNSW": "Milvus' HNSW graph, approximate",
    "AUTOINDEX": "the server's choice (HNSW on Milvus Lite)",
}
DEFAULT_FILTER_FIELDS = ("task",)
MAX_TOPK = 16_384  # Milvus' limit on search ``limit``
MAX_VALUE_BYTES = 512  # VARCHAR length of a filter field; longer values are stored as null
BATCH = 2_000  # rows per insert / ids per get or delete
FINGERPRINT_KEY = "pie.encoder_fingerprint"
WRITER_KEY = "pie.writer"
REVISION_KEY = "pie.revision"
TOKEN_ENV = "MILVUS_TOKEN"
LITE_KEEPALIVE_MS = 300_000
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,254}$")
_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
_SCHEMES = ("http://", "https://", "tcp://", "unix:")
_OPTIONS = ("uri", "collection", "index_type", "filter_fields", "drop_existing", "revision")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _fail(problem: str) -> ConfigError:
    return ConfigError(f"index 'milvus': {problem}")


def _check_uri(uri: Any) -> str:
    if not isinstance(uri, str) or not uri:
        raise _fail(f"needs index_options={{'uri': ..., 'collection': ...}}; uri={uri!r:.80} is not a non-empty string. "
                    "Use a local file ending in .db (Milvus Lite) or http://host:19530 (a Milvus server).")
    if uri.startswith(_SCHEMES):
        if re.match(r"^[a-z]+://[^/@]*@", uri):
            raise _fail(f"uri {uri.split('@')[-1]!r} carries credentials, which would be written to the manifest; "
                        f"pass them in the {TOKEN_ENV} environment variable instead.")
        return uri
    if not uri.endswith(".db"):
        raise _fail(f"uri {uri!r:.80} is neither a local Milvus Lite file ending in .db nor a URI starting with one of {list(_SCHEMES)}.")
    return str(Path(uri).expanduser().absolute())


def _check_fields(value: Any) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, Sequence) or len(value) > 16:
        raise _fail(f"filter_fields must be a list of up to 16 metadata keys, got {value!r:.80}.")
    bad = [k for k in value if not isinstance(k, str) or not _KEY.match(k)]
    if bad or len(set(value)) != len(value):
        raise _fail(f"filter_fields must be distinct identifiers (letters, digits, _; up to 64), got {list(value)!r:.120}.")
    return tuple(value)


def check_milvus_options(options: Any) -> dict[str, Any]:
    """Validate ``{uri, collection, index_type?, filter_fields?, drop_existing?}``; local URIs become absolute."""
    if not isinstance(options, Mapping):
        raise _fail(f"index options must be a dict, got {type(options).__name__}.")
    unknown = sorted(set(options) - set(_OPTIONS))
    if unknown:
        raise _fail(f"unknown option(s) {unknown}; known: {', '.join(_OPTIONS)}.")
    uri = _check_uri(options.get("uri"))
    collection = options.get("collection")
    if not isinstance(collection, str) or not _NAME.match(collection):
        raise _fail(f"collection must be a Milvus collection name (a letter or _, then letters, digits, _), got {collection!r:.80}.")
    index_type = options.get("index_type", "FLAT")
    if index_type not in INDEX_TYPES:
        raise _fail(f"index_type {index_type!r:.40} is not one of {list(INDEX_TYPES)}.")
    out = {"uri": uri, "collection": collection, "index_type": index_type,
           "filter_fields": list(_check_fields(options.get("filter_fields", DEFAULT_FILTER_FIELDS)))}
    if "drop_existing" in options:
        if not isinstance(options["drop_existing"], bool):
            raise _fail(f"drop_existing must be true or false, got {options['drop_existing']!r:.40}.")
        out["drop_existing"] = options["drop_existing"]
    if "revision" in options:
        revision = options["revision"]
        if isinstance(revision, bool) or not isinstance(revision, int) or revision < 0:
            raise _fail(f"revision must be a non-negative integer (written by save), got {revision!r:.40}.")
        out["revision"] = revision
    return out


def _literal(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def where_expression(flt: Any, fields: Sequence[str]) -> str | None:
    """The Milvus expression selecting what ``flt`` (a :class:`~pie_retriever.retrieval.filters.MetadataFilter`) selects,
    or None when it cannot be said exactly with the stored fields (then the caller sends allowed ids)."""
    parts = []
    for key, values in sorted(flt.wanted.items()):
        if key not in fields or not values:
            return None
        ok = all(isinstance(v, str) and len(v.encode()) <= MAX_VALUE_BYTES and not _CONTROL.search(v) for v in values)
        if not ok:
            return None
        parts.append(f"meta_{key} in [{', '.join(_literal(v) for v in sorted(values))}]")
    return " and ".join(parts)


def close_local_server(uri: str) -> None:
    """Stop the Milvus Lite server this process started for a local ``*.db`` URI (tests; exit does it too)."""
    if uri.startswith(_SCHEMES):
        return
    from milvus_lite.server_manager import server_manager_instance

    server_manager_instance.release_server(str(Path(uri).expanduser().absolute()))


class MilvusIndex(VectorIndex):
    """A :class:`VectorIndex` over a Milvus collection (``index="milvus"``, options ``uri`` and ``collection``).

    Options: ``uri`` (``path.db`` for Milvus Lite, ``http://host:19530`` for a server; a token comes from the
    ``MILVUS_TOKEN`` environment variable, never from the manifest), ``collection``, ``index_type``
    (``FLAT`` exact, default; ``HNSW``; ``AUTOINDEX``), ``filter_fields`` (metadata keys stored as fields
    for filter push-down; default ``["task"]``) and ``drop_existing`` (replace a non-empty collection;
    never saved). A new index refuses a collection that already holds vectors unless ``drop_existing``.
    """

    kind = "milvus"
    supports_metadata = True

    def __init__(self, dim: int, uri: str | None = None, collection: str | None = None, index_type: str = "FLAT",
                 filter_fields: Sequence[str] = DEFAULT_FILTER_FIELDS, drop_existing: bool = False, revision: int | None = None,
                 *, _attach: bool = False) -> None:
        opts = check_milvus_options({"uri": uri, "collection": collection, "index_type": index_type,
                                     "filter_fields": filter_fields, "drop_existing": drop_existing,
                                     **({} if revision is None else {"revision": revision})})
        self._dim = int(dim)
        self.uri, self.collection, self.index_type = opts["uri"], opts["collection"], opts["index_type"]
        self.filter_fields = tuple(opts["filter_fields"])
        self._token = uuid.uuid4().hex  # this object's writer lease
        self._owns = False
        self._revision = 0
        if _attach and not self.uri.startswith(_SCHEMES) and not Path(self.uri).exists():
            msg = f"The Milvus Lite database {self.uri} does not exist; the saved index points at it. Rebuild the index."
            raise IndexLoadError(msg)
        self._client = self._connect()
        if _attach:
            self._attach(revision)
        else:
            self._create(drop_existing)

    # -- connection and errors -------------------------------------------------------------------------
    def _connect(self) -> Any:
        pymilvus = require("pymilvus", "scale", "The 'milvus' index")
        extra: dict[str, Any] = {}
        if not self.uri.startswith(_SCHEMES):
            require("milvus_lite", "scale", "A local Milvus Lite database")
            Path(self.uri).parent.mkdir(parents=True, exist_ok=True)
            # Milvus Lite's gRPC server keeps grpc's default ping policy (one ping per 5 min without data); pymilvus
            # pings every 10 s, so an idle client got GOAWAY "too_many_pings" and its next call failed
            extra["grpc_options"] = {"grpc.keepalive_time_ms": LITE_KEEPALIVE_MS, "grpc.keepalive_permit_without_calls": 0}
        try:
            return pymilvus.MilvusClient(uri=self.uri, token=os.environ.get(TOKEN_ENV, ""), **extra)
        except pymilvus.exceptions.MilvusException as exc:
            hint = ("Milvus Lite lets one process open a database file at a time: is another one using it?" if extra
                    else "Check the URI and that the server is running.")
            msg = f"Cannot connect to Milvus at {self.uri}: {exc.message}. {hint}"
            raise ExternalIndexError(msg) from exc

    def _call(self, what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        from pymilvus.exceptions import MilvusException

        try:
            return fn(*args, **kwargs)
        except MilvusException as exc:
            msg = f"Milvus {what} on collection {self.collection!r} at {self.uri} failed: {exc.message}"
            raise ExternalIndexError(msg) from exc

    def close(self) -> None:
        """Close the client (the collection stays)."""
        self._client.close()

    # -- collection lifecycle --------------------------------------------------------------------------
    def _properties(self) -> dict[str, str]:
        return dict(self._call("describe", self._client.describe_collection, self.collection).get("properties") or {})

    def _set_property(self, key: str, value: str) -> None:
        self._call("alter properties", self._client.alter_collection_properties, self.collection, properties={key: value})

    def _create(self, drop_existing: bool) -> None:
        if self._call("has_collection", self._client.has_collection, self.collection):
            count = len(self)
            if count and not drop_existing:
                raise _fail(f"collection {self.collection!r} at {self.uri} already holds {count} vectors. Load the saved "
                            "retriever that built it (PIERetriever.load), choose another collection, or pass "
                            "index_options={'drop_existing': True} to replace it.")
            self._call("drop", self._client.drop_collection, self.collection)  # an empty one is recreated with our schema
        from pymilvus import DataType

        schema = self._client.create_schema(auto_id=False, enable_dynamic_field=False, description="pie_retriever demonstration vectors")
        schema.add_field("id", DataType.INT64, is_primary=True)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=self._dim)
        for key in self.filter_fields:
            schema.add_field(f"meta_{key}", DataType.VARCHAR, max_length=MAX_VALUE_BYTES, nullable=True)
        params = self._client.prepare_index_params()
        params.add_index(field_name="vector", index_type=self.index_type, metric_type="IP")
        self._call("create", self._client.create_collection, self.collection, schema=schema, consistency_level="Strong")
        # sync=False: an empty collection's index is built at once, and waiting polls a timestamp call Milvus Lite lacks
        self._call("create index", self._client.create_index, self.collection, params, sync=False)
        self._call("load", self._client.load_collection, self.collection)
        self._call("alter properties", self._client.alter_collection_properties, self.collection,
                   properties={WRITER_KEY: self._token, REVISION_KEY: "0"})
        self._owns = True

    def _attach(self, revision: int | None) -> None:
        where = f"Milvus collection {self.collection!r} at {self.uri}"
        if not self._call("has_collection", self._client.has_collection, self.collection):
            raise IndexLoadError(f"{where} does not exist (dropped since the save?); rebuild the index.")
        info = self._call("describe", self._client.describe_collection, self.collection)
        fields = {f["name"]: f for f in info.get("fields", [])}
        vector = fields.get("vector", {})
        found = int(vector.get("params", {}).get("dim", -1))
        if found != self._dim:
            raise IndexLoadError(f"{where} holds {found}-d vectors; the manifest says dim={self._dim}. Refusing to load it.")
        expected = {"id", "vector", *(f"meta_{k}" for k in self.filter_fields)}
        if set(fields) != expected or not fields["id"].get("is_primary"):
            raise IndexLoadError(f"{where} has fields {sorted(fields)}; a pie_retriever index with these options has {sorted(expected)}.")
        metric = self._call("describe index", self._client.describe_index, self.collection, "vector").get("metric_type")
        if metric != "IP":
            raise IndexLoadError(f"{where} indexes vectors by {metric}; pie_retriever needs inner product (IP).")
        stored = self._properties().get(REVISION_KEY, "0")
        self._revision = int(stored) if stored.isdigit() else -1
        if revision is not None and self._revision != revision:
            raise IndexLoadError(f"{where} was written to after this save (revision {revision} when saved, {stored} now): a save "
                                 "of a Milvus index points at the live collection. Save again after the last write, or rebuild.")
        self._call("load", self._client.load_collection, self.collection)

    def _claim(self) -> None:
        """Before a write: hold the ``pie.writer`` lease, taking it if this object attached (a loaded save)."""
        writer = self._properties().get(WRITER_KEY)
        if writer == self._token:
            return
        if self._owns:
            msg = (f"Milvus collection {self.collection!r} at {self.uri} was taken over by another retriever (one "
                   "loaded from a save has written to it), so this one may no longer write. Use the other one, or "
                   "rebuild into a new collection.")
            raise ExternalIndexError(msg)
        self._set_property(WRITER_KEY, self._token)
        self._owns = True

    def _written(self) -> None:
        self._revision += 1
        self._set_property(REVISION_KEY, str(self._revision))

    def bind_encoder(self, fingerprint: str) -> None:
        stored = self._properties().get(FINGERPRINT_KEY)
        if stored is None:
            self._set_property(FINGERPRINT_KEY, fingerprint)
        elif stored != fingerprint:
            msg = (f"Encoder mismatch: Milvus collection {self.collection!r} at {self.uri} holds vectors of encoder "
                   f"fingerprint {stored}, but this retriever's encoder has {fingerprint}. Use the same model, prompt "
                   "and pooling, or build into another collection.")
            raise EncoderMismatchError(msg)

    # -- VectorIndex -----------------------------------------------------------------------------------
    @property
    def dim(self) -> int:
        return self._dim

    def __len__(self) -> int:
        rows = self._call("count", self._client.query, self.collection, filter="", output_fields=["count(*)"],
                          consistency_level="Strong")
        return int(rows[0]["count(*)"])

    def _row(self, label: int, vector: np.ndarray, metadata: Mapping[str, Any] | None) -> dict[str, Any]:
        row: dict[str, Any] = {"id": label, "vector": vector}
        for key in self.filter_fields:
            value = (metadata or {}).get(key)
            ok = isinstance(value, str) and len(value.encode()) <= MAX_VALUE_BYTES
            row[f"meta_{key}"] = value if ok else None
        return row

    def add(self, ids: np.ndarray, vectors: np.ndarray, metadata: Sequence[Mapping[str, Any]] | None = None) -> None:
        ids = np.asarray(ids, dtype=np.int64)
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.shape != (len(ids), self._dim) or (metadata is not None and len(metadata) != len(ids)):
            raise ConfigError(f"MilvusIndex.add got {len(ids)} ids, vectors of shape {vectors.shape} and "
                              f"{'no' if metadata is None else len(metadata)} metadata; expected ({len(ids)}, {self._dim}).")
        rows = [self._row(int(i), v, metadata[n] if metadata is not None else None) for n, (i, v) in enumerate(zip(ids, vectors))]
        self._claim()
        done = 0
        try:
            for start in range(0, len(rows), BATCH):
                self._call("insert", self._client.insert, self.collection, rows[start:start + BATCH])
                done = min(start + BATCH, len(rows))
        except BaseException:
            if done:  # all or nothing: take back the batches already written
                self._client.delete(self.collection, ids=ids[:done].tolist())
            raise
        self._written()

    def remove(self, ids: np.ndarray) -> None:
        ids = np.asarray(ids, dtype=np.int64)
        self._claim()
        for start in range(0, len(ids), BATCH):
            self._call("delete", self._client.delete, self.collection, ids=ids[start:start + BATCH].tolist())
        self._written()

    def search(self, queries: np.ndarray, k: int, allowed: np.ndarray | None = None, where: Any = None) -> tuple[np.ndarray, np.ndarray]:
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
        out = np.full((len(queries), k), -1, dtype=np.int64)
        if k > MAX_TOPK:
            raise ConfigError(f"index 'milvus' returns at most {MAX_TOPK} hits per query (Milvus' limit), got k={k}.")
        expr = where_expression(where, self.filter_fields) if where is not None else None
        if expr is None and allowed is not None:
            if len(allowed) == 0:
                return scores, out
            expr = f"id in [{','.join(map(str, np.asarray(allowed, dtype=np.int64).tolist()))}]"
        if len(queries) == 0:
            return scores, out
        params: dict[str, Any] = {"metric_type": "IP"}
        if self.index_type != "FLAT":
            params["params"] = {"ef": max(64, 2 * k)}
        result = self._call("search", self._client.search, self.collection, data=list(queries), limit=k, filter=expr or "",
                            anns_field="vector", search_params=params, consistency_level="Strong")
        for qi, hits in enumerate(result):
            for j, hit in enumerate(hits):
                out[qi, j], scores[qi, j] = int(hit["id"]), float(hit["distance"])
        return scores, out

    def reconstruct(self, ids: np.ndarray) -> np.ndarray:
        ids = np.asarray(ids, dtype=np.int64)
        found: dict[int, Any] = {}
        for start in range(0, len(ids), BATCH):
            chunk = np.unique(ids[start:start + BATCH]).tolist()
            rows = self._call("get", self._client.get, self.collection, ids=chunk, output_fields=["vector"])
            found.update((int(r["id"]), r["vector"]) for r in rows)
        missing = [int(i) for i in ids if int(i) not in found]
        if missing:
            msg = f"Milvus collection {self.collection!r} at {self.uri} has no vector for id(s) {missing[:5]}."
            raise ExternalIndexError(msg)
        return np.asarray([found[int(i)] for i in ids], dtype=np.float32).reshape(len(ids), self._dim)

    def ids(self) -> np.ndarray:
        if not self.uri.startswith(_SCHEMES):  # Milvus Lite answers a query for every row at once
            rows = self._call("query", self._client.query, self.collection, filter="", output_fields=["id"], consistency_level="Strong")
            return np.asarray([int(r["id"]) for r in rows], dtype=np.int64)
        return self._ids_by_iterator()

    def _ids_by_iterator(self) -> np.ndarray:
        """Every id through ``query_iterator``: a server caps one query's rows (16,384) and does not order them."""
        iterator = self._call("query", self._client.query_iterator, self.collection, batch_size=BATCH * 4, filter="",
                              output_fields=["id"])
        out: list[int] = []
        try:
            while batch := self._call("query", iterator.next):
                out.extend(int(r["id"]) for r in batch)
        finally:
            iterator.close()
        return np.asarray(out, dtype=np.int64)

    # -- persistence: the manifest records where the collection is -------------------------------------
    def options(self) -> dict:
        return {"uri": self.uri, "collection": self.collection, "index_type": self.index_type,
                "filter_fields": list(self.filter_fields), "revision": self._revision}

    @classmethod
    def check_options(cls, options: Any, kind: str) -> dict:
        return check_milvus_options(options)

    def save(self, folder: Path) -> list[str]:
        return []

    @classmethod
    def from_files(cls, files: Mapping[str, bytes], dim: int, options: Mapping[str, Any]) -> MilvusIndex:
        if files:
            raise IndexLoadError(f"a 'milvus' index has no files of its own, but the manifest lists {sorted(files)}.")
        opts = {k: v for k, v in check_milvus_options(options).items() if k != "drop_existing"}
        return cls(dim, **opts, _attach=True)

    def __repr__(self) -> str:
        return f"MilvusIndex(uri={self.uri!r}, collection={self.collection!r}, index_type={self.index_type!r}, dim={self._dim})"

