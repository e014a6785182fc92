"""The tiny base's pre-training corpus for synthetic suites (docs/DECISIONS.md D15)."""

from __future__ import annotations

from collections import Counter

import pytest

from taskpgm.config import config_from_dict
from taskpgm.errors import ConfigError, InputError
from taskpgm.tasks.synth import REDUNDANCY_SKILLS, pretraining_corpus, synthetic_tasks

SKILLS = list(REDUNDANCY_SKILLS)


def _wording(prompt: str) -> str:
    return prompt.split("\n", 1)[0]


def test_corpus_is_balanced_over_skills_and_uses_every_wording():
    corpus = pretraining_corpus(960, 0, SKILLS, suite="redundancy")
    by_skill = Counter()
    wordings = set()
    for ex in corpus:
        w = _wording(ex.prompt)
        wordings.add(w)
        owners = [s for s, f in REDUNDANCY_SKILLS.items()
                  if w in f.train_templates + f.heldout_templates]
        assert len(owners) == 1, w
        by_skill[owners[0]] += 1
    assert set(by_skill.values()) == {120}
    every = {t for f in REDUNDANCY_SKILLS.values() for t in f.train_templates + f.heldout_templates}
    assert wordings == every  # held-out wordings included


def test_corpus_never_emits_a_probe_or_eval_prompt():
    tasks = synthetic_tasks(3, suite="redundancy", scale=0.1)
    held = {ex.prompt for t in tasks for split in ("probe", "eval")
            for ex in t.splits.get(split, [])}
    unfiltered = pretraining_corpus(4000, 3, SKILLS, suite="redundancy")
    assert {ex.prompt for ex in unfiltered} & held  # the filter has something to do
    corpus = pretraining_corpus(4000, 3, SKILLS, suite="redundancy", exclude=held)
    assert len(corpus) == 4000
    assert not {ex.prompt for ex in corpus} & held


def test_corpus_is_seeded():
    a = pretraining_corpus(50, 1, SKILLS[:3], suite="redundancy")
    assert a == pretraining_corpus(50, 1, SKILLS[:3], suite="redundancy")
    assert a != pretraining_corpus(50, 2, SKILLS[:3], suite="redundancy")


def test_corpus_refuses_unknown_skills_and_empty_requests():
    with pytest.raises(InputError, match="'nope'"):
        pretraining_corpus(10, 0, ["nope"], suite="redundancy")
    with pytest.raises(InputError, match="at least one"):
        pretraining_corpus(0, 0, SKILLS, suite="redundancy")


def test_suite_corpus_needs_a_synthetic_pool():
    with pytest.raises(ConfigError, match="pretrain_corpus"):
        config_from_dict({"pool": {"source": "import", "paths": ["x.jsonl"]},
                          "model": {"tiny": {"pretrain_steps": 5, "pretrain_corpus": "suite"}}})
    with pytest.raises(ConfigError, match="pretrain_corpus"):
        config_from_dict({"model": {"tiny": {"pretrain_corpus": "web"}}})


@pytest.mark.parametrize("corpus", ["tasks", "suite", "suite-prompts"])
def test_base_stage_pretrains_on_the_chosen_corpus(tmp_path, monkeypatch, corpus):
    import taskpgm.models.train as train_mod
    from taskpgm.pipeline import make_runner

    seen: dict = {}

    def fake_train(init, examples, out, *, config, **_):
        seen["examples"], seen["steps"] = list(examples), config.steps

    monkeypatch.setattr(train_mod, "train_model", fake_train)
    cfg = config_from_dict({
        "run": {"dir": str(tmp_path / "run"), "seed": 4},
        "pool": {"suite": "redundancy", "families": ["reverse", "count"], "scale": 0.05},
        "model": {"tiny": {"pretrain_steps": 6, "pretrain_corpus": corpus}},
        "experts": {"batch_size": 4},
    })
    ctx, runner = make_runner(cfg, progress=False)
    stages = {s.name: s for s in runner.stages}
    stages["pool"].run()
    stages["base"].run()
    pool = ctx.pool()
    train_prompts = {ex.prompt for t in ctx.train_task_names() for ex in pool.examples(t, "train")}
    prompts = {ex.prompt for ex in seen["examples"]}
    if corpus == "tasks":
        assert prompts == train_prompts
    elif corpus == "suite-prompts":
        # The wordings as plain text: nothing to condition on, no skill's answer.
        assert len(seen["examples"]) == 6 * 4 and prompts == {""}
        texts = {ex.response for ex in seen["examples"]}
        heldout = {t for f in ("reverse", "count")
                   for t in REDUNDANCY_SKILLS[f].heldout_templates}
        assert {_wording(p) for p in texts} & heldout
    else:
        assert len(seen["examples"]) == 6 * 4
        heldout = {t for f in ("reverse", "count")
                   for t in REDUNDANCY_SKILLS[f].heldout_templates}
        assert {_wording(p) for p in prompts} & heldout
        assert {_wording(p).split()[-1].rstrip(".:") for p in prompts} <= {"list", "symbols"}
