"""The Ray executor (local cluster, 2 CPUs) gives the same scores as the local one."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")
ray = pytest.importorskip("ray")

from taskpgm.models.scoring import score_pool
from taskpgm.models.tiny import TinyConfig, build_tiny_model
from taskpgm.models.toy import write_toy_pool

TINY = TinyConfig(vocab_size=300, n_layer=1, n_embd=32, n_head=2, n_positions=64)


@pytest.mark.ray
def test_ray_executor_matches_local(tmp_path):
    pool = write_toy_pool(tmp_path / "pool", ("upper", "reverse"), n_train=16, n_probe=8, n_eval=2)
    experts = tmp_path / "experts"
    for i, name in enumerate(("upper", "reverse")):
        build_tiny_model(pool, experts / name, seed=i + 1, config=TINY)
    local = score_pool(pool, experts, tmp_path / "local", topk=2, progress=False)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        remote = score_pool(pool, experts, tmp_path / "ray", executor="ray", topk=2,
                            progress=False)
    finally:
        ray.shutdown()
    assert remote.missing_pairs() == []
    assert remote.manifest.metadata["run"]["shards_computed"] == 4
    for e in local.experts:
        for t in local.tasks:
            a, b = local.shard(e, t), remote.shard(e, t)
            assert a.example_ids == b.example_ids
            # One thread per Ray task vs two locally: sums may differ in the last bits only.
            np.testing.assert_allclose(a.logprob, b.logprob, rtol=0, atol=1e-5)
            np.testing.assert_array_equal(a.n_tokens, b.n_tokens)
            for x, y in zip(a.topk_ids, b.topk_ids, strict=True):
                np.testing.assert_array_equal(x, y)
