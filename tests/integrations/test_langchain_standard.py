"""LangChain's standard suites (langchain-tests) on the integration: ``RetrieversIntegrationTests`` on
PIELangChainRetriever, ``EmbeddingsUnitTests`` and ``EmbeddingsIntegrationTests`` on PIEEmbeddings.

Each runs twice: on the deterministic HashingEncoder (fast) and on the real default model (the bundled pool for the
retriever).
"""

from __future__ import annotations

from functools import cache

import pytest

pytest.importorskip("langchain_core")
integration_tests = pytest.importorskip("langchain_tests.integration_tests", reason="langchain-tests not installed")
unit_tests = pytest.importorskip("langchain_tests.unit_tests", reason="langchain-tests not installed")

from pie_retriever import PIERetriever, load_bundled_pool  # noqa: E402
from pie_retriever.encoders.hashing import HashingEncoder  # noqa: E402
from pie_retriever.encoders.models import DEFAULT_MODEL  # noqa: E402
from pie_retriever.integrations.langchain import PIEEmbeddings, PIELangChainRetriever  # noqa: E402


@cache
def _encoder(kind: str):
    if kind == "hashing":
        return HashingEncoder(dim=64)
    from pie_retriever.encoders.transformer import TransformerEncoder

    return TransformerEncoder(DEFAULT_MODEL)


@cache
def _pool(kind: str) -> PIERetriever:
    return PIERetriever.from_demonstrations(load_bundled_pool(), _encoder(kind))


# The suite's async test carries no asyncio marker and the suite forbids overriding it, so mark the class
# (pytest-asyncio runs in strict mode here). The marker does nothing on the synchronous tests; silence the
# warning pytest-asyncio gives for them.
@pytest.mark.asyncio
@pytest.mark.filterwarnings("ignore:The test <Function .*> is marked with '@pytest.mark.asyncio':pytest.PytestWarning")
class _Suite(integration_tests.RetrieversIntegrationTests):
    pool_kind = "hashing"

    @property
    def retriever_constructor(self) -> type[PIELangChainRetriever]:
        return PIELangChainRetriever

    @property
    def retriever_constructor_params(self) -> dict:
        return {"retriever": _pool(self.pool_kind), "k": 4}

    @property
    def retriever_query_example(self) -> str:
        return "Write a limerick about tax law."



class TestStandardSuiteHashingEncoder(_Suite):
    pool_kind = "hashing"


class TestStandardSuiteDefaultModel(_Suite):
    pool_kind = "default"


# -- Embeddings ----------------------------------------------------------------------------------------
class _EmbeddingsParams:
    encoder_kind = "hashing"

    @property
    def embeddings_class(self) -> type[PIEEmbeddings]:
        return PIEEmbeddings

    @property
    def embedding_model_params(self) -> dict:
        return {"encoder": _encoder(self.encoder_kind)}  # one model load for the whole suite


class TestEmbeddingsUnitHashingEncoder(_EmbeddingsParams, unit_tests.EmbeddingsUnitTests):
    encoder_kind = "hashing"


class TestEmbeddingsUnitDefaultModel(_EmbeddingsParams, unit_tests.EmbeddingsUnitTests):
    encoder_kind = "default"


@pytest.mark.asyncio
@pytest.mark.filterwarnings("ignore:The test <Function .*> is marked with '@pytest.mark.asyncio':pytest.PytestWarning")
class TestEmbeddingsIntegrationHashingEncoder(_EmbeddingsParams, integration_tests.EmbeddingsIntegrationTests):
    encoder_kind = "hashing"


@pytest.mark.asyncio
@pytest.mark.filterwarnings("ignore:The test <Function .*> is marked with '@pytest.mark.asyncio':pytest.PytestWarning")
class TestEmbeddingsIntegrationDefaultModel(_EmbeddingsParams, integration_tests.EmbeddingsIntegrationTests):
    encoder_kind = "default"
