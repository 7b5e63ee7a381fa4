"""The report's tables, built once from the report.json document and rendered as Markdown
and as HTML, so both show the same numbers. Scores are shown in percent."""

from __future__ import annotations

import html
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from components.metrics.occurrence import TRIVIAL_PREDICTORS

__all__ = ["Table", "report_tables", "render_markdown", "render_html"]

TRIVIAL_LABELS = {"all_positive": "all-positive (trivial)",
                  "base_rate_random": "base-rate random (trivial)"}
"""Display names of the trivial predictors."""

PLOT_CAPTIONS = {
    "f1_per_au": "Per-AU F1 of every model beside the trivial predictors (error bars: std "
                 "over folds).",
    "pr_curves": "Precision-recall curves per AU (one line per model and fold; dotted: the "
                 "base rate, a random predictor's precision).",
    "cooccurrence": "AU co-occurrence P(column AU on | row AU on): true labels and each "
                    "model's predictions on the same known entries (first fold).",
}
"""Caption per plot file stem."""


@dataclass
class Table:
    """One titled table: header cells and rows of already formatted cells."""

    title: str
    header: list[str]
    rows: list[list[str]]
    note: str = ""
    level: int = 2
    extra: list[str] = field(default_factory=list)


def _pct(x: "float | None", digits: int = 1) -> str:
    return "–" if x is None else f"{100 * x:.{digits}f}"


def _ms(stat: Mapping[str, Any]) -> str:
    """'mean ± std' in percent from a metrics.mean_std dict."""
    if stat.get("mean") is None:
        return "–"
    if stat.get("std") is None:
        return _pct(stat["mean"])
    return f"{_pct(stat['mean'])} ± {_pct(stat['std'])}"


def _ci(ci: "Mapping[str, Any] | None") -> str:
    if not ci or ci.get("low") is None:
        return "–"
    return f"[{_pct(ci['low'])}, {_pct(ci['high'])}]"


def _p(p: "float | None") -> str:
    return "–" if p is None else (f"{p:.3f}" if p >= 0.001 else "<0.001")


def _summary_table(doc: Mapping[str, Any]) -> Table:
    rows = []
    for name, m in doc["models"].items():
        s = m["summary"]
        pooled = (m.get("pooled") or {}).get("mean_f1")
        sources = sorted({str(f.get("threshold_source")) for f in m["folds"]})
        pooled_txt = "–" if not pooled else f"{_pct(pooled['estimate'])} {_ci(pooled)}"
        rows.append([name, _ms(s["mean_f1"]), pooled_txt, _ms(s["accuracy"]), _ms(s["abaw"]),
                     str(s["n_folds"]), ", ".join(sources)])
    for p in TRIVIAL_PREDICTORS:
        s = doc["trivial"][p]
        label = TRIVIAL_LABELS[p].replace(")", ", best)") if doc["trivial"]["best"] == p \
            else TRIVIAL_LABELS[p]
        folds = doc["trivial"]["folds"]
        acc = {"mean": s["accuracy"], "std": None}
        rows.append([label,
                     _ms({"mean": s["mean_f1"], "std": s["mean_f1_std"]}), "–", _ms(acc),
                     _ms({"mean": s["abaw"], "std": None}), str(len(folds)), "–"])
    return Table("Summary", ["model", "mean F1", "pooled mean F1 [95% CI]",
                             "accuracy", "ABAW", "folds", "thresholds"], rows,
                 note="Mean ± std over folds, in percent. Accuracy is total accuracy over all "
                      "known AU labels; ABAW = 0.5·F1 + 0.5·accuracy. Pooled: all folds' test "
                      "subjects scored together, with a percentile bootstrap CI over subjects. "
                      "Trivial predictors use the test labels' own base rates.")


def _per_au_f1_table(doc: Mapping[str, Any]) -> Table:
    names = list(doc["models"])
    header = ["AU"] + names + [TRIVIAL_LABELS[p] for p in TRIVIAL_PREDICTORS]
    rows = []
    for au in [f"AU{a}" for a in doc["aus"]]:
        row = [au] + [_ms(doc["models"][n]["summary"]["per_au"][au]["f1"]) for n in names]
        row += [_ms({"mean": doc["trivial"][p]["f1"][au], "std": doc["trivial"][p]["f1_std"][au]})
                for p in TRIVIAL_PREDICTORS]
        rows.append(row)
    mean = ["**mean**"] + [_ms(doc["models"][n]["summary"]["mean_f1"]) for n in names]
    mean += [_ms({"mean": doc["trivial"][p]["mean_f1"], "std": doc["trivial"][p]["mean_f1_std"]})
             for p in TRIVIAL_PREDICTORS]
    return Table("F1 per AU", header, rows + [mean],
                 note="Positive-class F1 in percent, mean ± std over the folds where the AU has "
                      "positive test labels; '–': no such fold. Every mean runs over the same "
                      "AUs for models and trivial predictors.")


