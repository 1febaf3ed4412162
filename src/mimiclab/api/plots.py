"""Figures: plotly for interaction (notebooks, HTML), matplotlib for static files.

Every figure is built as a plotly Figure from data computed in DuckDB. ``save`` writes ``.html`` with
plotly.js embedded (works offline) and draws ``.png``/``.svg``/``.pdf``/``.jpg`` with matplotlib from the
same traces: plotly's static export (kaleido) needs a browser download, which a laptop at a datathon or an
air-gapped server may not have.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from mimiclab.errors import MimiclabError

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

STATIC = {".png", ".svg", ".pdf", ".jpg", ".jpeg"}
SPAN_COLORS = {"admission": "#4c78a8", "icustay": "#e45756", "transfer": "#72b7b2", "edstay": "#7c3aed"}


def distribution_figure(dist: pd.DataFrame, title: str = ""):
    """Bars of `Dataset.distribution` output: one bar per bin or category (one trace per group)."""
    import plotly.graph_objects as go

    kind, by, column = dist.attrs.get("kind"), dist.attrs.get("by"), dist.attrs.get("column", "")
    groups = [(None, dist)] if not by else [(g, dist[dist[by].astype("object") == g] if g is not None
                                             else dist[dist[by].isna()]) for g in _unique(dist[by])]
    fig = go.Figure()
    for g, sub in groups:
        name = "(missing)" if by and g is None else (str(g) if by else column)
        if kind == "numeric":
            start, end = sub["bin_start"], sub["bin_end"]
            if getattr(start.dtype, "kind", "") == "M":  # datetime64 bins
                width = (end - start).dt.total_seconds() * 1000.0  # plotly date axes count in ms
                x = start + (end - start) / 2
            else:
                width = end - start
                x = (start + end) / 2
            fig.add_trace(go.Bar(x=list(x), y=sub["count"].tolist(), width=list(width), name=name,
                                 customdata=np.stack([start.astype(str), end.astype(str)], axis=-1),
                                 hovertemplate="[%{customdata[0]}, %{customdata[1]}): %{y}<extra></extra>"))
        else:
            fig.add_trace(go.Bar(x=sub["value"].astype(str).tolist(), y=sub["count"].tolist(), name=name))
    fig.update_layout(title=title, xaxis_title=column, yaxis_title="Count", bargap=0 if kind == "numeric" else 0.2,
                      barmode="group" if by else "relative", showlegend=bool(by), template="plotly_white")
    return fig


def _unique(s) -> list:
    vals = [v for v in dict.fromkeys(s.tolist()) if v is not None and v == v]
    return sorted(vals, key=str) + ([None] if s.isna().any() else [])


def item_figure(series: pd.DataFrame, title: str = "", ylabel: str = "value"):
    """Numeric values of one item over time (lines + markers); rows without a number are left out."""
    import plotly.graph_objects as go

    s = series[series["value"].notna() & series["time"].notna()]
    fig = go.Figure()
    for src, sub in s.groupby("source", sort=True) if s["source"].nunique() > 1 else [(None, s)]:
        fig.add_trace(go.Scatter(x=list(sub["time"]), y=sub["value"].tolist(), mode="lines+markers",
                                 name=src or ylabel))
    fig.update_layout(title=title, xaxis_title="time", yaxis_title=ylabel, template="plotly_white",
                      showlegend=s["source"].nunique() > 1)
    return fig


def stays_figure(stays: pd.DataFrame, title: str = ""):
    """Gantt-like chart: one horizontal bar per admission / ICU stay / transfer (rows top to bottom)."""
    import pandas as pd
    import plotly.graph_objects as go

    s = stays[stays["start"].notna()].copy()
    s["end"] = s["end"].fillna(s["start"])
    rows: list[str] = []
    seen: dict[str, int] = {}
    for k, i, lab in zip(s["kind"].astype(str), s["id"].astype("object"), s["label"].astype("object"), strict=True):
        seen[k] = seen.get(k, 0) + 1
        ident = str(int(i)) if i is not None and not pd.isna(i) else f"#{seen[k]}"  # rows must be unique
        rows.append(f"{k} {ident}" + (f" · {lab}" if isinstance(lab, str) and lab else ""))
    s["row"] = rows
    fig = go.Figure()
    for kind, sub in s.groupby("kind", sort=False):
        dur = (sub["end"] - sub["start"]).dt.total_seconds() * 1000.0
        fig.add_trace(go.Bar(base=[t.isoformat() for t in sub["start"]], x=dur.tolist(), y=sub["row"].tolist(),
                             orientation="h", name=kind, marker_color=SPAN_COLORS.get(str(kind)),
                             hovertemplate="%{y}<br>%{base} + %{x} ms<extra></extra>"))
    fig.update_layout(title=title, xaxis_type="date", xaxis_title="time", template="plotly_white",
                      yaxis={"autorange": "reversed", "categoryorder": "array", "categoryarray": s["row"].tolist()},
                      barmode="overlay", height=max(300, 28 * len(s) + 120))
    return fig


def save(fig, path: str | os.PathLike) -> Path:
    """Write a figure: .html (plotly.js embedded, offline) or a static image drawn with matplotlib."""
    p = Path(path)
    ext = p.suffix.lower()
    p.parent.mkdir(parents=True, exist_ok=True)
    if ext in (".html", ".htm"):
        fig.write_html(str(p), include_plotlyjs=True, full_html=True)
    elif ext in STATIC:
        mfig = to_matplotlib(fig)
        mfig.savefig(str(p), dpi=150, bbox_inches="tight")
    else:
        raise MimiclabError(f"cannot save a figure as {p.name!r}: use .html, .png, .svg, .pdf or .jpg")
    return p


def _dates(values) -> np.ndarray:
    import matplotlib.dates as mdates
    import pandas as pd

    return mdates.date2num(pd.to_datetime(list(values)).to_pydatetime())


def to_matplotlib(fig):
    """The same picture as a matplotlib Figure (no pyplot: no GUI backend, safe in servers and threads)."""
    from matplotlib.figure import Figure

    mfig = Figure(figsize=(9, 5))
    ax = mfig.add_subplot()
    lay = fig.layout
    date_x = lay.xaxis.type == "date"
    categorical_x = False
    for tr in fig.data:
        name = tr.name
        if tr.type == "bar" and tr.orientation == "h":
            left = _dates(tr.base)
            width = np.asarray(tr.x, dtype=float) / 86_400_000.0  # ms -> days (matplotlib date unit)
            ax.barh(list(tr.y), width, left=left, label=name, color=tr.marker.color, alpha=0.85)
            date_x = True
        elif tr.type == "bar":
            x = list(tr.x)
            if x and isinstance(x[0], str):
                categorical_x = True
                ax.bar(x, list(tr.y), label=name)
            else:
                if (x and isinstance(x[0], (dt.datetime, np.datetime64))) or _is_timestamp(x):
                    xs = _dates(x)
                    w = np.asarray(tr.width, dtype=float) / 86_400_000.0
                    date_x = True
                else:
                    xs = np.asarray(x, dtype=float)
                    w = np.asarray(tr.width if tr.width is not None else 0.8, dtype=float)
                ax.bar(xs, list(tr.y), width=w, label=name, align="center")
        elif tr.type == "scatter":
            x = list(tr.x)
            xs = _dates(x) if (date_x or _is_timestamp(x)) else np.asarray(x, dtype=float)
            date_x = date_x or _is_timestamp(x)
            mode = tr.mode or "lines"
            ax.plot(xs, list(tr.y), marker="o" if "markers" in mode else None,
                    linestyle="-" if "lines" in mode else "none", markersize=3, label=name)
        else:  # pragma: no cover - only the traces above are produced here
            raise MimiclabError(f"cannot draw a {tr.type} trace with matplotlib")
    if date_x:
        import matplotlib.dates as mdates

        ax.xaxis_date()
        ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(ax.xaxis.get_major_locator()))
    if categorical_x:
        for lab in ax.get_xticklabels():
            lab.set_rotation(45)
            lab.set_horizontalalignment("right")
    if lay.yaxis.autorange == "reversed":
        ax.invert_yaxis()
    ax.set_title(lay.title.text or "")
    ax.set_xlabel(lay.xaxis.title.text or "")
    ax.set_ylabel(lay.yaxis.title.text or "")
    if lay.showlegend:
        ax.legend()
    return mfig


def _is_timestamp(x) -> bool:
    import pandas as pd

    return bool(x) and isinstance(x[0], (pd.Timestamp, dt.datetime, np.datetime64))
