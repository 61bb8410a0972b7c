import numpy as np
import pytest

from pie_retriever.encoders.base import l2_normalize
from pie_retriever.errors import PIEError
from pie_retriever.index import create_index, load_index


def _data(n=50, d=16, seed=0):
    rng = np.random.default_rng(seed)
    return l2_normalize(rng.normal(size=(n, d)).astype(np.float32))


@pytest.mark.parametrize("kind", ["flat", "hnsw", "numpy"])
def test_search_matches_bruteforce_and_ids_survive_delete(kind, tmp_path):
    x = _data()
    ids = np.arange(100, 150, dtype=np.int64)
    index = create_index(16, kind)
    index.add(ids, x)
    assert len(index) == 50
    scores, got = index.search(x[:5], 3)
    assert (got[:, 0] == ids[:5]).all()
    np.testing.assert_allclose(scores[:, 0], 1.0, atol=1e-3)  # faiss kinds store fp16 by default (test_storage.py)
    index.remove(np.array([100, 101]))
    assert len(index) == 48
    _, got = index.search(x[:5], 1)
    assert 100 not in got and 101 not in got
    assert got[2, 0] == 102  # ids of the rest are unchanged
    np.testing.assert_allclose(index.reconstruct(np.array([110])), x[10:11], atol=1e-3)
    _, got = index.search(x[:1], 4, allowed=np.array([120, 130]))
    assert set(got[0, :2]) == {120, 130} and (got[0, 2:] == -1).all()
    index.save(tmp_path)
    loaded = load_index(tmp_path, index.kind, 16, index.options())
    np.testing.assert_array_equal(loaded.search(x[:5], 3)[1], index.search(x[:5], 3)[1])


def test_k_larger_than_index_pads():
    index = create_index(16, "flat")
    index.add(np.array([1, 2]), _data(2))
    scores, ids = index.search(_data(1), 5)
    assert ids.shape == (1, 5) and (ids[0, 2:] == -1).all() and np.isneginf(scores[0, 2:]).all()


def test_unknown_kind():
    with pytest.raises(PIEError, match="Unknown index kind 'ivf'; choose one of: flat, hnsw, numpy"):
        create_index(8, "ivf")
