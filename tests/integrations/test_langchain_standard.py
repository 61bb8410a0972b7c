"""LangChain's standard retriever suite (langchain-tests ``RetrieversIntegrationTests``) on PIELangChainRetriever.

Run twice: on the deterministic HashingEncoder (fast) and on the real default model over the bundled pool.
"""

from __future__ import annotations

from functools import cache

import pytest

pytest.importorskip("langchain_core")
integration_tests = pytest.importorskip("langchain_tests.integration_tests", reason="langchain-tests not installed")

from pie_retriever import PIERetriever, load_bundled_pool  # noqa: E402
from pie_retriever.encoders.hashing import HashingEncoder  # noqa: E402
from pie_retriever.integrations.langchain import PIELangChainRetriever  # noqa: E402
from pie_retriever.models import DEFAULT_MODEL  # noqa: E402


@cache
def _pool(kind: str) -> PIERetriever:
    if kind == "hashing":
        encoder = HashingEncoder(dim=64)
    else:
        from pie_retriever.encoders.transformer import TransformerEncoder

        encoder = TransformerEncoder(DEFAULT_MODEL)
    return PIERetriever.from_demonstrations(load_bundled_pool(), encoder)


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
