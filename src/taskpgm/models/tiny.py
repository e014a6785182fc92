"""The embedded default model: a tiny GPT-2 built from a config, no download.

The tokenizer is a byte-level BPE trained locally on the pool's own text with the
``tokenizers`` library and saved as a normal ``PreTrainedTokenizerFast``, so every
later stage loads it through the same ``AutoTokenizer``/``AutoModelForCausalLM`` path
a real checkpoint would take.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from taskpgm.config import TinyModelConfig
from taskpgm.errors import InputError
from taskpgm.io import atomic_dir, atomic_write_json
from taskpgm.portable import portable_path
from taskpgm.tasks.pool import Pool

EOS = "<|endoftext|>"
PAD = "<|pad|>"
BUILD_INFO = "taskpgm_model.json"
# One source of the defaults: the run config's model.tiny section (which ``taskpgm models
# tiny`` also reads); n_positions has no config key.
_SHAPE = TinyModelConfig()


@dataclass(frozen=True)
class TinyConfig:
    vocab_size: int = _SHAPE.vocab_size
    n_layer: int = _SHAPE.n_layer
    n_embd: int = _SHAPE.n_embd
    n_head: int = _SHAPE.n_head
    n_positions: int = 256

    def check(self) -> None:
        """Refuse sizes that cannot make a model, naming the CLI option."""
        for field, option, low in (("vocab_size", "--vocab", 1), ("n_layer", "--layers", 1),
                                   ("n_embd", "--dim", 1), ("n_head", "--heads", 1),
                                   ("n_positions", "--positions", 8)):
            v = getattr(self, field)
            if isinstance(v, bool) or not isinstance(v, int) or v < low:
                raise InputError(f"tiny model: {option} ({field}) must be an integer >= {low}, "
                                 f"got {v!r}")
        if self.n_embd % self.n_head:
            raise InputError(f"tiny model: n_embd {self.n_embd} (--dim) is not divisible by "
                             f"n_head {self.n_head} (--heads)")


def _pool_text(pool: Pool) -> Iterator[str]:
    """Training text for the tokenizer: every task's train split (probe if no train)."""
    for task in pool.tasks:
        split = "train" if pool.split_path(task.name, "train").is_file() else "probe"
        for ex in pool.iter_examples(task.name, split):
            yield ex.prompt
            yield ex.response
            if ex.options:
                yield from ex.options


def train_tokenizer(texts: Iterator[str], vocab_size: int):  # -> PreTrainedTokenizerFast
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=[EOS, PAD],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token=EOS, bos_token=EOS, pad_token=PAD,
        model_max_length=1 << 30,
    )


def build_tiny_model(
    pool: Pool | str | Path, out: str | Path, seed: int = 0, config: TinyConfig | None = None
) -> Path:
    """Train a tokenizer on ``pool`` and save a freshly initialised tiny GPT-2 to ``out``.

    Same pool and seed give the same bytes. ``out`` is replaced atomically.
    """
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    from taskpgm.models.load import quiet_transformers

    quiet_transformers()
    (config or TinyConfig()).check()
    pool = pool if isinstance(pool, Pool) else Pool.load(pool)
    cfg = config or TinyConfig()
    cfg.check()
    texts = list(_pool_text(pool))
    if not any(t.strip() for t in texts):
        raise InputError(f"{pool.root}: pool has no text to train a tokenizer on")
    tokenizer = train_tokenizer(iter(texts), cfg.vocab_size)
    model_cfg = GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=cfg.n_positions,
        n_embd=cfg.n_embd,
        n_layer=cfg.n_layer,
        n_head=cfg.n_head,
        # No dropout: tiny data, few steps, and training stays bit-reproducible.
        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    model = GPT2LMHeadModel(model_cfg)
    out = Path(out)
    with atomic_dir(out, replaces=BUILD_INFO) as tmp:
        model.save_pretrained(str(tmp))
        tokenizer.save_pretrained(str(tmp))
        atomic_write_json(tmp / BUILD_INFO, {
            "kind": "tiny-gpt2", "seed": seed, "pool": portable_path(pool.root, out),
            "config": cfg.__dict__, "parameters": sum(p.numel() for p in model.parameters()),
        })
    return out
