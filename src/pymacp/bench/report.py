"""Results: one :class:`Figure` per measured number, printed as a table and written as JSON.

Every figure names its scenario, what it is, its value and unit, the baseline measured in
the same run (when there is one), the ratio of the two, the target from the benchmark's
issue, and whether the target was met. ``value`` is None ("n/a") only when the runtime
does not expose what the figure needs; ``note`` then says why.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True, slots=True)
class Figure:
    scenario: str
    figure: str
    value: float | None
    unit: str
    baseline: float | None = None
    ratio: float | None = None
    target: str = ""
    met: bool | None = None
    note: str = ""


def counted(count: int, noun: str) -> str:
    """``1 client``, ``8 clients``."""
    return f"{count:,} {noun}{'' if count == 1 else 's'}"


def ratio_of(value: float | None, baseline: float | None) -> float | None:
    if value is None or baseline is None or baseline == 0:
        return None
    return value / baseline


def compared(
    scenario: str,
    figure: str,
    value: float | None,
    unit: str,
    baseline: float | None,
    *,
    at_least: float | None = None,
    at_most: float | None = None,
    note: str = "",
) -> Figure:
    """A figure judged by its ratio to the baseline (``at_least`` / ``at_most`` that ratio, if given)."""
    ratio = ratio_of(value, baseline)
    target = ""
    met: bool | None = None
    if at_least is not None:
        target = f"ratio ≥ {at_least:g}"
        met = ratio is not None and ratio >= at_least
    elif at_most is not None:
        target = f"ratio ≤ {at_most:g}"
        met = ratio is not None and ratio <= at_most
    return Figure(scenario, figure, value, unit, baseline, ratio, target, met, note)


def median_pair(pairs: Sequence[tuple[float, float]]) -> tuple[float, float, str]:
    """Of paired (value, baseline) runs, the pair with the median ratio, and a note on all of them.

    With an even count the lower of the two middle pairs is taken. The note lists every ratio
    in the order the runs were made; a single run gets no note.
    """
    if not pairs:
        raise ValueError("median_pair needs at least one pair")
    ranked = sorted(pairs, key=lambda pair: ratio_of(*pair) or 0.0)
    value, baseline = ranked[(len(ranked) - 1) // 2]
    if len(pairs) == 1:
        return value, baseline, ""
    ratios = ", ".join(_number(ratio_of(*pair)) for pair in pairs)
    return value, baseline, f"median of {len(pairs)} paired runs (ratios {ratios})"


def percentile(samples: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100) by the nearest-rank method; NaN for no samples."""
    if not samples:
        return math.nan
    ordered = sorted(samples)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def _number(value: float | None) -> str:
    if value is None or math.isnan(value):
        return "n/a"
    magnitude = abs(value)
    if magnitude >= 1000:
        return f"{value:,.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    if magnitude >= 0.1:
        return f"{value:.2f}"
    return f"{value:.3g}"


def _met(met: bool | None) -> str:
    return "" if met is None else ("yes" if met else "NO")


def table(figures: Sequence[Figure], numbers: dict[str, int]) -> str:
    header = ("#", "scenario", "figure", "value", "unit", "baseline", "ratio", "target", "met")
    rows = [header] + [
        (
            str(numbers.get(f.scenario, "")),
            f.scenario,
            f.figure,
            _number(f.value),
            f.unit,
            _number(f.baseline),
            _number(f.ratio),
            f.target,
            _met(f.met),
        )
        for f in figures
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    right = {0, 3, 5, 6}
    lines = []
    for n, row in enumerate(rows):
        cells = [cell.rjust(widths[i]) if i in right else cell.ljust(widths[i]) for i, cell in enumerate(row)]
        lines.append("  ".join(cells).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    notes = [f"  [{f.scenario}] {f.figure}: {f.note}" for f in figures if f.note]
    if notes:
        lines += ["", "notes:", *notes]
    return "\n".join(lines)


def _clean(value: Any) -> Any:
    """JSON has no NaN: write null instead."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def figure_json(figure: Figure, number: int) -> dict[str, Any]:
    return {"number": number, **asdict(figure)}


def write_json(path: Path, document: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(_clean(document), indent=2, ensure_ascii=False) + "\n")
