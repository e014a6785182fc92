"""Next-token log-probabilities at the response positions only.

A causal LM's forward pass builds logits for every position: ``[batch, seq, vocab]``,
8 GB for a 128k vocabulary at a few thousand tokens, although only the response tokens
are ever scored or trained on. Here the transformer body runs once, the hidden states
of the positions that predict a response token are gathered, and the output head is
applied to those rows only, in chunks, so the largest tensor is ``[chunk, vocab]``.

Models whose head is not a plain projection of the body's last hidden state (logit
soft-capping, scaled logits, an unknown layout) are detected and fall back to the full
forward pass, so the numbers never depend on which path ran.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch

# Rows of [rows, vocab] float32 per chunk: 2**24 floats = 64 MiB whatever the vocabulary.
CHUNK_FLOATS = 1 << 24
# Config fields that change logits after the output projection (Gemma 2/3, Cohere, ...).
_POST_HEAD = ("final_logit_softcapping", "logit_scale", "logits_scaling", "output_multiplier")


# The full-logits path for every model: only benchmarks/memory.py sets it, to measure the
# baseline side by side.
FULL_LOGITS = False


def _split_model(model: Any) -> tuple[Any, Any] | None:
    """(body, head) when logits are exactly ``head(body(...).last_hidden_state)``."""
    if FULL_LOGITS:
        return None
    # A peft wrapper forwards attribute lookups to its LoraModel, whose ``model`` is the
    # whole causal LM: for Llama/Qwen2 (prefix "model") that lookup returns the LM, not its
    # body. The wrapped model, with the adapters injected in place, splits like any other.
    if hasattr(model, "get_base_model"):
        model = model.get_base_model()
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    prefix = getattr(model, "base_model_prefix", "")
    body = getattr(model, prefix, None) if prefix else None
    if head is None or body is None or body is model:
        return None
    cfg = getattr(model, "config", None)
    if any(getattr(cfg, k, None) not in (None, 1, 1.0) for k in _POST_HEAD):
        return None
    return body, head


def response_logits(model: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                    rows: torch.Tensor, pos: torch.Tensor) -> Iterator[tuple[slice, torch.Tensor]]:
    """Yield ``(slice, logits)`` over the (row, pos) pairs: float32 logits predicting
    ``input_ids[rows, pos]`` (i.e. taken at ``pos - 1``), in chunks of at most
    CHUNK_FLOATS floats."""
    split = _split_model(model)
    if split is None:
        logits = model(input_ids=input_ids, attention_mask=attention_mask).logits
        picked = logits[rows, pos - 1]
        yield slice(0, len(rows)), picked.float()
        return
    body, head = split
    hidden = body(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
    picked = hidden[rows, pos - 1]
    vocab = head.weight.shape[0]
    step = max(1, CHUNK_FLOATS // max(vocab, 1))
    for s in range(0, len(rows), step):
        sl = slice(s, min(s + step, len(rows)))
        yield sl, head(picked[sl]).float()
