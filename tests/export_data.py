"""Shared test data for the export tests."""

from __future__ import annotations


def chat_example(i: int) -> dict:
    """A two-turn conversation whose last assistant message is ``b<i>``."""
    return {"messages": [
        {"role": "system", "content": "be brief"}, {"role": "user", "content": f"chat {i}"},
        {"role": "assistant", "content": f"a{i}"}, {"role": "user", "content": "again"},
        {"role": "assistant", "content": f"b{i}"}]}
