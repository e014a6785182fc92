"""Evaluate a model with ``taskpgm.models.evaluate`` and store a :class:`ModelEval`."""

from __future__ import annotations

from pathlib import Path

from taskpgm.report.records import ModelEval, TaskEval


def evaluate_to_record(model_dir: str | Path, pool, tasks: list[str], name: str, *,
                       split: str = "eval", max_examples: int | None = None,
                       max_batch_tokens: int = 8192,
                       prompt_format: str = "auto", separator: str = "\n") -> ModelEval:
    from taskpgm.models.evaluate import evaluate_model

    if max_examples is not None:
        pool = _truncated(pool, max_examples)
    results = evaluate_model(model_dir, pool, tasks, split=split, prompt_format=prompt_format,
                             separator=separator, max_batch_tokens=max_batch_tokens)
    rows = [
        TaskEval(task=t, n=r.n_examples, loss_per_token=r.loss_per_token,
                 accuracy=r.accuracy, exact_match=r.exact_match)
        for t, r in results.items()
    ]
    return ModelEval(name=name, tasks=rows, split=split,
                     metadata={"model": str(model_dir)})


def _truncated(pool, max_examples: int):
    """The same pool whose splits yield at most ``max_examples`` examples each."""
    from taskpgm.tasks.pool import Pool

    class _Truncated(Pool):
        def examples(self, task: str, split: str):
            return super().examples(task, split)[:max_examples]

    return _Truncated(pool.root, pool.manifest)
