"""Place text labels on a matplotlib axes without overlaps (greedy, deterministic).

Each label is tried at its anchor, then at offsets on rings around it (in points); the first position whose
box overlaps no label already placed and stays inside the axes wins, with a leader line to the anchor. A
label that finds no free spot is left out (and reported), so the labels drawn never overlap.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

__all__ = ["boxes_overlap", "place_labels"]


def _offsets(max_radius: float, step: float) -> list[tuple[float, float]]:
    out = [(0.0, 0.0)]
    r = step
    while r <= max_radius:
        n = max(8, int(2 * math.pi * r / step))
        out += [(r * math.cos(2 * math.pi * i / n), r * math.sin(2 * math.pi * i / n)) for i in range(n)]
        r += step
    return out


def boxes_overlap(a: Any, b: Any, pad: float = 0.0) -> bool:
    """Whether two matplotlib ``Bbox`` (display units) intersect, with ``pad`` pixels of margin."""
    return not (a.x1 + pad <= b.x0 or b.x1 + pad <= a.x0 or a.y1 + pad <= b.y0 or b.y1 + pad <= a.y0)


def place_labels(ax: Any, anchors: Sequence[tuple[float, float]], texts: Sequence[str], colors: Sequence[Any] | None = None, *,
                 fontsize: float = 8.0, max_radius: float = 400.0, step: float = 8.0) -> tuple[list[Any], list[str]]:
    """Annotate ``texts`` at data-coordinate ``anchors`` (in the given order: put the important ones first).

    Returns ``(annotations placed, texts left out)``.
    """
    from matplotlib.text import Text

    fig = ax.figure
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    frame = ax.get_window_extent(renderer)
    placed: list[Any] = []
    boxes: list[Any] = []
    skipped: list[str] = []
    offsets = _offsets(max_radius, step)
    pad_px = 0.35 * fontsize * fig.dpi / 72.0  # the round box around the text (pad=0.2 em) and its edge
    for i, (xy, text) in enumerate(zip(anchors, texts)):
        color = colors[i] if colors is not None else "black"
        ann = ax.annotate(text, xy=xy, xytext=(0, 0), textcoords="offset points", ha="center", va="center", fontsize=fontsize,
                          color="black", zorder=5, bbox={"boxstyle": "round,pad=0.2", "fc": "white", "ec": color, "lw": 1.0, "alpha": 0.85})
        for dx, dy in offsets:
            ann.set_position((dx, dy))
            ann.update_positions(renderer)
            box = Text.get_window_extent(ann, renderer).padded(pad_px)  # the text only (an Annotation adds its arrow)
            inside = frame.x0 <= box.x0 and box.x1 <= frame.x1 and frame.y0 <= box.y0 and box.y1 <= frame.y1
            if inside and not any(boxes_overlap(box, other, pad=1.0) for other in boxes):
                boxes.append(box)
                placed.append(ann)
                if (dx, dy) != (0.0, 0.0):  # a leader line from the group's centre to its moved label, under the label
                    ax.annotate("", xy=xy, xytext=(dx, dy), textcoords="offset points", zorder=4,
                                arrowprops={"arrowstyle": "-", "color": color, "lw": 0.8, "shrinkA": 0, "shrinkB": 0})
                break
        else:
            ann.remove()
            skipped.append(text)
    return placed, skipped
