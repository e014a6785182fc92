"""Turn prompt/response pairs into token ids, marking which positions are the response.

The same encoding is used for training (loss on response tokens only) and scoring
(sum of response-token log-probabilities), so what an expert learned and what it is
scored on line up exactly.

Rules:

- the prompt is tokenised with the tokenizer's own special tokens (a Llama tokenizer
  adds BOS); the response without them, so the response ids do not depend on the prompt;
- when the prompt would be empty, a BOS (or EOS) token stands in, so the first response
  token always has a prefix to be predicted from;
- ``append_eos`` ends the response with EOS (training and loss/scoring do; option
  likelihoods for multiple choice do not);
- sequences longer than ``max_length`` lose prompt tokens from the left first (the
  response is what is scored), then response tokens from the right.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Encoded:
    """Token ids of prompt + response; ``ids[start:]`` is the response."""

    ids: tuple[int, ...]
    start: int  # index of the first response token (>= 1)

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def n_response(self) -> int:
        return len(self.ids) - self.start


def model_max_length(model: Any, default: int = 1024) -> int:
    cfg = getattr(model, "config", None)
    for key in ("n_positions", "max_position_embeddings"):
        val = getattr(cfg, key, None)
        if isinstance(val, int) and val > 0:
            return val
    return default


def encode_pair(
    tokenizer: Any, prompt: str, response: str, *, append_eos: bool = True, max_length: int = 1024
) -> Encoded:
    p_ids = list(tokenizer(prompt, add_special_tokens=True)["input_ids"])
    r_ids = list(tokenizer(response, add_special_tokens=False)["input_ids"])
    if append_eos:
        r_ids.append(tokenizer.eos_token_id)
    if not p_ids:
        start_tok = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
        p_ids = [start_tok]
    if len(r_ids) > max_length - 1:
        r_ids = r_ids[: max_length - 1]
    room = max_length - len(r_ids)
    if len(p_ids) > room:
        # Keep a leading special token (BOS) if there is one, then the prompt's tail.
        special = set(getattr(tokenizer, "all_special_ids", []) or [])
        head = p_ids[:1] if p_ids[0] in special and room > 1 else []
        p_ids = head + p_ids[len(p_ids) - (room - len(head)):]
    return Encoded(tuple(p_ids + r_ids), len(p_ids))


def encode_pairs(
    tokenizer: Any,
    pairs: Iterable[tuple[str, str]],
    *,
    append_eos: bool = True,
    max_length: int = 1024,
) -> list[Encoded]:
    return [
        encode_pair(tokenizer, p, r, append_eos=append_eos, max_length=max_length) for p, r in pairs
    ]


def length_batches(
    lengths: Sequence[int], max_tokens: int, max_batch: int = 256, max_padding: float = 0.1
) -> list[list[int]]:
    """Group indices into batches of similar length (longest first).

    Indices are sorted by length (descending), so a batch's first row sets its width.
    A batch closes when one more row would exceed ``max_tokens`` padded tokens, exceed
    ``max_batch`` rows, or waste more than ``max_padding`` of the width on padding.
    The caller restores the original order.
    """
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    batches: list[list[int]] = []
    cur: list[int] = []
    width = 0
    for i in order:
        n = lengths[i]
        if cur and (width * (len(cur) + 1) > max_tokens or len(cur) >= max_batch
                    or n < width * (1 - max_padding)):
            batches.append(cur)
            cur = []
        if not cur:
            width = n
        cur.append(i)
    if cur:
        batches.append(cur)
    return batches
