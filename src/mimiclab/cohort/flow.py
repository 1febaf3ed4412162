"""CONSORT-style flow diagram of the attrition table (SVG and PNG, matplotlib, no pyplot state).

Main column: the units left after each step; side boxes: how many each step removed and why. Output is
byte-stable for a given matplotlib version (no dates in the SVG, fixed hash salt), so subsets re-run to
identical files.
"""

from __future__ import annotations

import io
import textwrap

import pandas as pd


def _figure(att: pd.DataFrame, kinds: list[str], unit_label: str):
    from matplotlib.figure import Figure
    from matplotlib.patches import FancyBboxPatch

    steps = len(att)
    row_h = 1.25
    height = 0.6 + row_h * steps
    fig = Figure(figsize=(8.5, max(2.2, height * 0.82)))
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, 10)
    ax.set_ylim(-height + 0.3, 0.6)
    ax.axis("off")
    main_x, main_w, side_x, side_w, box_h = 0.4, 4.2, 5.5, 4.2, 0.8

    def box(x, y, w, text, face):
        ax.add_patch(FancyBboxPatch((x, y - box_h / 2), w, box_h, boxstyle="round,pad=0.02,rounding_size=0.08",
                                    linewidth=1.0, edgecolor="#333333", facecolor=face))
        ax.text(x + w / 2, y, text, ha="center", va="center", fontsize=8.5, wrap=False)

    def wrap(s: str, width: int = 48) -> str:
        return "\n".join(textwrap.wrap(s, width)[:3])

    first = att.iloc[0]
    box(main_x, 0, main_w, wrap(str(first["label"])) + f"\n(n = {first['n_after']:,})", "#e8f0fb")
    for i in range(1, steps):
        r = att.iloc[i]
        y_prev, y = -(i - 1) * row_h, -i * row_h
        mid = (y_prev + y) / 2
        cx = main_x + main_w / 2
        ax.annotate("", xy=(cx, y + box_h / 2), xytext=(cx, y_prev - box_h / 2),
                    arrowprops=dict(arrowstyle="-|>", color="#333333", lw=1.0))
        ax.annotate("", xy=(side_x, mid), xytext=(cx, mid), arrowprops=dict(arrowstyle="-|>", color="#333333", lw=1.0))
        label = str(r["label"]).split(": ", 1)[-1]
        why = f"Not meeting: {label}" if kinds[i] == "include" else f"Excluded: {label}"
        box(side_x, mid, side_w, wrap(why, 50) + f"\n(n = {r['n_excluded']:,})", "#fbeeee")
        final = i == steps - 1
        box(main_x, y, main_w, f"{'Final cohort: ' if final else ''}{r['n_after']:,} {unit_label}",
            "#e6f4ea" if final else "#f4f4f4")
    return fig


def render(att: pd.DataFrame, kinds: list[str], unit_label: str) -> tuple[bytes, bytes]:
    """(svg bytes, png bytes)."""
    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    with matplotlib.rc_context({"svg.hashsalt": "mimiclab", "svg.fonttype": "path", "font.family": "DejaVu Sans"}):
        fig = _figure(att, kinds, unit_label)
        FigureCanvasAgg(fig)
        svg, png = io.BytesIO(), io.BytesIO()
        fig.savefig(svg, format="svg", metadata={"Date": None, "Creator": "mimiclab"})
        fig.savefig(png, format="png", dpi=150, metadata={"Software": "mimiclab"})
    return svg.getvalue(), png.getvalue()
