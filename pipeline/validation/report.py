"""The HTML report of a validation: findings first, then each statistic's two distributions
side by side (inline SVG: the page opens anywhere, offline)."""

from __future__ import annotations

import html
from pathlib import Path

from pipeline.datasets.manifest import is_version_name
from pipeline.datasets.statistics import Statistics
from pipeline.validation.drift import shares
from pipeline.validation.validate import INCREMENT, LABEL, Validation

_STYLE = """body{font-family:sans-serif;margin:2em;max-width:70em}
table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.3em .6em;text-align:left}
.error{color:#b00020;font-weight:bold}.warning{color:#a05a00}.ok{color:#1b7a1b}
.ref{fill:#9e9e9e}.new{fill:#1f6fd1}"""


def _bin_names(stats: Statistics, feature: str, keys: list[str]) -> list[str]:
    """``[16, 32)`` for a number's bin, the value itself for a category."""
    if feature == LABEL or stats.definition(feature)["kind"] == "categorical":
        return keys
    edges = stats.definition(feature)["edges"]
    return [f"[{edges[int(k)]}, {edges[int(k) + 1] if edges[int(k) + 1] is not None else '∞'})"
            for k in keys]


def _counts(stats: Statistics, feature: str) -> dict[str, int]:
    """A statistic's counts, every split together ({} when ``stats`` has no such statistic)."""
    if feature == LABEL:
        return stats.labels()
    return stats.feature(feature)["counts"] if feature in stats.document["features"] else {}


def _bars(new: dict[str, int], reference: dict[str, int], names: list[str], keys: list[str]
          ) -> str:
    """Two bars per bin (reference grey, this version blue), heights by share."""
    p, q = shares(new, keys), shares(reference, keys)
    width, height = max(240, 36 * len(keys)), 120
    step = width / max(len(keys), 1)
    parts = [f'<svg width="{width}" height="{height + 40}" role="img">']
    for i, (name, ours, theirs) in enumerate(zip(names, p, q, strict=True)):
        x = i * step
        for offset, share, kind in ((2, theirs, "ref"), (step / 2, ours, "new")):
            bar = share * height
            parts.append(f'<rect class="{kind}" x="{x + offset:.1f}" y="{height - bar:.1f}" '
                         f'width="{step / 2 - 3:.1f}" height="{bar:.1f}">'
                         f'<title>{html.escape(name)}: {share:.1%}</title></rect>')
        parts.append(f'<text x="{x + 2:.1f}" y="{height + 14}" font-size="9">'
                     f'{html.escape(name[:10])}</text>')
    return "".join(parts) + "</svg>"


def _findings_table(validation: Validation) -> str:
    if not validation.findings:
        return "<p class='ok'>No finding: every check passed.</p>"
    rows = "".join(
        f"<tr><td class='{f.severity}'>{f.severity}</td><td>{html.escape(f.feature)}</td>"
        f"<td>{f.check}</td><td>{html.escape(str(f.value))}</td>"
        f"<td>{html.escape(str(f.limit))}</td><td>{html.escape(f.detail)}</td></tr>"
        for f in validation.findings)
    return ("<table><tr><th>severity</th><th>feature</th><th>check</th><th>value</th>"
            f"<th>limit</th><th>detail</th></tr>{rows}</table>")


def _feature_section(feature: str, new: Statistics, theirs: dict[str, float],
                     comparison: str, part: str) -> str:
    ours = _counts(new, feature)
    keys = sorted({*ours, *theirs}, key=lambda k: (len(k), k) if feature != LABEL else k)
    doc = "the label of each row" if feature == LABEL else new.definition(feature)["doc"]
    title = html.escape(feature + part)
    return (f"<h3 id='{title}'>{title}</h3><p>{html.escape(doc)}. {comparison}</p>"
            + _bars(ours, theirs, _bin_names(new, feature, keys), keys))


def _sections(validation: Validation, new: Statistics, reference: Statistics | None,
              part: str = "") -> list[str]:
    """One section per statistic of ``new`` (the version, or its new files: ``part``)."""
    compared = {c.feature: c for c in validation.comparisons}
    sections = []
    for feature in [LABEL, *new.document["features"]]:
        found = compared.get(feature + part)
        said = (f"Jensen-Shannon distance {found.distance:.3f}, p-value {found.pvalue:.1e}"
                f"{': ' + found.severity if found.severity else ''}." if found else
                "Not compared." if reference else "")
        theirs = (found.reference_counts if found else
                  _counts(reference, feature) if reference else {})
        sections.append(_feature_section(feature, new, theirs, said, part))
    return sections


def render(validation: Validation, new: Statistics, reference: Statistics | None) -> str:
    """The whole page."""
    sections = _sections(validation, new, reference)
    if reference is not None and new.increment() is not None:
        sections += ["<h2>The new and changed files alone</h2>",
                     *_sections(validation, new.increment(), reference, INCREMENT)]
    against = " and ".join(filter(None, [validation.reference and
                                         f"reference {html.escape(validation.reference)}",
                                         validation.expectations and
                                         f"expectations {html.escape(validation.expectations)}"]))
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>Validation of "
            f"{html.escape(validation.data)}</title><style>{_STYLE}</style></head><body>"
            f"<h1>Validation: <span class='{validation.status}'>{validation.status}</span></h1>"
            f"<p>{html.escape(validation.data)} ({new.rows} rows) against {against}. Grey: what "
            "was compared with (the reference; for new files, the reference at their class mix; "
            "for predicted labels, the model's validation predictions), blue: this data.</p>"
            "<h2>Findings</h2>"
            f"{_findings_table(validation)}<h2>Distributions</h2>{''.join(sections)}"
            "</body></html>")


def write_report(validation: Validation, path: str) -> str:
    """The report written to ``path`` (its folder made); returns the path."""
    new, reference = validation.statistics or (None, None)
    if new is None:
        raise ValueError("a validation without its statistics cannot be drawn")
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(render(validation, new, reference), encoding="utf-8")
    return str(target)


def table(validation: Validation) -> list[str]:
    """The findings as lines of a fixed-width table, for a terminal."""
    counts = [sum(f.severity == s for f in validation.findings) for s in ("error", "warning")]
    lines = [f"{validation.data}: {validation.status} ({counts[0]} errors, {counts[1]} "
             "warnings)"]
    if validation.findings:
        lines.append(f"{'severity':9}{'feature':14}{'check':15}{'value':>10}  detail")
        lines += [f"{f.severity:9}{f.feature[:13]:14}{f.check:15}{str(f.value)[:10]:>10}  "
                  f"{f.detail}" for f in validation.findings]
    return lines


def default_path(data_dir: str, data_url: str) -> str:
    """``<data_dir>/reports/validation-<dataset>[-<version>].html``."""
    parts = [p for p in data_url.rstrip("/").split("/") if p][-2:]
    name = "-".join(parts) if len(parts) == 2 and is_version_name(parts[1]) else parts[-1]
    return str(Path(data_dir) / "reports" / f"validation-{name}.html")
