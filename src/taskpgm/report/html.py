"""The self-contained HTML report: figures embedded as base64 PNG, also written beside it."""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from taskpgm.affinity.io import AffinityMatrix
from taskpgm.io import atomic_write_bytes, atomic_write_text
from taskpgm.mixture.record import Mixture
from taskpgm.report import figures
from taskpgm.report.groups import (
    GroupMass,
    affinity_noise,
    cluster_groups,
    family_groups,
    group_mass,
    has_family_labels,
    shorten,
)
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
    # Task -> family label (None: no label); the mass-per-family section needs it.
    families: dict[str, str | None] | None = None
    # Groups shown by name in the mass-per-group figures; the rest are summed as "other".
    top_groups: int = 12


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:2rem auto;max-width:1100px;
color:#222;padding:0 1rem}
h1{font-size:1.6rem}h2{font-size:1.2rem;margin-top:2rem;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:.85rem;margin:.5rem 0}
td,th{border:1px solid #ddd;padding:.25rem .5rem;text-align:right}
th{background:#f4f4f4}td:first-child,th:first-child{text-align:left}
.badge{display:inline-block;min-width:3.2em;text-align:center;border-radius:3px;
padding:0 .3em;font-size:.8rem;font-weight:700}
.ok{color:#fff;background:#1a7f37}.bad{color:#fff;background:#cf222e}
.warn{color:#000;background:#f0b400}.na{color:#555;background:#eee}
.fail{border-left:4px solid #cf222e;background:#fff5f5}.warned{border-left:4px solid #f0b400}
.banner{border:2px solid #cf222e;background:#fff5f5;padding:.5rem 1rem;font-weight:600}
.checks li{padding:.2rem .4rem;margin:.2rem 0;list-style:none}
td.zero{background:#ffebe9;color:#cf222e;font-weight:600}
td.members{text-align:left;font-size:.75rem;color:#555}
img{max-width:100%;height:auto;border:1px solid #eee}
.best{background:#e6ffec}.caption{font-size:.85rem;color:#555}
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


def _badge(c: Check) -> tuple[str, str, str]:
    """(badge class, badge text, row class) of a check."""
    if c.ok is True:
        return "ok", "PASS", ""
    if c.ok is False:
        return "bad", "FAIL", "fail"
    if c.warn:
        return "warn", "WARN", "warned"
    return "na", "info", ""


def _checks(inp: ReportInputs) -> str:
    if not inp.checks:
        return "<p class=na>No checks computed.</p>"
    items = []
    for c in inp.checks:
        cls, text, row = _badge(c)
        items.append(f'<li class="{row}"><span class="badge {cls}">{text}</span> '
                     f"<b>{html.escape(c.name)}</b>: {html.escape(c.detail)}</li>")
    return ('<p>PASS / FAIL: the check decides; info: a number to read beside the results; '
            'WARN: an informational check whose detail needs attention.</p>'
            '<ul class="checks">' + "".join(items) + "</ul>")


def _banner(inp: ReportInputs) -> str:
    failed = [c for c in inp.checks if c.ok is False]
    warned = [c for c in inp.checks if c.ok is None and c.warn]
    if not failed and not warned:
        return ""
    parts = []
    if failed:
        parts.append(f"FAIL ({len(failed)} of {len(inp.checks)} informativeness checks): "
                     + "; ".join(html.escape(c.name) for c in failed))
    if warned:
        parts.append("WARN: " + "; ".join(html.escape(c.name) for c in warned))
    return (f'<p class="banner">{"<br>".join(parts)} '
            '(see <a href="#checks">the checks</a>)</p>')


def _group_table(gm: GroupMass) -> str:
    """Rows = groups (by decreasing largest mass), columns = strategies."""
    head = "".join(f"<th>{html.escape(s)}</th>" for s in gm.strategies)
    rows = []
    for i, g in enumerate(gm.groups):
        cells = []
        for j in range(len(gm.strategies)):
            m, a = gm.mass[i, j], gm.active[i, j]
            zero = ' class="zero"' if m <= 1e-9 else ""
            cells.append(f"<td{zero}>{m:.3f} <small>{a}/{len(g.members)}</small></td>")
        full = ", ".join(g.members[:60]) + (" ..." if len(g.members) > 60 else "")
        rows.append(f"<tr><td>{html.escape(g.label)}</td><td>{len(g.members)}</td>"
                    f'<td class="members" title="{html.escape(full)}">'
                    f"{html.escape(shorten(g.members))}</td>{''.join(cells)}</tr>")
    total = "".join(f"<th>{v:.3f}</th>" for v in gm.mass.sum(axis=0))
    table = (f"<table><tr><th>{gm.kind}</th><th>tasks</th><th>members</th>{head}</tr>"
             f"{''.join(rows)}<tr><th>total</th><th>{sum(gm.sizes)}</th><th></th>{total}</tr>"
             "</table>")
    note = (f"<p>Each cell: total weight of the {gm.kind}, and (small) how many of its tasks "
            "get a positive weight. A red cell: the strategy gives the whole "
            f"{gm.kind} zero mass. Rows by decreasing largest mass.</p>")
    if len(gm.groups) > 40:
        return (f"{note}<details><summary>table ({len(gm.groups)} {gm.plural})</summary>"
                f"{table}</details>")
    return note + table


def _group_views(inp: ReportInputs) -> list[tuple[str, GroupMass | None, str]]:
    """(figure name, group masses, explanatory note) for families and clusters."""
    if not inp.mixtures:
        return []
    tasks: list[str] = []
    seen: set[str] = set()
    for m in inp.mixtures.values():
        for t in m.tasks:
            if t not in seen:
                seen.add(t)
                tasks.append(t)
    out = []
    if inp.families is not None and has_family_labels(tasks, inp.families):
        gm = group_mass(inp.mixtures, family_groups(tasks, inp.families), "family")
        note = (f"{len(gm.groups)} families from the pool's labels (a task without one is "
                "its own family).")
        out.append(("family_mass", gm, note))
    elif inp.families is not None:
        out.append(("", None, "The pool has no family labels: no mass per family."))
    noise = affinity_noise(inp.affinity)
    # The clusters at the bandwidth the mixtures used (the main mixture's first).
    with_bandwidth = sorted((name != "mixture", name) for name, m in inp.mixtures.items()
                            if m.params.get("bandwidth") is not None)
    bandwidth = (inp.mixtures[with_bandwidth[0][1]].params["bandwidth"] if with_bandwidth
                 else None)
    gm = group_mass(inp.mixtures, cluster_groups(inp.affinity, tasks, bandwidth), "cluster")
    from taskpgm.affinity.redundancy import check_bandwidth

    how = ("per-entry noise from the affinity's bootstrap intervals" if noise is not None
           else f"no intervals, so the bandwidth is {check_bandwidth(bandwidth):.0%} of the "
                "median distance")
    note = (f"{len(gm.groups)} clusters of redundant tasks found in the affinity "
            f"(redundancy_clusters, {how}; the clusters of the cluster-balanced strategy).")
    out.append(("cluster_mass", gm, note))
    return out


def _mixture_table(inp: ReportInputs, order: list[str]) -> str:
    head = "".join(f"<th>{html.escape(m)}</th>" for m in inp.mixtures)
    rows = []
    for t in order:
        cells = "".join(f"<td>{m.as_dict().get(t, 0.0):.3f}</td>" for m in inp.mixtures.values())
        rows.append(f"<tr><td>{html.escape(t)}</td>{cells}</tr>")
    return f"<table><tr><th>task</th>{head}</tr>{''.join(rows)}</table>"


def _estimated_caption(aff, estimated, mixtures: dict[str, Mixture]) -> str:
    """How many heatmap entries were estimated, how, and how wrong they are likely; and
    which mixtures are most exposed to that error."""
    k = int(np.triu(estimated, 1).sum())
    if not k:
        return ""
    n = aff.n
    comp = aff.provenance.get("completion") or {}
    err = comp.get("estimated_error") or {}
    how = (f"{k} of {n * (n - 1) // 2} affinity entries are estimated, not measured "
           f"(marked {'in the panel beside it' if n > figures.DOTS_UP_TO else 'with a dot'}): "
           "they use at "
           f"least one of the {len(aff.provenance.get('unscored_pairs') or [])} unscored "
           "(expert, task) pairs, whose mean log-likelihoods were filled in by low-rank "
           f"completion (additive expert and task effects plus rank {comp.get('rank', '?')} "
           "interaction).")
    if err.get("affinity_rmse") is not None:
        rel = err.get("m_rmse_relative")
        how += (f" Estimated error: RMSE {err['affinity_rmse']:.3g} on affinity entries "
                f"(mean log-likelihood RMSE {err['m_rmse']:.3g}"
                + (f", {rel:.0%} of the measured spread" if rel is not None else "")
                + f"), from {err.get('method', 'leave-some-out')}.")
    calibrated = [n for n, m in mixtures.items() if m.params.get("kernel") == "calibrated"]
    if calibrated:
        # Measured (benchmarks/README.md): without intervals, at 30% scored, L1 to the
        # full-scoring mixture 0.09 (310-task pool) to 0.45 (the real 316-task matrix)
        # for the calibrated default, 0.01 for shift; 0.04 with intervals on that pool.
        how += (f" Mixtures on the calibrated kernel ({', '.join(calibrated)}) couple only "
                "entries within a narrow bandwidth, so completion errors move them far more "
                "than the shift kernel's; the checks say how far this run's mixture moves "
                "when solved from half the scored pairs (docs/config.md).")
    return f'<p class="caption">{html.escape(how, quote=False)}</p>'


def _auto_rule_words(mix: Mixture) -> str:
    """How this auto chose, in words (D37; a mixture saved before the rule existed chose
    by the lowest loss)."""
    if mix.params.get("rule", "lowest") == "lowest":
        return "Lowest validation loss per token wins."
    ref = html.escape(str(mix.diagnostics.get("reference")))
    if mix.diagnostics.get("fell_back"):
        return (f"No candidate beat {ref} beyond the validation split's noise (every "
                f"interval reaches 0), so {ref} is kept (rule 'clear').")
    return (f"Lowest validation loss per token among the candidates whose whole margin "
            f"interval to {ref} is below 0 (rule 'clear').")


def _auto_tables(mixtures: dict[str, Mixture], fig_dir: Path | None = None) -> list[str]:
    """Per ``auto`` strategy: every candidate's validation loss and paired margin to
    uniform, the chosen one marked (D19); per ``regression`` strategy: its proxy count and
    the fit's held-out rank correlation."""
    parts = []
    for name, mix in mixtures.items():
        if mix.method == "regression" and "cv_spearman" in mix.diagnostics:
            rho = mix.diagnostics["cv_spearman"]
            rows = "".join(f"<tr><td>{html.escape(m)}</td><td>{_fmt(r, 3)}</td></tr>"
                           for m, r in rho.items())
            parts += [f"<h2>Regression mixer: {html.escape(name)}</h2>",
                      (f"<p>{mix.diagnostics.get('proxy_trainings', '?')} proxy trainings; "
                       "per validation task, the rank correlation between the fitted law's "
                       "predictions and the measured losses of held-out proxy runs (5-fold). "
                       "Below about 0.5 the fit cannot rank mixtures and its choice is not "
                       "to be trusted.</p>"),
                      f"<table><tr><th>metric</th><th>held-out Spearman</th></tr>{rows}</table>"]
            continue
        if mix.method != "auto":
            continue
        losses = mix.diagnostics.get("validation_loss", {})
        margins = mix.diagnostics.get("margin_to_reference", {})
        ref = mix.diagnostics.get("reference")
        val = mix.params.get("validation", {})
        rows = []
        for cand, loss in sorted(losses.items(), key=lambda kv: kv[1]):
            m = margins.get(cand)
            margin = "-" if m is None else f"{m['mean']:+.4f}" + (
                "" if m.get("low") is None else f" [{m['low']:+.4f}, {m['high']:+.4f}]")
            mark = " (chosen)" if cand == mix.params.get("chosen") else ""
            rows.append(f"<tr><td>{html.escape(cand + mark)}</td><td>{loss:.4f}</td>"
                        + ("" if ref is None else f"<td>{margin}</td>") + "</tr>")
        parts += [f"<h2>Validation-selected mixture: {html.escape(name)}</h2>",
                  (f"<p>{len(losses)} candidates, each trained once by its own strategy on "
                   f"this run's budget ({len(losses)} proxy trainings); validated on the "
                   f"{html.escape(str(val.get('split', 'probe')))} split of "
                   f"{len(val.get('tasks', []))} tasks, never on the evaluation split. "
                   + _auto_rule_words(mix) + " "
                   + ("No candidate is uniform, so no margins are shown.</p>" if ref is None else
                      f"Margin: loss minus {html.escape(str(ref))}'s, 95% paired bootstrap "
                      "interval over validation examples (the training noise of each proxy is "
                      "not in it).</p>")),
                  ("<table><tr><th>candidate</th><th>validation loss/token</th>"
                   + ("" if ref is None else f"<th>margin to {html.escape(str(ref))}</th>")
                   + f"</tr>{''.join(rows)}</table>")]
        curve = figures.validation_curve(name, losses, mix.params.get("chosen"))
        if curve is not None:
            if fig_dir is not None:
                atomic_write_bytes(fig_dir / f"validation_{name}.png", curve)
            parts.append(_img(f"validation curve {name}", curve))
    return parts


def build_report(out_dir: str | Path, inp: ReportInputs) -> Path:
    """Write ``out_dir/report.html`` and ``out_dir/report/*.png``; return the HTML path."""
    out_dir = Path(out_dir)
    fig_dir = out_dir / "report"
    order_idx = figures.cluster_order(inp.affinity)
    order = [inp.affinity.names[i] for i in order_idx]
    estimated = figures.estimated_entries(inp.affinity.names,
                                          inp.affinity.provenance.get("unscored_pairs") or [])
    pngs: dict[str, bytes] = {"affinity_heatmap": figures.affinity_heatmap(
        inp.affinity, order_idx, estimated)}
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
    views = _group_views(inp)
    for fig_name, gm, _ in views:
        if gm is not None:
            pngs[fig_name] = figures.group_mass_bars(gm, inp.top_groups)
    for name, png in pngs.items():
        atomic_write_bytes(fig_dir / f"{name}.png", png)

    parts = [f"<h1>{html.escape(inp.title)}</h1>"]
    parts += [f"<p>{html.escape(n)}</p>" for n in inp.notes]
    parts.append(_banner(inp))
    if inp.evals:
        parts += ["<h2>Results on held-out evaluation tasks</h2>", _summary_table(inp),
                  _img("eval", pngs["eval"])]
    parts += ['<h2 id="checks">Checks: is this experiment informative?</h2>', _checks(inp)]
    parts += ["<h2>Task affinity</h2>",
              (f"<p>{inp.affinity.n} tasks, metric <code>{html.escape(inp.affinity.kind)}</code>, "
               "rows and columns in average-linkage cluster order.</p>"),
              _img("affinity heatmap", pngs["affinity_heatmap"]),
              _estimated_caption(inp.affinity, estimated, inp.mixtures)]
    if inp.mixtures:
        parts += ["<h2>Mixtures</h2>", _img("mixtures", pngs["mixtures"]),
                  "<details><summary>weights table</summary>", _mixture_table(inp, order),
                  "</details>"]
        parts += _auto_tables(inp.mixtures, fig_dir)
    for fig_name, gm, note in views:
        kind = "family" if fig_name == "family_mass" or gm is None else "cluster"
        parts += [f"<h2>Mass per {kind}</h2>", f"<p>{html.escape(note)}</p>"]
        if gm is not None:
            parts += [_img(fig_name.replace("_", " "), pngs[fig_name]), _group_table(gm)]
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
