"""The redundancy suite: 8 skills under 1 to 10 near-identical templates, 2 held out each."""

from __future__ import annotations

from collections import Counter

import pytest

from taskpgm.config import Config
from taskpgm.errors import InputError
from taskpgm.pipeline.stages import PipelineContext, stage_pool
from taskpgm.tasks.synth import (
    REDUNDANCY_COUNTS,
    REDUNDANCY_SKILLS,
    build_synthetic_pool,
    synthetic_tasks,
    variant_counts,
)

SKILLS = tuple(REDUNDANCY_SKILLS)


@pytest.fixture(scope="module")
def tasks():
    return synthetic_tasks(0, suite="redundancy", scale=0.05)


def test_structure(tasks):
    train = [t for t in tasks if t.info.role == "train"]
    held = [t for t in tasks if t.info.role == "heldout"]
    assert len(SKILLS) == 8 and len(train) == 33 and len(held) == 16
    per_skill = Counter(t.info.family for t in train)
    assert sorted(per_skill.values()) == sorted(REDUNDANCY_COUNTS) == [1, 1, 2, 3, 4, 5, 7, 10]
    assert set(per_skill) == set(SKILLS)
    assert Counter(t.info.family for t in held) == {s: 2 for s in SKILLS}
    names = {t.info.name for t in tasks}
    assert {"reverse_t1", "reverse_heldout1", "reverse_heldout2"} <= names
    # Same train size everywhere: size-proportional mixing is uniform, only redundancy differs.
    assert len({len(t.splits["train"]) for t in train}) == 1
    assert all(len(t.splits["probe"]) == 32 and len(t.splits["eval"]) == 64 for t in train)
    assert all("train" not in t.splits and len(t.splits["eval"]) == 100 for t in held)


def test_templates_near_identical_and_heldout_unseen(tasks):
    for skill in SKILLS:
        mine = [t for t in tasks if t.info.family == skill]
        train = [t.info.metadata["template"] for t in mine if t.info.role == "train"]
        held = [t.info.metadata["template"] for t in mine if t.info.role == "heldout"]
        assert len(set(train)) == len(train) and len(set(held)) == 2
        assert not set(held) & set(REDUNDANCY_SKILLS[skill].train_templates)
        every = REDUNDANCY_SKILLS[skill].train_templates + REDUNDANCY_SKILLS[skill].heldout_templates
        assert len(set(every)) == 12
        # Near-identical: all wordings share the skill's instruction, capital included.
        core = min(every, key=len).rstrip(".:")
        assert all(core in t for t in every)
        for t in mine:
            exs = [e for split in t.splits.values() for e in split]
            assert all(e.prompt.startswith(t.info.metadata["template"] + "\n") for e in exs)


def test_prompt_and_response_format(tasks):
    for t in tasks:
        for split in t.splits.values():
            for e in split:
                assert e.prompt.endswith("\nAnswer:") and e.response.startswith(" ")
                assert e.response.strip() and len(e.response.split()) <= 10
                if e.options is not None:
                    assert e.options[e.answer] == e.response
    assert {t.info.kind for t in tasks if t.info.family == "largest"} == {"multiple_choice"}


def test_same_seed_same_bytes_and_seeded_permutation(tmp_path):
    a = build_synthetic_pool(tmp_path / "a", seed=5, scale=0.05, suite="redundancy")
    build_synthetic_pool(tmp_path / "b", seed=5, scale=0.05, suite="redundancy")
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    assert len(files) > 49
    for f in files:
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes()
    meta = a.manifest.metadata
    assert meta["suite"] == "redundancy" and meta["families"] == list(SKILLS)
    assert meta["variants"] == dict(Counter(t.family for t in a.train_tasks()))
    perms = {tuple(variant_counts(SKILLS, s, suite="redundancy").values()) for s in range(6)}
    assert len(perms) > 1
    assert all(sorted(p) == sorted(REDUNDANCY_COUNTS) for p in perms)


def test_counts_and_families_can_be_given():
    counts = (10, 1, 1, 1, 1, 1, 1, 2)
    tasks = synthetic_tasks(0, counts=counts, scale=0.02, suite="redundancy")
    per_skill = Counter(t.info.family for t in tasks if t.info.role == "train")
    assert per_skill == dict(zip(SKILLS, counts, strict=True))
    sub = synthetic_tasks(0, families=("copy", "count"), scale=0.02, suite="redundancy")
    assert {t.info.family for t in sub} == {"copy", "count"}
    for bad, match in (((1, 1), "2 given for 8"), ((0,) + (1,) * 7, "between 1 and 10"),
                       ((11,) + (1,) * 7, "between 1 and 10")):
        with pytest.raises(InputError, match=match):
            synthetic_tasks(0, counts=bad, suite="redundancy")
    with pytest.raises(InputError, match="valid: default, redundancy"):
        synthetic_tasks(0, suite="nope")
    with pytest.raises(InputError, match="unknown synthetic family 'copy'"):
        synthetic_tasks(0, families=("copy",))  # a redundancy skill, not a default family


def test_pipeline_stage_builds_the_configured_suite(tmp_path):
    cfg = Config()
    cfg.run.dir = str(tmp_path / "run")
    cfg.pool.suite = "redundancy"
    cfg.pool.scale = 0.02
    cfg.pool.families = ["reverse", "initials", "count"]
    ctx = PipelineContext(cfg)
    stage_pool(ctx)
    names = ctx.train_task_names()
    assert names and all(n.split("_t")[0] in cfg.pool.families for n in names)


def test_heldout_prompts_use_only_words_seen_in_training(tasks):
    # A held-out template is new *for its skill*, but its prefix, instruction and ending
    # all occur in training: a word seen only at evaluation would keep its random
    # embedding and make held-out loss noise.
    seen_prefixes, seen_endings = set(), set()
    for t in tasks:
        if t.info.role == "train":
            tpl = t.info.metadata["template"]
            seen_prefixes.add(tpl.split(": ")[0] if ": " in tpl else "")
            seen_endings.add(tpl[-1])
    for t in tasks:
        if t.info.role == "heldout":
            tpl = t.info.metadata["template"]
            assert (tpl.split(": ")[0] if ": " in tpl else "") in seen_prefixes
            assert tpl[-1] in seen_endings
