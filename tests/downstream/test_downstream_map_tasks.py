"""Task maps (projection, label placement without overlaps, HTML) and task discovery (naming, table)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from conftest import blobs

from pie_retriever.downstream.labels_layout import boxes_overlap, place_labels
from pie_retriever.downstream.naming import name_clusters
from pie_retriever.downstream.taskmap import MapPanel, group_silhouette, make_panel, plot_maps, project_2d, write_html
from pie_retriever.downstream.tasks import candidate_ks, discover_tasks, format_table
from pie_retriever.errors import ConfigError


def _text_boxes(annotations, renderer):
    from matplotlib.text import Text

    for a in annotations:
        a.update_positions(renderer)
    return [Text.get_window_extent(a, renderer) for a in annotations]


def test_labels_never_overlap():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 5))
    rng = np.random.default_rng(0)
    anchors = [tuple(p) for p in rng.normal(0, 0.05, size=(30, 2))]  # 30 labels crowded round one spot
    ax.scatter(*np.array(anchors).T)
    ax.set_xlim(-1, 1)
    ax.set_ylim(-1, 1)
    placed, skipped = place_labels(ax, anchors, [f"verb{i}|noun{i}" for i in range(30)])
    assert len(placed) + len(skipped) == 30 and len(placed) >= 20
    boxes = _text_boxes(placed, fig.canvas.get_renderer())
    assert not any(boxes_overlap(a, b) for a, b in itertools.combinations(boxes, 2))
    frame = ax.get_window_extent()
    assert all(frame.x0 <= b.x0 and b.x1 <= frame.x1 and frame.y0 <= b.y0 and b.y1 <= frame.y1 for b in boxes)
    plt.close(fig)


def test_project_and_plot(tmp_path):
    x, labels = blobs(n_clusters=5, per=12)
    xy = project_2d(x, "tsne", seed=0)
    assert xy.shape == (60, 2) and xy.dtype == np.float32
    assert np.array_equal(xy, project_2d(x, "tsne", seed=0))  # exact: seeded, same array, same process and threads
    panels = [MapPanel(xy, labels, "a"), MapPanel(xy[:, ::-1].copy(), labels, "b")]
    skipped = plot_maps(panels, tmp_path / "m.png", panel_size=4)
    assert skipped == {"a": [], "b": []}
    assert (tmp_path / "m.png").stat().st_size > 10000
    with pytest.raises(ConfigError, match="Unknown projection 'pca'; choose one of: auto, umap, tsne"):
        project_2d(x, "pca")
    with pytest.raises(ConfigError, match="A map needs at least 5 instructions, got 3"):
        project_2d(x[:3], "tsne")


def test_html_is_self_contained_and_escaped(tmp_path):
    xy = np.array([[0, 0], [1, 1], [2, 0]], dtype=np.float32)
    write_html(MapPanel(xy, ["a|b", "a|b", "c|d"], "t <1>", ["Use <b>bold</b>", "x", "y & z"]), tmp_path / "m.html")
    page = (tmp_path / "m.html").read_text()
    assert page.count("<circle") == 3 and "&lt;b&gt;bold" in page and "y &amp; z" in page and "t &lt;1&gt;" in page
    assert "<script" not in page and "http" not in page


def test_make_panel_by_task_and_cluster():
    x, labels = blobs(n_clusters=4, per=10)
    texts = [f"text {i}" for i in range(len(x))]
    panel, summary = make_panel(texts, x, labels=labels, projection="tsne")
    assert panel.groups == labels and summary["silhouette"] > 0.8 and summary["groups"] == {f"t{i}": 10 for i in range(4)}
    panel, summary = make_panel(texts, x, color_by="cluster", labels=[f"write|{lab}" for lab in labels], n_clusters=4, projection="tsne")
    assert summary["k"] == 4 and sorted(set(panel.groups)) == [f"write|t{i}" for i in range(4)]
    assert group_silhouette(x, ["a"] * len(x)) is None


def test_name_clusters_majority_verb_then_noun():
    labels = ["write|poem", "write|poem", "compose|haiku", "write|limerick", "pen|haiku",  # cluster 0
              "none|none", "translate|none", "translate|sentence",                          # cluster 1
              "none|none",                                                                  # cluster 2
              "write|poem"]                                                                 # cluster 3
    names = name_clusters(labels, [0, 0, 0, 0, 0, 1, 1, 1, 2, 3])
    assert names[0].label == "write|poem" and names[0].purity == 0.4 and names[0].verb_share == 0.6
    assert names[1].label == "translate|sentence"  # a real noun beats none; the fallback loses to real labels
    assert names[2].label == "none|none"
    assert names[0].name == "write|poem" and names[3].name == "write|poem #2"  # the bigger cluster keeps the bare name


def test_candidate_ks():
    assert candidate_ks(249) == sorted(set(candidate_ks(249)))
    assert min(candidate_ks(249)) == 8 and max(candidate_ks(249)) == 62
    assert candidate_ks(10) == [2, 3]


def test_discover_tasks_finds_the_blobs():
    x, gold = blobs(n_clusters=6, per=15)
    texts = [f"instruction {i}" for i in range(len(x))]
    res = discover_tasks(texts, x, labels=[f"do|{g}" for g in gold])
    assert res["k"] == 6 and res["silhouette"]  # picked by silhouette among candidate_ks(90)
    assert sorted(c["label"] for c in res["clusters"]) == [f"do|t{i}" for i in range(6)]
    assert all(c["purity"] == 1.0 and c["size"] == 15 and len(c["examples"]) == 3 for c in res["clusters"])
    table = format_table(res, limit=4)
    assert table.splitlines()[0].split() == ["#", "task", "size", "share", "purity", "example"]
    assert "… and 2 more clusters" in table
    fixed = discover_tasks(texts, x, n_clusters=3, labels=[f"do|{g}" for g in gold])
    assert fixed["k"] == 3 and fixed["silhouette"] == {}
