"""`cdp audiences chart`: audience sizes over time, as an HTML page anyone can open.

Sizes come from the durable membership history: at every instant an audience was
evaluated for all profiles (daily builds, backfilled dates), the number of ranges that
hold it. Streaming evaluations look at a few profiles only, so they are not points of
the chart. The page is self-contained (inline SVG, no scripts, nothing fetched), so it
can be mailed or opened from a file share.
"""

from __future__ import annotations

import html
from collections import defaultdict
from datetime import datetime
from pathlib import Path

from cdp import warehouse

SIZES_OVER_TIME = """
select
    evaluations.audience_id,
    evaluations.evaluated_at,
    count(history.profile_id) as member_count
from marts.fct_audience_evaluations as evaluations
left join marts.fct_audience_membership_history as history
    on history.audience_id = evaluations.audience_id
    and history.valid_from <= evaluations.evaluated_at
    and (history.valid_to is null or history.valid_to > evaluations.evaluated_at)
where evaluations.evaluation_kind in ('build', 'as_of')
    and (cardinality(%(audience_ids)s::text[]) = 0
        or evaluations.audience_id = any(%(audience_ids)s::text[]))
group by evaluations.audience_id, evaluations.evaluated_at
order by evaluations.audience_id, evaluations.evaluated_at
"""

WIDTH, HEIGHT, MARGIN = 640, 180, 48


def sizes_over_time(audience_ids: list[str]) -> dict[str, list[tuple[datetime, int]]]:
    """Each audience's (instant, size) points, oldest first."""
    series: dict[str, list[tuple[datetime, int]]] = defaultdict(list)
    with warehouse.connect() as conn, conn.cursor() as cursor:
        cursor.execute(SIZES_OVER_TIME, {"audience_ids": audience_ids})
        for audience_id, evaluated_at, member_count in cursor.fetchall():
            series[audience_id].append((evaluated_at, member_count))
    return dict(series)


def write_page(series: dict[str, list[tuple[datetime, int]]], path: Path) -> Path:
    """Write one small chart per audience to `path`; returns the path."""
    charts = "\n".join(_chart(audience_id, points) for audience_id, points in series.items())
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        "<!doctype html><html><head><meta charset='utf-8'>"
        "<title>Audience sizes over time</title>"
        "<style>body{font-family:sans-serif;margin:2em}h2{font-size:1em;margin:1.5em 0 .3em}"
        "svg{background:#fafafa;border:1px solid #ddd}.axis{font-size:11px;fill:#555}"
        "</style></head><body><h1>Audience sizes over time</h1>"
        "<p>Members at each evaluation of every profile (daily builds and backfilled "
        "dates), from <code>marts.fct_audience_membership_history</code>.</p>"
        f"{charts or '<p>No evaluations recorded yet: run a build first.</p>'}"
        "</body></html>\n"
    )
    return path


def _chart(audience_id: str, points: list[tuple[datetime, int]]) -> str:
    first, last = points[0][0].timestamp(), points[-1][0].timestamp()
    top = max(size for _, size in points) or 1
    span = (last - first) or 1

    def x(instant: datetime) -> float:
        return MARGIN + (instant.timestamp() - first) / span * (WIDTH - 2 * MARGIN)

    def y(size: int) -> float:
        return HEIGHT - MARGIN / 2 - size / top * (HEIGHT - MARGIN)

    line = " ".join(f"{x(instant):.1f},{y(size):.1f}" for instant, size in points)
    dots = "".join(
        f"<circle cx='{x(instant):.1f}' cy='{y(size):.1f}' r='2.5'>"
        f"<title>{instant:%Y-%m-%d %H:%M} UTC: {size:,}</title></circle>"
        for instant, size in points
    )
    labels = (
        f"<text class='axis' x='{MARGIN}' y='{HEIGHT - 4}'>{points[0][0]:%Y-%m-%d}</text>"
        f"<text class='axis' x='{WIDTH - MARGIN}' y='{HEIGHT - 4}' text-anchor='end'>"
        f"{points[-1][0]:%Y-%m-%d}</text>"
        f"<text class='axis' x='4' y='{y(top) + 4:.1f}'>{top:,}</text>"
        f"<text class='axis' x='4' y='{y(0) + 4:.1f}'>0</text>"
    )
    return (
        f"<h2>{html.escape(audience_id)}: {points[-1][1]:,} now, "
        f"{len(points)} evaluations</h2>"
        f"<svg width='{WIDTH}' height='{HEIGHT}' role='img' "
        f"aria-label='{html.escape(audience_id)} size over time'>"
        f"<polyline fill='none' stroke='#2a6fdb' stroke-width='2' points='{line}'/>"
        f"{dots}{labels}</svg>"
    )