def _per_au_other_table(doc: Mapping[str, Any]) -> Table:
    names = list(doc["models"])
    header = ["AU", "base rate"] + [f"{n} accuracy" for n in names]
    header += [f"{n} threshold" for n in names]
    rows = []
    for au in [f"AU{a}" for a in doc["aus"]]:
        rates = [f["base_rate"][au] for f in doc["trivial"]["folds"]
                 if f["base_rate"][au] is not None]
        row = [au, _pct(sum(rates) / len(rates)) if rates else "–"]
        row += [_ms(doc["models"][n]["summary"]["per_au"][au]["accuracy"]) for n in names]
        for n in names:
            thr = [f["per_au"][au]["threshold"] for f in doc["models"][n]["folds"]]
            row.append(" / ".join(f"{t:.2f}" for t in thr))
        rows.append(row)
    return Table("Accuracy and thresholds per AU", header, rows,
                 note="Base rate: share of positive test labels (percent; equals the accuracy "
                      "of predicting all positive). Thresholds: one per fold.")


def _fold_table(doc: Mapping[str, Any]) -> Table:
    names = list(doc["models"])
    folds = [str(f["fold"]) for f in doc["trivial"]["folds"]]
    rows = []
    for k, fold in enumerate(folds):
        row = [fold]
        for n in names:
            match = [f for f in doc["models"][n]["folds"] if str(f.get("fold")) == fold]
            if not match:
                row.append("–")
                continue
            f = match[0]
            row.append(f"{_pct(f['mean_f1'])} {_ci((f.get('ci') or {}).get('mean_f1'))}")
        t = doc["trivial"]["folds"][k]
        row.append(f"{_pct(t[t['best']]['mean_f1'])} ({TRIVIAL_LABELS[t['best']].split(' (')[0]})")
        rows.append(row)
    return Table("Per fold", ["fold"] + [f"{n} mean F1 [95% CI]" for n in names]
                 + ["best trivial mean F1"], rows,
                 note="CI: percentile bootstrap over the fold's test subjects.")


def _comparison_table(doc: Mapping[str, Any]) -> "Table | None":
    comps = doc.get("comparisons") or []
    if not comps:
        return None
    rows = []
    for c in comps:
        pb, sf = c.get("paired_bootstrap") or {}, c.get("sign_flip") or {}
        diff = pb.get("difference", sf.get("mean_difference"))
        sf_p = "–" if not sf else f"{_p(sf['p_value'])} (min {_p(sf.get('min_p'))})"
        rows.append([c["a"], c["b"], _pct(diff, 2), _ci(pb) if pb else "–",
                     _p(pb.get("p_value")), sf_p])
    return Table("Paired comparisons (mean F1, a − b)",
                 ["a", "b", "Δ mean F1", "95% CI", "p (paired bootstrap)",
                  "p (sign-flip over folds)"], rows,
                 note="Paired bootstrap over the same test subjects; sign-flip test over "
                      "per-fold mean F1 (with few folds its smallest attainable p is large).")


def _cross_table(doc: Mapping[str, Any]) -> "Table | None":
    cross = doc.get("cross_dataset") or []
    if not cross:
        return None
    rows = []
    for e in cross:
        t = e["trivial"]
        per_au = ", ".join(f"{au} {_pct(v['f1'])}" for au, v in e["per_au"].items())
        rows.append([e["model"], f"{e.get('train_dataset')} → {e.get('dataset')}",
                     _pct(e["mean_f1"]), _ci((e.get("ci") or {}).get("mean_f1")),
                     _pct(e["accuracy"]), _pct(t[t["best"]]["mean_f1"]), per_au])
    return Table("Cross-dataset", ["model", "train → test", "mean F1", "95% CI", "accuracy",
                                   "best trivial mean F1", "F1 per shared AU"], rows,
                 note="Scored over the AUs both datasets annotate.")


