"""PNG plots of a `Stats`: length histograms, template usage, label and language bars.

matplotlib is an optional extra (`pip install 'instructgen[plots]'`); the Agg backend draws
without a display, so this runs on a server or in CI.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from ..errors import ConfigError
from .stats import Stats, describe

COLORS = {"prompt": "#4C72B0", "response": "#DD8452", "total": "#55A868"}
BAR_COLOR = "#4C72B0"
MAX_BARS = 30


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise ConfigError(
            "--plots needs matplotlib: pip install 'instructgen[plots]' (or pip install matplotlib)"
        ) from None
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> None:
    """savefig through a temp file beside `path` (rows.atomic_path): no half-drawn PNG, umask respected."""
    from .rows import atomic_path

    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png")
    except OSError as exc:
        raise ConfigError(f"cannot write {path}: {exc.strerror or type(exc).__name__}") from None


def _hist(ax, series: dict[str, list[int]], unit: str) -> None:
    """Overlaid histograms clipped at the 99th percentile, with each median marked."""
    top = max((describe(v)["p99"] for v in series.values() if v), default=1) or 1
    bins = 40
    for name, values in series.items():
        if not values:
            continue
        color = COLORS.get(name.split()[-1], BAR_COLOR)
        clipped = [min(v, top) for v in values]
        med = describe(values)["p50"]
        ax.hist(clipped, bins=bins, range=(0, top), alpha=0.55, color=color,
                label=f"{name.split()[-1]} (median {med}, dashed)")
        ax.axvline(med, color=color, linestyle="--", linewidth=1.2)
    ax.set_xlabel(f"{unit} (rows longer than the 99th percentile are drawn at it, {top})")
    ax.set_ylabel("rows")
    ax.legend(frameon=False)
    ax.grid(axis="y", alpha=0.3)


def _bars(plt, counter: Counter, title: str, path: Path, xlabel: str = "rows") -> Path:
    items = counter.most_common(MAX_BARS)
    labels = [str(k) for k, _ in items][::-1]
    values = [v for _, v in items][::-1]
    height = max(2.5, 0.32 * len(items) + 1.2)
    fig, ax = plt.subplots(figsize=(9, height), dpi=100)
    bars = ax.barh(labels, values, color=BAR_COLOR)
    total = sum(counter.values())
    for bar, v in zip(bars, values):
        ax.text(bar.get_width(), bar.get_y() + bar.get_height() / 2, f" {v} ({v / total:.1%})", va="center",
                fontsize=8)
    more = len(counter) - len(items)
    ax.set_title(title + (f" (top {MAX_BARS} of {len(counter)})" if more > 0 else ""))
    ax.set_xlabel(xlabel)
    ax.set_xlim(0, max(values) * 1.25 if values else 1)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)
    return path


def write_plots(st: Stats, out_dir: str | Path) -> list[Path]:
    """Write every plot the stats have data for; returns the files written."""
    plt = _pyplot()
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # --plots naming a file, or a folder we may not write
        raise ConfigError(f"--plots {out}: cannot make the folder ({exc.strerror or type(exc).__name__})") from None
    written: list[Path] = []
    groups: dict[str, dict[str, list[int]]] = {}
    for name, values in st.lengths.items():
        unit = name.split()[0]
        groups.setdefault(unit, {})[name] = values
    if st.kind == "records":
        panels = [(unit, series) for unit, series in groups.items()]
        fig, axes = plt.subplots(len(panels), 1, figsize=(9, 3.6 * len(panels)), dpi=100, squeeze=False)
        for ax, (unit, series) in zip(axes[:, 0], panels):
            what = "characters" if unit == "chars" else f"tokens ({Path(st.tokenizer or '').name})"
            _hist(ax, {k: v for k, v in series.items() if not k.endswith("total")}, what)
            ax.set_title(f"Prompt and response length in {what}, {st.rows} records")
        fig.tight_layout()
        path = out / "lengths.png"
        _save(fig, path)
        plt.close(fig)
        written.append(path)
    else:
        t = st.tokenized
        fig, axes = plt.subplots(2, 1, figsize=(9, 7.2), dpi=100)
        ax = axes[0]
        per = st.lengths["tokens per example" if t.get("packed") else "tokens per row"]
        ax.hist(per, bins=40, color=COLORS["total"], alpha=0.8)
        if t.get("max_length"):
            ax.axvline(t["max_length"], color="#C44E52", linestyle="--", label=f"max_length {t['max_length']}")
            ax.legend(frameon=False)
        ax.set_title(f"Tokens per example ({t['examples']} examples in {t['rows']} rows)")
        ax.set_xlabel("tokens")
        ax.set_ylabel("examples")
        ax.grid(axis="y", alpha=0.3)
        ax = axes[1]
        shares = [tr / n for tr, n in zip(st.lengths["trained per row"], st.lengths["tokens per row"]) if n]
        ax.hist(shares, bins=40, range=(0, 1), color=COLORS["response"], alpha=0.8)
        ax.set_title(
            f"Trained share of each row: {t['trained_share']:.1%} of all tokens; "
            + (f"packing efficiency {t['fill']:.1%}" if t.get("packed") else f"fill {t['fill']:.1%}")
        )
        ax.set_xlabel("trained tokens / tokens in the row")
        ax.set_ylabel("rows")
        ax.grid(axis="y", alpha=0.3)
        fig.tight_layout()
        path = out / "tokens.png"
        _save(fig, path)
        plt.close(fig)
        written.append(path)
    names = {
        "templates": ("templates.png", "Template usage (meta.template_id)"),
        "labels": ("labels.png", "Labels (meta.label)"),
        "entity types": ("entity_types.png", "Entity types (meta.entities)"),
        "categories": ("categories.png", "Identity categories (meta.category)"),
    }
    for key, counter in st.counters.items():
        if counter and key in names:
            file, title = names[key]
            written.append(_bars(plt, counter, title, out / file))
    if st.languages:
        written.append(_bars(plt, st.languages, f"Languages ({st.languages_from})", out / "languages.png"))
    if st.rejects:
        written.append(_bars(plt, st.rejects, f"Rejected, by reason ({st.rejects_file})", out / "rejects.png"))
    return written
