"""The benchmark charts of the docs site, drawn from ``benchmarks/results/*.txt`` at build time.

Every results file prints sections of rows ending in a ratio (``1.03x``) against the section's
first row (raw redis-py, ``redis.asyncio`` or a peer's baseline, measured in the same run); each
file becomes one PNG with a bar chart per section. ``outage.png`` is drawn by
``benchmarks/outage.py`` itself and taken as it is. The hook adds them to the site as generated
files (``assets/charts/NAME.png``): nothing is written under docs/.
"""

from __future__ import annotations

import hashlib
import io
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

RESULTS = Path(__file__).resolve().parents[2] / "benchmarks" / "results"
RATIO = re.compile(r"^\s{2,}(?P<name>\S.*?)\s{2,}.*?(?P<ratio>\d+(?:\.\d+)?)x\s*$")
HEADER = re.compile(r"^\s{2,}(variant|library)\b")


@dataclass
class Section:
    title: str
    rows: list[tuple[str, float]] = field(default_factory=list)


def sections(text: str) -> list[Section]:
    """The titled tables of ratios in one results file (tables without a ratio column skipped)."""
    found: list[Section] = []
    title = ""
    current: Section | None = None
    for line in text.splitlines():
        if line and not line.startswith(" "):
            title, current = line.strip(), None
        elif HEADER.match(line):
            current = Section(title)
            found.append(current)
        elif current is not None and (m := RATIO.match(line)):
            current.rows.append((m["name"].strip(), float(m["ratio"])))
    return [s for s in found if len(s.rows) >= 2]


def chart(name: str, found: list[Section]) -> bytes:
    heights = [0.45 + 0.32 * len(s.rows) for s in found]
    fig, axes = plt.subplots(len(found), 1, figsize=(8.5, sum(heights) + 0.4),
                             gridspec_kw={"height_ratios": heights}, squeeze=False)
    for ax, section in zip(axes[:, 0], found, strict=True):
        labels = [r[0] for r in section.rows][::-1]
        ratios = [r[1] for r in section.rows][::-1]
        colors = ["#3f51b5" if "cache_service" in lab.lower() or "cacheservice" in lab.lower()
                  or "djangocache" in lab.lower() or "wire" in lab.lower() else "#9e9e9e"
                  for lab in labels]
        ax.barh(labels, ratios, color=colors)
        ax.axvline(1.0, color="#d32f2f", linewidth=1)
        for y, value in enumerate(ratios):
            ax.text(value, y, f" {value:g}x", va="center", fontsize=8)
        ax.set_title(section.title, fontsize=9, loc="left")
        ax.tick_params(labelsize=8)
        ax.set_xlim(0, max(ratios) * 1.18)
    fig.suptitle(f"benchmarks/results/{name}.txt: ratio to the first row (red line = 1.0x)",
                 fontsize=9, y=0.995)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.35 / (sum(heights) + 0.4)))
    out = io.BytesIO()
    fig.savefig(out, format="png", dpi=90, metadata={"Software": None})
    plt.close(fig)
    return out.getvalue()


def charts() -> dict[str, bytes]:
    """``{name: png}`` for every results file with ratios, plus ``outage``.

    Drawing takes seconds, so each chart is kept in ``<venv>/docs-charts/`` under a hash of its
    results file and of this code: a build redraws only what changed, and nothing is written
    into the source tree.
    """
    cache = Path(sys.prefix) / "docs-charts"
    cache.mkdir(exist_ok=True)
    code = Path(__file__).read_bytes()
    made: dict[str, bytes] = {}
    for path in sorted(RESULTS.glob("*.txt")):
        text = path.read_bytes()
        kept = cache / f"{path.stem}-{hashlib.sha1(code + text).hexdigest()[:16]}.png"
        if kept.exists():
            made[path.stem] = kept.read_bytes()
            continue
        found = sections(text.decode())
        if found:
            made[path.stem] = chart(path.stem, found)
            for stale in cache.glob(f"{path.stem}-*.png"):  # one kept drawing per file
                stale.unlink()
            kept.write_bytes(made[path.stem])
    outage = RESULTS / "outage.png"
    if outage.exists():
        made["outage"] = outage.read_bytes()
    return made


if __name__ == "__main__":
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    for name, png in charts().items():
        (out / f"{name}.png").write_bytes(png)
        print(out / f"{name}.png")
