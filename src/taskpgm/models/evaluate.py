"""Evaluation helpers for the benchmark: loss per token, exact match, MC accuracy.

- ``loss_per_token``: mean negative log-likelihood of the response tokens (EOS
  included, as in training), over the whole split: ``-sum(logprob) / sum(n_tokens)``.
- ``exact_match`` (generative tasks): greedy decoding from the prompt, at most
  ``max_new_tokens`` tokens, compared with the response after stripping whitespace.
- ``accuracy`` / ``accuracy_norm`` (multiple-choice tasks): the option with the
  highest summed log-likelihood given the prompt (no EOS), or the highest per-token
  mean, is compared with the answer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from taskpgm.errors import InputError
from taskpgm.models.encode import encode_pair, model_max_length
from taskpgm.models.load import LoadedModel, cpu_threads_for, load_model
from taskpgm.models.prompt_format import DEFAULT_SEPARATOR, Rendered, render_prompt
from taskpgm.models.scoring import ScoreSettings, score_pairs
from taskpgm.tasks.pool import SPLITS, Example, Pool


@dataclass
class TaskEval:
    task: str
    kind: str
    split: str
    n_examples: int
    n_tokens: int
    loss_per_token: float
    exact_match: float | None = None  # generative tasks
    accuracy: float | None = None  # multiple choice, summed option log-likelihood
    accuracy_norm: float | None = None  # multiple choice, per-token option log-likelihood

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def option_accuracy(loaded: LoadedModel, examples: Sequence[Example],
                    max_batch_tokens: int = 8192,
                    batch_size: int | None = None,
                    settings: ScoreSettings | None = None) -> tuple[float, float]:
    """(accuracy, length-normalised accuracy) from option log-likelihoods."""
    pairs, owner = [], []
    for i, ex in enumerate(examples):
        if not ex.options:
            raise InputError(f"example {ex.id!r} of a multiple-choice task has no 'options'")
        for opt in ex.options:
            pairs.append((ex.prompt, opt))
            owner.append(i)
    s = settings or ScoreSettings()
    scored = score_pairs(loaded, pairs, replace(s, append_eos=False),
                         max_batch_tokens=max_batch_tokens, batch_size=batch_size)
    hits = hits_norm = 0
    pos = 0
    for ex in examples:
        k = len(ex.options or ())
        lp = scored.logprob[pos:pos + k]
        per_tok = lp / np.maximum(scored.n_tokens[pos:pos + k], 1)
        hits += int(np.argmax(lp) == ex.answer)
        hits_norm += int(np.argmax(per_tok) == ex.answer)
        pos += k
    n = max(len(examples), 1)
    return hits / n, hits_norm / n


def greedy_generate(loaded: LoadedModel, prompts: Sequence[str | Rendered],
                    max_new_tokens: int = 32, batch_size: int = 32) -> list[str]:
    """Greedy continuations of ``prompts`` (batched with left padding), cut at EOS; a
    :class:`Rendered` prompt from a chat template is tokenised without added specials."""
    tok, model, dev = loaded.tokenizer, loaded.model, loaded.device
    max_len = model_max_length(model) - max_new_tokens
    if max_len < 1:
        raise InputError(f"max_new_tokens {max_new_tokens} leaves no room for a prompt")
    encs = [encode_pair(tok, p.prompt, "", append_eos=False, max_length=max_len + 1,
                        templated=p.templated).ids if isinstance(p, Rendered) else
            encode_pair(tok, p, "", append_eos=False, max_length=max_len + 1).ids
            for p in prompts]
    order = sorted(range(len(encs)), key=lambda i: len(encs[i]))
    outs: list[str] = [""] * len(encs)
    with torch.inference_mode():
        for s in range(0, len(order), batch_size):
            idx = order[s:s + batch_size]
            width = max(len(encs[i]) for i in idx)
            ids = torch.full((len(idx), width), tok.pad_token_id, dtype=torch.long)
            mask = torch.zeros_like(ids)
            for r, i in enumerate(idx):
                ids[r, width - len(encs[i]):] = torch.tensor(encs[i])
                mask[r, width - len(encs[i]):] = 1
            gen = model.generate(input_ids=ids.to(dev), attention_mask=mask.to(dev),
                                 max_new_tokens=max_new_tokens, do_sample=False,
                                 pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
            for r, i in enumerate(idx):
                new = gen[r, width:].tolist()
                if tok.eos_token_id in new:
                    new = new[: new.index(tok.eos_token_id)]
                outs[i] = tok.decode(new, skip_special_tokens=True)
    return outs


def evaluate_model(
    model_dir: str | Path | LoadedModel,
    pool: Pool | str | Path,
    tasks: Sequence[str] | None = None,
    split: str = "eval",
    *,
    max_new_tokens: int = 32,
    max_batch_tokens: int = 8192,
    batch_size: int | None = None,
    device: str | None = None,
    prompt_format: str = "auto",
    separator: str = DEFAULT_SEPARATOR,
) -> dict[str, TaskEval]:
    """Evaluate a model on ``tasks`` (default: all) of ``pool``; task -> :class:`TaskEval`.

    ``batch_size``: at most this many examples per forward pass, when scoring and when
    generating (``None``: the scoring engine's token budget, and 32 prompts per generation
    batch).
    """
    # Checked before the model loads, so a typo costs nothing.
    if split not in SPLITS:
        raise InputError(f"unknown split {split!r} (use one of {', '.join(SPLITS)})")
    if max_new_tokens < 1:
        raise InputError(f"max_new_tokens must be at least 1, got {max_new_tokens}")
    if batch_size is not None and (isinstance(batch_size, bool)
                                   or not isinstance(batch_size, int) or batch_size < 1):
        raise InputError(f"batch_size must be a positive integer, got {batch_size!r}")
    pool = pool if isinstance(pool, Pool) else Pool.load(pool)
    loaded = model_dir if isinstance(model_dir, LoadedModel) else load_model(model_dir, device=device)
    names = list(tasks) if tasks is not None else pool.names
    for name in names:
        pool.task(name)
    with cpu_threads_for(loaded.model, loaded.device):
        return _evaluate(loaded, pool, names, split, max_new_tokens, max_batch_tokens,
                         batch_size, ScoreSettings(prompt_format=prompt_format,
                                                   separator=separator))


def _evaluate(loaded: LoadedModel, pool: Pool, names: list[str], split: str,
              max_new_tokens: int, max_batch_tokens: int,
              batch_size: int | None = None,
              settings: ScoreSettings | None = None) -> dict[str, TaskEval]:
    s = settings or ScoreSettings()
    results: dict[str, TaskEval] = {}
    for name in names:
        info = pool.task(name)
        path = pool.split_path(name, split)
        examples = pool.examples(name, split)
        if not examples:
            raise InputError(f"{path}: task {name!r} has no examples in split {split!r}")
        scored = score_pairs(loaded, examples, s,
                             max_batch_tokens=max_batch_tokens, batch_size=batch_size)
        n_tok = int(scored.n_tokens.sum())
        res = TaskEval(name, info.kind, split, len(examples), n_tok,
                       float(-scored.logprob.sum() / max(n_tok, 1)))
        if info.kind == "multiple_choice":
            res.accuracy, res.accuracy_norm = option_accuracy(loaded, examples, max_batch_tokens,
                                                              batch_size, s)
        else:
            prompts = [render_prompt(e.prompt, e.messages, loaded.tokenizer, s.prompt_format,
                                     s.separator) for e in examples]
            gens = greedy_generate(loaded, prompts, max_new_tokens,
                                   **({} if batch_size is None else {"batch_size": batch_size}))
            res.exact_match = float(np.mean([g.strip() == e.response.strip()
                                             for g, e in zip(gens, examples, strict=True)]))
        results[name] = res
    return results
