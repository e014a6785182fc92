"""Content digests of a task's examples: what content-addressed experts and score shards
are keyed by (:mod:`taskpgm.pipeline.identity`).

A digest reads the parsed examples, not the file's bytes, so a file rewritten with other
whitespace or key order keeps its digest; everything a model reads (prompt, response,
chat messages, options, answer) is in it, and the order too (training draws batches by
position).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable

from taskpgm.tasks.pool import Example


def examples_digest(examples: Iterable[Example], *, ids: bool) -> str:
    """SHA-256 of the examples in order. ``ids=False`` leaves the example ids out: an
    expert never reads them, so a task renamed with its ids keeps its expert; score
    shards store the ids, so their digest keeps them (``ids=True``)."""
    h = hashlib.sha256()
    for ex in examples:
        rec = ex.to_record()
        if not ids:
            rec.pop("id")
        h.update(json.dumps(rec, sort_keys=True, ensure_ascii=False).encode("utf-8"))
        h.update(b"\n")
    return h.hexdigest()
