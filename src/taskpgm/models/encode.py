"""Turn prompt/response pairs into token ids, marking which positions are the response.

The same encoding is used for training (loss on response tokens only) and scoring
(sum of response-token log-probabilities), so what an expert learned and what it is
scored on line up exactly.

Rules:

- prompt + response is tokenised once, as one text, with the tokenizer's own special
  tokens (a Llama tokenizer adds BOS), so the boundary is tokenised as the model reads
  it: no SentencePiece dummy-prefix space before the response, no lone space token, no
  EOS between prompt and response from a tokenizer with ``add_eos_token=True``;
- the response starts at the first token the prompt alone does not produce (the longest
  common prefix of the two tokenisations), so a token that straddles the boundary is
  scored as response;
- text made by a chat template (``templated``) already holds its special tokens: none
  are added, and no EOS is appended (the template's end-of-turn ends the response);
- when the prompt would be empty, a BOS (or EOS) token stands in, so the first response
  token always has a prefix to be predicted from;
- ``append_eos`` ends the response with EOS exactly once (training and loss/scoring do;
  option likelihoods for multiple choice do not); an EOS the tokenizer appends itself
  is removed first;
- sequences longer than ``max_length`` lose prompt tokens from the left first (the
  response is what is scored), then response tokens from the right.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from taskpgm.models.prompt_format import Rendered


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


def appends_eos(tokenizer: Any) -> bool:
    """Whether the tokenizer ends every text with EOS by itself (``add_eos_token=True``)."""
    eos = tokenizer.eos_token_id
    if eos is None:
        return False
    with_special = tokenizer("a", add_special_tokens=True)["input_ids"]
    plain = tokenizer("a", add_special_tokens=False)["input_ids"]
    return bool(with_special) and with_special[-1] == eos and (not plain or plain[-1] != eos)


def _ids(tokenizer: Any, text: str, special: bool, strip_eos: bool) -> list[int]:
    ids = list(tokenizer(text, add_special_tokens=special)["input_ids"])
    if strip_eos and ids and ids[-1] == tokenizer.eos_token_id:
        ids.pop()
    return ids


def encode_pair(
    tokenizer: Any, prompt: str, response: str, *, append_eos: bool = True, max_length: int = 1024,
    templated: bool = False, strip_eos: bool | None = None,
) -> Encoded:
    special = not templated
    if strip_eos is None:
        strip_eos = special and appends_eos(tokenizer)
    p_ids = _ids(tokenizer, prompt, special, strip_eos)
    full = _ids(tokenizer, prompt + response, special, strip_eos) if response else p_ids
    k = 0
    for a, b in zip(p_ids, full, strict=False):
        if a != b:
            break
        k += 1
    p_ids, r_ids = full[:k], full[k:]
    if append_eos and not templated:
        r_ids.append(tokenizer.eos_token_id)
    if not p_ids:
        start_tok = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
        p_ids = [start_tok]
    if len(r_ids) > max_length - 1:
        r_ids = r_ids[: max_length - 1]
    room = max_length - len(r_ids)
    if len(p_ids) > room:
        # Keep a leading special token (BOS) if there is one, then the prompt's tail.
        specials = set(getattr(tokenizer, "all_special_ids", []) or [])
        head = p_ids[:1] if p_ids[0] in specials and room > 1 else []
        p_ids = head + p_ids[len(p_ids) - (room - len(head)):]
    return Encoded(tuple(p_ids + r_ids), len(p_ids))


def encode_pairs(
    tokenizer: Any,
    pairs: Iterable[tuple[str, str] | Rendered],
    *,
    append_eos: bool = True,
    max_length: int = 1024,
) -> list[Encoded]:
    """Encode (prompt, response) pairs (raw text) or :class:`Rendered` examples."""
    strip = appends_eos(tokenizer)
    out = []
    for item in pairs:
        r = item if isinstance(item, Rendered) else Rendered(*item)
        out.append(encode_pair(tokenizer, r.prompt, r.response, append_eos=append_eos,
                               max_length=max_length, templated=r.templated,
                               strip_eos=strip and not r.templated))
    return out


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
