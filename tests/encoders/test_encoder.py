"""The real packaged MiniLM through TransformerEncoder."""

import numpy as np
import pytest

from pie_retriever.encoders.transformer import POOLINGS, PRECISION_TOLERANCE, TransformerEncoder
from pie_retriever.errors import PIEError, PromptError


def test_encode_shape_dtype_norm(minilm):
    v = minilm.encode(["Write a poem about cats.", "Summarize this article.", "Hi"])
    assert v.shape == (3, 384) and v.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    assert minilm.encode([]).shape == (0, 384)


def test_batching_and_sorting_do_not_change_vectors(minilm):
    texts = ["short", "a much longer instruction that has many more tokens than the others do", "medium length text"]
    together = minilm.encode(texts)
    alone = np.vstack([minilm.encode([t]) for t in texts])
    assert minilm.precision == "fp32"  # the default: one vector per text whatever the batch (was atol 2e-2 under bf16)
    np.testing.assert_allclose(together, alone, rtol=0, atol=PRECISION_TOLERANCE["fp32"])


def test_bf16_close_to_fp32(minilm):
    texts = ["Write a limerick about tax law.", "Classify the sentiment of the review.", "Translate to French.", "Hi"]
    minilm.precision = "fp32"
    a = minilm.encode(texts)
    minilm.precision = "bf16"
    assert minilm.bf16_for(len(texts)) and not minilm.bf16_for(2)  # small calls stay fp32
    b = minilm.encode(texts)
    assert (a * b).sum(1).min() > 0.999 and not np.array_equal(a, b)


@pytest.mark.parametrize("pooling", list(POOLINGS))
def test_every_pooling_runs(pooling, _minilm_session):
    enc = TransformerEncoder("minilm", pooling=pooling, prompt="pie")
    v = enc.encode(["Write a poem.", "List three fruits please"])
    assert v.shape == (2, 384) and np.isfinite(v).all()


def test_fingerprint_tracks_prompt_and_pooling():
    a = TransformerEncoder("minilm", prompt="plain")
    b = TransformerEncoder("minilm", prompt="pie")
    c = TransformerEncoder("minilm", prompt="plain", pooling="cls")
    assert len({a.fingerprint, b.fingerprint, c.fingerprint}) == 3
    assert a.fingerprint == TransformerEncoder("minilm", prompt="plain").fingerprint


def test_overlong_input_truncated_with_one_warning(minilm):
    minilm.max_length = 32
    long = "word " * 200
    with pytest.warns(UserWarning, match=r"2 of 3 input\(s\) were longer than max_length=32") as record:
        v = minilm.encode([long, "short", long + "more"])
    assert len([w for w in record if "max_length" in str(w.message)]) == 1
    assert v.shape == (3, 384)


def test_bad_options():
    with pytest.raises(PIEError, match="Unknown pooling 'max'; choose one of: mean, cls, last, last2"):
        TransformerEncoder("minilm", pooling="max")
    with pytest.raises(PIEError, match="Unknown precision"):
        TransformerEncoder("minilm", precision="fp8")
    with pytest.raises(PromptError, match="unknown placeholder"):
        TransformerEncoder("minilm", prompt="{query} then {instruction}")


def test_encode_rejects_non_strings(minilm):
    with pytest.raises(TypeError, match="single string"):
        minilm.encode("not a list")
    with pytest.raises(TypeError, match=r"text #1 is NoneType"):
        minilm.encode(["ok", None])


def test_task_beats_topic_on_a_trap(minilm):
    """Even untrained, the query embedding must rank an exact task paraphrase above an unrelated one."""
    v = minilm.encode(["Write a poem about the sea.", "Compose a poem about the ocean.", "Convert 5 miles to kilometers."])
    assert v[0] @ v[1] > v[0] @ v[2]


def test_no_model_means_the_library_default():
    from pie_retriever.encoders.models import DEFAULT_MODEL

    enc = TransformerEncoder(max_length=32)
    assert enc.model_spec == DEFAULT_MODEL
    assert enc.fingerprint == TransformerEncoder(DEFAULT_MODEL, max_length=32).fingerprint


def test_hashing_encoder_routes_prompts():
    """The fake is prompt-aware: documents and queries encoded with different prompts differ, plain is bare text."""
    import numpy as np

    from pie_retriever.encoders.hashing import HashingEncoder

    plain = HashingEncoder(dim=64)
    routed = HashingEncoder(dim=64, prompt="plain", query_prompt="pie")
    text = ["Write a poem about the sea."]
    assert np.allclose(routed.encode_documents(text), plain.encode(text))
    q = routed.encode_queries(text)
    assert not np.allclose(q, plain.encode(text))
    assert np.allclose(q, plain.encode(text, prompt="pie"))
    assert routed.fingerprint != plain.fingerprint