def _intensity_table(doc: Mapping[str, Any]) -> "Table | None":
    rows = []
    for n, m in doc["models"].items():
        for f in m["folds"]:
            it = f.get("intensity")
            if it:
                fmt = [("–" if it[k] is None else f"{it[k]:.3f}")
                       for k in ("mean_icc", "mean_mae", "mean_pearson")]
                rows.append([n, str(f.get("fold")), *fmt])
    if not rows:
        return None
    return Table("Intensity", ["model", "fold", "mean ICC(3,1)", "mean MAE", "mean Pearson"],
                 rows, note="Means over AUs; unknown intensities excluded.")


def report_tables(doc: Mapping[str, Any]) -> list[Table]:
    """All tables of the report, in reading order."""
    tables = [_summary_table(doc), _per_au_f1_table(doc), _per_au_other_table(doc),
              _fold_table(doc)]
    tables += [t for t in (_comparison_table(doc), _cross_table(doc), _intensity_table(doc)) if t]
    prov = [[str(k), v if isinstance(v, str) else json.dumps(v, sort_keys=True)]
            for k, v in (doc.get("provenance") or {}).items()]
    tables.append(Table("Provenance", ["key", "value"], prov))
    return tables


def _title(doc: Mapping[str, Any]) -> str:
    return f"facsflow evaluation report: {doc.get('dataset') or 'dataset'}"


def _md_cell(s: str) -> str:
    return s.replace("|", "\\|").replace("\n", " ")


def render_markdown(doc: Mapping[str, Any], plots: Sequence[str]) -> str:
    """The report as Markdown; ``plots`` are PNG paths relative to the report."""
    lines = [f"# {_title(doc)}", "",
             f"AUs: {', '.join(f'AU{a}' for a in doc['aus'])}", ""]
    for t in report_tables(doc):
        lines += [f"{'#' * t.level} {t.title}", ""]
        if t.note:
            lines += [t.note, ""]
        lines.append("| " + " | ".join(_md_cell(h) for h in t.header) + " |")
        lines.append("|" + "|".join("---" for _ in t.header) + "|")
        lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in t.rows]
        lines.append("")
    lines += _plot_section(plots, md=True)
    return "\n".join(lines) + "\n"


def _plot_section(plots: Sequence[str], md: bool) -> list[str]:
    if not plots:
        note = "Plots skipped: matplotlib is not installed."
        return ["## Plots", "", note] if md else ["<h2>Plots</h2>", f"<p>{note}</p>"]
    out = ["## Plots", ""] if md else ["<h2>Plots</h2>"]
    for p in plots:
        stem = p.rsplit("/", 1)[-1].removesuffix(".png")
        cap = PLOT_CAPTIONS.get(stem, stem)
        if md:
            out += [f"![{cap}]({p})", "", f"*{cap}*", ""]
        else:
            out.append(f'<figure><img src="{html.escape(p)}" alt="{html.escape(cap)}">'
                       f"<figcaption>{html.escape(cap)}</figcaption></figure>")
    return out


_CSS = ("body{font-family:sans-serif;max-width:1200px;margin:2em auto;color:#222}"
        "table{border-collapse:collapse;margin:1em 0;font-size:14px}"
        "th,td{border:1px solid #bbb;padding:3px 8px;text-align:right}"
        "td:first-child,th:first-child{text-align:left}th{background:#eee}"
        "tr.trivial td{color:#666;font-style:italic}"
        "img{max-width:100%}figure{margin:1.5em 0}.note{color:#555;font-size:13px}")


def render_html(doc: Mapping[str, Any], plots: Sequence[str]) -> str:
    """The report as a standalone HTML page referencing the PNGs by relative path."""
    e = html.escape
    body = [f"<h1>{e(_title(doc))}</h1>",
            f"<p>AUs: {e(', '.join(f'AU{a}' for a in doc['aus']))}</p>"]
    for t in report_tables(doc):
        body.append(f"<h{t.level}>{e(t.title)}</h{t.level}>")
        if t.note:
            body.append(f'<p class="note">{e(t.note)}</p>')
        body.append("<table><thead><tr>" + "".join(f"<th>{e(h)}</th>" for h in t.header)
                    + "</tr></thead><tbody>")
        for row in t.rows:
            cls = ' class="trivial"' if "(trivial" in row[0] else ""
            cells = "".join(f"<td>{e(c.replace('**', ''))}</td>" for c in row)
            body.append(f"<tr{cls}>{cells}</tr>")
        body.append("</tbody></table>")
    body += _plot_section(plots, md=False)
    return ("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">"
            f"<title>{e(_title(doc))}</title><style>{_CSS}</style></head><body>\n"
            + "\n".join(body) + "\n</body></html>\n")
