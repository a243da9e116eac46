"""Charts as inline SVG: no script, no style attribute (the CSP forbids both), classes
for colour (static/app.css)."""

from __future__ import annotations

from collections.abc import Sequence

from markupsafe import Markup, escape


def bar_chart(points: Sequence[tuple[str, int]], *, label: str, width: int = 720,
              height: int = 160) -> Markup:
    """A bar per (day, count); the first and last day written under the axis."""
    n = max(1, len(points))
    top = max([c for _, c in points] + [1])
    plot_h = height - 24
    bar_w = width / n
    parts = [f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" '
             f'aria-label="{escape(label)}" xmlns="http://www.w3.org/2000/svg">']
    for i, (day, count) in enumerate(points):
        h = 0 if count == 0 else max(1.0, plot_h * count / top)
        x = i * bar_w + 1
        parts.append(f'<rect class="bar" x="{x:.1f}" y="{plot_h - h:.1f}" '
                     f'width="{max(1.0, bar_w - 2):.1f}" height="{h:.1f}">'
                     f'<title>{escape(day)}: {count}</title></rect>')
    parts.append(f'<line class="axis" x1="0" y1="{plot_h}" x2="{width}" y2="{plot_h}"/>')
    if points:
        parts.append(f'<text x="0" y="{height - 6}">{escape(points[0][0])}</text>')
        parts.append(f'<text x="{width}" y="{height - 6}" text-anchor="end">'
                     f'{escape(points[-1][0])}</text>')
    parts.append(f'<text x="{width}" y="12" text-anchor="end">max {top}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))
