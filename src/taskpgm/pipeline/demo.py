"""The demo: the built-in synthetic suite and tiny model, all strategies on one budget."""

from __future__ import annotations

from pathlib import Path

from rich.table import Table

from taskpgm.config import Config, default_strategies


def demo_config(out: str | Path = "demo-run", seed: int = 0) -> Config:
    """Small defaults chosen so the whole demo runs in minutes on two CPU cores.

    The budget (examples sampled per mixture) and the training steps are set so the
    mixture models see each sampled example about once: if they could train long enough
    to learn every task, every mixture would tie and the comparison would say nothing.
    """
    cfg = Config()
    cfg.run.dir = str(out)
    cfg.run.seed = seed
    cfg.pool.source = "synthetic"
    cfg.model.base = "tiny"
    cfg.model.tiny.n_layer = 2
    cfg.model.tiny.n_embd = 64
    cfg.model.tiny.n_head = 2
    cfg.model.tiny.vocab_size = 256
    cfg.model.tiny.pretrain_steps = 0
    cfg.experts.steps = 60
    cfg.experts.batch_size = 16
    cfg.experts.lr = 3e-3
    cfg.sample.budget = 1600
    cfg.train.steps = 100
    cfg.train.batch_size = 16
    cfg.train.lr = 3e-3
    cfg.evaluate.tasks = "heldout"
    cfg.evaluate.max_examples = 100
    cfg.strategies = default_strategies()
    return cfg


def results_table(ctx) -> Table | None:
    """Per strategy: mean held-out loss/token, accuracy, exact match; base model last."""
    from taskpgm.pipeline.stages import BASE_EVAL
    from taskpgm.report.records import ModelEval

    rows = []
    for s in ctx.cfg.strategies:
        p = ctx.paths.eval(s.name)
        if p.is_file():
            rows.append((s.name, ModelEval.load(p)))
    if not rows:
        return None
    base_p = ctx.paths.eval(BASE_EVAL)
    base = ModelEval.load(base_p) if base_p.is_file() else None
    t = Table(title="Held-out evaluation tasks (mean over tasks)")
    t.add_column("strategy")
    t.add_column("loss/token", justify="right")
    t.add_column("vs uniform", justify="right")
    t.add_column("accuracy (MC)", justify="right")
    t.add_column("exact match", justify="right")
    ref = dict(rows).get("uniform")
    ref_loss = ref.mean("loss_per_token") if ref else None

    def fmt(v, d=3):
        return "-" if v is None else f"{v:.{d}f}"

    for name, ev in rows + ([("BASE model", base)] if base else []):
        loss = ev.mean("loss_per_token")
        delta = "-" if ref_loss is None or loss is None or name == "BASE model" else \
            f"{loss - ref_loss:+.3f}"
        t.add_row(name, fmt(loss), delta, fmt(ev.mean("accuracy")), fmt(ev.mean("exact_match")))
    return t


def auto_lines(ctx) -> list[str]:
    """Per ``auto`` strategy with a chosen mixture: what it chose and how clearly, the
    line a user reads to know which mixture to train on (D37)."""
    from taskpgm.mixture.record import Mixture

    lines = []
    for s in ctx.cfg.strategies:
        path = ctx.paths.strategy_mixture(s.name)
        if s.method != "auto" or int(s.params.get("replicate", 0)) or not path.is_file():
            continue
        mix = Mixture.load(path)
        chosen, ref = mix.params.get("chosen"), mix.diagnostics.get("reference")
        m = mix.diagnostics.get("margin_to_reference", {}).get(chosen)
        if mix.diagnostics.get("fell_back"):
            why = (f"no candidate beat {ref} beyond the validation split's noise, so it "
                   f"keeps {ref}")
        elif m is None or m.get("low") is None:
            why = f"chose {chosen}"
        else:
            why = (f"chose {chosen}: validation loss {m['mean']:+.3f} [{m['low']:+.3f}, "
                   f"{m['high']:+.3f}] against {ref}")
        lines.append(f"{s.name}: {why} ({path})")
    return lines


def checks_table(run_dir: Path) -> Table | None:
    from taskpgm.io import read_json

    p = Path(run_dir) / "checks.json"
    if not p.is_file():
        return None
    t = Table(title="Is this experiment informative?")
    t.add_column("check")
    t.add_column("result")
    t.add_column("detail")
    for c in read_json(p):
        res = {True: "[green]PASS[/green]", False: "[red]FAIL[/red]", None: "[dim]info[/dim]"}
        t.add_row(c["name"], res[c["ok"]], c["detail"])
    return t
