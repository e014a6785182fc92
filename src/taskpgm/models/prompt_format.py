"""How an example becomes the text a model is trained and scored on.

One rendering, used by expert training, scoring, evaluation and generation alike, so
what an expert learned and what it is scored on are the same text:

- ``separator``: prompt + response, with ``separator`` (a newline by default) put between
  them when neither side has whitespace there: FLAN's ``...OPTIONS:\\n- yes\\n- no`` and
  ``yes`` would otherwise train as ``- noyes``. A prompt ending in ``Answer:`` with a
  response starting `` 4`` is left alone. Chat examples are flattened to
  ``role: content`` lines ending in ``assistant: ``.
- ``raw``: prompt + response exactly as stored.
- ``chat_template``: the tokenizer's own chat template (``apply_chat_template``); the
  prompt is every message but the last with the generation prompt, the response is
  what the template adds for the last (assistant) message, end-of-turn included. A
  plain prompt/response example is one user turn and one assistant turn.
- ``auto`` (the default): ``chat_template`` for chat examples when the tokenizer has a
  template, ``separator`` otherwise.

Torch-free: exports use it too.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from taskpgm.choices import PROMPT_FORMATS
from taskpgm.errors import InputError

DEFAULT_SEPARATOR = "\n"


@dataclass(frozen=True, slots=True)
class Rendered:
    """The text of one example. ``templated``: made by a chat template, so it holds its
    own special tokens (no BOS added when tokenising, no EOS appended after it)."""

    prompt: str
    response: str
    templated: bool = False


def check_format(prompt_format: str, separator: str = DEFAULT_SEPARATOR) -> None:
    if prompt_format not in PROMPT_FORMATS:
        raise InputError(f"prompt_format must be one of {', '.join(PROMPT_FORMATS)}, "
                         f"got {prompt_format!r}")
    if not isinstance(separator, str):
        raise InputError(f"separator must be a string, got {separator!r}")


def has_chat_template(tokenizer: Any) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def join_text(prompt: str, response: str, separator: str = DEFAULT_SEPARATOR) -> str:
    """The prompt as the ``separator`` format trains on it (the separator ends it)."""
    if prompt and response and not prompt[-1].isspace() and not response[0].isspace():
        return prompt + separator
    return prompt


def flatten_messages(messages: Sequence[dict[str, str]]) -> tuple[str, str]:
    """Chat messages as plain text: ``role: content`` lines, then ``assistant: ``."""
    prompt = "".join(f"{m['role']}: {m['content']}\n" for m in messages[:-1]) + "assistant: "
    return prompt, messages[-1]["content"]


def render(prompt: str, response: str, messages: Sequence[dict[str, str]] | None,
           tokenizer: Any = None, prompt_format: str = "auto",
           separator: str = DEFAULT_SEPARATOR) -> Rendered:
    """One example's text under ``prompt_format`` (see the module docstring)."""
    fmt = _resolve(prompt_format, messages, tokenizer)
    if fmt == "raw":
        return Rendered(prompt, response)
    if fmt == "separator":
        return Rendered(join_text(prompt, response, separator), response)
    if fmt != "chat_template":
        raise InputError(f"prompt_format must be one of {', '.join(PROMPT_FORMATS)}, got {fmt!r}")
    if not has_chat_template(tokenizer):
        raise InputError("prompt_format 'chat_template': the tokenizer has no chat template "
                         "(use 'auto' or 'separator')")
    msgs = [dict(m) for m in messages] if messages else [
        {"role": "user", "content": prompt}, {"role": "assistant", "content": response}]
    head = tokenizer.apply_chat_template(msgs[:-1], tokenize=False, add_generation_prompt=True)
    full = tokenizer.apply_chat_template(msgs, tokenize=False)
    if not full.startswith(head):
        raise InputError("the tokenizer's chat template renders the conversation differently "
                         "from its prefix (the response cannot be located); use "
                         "prompt_format 'separator'")
    return Rendered(head, full[len(head):], templated=True)


def _resolve(prompt_format: str, messages: Any, tokenizer: Any) -> str:
    if prompt_format == "auto":
        return "chat_template" if messages and has_chat_template(tokenizer) else "separator"
    return prompt_format


def render_prompt(prompt: str, messages: Sequence[dict[str, str]] | None, tokenizer: Any = None,
                  prompt_format: str = "auto", separator: str = DEFAULT_SEPARATOR) -> Rendered:
    """The prompt alone, as generation continues it: the text :func:`render` puts before
    the response (for ``separator``, the separator is added whenever the prompt does not
    end in whitespace, since the response is what is to be generated)."""
    fmt = _resolve(prompt_format, messages, tokenizer)
    if fmt == "chat_template":
        if not has_chat_template(tokenizer):
            raise InputError("prompt_format 'chat_template': the tokenizer has no chat "
                             "template (use 'auto' or 'separator')")
        msgs = [dict(m) for m in messages[:-1]] if messages else [
            {"role": "user", "content": prompt}]
        head = tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
        return Rendered(head, "", templated=True)
    if fmt == "raw":
        return Rendered(prompt, "")
    return Rendered(join_text(prompt, "x", separator), "")


def render_all(items: Sequence[Any], tokenizer: Any = None, prompt_format: str = "auto",
               separator: str = DEFAULT_SEPARATOR) -> list[Rendered]:
    """Render pool ``Example`` objects, ``(prompt, response)`` pairs or already
    ``Rendered`` items (kept as they are)."""
    out = []
    for it in items:
        if isinstance(it, Rendered):
            out.append(it)
        elif isinstance(it, tuple):
            out.append(render(str(it[0]), str(it[1]), None, tokenizer, prompt_format, separator))
        else:
            out.append(render(it.prompt, it.response, it.messages, tokenizer, prompt_format,
                              separator))
    return out
