"""Request and reply bodies of the service (pydantic); the limits of :mod:`pie_retriever.service.config` are in them,
so a bad field is a 422 naming it and ``/openapi.json`` states every bound."""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, model_validator

from pie_retriever.service.config import MAX_BATCH, MAX_DEMOS_PER_WRITE, MAX_K, MAX_QUERY_CHARS

Scalar = Union[str, int, float, bool]
#: ``{metadata_key: value or [values]}``: at least one key, and a list holds at least one value.
Filter = Annotated[dict[str, Union[Scalar, Annotated[list[Scalar], Field(min_length=1)]]], Field(min_length=1)]
Query = Field(min_length=1, max_length=MAX_QUERY_CHARS)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SearchRequest(_Strict):
    query: str | None = Field(None, min_length=1, max_length=MAX_QUERY_CHARS, description="one query (or give `queries`)")
    queries: list[str] | None = Field(None, min_length=1, max_length=MAX_BATCH, description="several queries, one result list each")
    k: int = Field(4, ge=1, le=MAX_K)
    filter: Filter | None = Field(None, description="{metadata_key: value or [values]}, as the CLI's --filter-json")
    content_weight: float | None = Field(None, ge=0.0, le=1.0)
    content_query: str | None = Field(None, min_length=1, max_length=MAX_QUERY_CHARS)
    mmr: bool = False
    mmr_lambda: float = Field(0.5, ge=0.0, le=1.0)
    min_score: float | None = Field(None, ge=-1.0, le=1.0)

    @model_validator(mode="after")
    def _one_of(self) -> SearchRequest:
        if (self.query is None) == (self.queries is None):
            msg = "give exactly one of `query` (a string) or `queries` (a list of strings)"
            raise ValueError(msg)
        for q in self.queries or []:
            if not 1 <= len(q) <= MAX_QUERY_CHARS or not q.strip():
                msg = f"`queries`: each query must be a non-blank string of at most {MAX_QUERY_CHARS} characters"
                raise ValueError(msg)
        if self.query is not None and not self.query.strip():
            msg = "`query` is blank; pass the instruction you want demonstrations for"
            raise ValueError(msg)
        return self


class HitOut(BaseModel):
    id: str
    rank: int = Field(description="1-based")
    score: float
    instruction: str
    input: str
    output: str
    metadata: dict[str, Any]


class SearchResponse(BaseModel):
    index: str
    hits: list[HitOut] | None = Field(None, description="for `query`")
    results: list[list[HitOut]] | None = Field(None, description="for `queries`, one list per query")


class FewShotRequest(_Strict):
    query: str = Field(min_length=1, max_length=MAX_QUERY_CHARS)
    input: str = Field("", max_length=4 * MAX_QUERY_CHARS)
    k: int = Field(4, ge=1, le=MAX_K)
    format: Literal["text", "chat"] = "text"
    token_budget: int | None = Field(None, ge=1, le=1_000_000, description="max prompt tokens (needs a server --tokenizer)")
    template: Literal["alpaca", "plain"] = "alpaca"
    order: Literal["most_similar_last", "most_similar_first"] = "most_similar_last"
    system_prompt: str | None = Field(None, max_length=MAX_QUERY_CHARS)
    filter: Filter | None = None
    content_weight: float | None = Field(None, ge=0.0, le=1.0)
    mmr: bool = False
    mmr_lambda: float = Field(0.5, ge=0.0, le=1.0)

    @model_validator(mode="after")
    def _not_blank(self) -> FewShotRequest:
        if not self.query.strip():
            msg = "`query` is blank; pass the instruction you want a prompt for"
            raise ValueError(msg)
        return self


class FewShotResponse(BaseModel):
    index: str
    format: Literal["text", "chat"]
    prompt: str | None
    messages: list[dict[str, str]] | None
    ids: list[str]
    dropped_ids: list[str]
    num_tokens: int | None


class DemonstrationIn(_Strict):
    instruction: str = Field(min_length=1, max_length=4 * MAX_QUERY_CHARS)
    input: str = Field("", max_length=16 * MAX_QUERY_CHARS)
    output: str = Field("", max_length=16 * MAX_QUERY_CHARS)
    id: str | None = Field(None, min_length=1, max_length=200)
    metadata: dict[str, Any] = Field(default_factory=dict)


class AddRequest(_Strict):
    demonstrations: list[DemonstrationIn] = Field(min_length=1, max_length=MAX_DEMOS_PER_WRITE)


class AddResponse(BaseModel):
    index: str
    ids: list[str]
    size: int


class DeleteRequest(_Strict):
    ids: list[str] = Field(min_length=1, max_length=10 * MAX_DEMOS_PER_WRITE)


class DeleteResponse(BaseModel):
    index: str
    deleted: int
    size: int


class IndexInfo(BaseModel):
    name: str
    size: int
    model: str
    encoder: str
    precision: str
    index: str
    tasks: int = Field(description="distinct metadata `task` values")
    last_write: str | None
    generation: int


class IndexList(BaseModel):
    indexes: list[IndexInfo]


class ReloadRequest(_Strict):
    indexes: list[str] | None = Field(None, max_length=64)


class ReloadResponse(BaseModel):
    reloaded: dict[str, int]


class ErrorOut(BaseModel):
    detail: Any
