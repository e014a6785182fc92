"""The self-contained HTML report: figures embedded as base64 PNG, also written beside it."""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass, field
from pathlib import Path

from taskpgm.affinity.io import AffinityMatrix
from taskpgm.io import atomic_write_bytes, atomic_write_text
from taskpgm.mixture.record import Mixture
from taskpgm.report import figures
from taskpgm.report.records import Check, ModelEval


@dataclass
class ReportInputs:
    affinity: AffinityMatrix
    mixtures: dict[str, Mixture]
    evals: dict[str, ModelEval] = field(default_factory=dict)  # strategy name -> eval
    base_eval: ModelEval | None = None
    checks: list[Check] = field(default_factory=list)
    path: figures.PathData | None = None
    influence: list[figures.InfluenceRow] | None = None
    title: str = "taskpgm report"
    notes: list[str] = field(default_factory=list)


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:2rem auto;max-width:1100px;
color:#222;padding:0 1rem}
h1{font-size:1.6rem}h2{font-size:1.2rem;margin-top:2rem;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:.85rem;margin:.5rem 0}
td,th{border:1px solid #ddd;padding:.25rem .5rem;text-align:right}
th{background:#f4f4f4}td:first-child,th:first-child{text-align:left}
.ok{color:#1a7f37;font-weight:600}.bad{color:#cf222e;font-weight:600}.na{color:#888}
img{max-width:100%;height:auto;border:1px solid #eee}
.best{background:#e6ffec}
"""


def _fmt(v: float | None, digits: int = 4) -> str:
    return "&ndash;" if v is None else f"{v:.{digits}f}"


def _img(name: str, png: bytes) -> str:
    b64 = base64.b64encode(png).decode("ascii")
    return f'<img alt="{html.escape(name)}" src="data:image/png;base64,{b64}">'


def _summary_table(inp: ReportInputs) -> str:
    rows = []
    entries = list(inp.evals.items())
    if inp.base_eval is not None:
        entries.append(("base model (untrained on mixture)", inp.base_eval))
    losses = [e.mean("loss_per_token") for _, e in inp.evals.items()]
    best = min((v for v in losses if v is not None), default=None)
    for name, ev in entries:
        loss = ev.mean("loss_per_token")
        cls = ' class="best"' if best is not None and loss == best and ev is not inp.base_eval else ""
        mix = inp.mixtures.get(name)
        support = int((mix.weights > 1e-9).sum()) if mix is not None else None
        rows.append(
            f"<tr{cls}><td>{html.escape(name)}</td><td>{_fmt(loss)}</td>"
            f"<td>{_fmt(ev.mean('accuracy'), 3)}</td><td>{_fmt(ev.mean('exact_match'), 3)}</td>"
            f"<td>{'&ndash;' if support is None else support}</td></tr>"
        )
    return (
        "<table><tr><th>model</th><th>held-out loss/token</th><th>accuracy (MC)</th>"
        "<th>exact match (gen)</th><th>tasks in mixture</th></tr>" + "".join(rows) + "</table>"
    )


def _per_task_table(inp: ReportInputs) -> str:
    models = dict(inp.evals)
    if inp.base_eval is not None:
        models["base"] = inp.base_eval
    tasks: list[str] = []
    for ev in models.values():
        tasks.extend(t.task for t in ev.tasks if t.task not in tasks)
    head = "".join(f"<th>{html.escape(m)}</th>" for m in models)
    rows = []
    for task in tasks:
        cells = []
        for ev in models.values():
            te = ev.by_task().get(task)
            if te is None:
                cells.append("<td>&ndash;</td>")
            else:
                score = te.score()
                extra = "" if score is None else f" / {score:.2f}"
                cells.append(f"<td>{te.loss_per_token:.3f}{extra}</td>")
        rows.append(f"<tr><td>{html.escape(task)}</td>{''.join(cells)}</tr>")
    return (
        "<p>Each cell: loss per token / accuracy or exact match.</p>"
        f"<table><tr><th>task</th>{head}</tr>{''.join(rows)}</table>"
    )


def _checks(inp: ReportInputs) -> str:
    if not inp.checks:
        return "<p class=na>No checks computed.</p>"
    items = []
    for c in inp.checks:
        tag = {True: ("ok", "PASS"), False: ("bad", "FAIL"), None: ("na", "n/a")}[c.ok]
        items.append(f'<li><span class="{tag[0]}">{tag[1]}</span> <b>{html.escape(c.name)}</b>: '
                     f"{html.escape(c.detail)}</li>")
    return "<ul>" + "".join(items) + "</ul>"


def _mixture_table(inp: ReportInputs, order: list[str]) -> str:
    head = "".join(f"<th>{html.escape(m)}</th>" for m in inp.mixtures)
    rows = []
    for t in order:
        cells = "".join(f"<td>{m.as_dict().get(t, 0.0):.3f}</td>" for m in inp.mixtures.values())
        rows.append(f"<tr><td>{html.escape(t)}</td>{cells}</tr>")
    return f"<table><tr><th>task</th>{head}</tr>{''.join(rows)}</table>"


def build_report(out_dir: str | Path, inp: ReportInputs) -> Path:
    """Write ``out_dir/report.html`` and ``out_dir/report/*.png``; return the HTML path."""
    out_dir = Path(out_dir)
    fig_dir = out_dir / "report"
    order_idx = figures.cluster_order(inp.affinity)
    order = [inp.affinity.names[i] for i in order_idx]
    pngs: dict[str, bytes] = {"affinity_heatmap": figures.affinity_heatmap(inp.affinity, order_idx)}
    if inp.mixtures:
        pngs["mixtures"] = figures.mixture_bars(inp.mixtures, order)
    if inp.path is not None:
        pngs["r_path"] = figures.path_plot(inp.path)
    if inp.influence:
        pngs["influence"] = figures.influence_plot(inp.influence)
    if inp.evals:
        names = list(inp.evals)
        pngs["eval"] = figures.eval_bars(
            names, [inp.evals[n].mean("loss_per_token") for n in names],
            inp.base_eval.mean("loss_per_token") if inp.base_eval else None,
        )
    for name, png in pngs.items():
        atomic_write_bytes(fig_dir / f"{name}.png", png)

    parts = [f"<h1>{html.escape(inp.title)}</h1>"]
    parts += [f"<p>{html.escape(n)}</p>" for n in inp.notes]
    if inp.evals:
        parts += ["<h2>Results on held-out evaluation tasks</h2>", _summary_table(inp),
                  _img("eval", pngs["eval"])]
    parts += ["<h2>Checks: is this experiment informative?</h2>", _checks(inp)]
    parts += ["<h2>Task affinity</h2>",
              (f"<p>{inp.affinity.n} tasks, metric <code>{html.escape(inp.affinity.kind)}</code>, "
               "rows and columns in average-linkage cluster order.</p>"),
              _img("affinity heatmap", pngs["affinity_heatmap"])]
    if inp.mixtures:
        parts += ["<h2>Mixtures</h2>", _img("mixtures", pngs["mixtures"]),
                  "<details><summary>weights table</summary>", _mixture_table(inp, order),
                  "</details>"]
    if inp.path is not None:
        parts += ["<h2>r-path</h2>",
                  ("<p>TaskPGM's optimum as r = beta/lambda varies. With rowsum utilities only r "
                   "matters and r = 1/n gives the uniform mixture.</p>"),
                  _img("r-path", pngs["r_path"])]
    if inp.influence:
        rows = "".join(
            f"<tr><td>{html.escape(r.task)}</td><td>{r.weight:.3f}</td><td>{r.l1_change:.3f}</td>"
            f"<td>{r.energy_change:.4g}</td></tr>"
            for r in sorted(inp.influence, key=lambda r: -r.l1_change)
        )
        parts += ["<h2>Task influence</h2>", _img("influence", pngs["influence"]),
                  ("<details><summary>table</summary><table><tr><th>task</th><th>weight</th>"
                   f"<th>L1 change</th><th>energy change</th></tr>{rows}</table></details>")]
    if inp.evals:
        parts += ["<h2>Per-task evaluation</h2>", _per_task_table(inp)]
    doc = (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        f"<title>{html.escape(inp.title)}</title><style>{_CSS}</style></head><body>"
        + "\n".join(parts) + "</body></html>\n"
    )
    path = out_dir / "report.html"
    atomic_write_text(path, doc)
    return path
