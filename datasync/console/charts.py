"""SVG charts rendered on the server (no JavaScript, no chart library).

- :func:`status_chart` — runs by status over time, one stacked bar per time bucket.
- :func:`page_timeline` — one row per page of a run, its pull/transform/push durations as
  stacked segments; each row is a ``<g class="page" data-page="N">`` (with a ``<title>``).
"""

from __future__ import annotations

from collections.abc import Sequence

from markupsafe import Markup, escape

from ..records import STEPS, PageRecord

__all__ = ["STATUS_COLOURS", "STEP_COLOURS", "page_timeline", "status_chart"]

STATUS_COLOURS = {
    "Completed": "#2e7d32",
    "Running": "#1565c0",
    "Pending": "#90a4ae",
    "Failed": "#c62828",
    "Terminated": "#6a1b9a",
    "Skipped": "#f9a825",
    "Superseded": "#8d6e63",
}
STEP_COLOURS = {"pull": "#1565c0", "transform": "#f9a825", "push": "#2e7d32"}


def status_chart(
    buckets: Sequence[str],
    counts: dict[tuple[str, str], int],
    statuses: Sequence[str],
    *,
    width: int = 1200,
    height: int = 170,
) -> Markup:
    """Stacked bars: ``buckets`` (start times, oldest first) × ``statuses``."""
    if not buckets:
        return Markup("")
    top = max((sum(counts.get((b, s), 0) for s in statuses) for b in buckets), default=0)
    top = max(top, 1)
    plot_h = height - 24
    slot = width / len(buckets)
    bar_w = max(slot * 0.8, 1.0)
    parts = [
        (
            f'<svg class="chart status-chart" viewBox="0 0 {width} {height}" '
            f'role="img" aria-label="runs by status over time">'
        )
    ]
    for i, start in enumerate(buckets):
        x = i * slot + (slot - bar_w) / 2
        y = float(plot_h)
        total = 0
        for status in statuses:
            n = counts.get((start, status), 0)
            if not n:
                continue
            total += n
            h = n / top * (plot_h - 4)
            y -= h
            parts.append(
                f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar_w:.1f}" height="{h:.1f}" '
                f'fill="{STATUS_COLOURS.get(status, "#999")}"><title>'
                f"{escape(start)} {escape(status)}: {n}</title></rect>"
            )
        if i % max(len(buckets) // 6, 1) == 0:
            parts.append(
                f'<text x="{i * slot:.1f}" y="{height - 6}" font-size="10">'
                f"{escape(start[11:16])}</text>"
            )
    parts.append(f'<text x="2" y="10" font-size="10">max {top}</text></svg>')
    return Markup("".join(parts))


def page_timeline(pages: Sequence[PageRecord], *, width: int = 1000, row: int = 14) -> Markup:
    """One horizontal stacked bar per page, scaled to the slowest page of the window."""
    if not pages:
        return Markup("")
    label_w = 56
    longest = max((p.duration_seconds for p in pages), default=0.0) or 1e-9
    scale = (width - label_w - 80) / longest
    height = row * len(pages) + 4
    parts = [
        (
            f'<svg class="chart page-timeline" viewBox="0 0 {width} {height}" '
            f'role="img" aria-label="step durations per page">'
        )
    ]
    for i, page in enumerate(pages):
        y = i * row + 2
        parts.append(
            f'<g class="page" data-page="{page.page}"><title>page {page.page}: '
            f"{_steps_text(page)}</title>"
            f'<text x="0" y="{y + row - 4}" font-size="10">p{page.page}</text>'
        )
        x = float(label_w)
        for name in STEPS:
            step = page.step(name)
            if step is None or not step.duration_seconds:
                continue
            w = max(step.duration_seconds * scale, 0.5)
            colour = "#c62828" if step.error else STEP_COLOURS[name]
            parts.append(
                f'<rect class="step {name}" x="{x:.1f}" y="{y}" width="{w:.1f}" '
                f'height="{row - 3}" fill="{colour}"/>'
            )
            x += w
        parts.append(
            f'<text x="{x + 4:.1f}" y="{y + row - 4}" font-size="10">'
            f"{page.duration_seconds * 1000:.0f} ms</text></g>"
        )
    parts.append("</svg>")
    return Markup("".join(parts))


def _steps_text(page: PageRecord) -> str:
    bits = []
    for step in page.steps:
        ms = f"{step.duration_seconds * 1000:.0f} ms" if step.duration_seconds else "—"
        extra = f", {step.attempts} attempts" if step.attempts > 1 else ""
        failed = ", failed" if step.error else ""
        bits.append(f"{step.step} {ms}{extra}{failed}")
    return str(escape("; ".join(bits)))
