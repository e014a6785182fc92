"""Tokenizers built locally in the ways real checkpoints differ (no hub downloads):
byte-level BPE (GPT-2 / Qwen2 style) and SentencePiece-style Metaspace BPE (Llama style),
with and without a chat template, BOS, ``add_eos_token`` and a pad token."""

from __future__ import annotations

CORPUS = [
    "Premise: the cat sat on the mat. Hypothesis: a cat sat. Does the premise entail it?",
    "OPTIONS:\n- yes\n- no\nyes no maybe", "Is this review positive or negative? negative",
    "Below is an instruction. Write a response. ### Instruction: name a colour. ### Response: red",
    "Question: what is 2 + 2? Answer: 4", "system user assistant You are helpful. Hello there!",
    "The quick brown fox jumps over the lazy dog 0123456789",
    "[INST] <<SYS>> <</SYS>> [/INST] {} () <> !?.,;:'\"-_/#+*=&%$@^~`|\\",
]
CHATML = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
          "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
LLAMA2_CHAT = ("{{ bos_token }}{% for m in messages %}{% if m['role'] == 'user' %}[INST] "
               "{{ m['content'] }} [/INST]{% elif m['role'] == 'system' %}<<SYS>>{{ m['content'] }}"
               "<</SYS>>{% else %} {{ m['content'] }}{{ eos_token }}{% endif %}{% endfor %}")


def byte_level(chat_template: bool = False, pad: bool = True):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"] + (["<|pad|>"] if pad else [])
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(CORPUS * 5, trainers.BpeTrainer(
        vocab_size=400, special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    out = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>",
                                  pad_token="<|pad|>" if pad else None)
    if chat_template:
        out.chat_template = CHATML
    return out


def sentencepiece(chat_template: bool = False, add_eos_token: bool = False):
    from tokenizers import SentencePieceBPETokenizer, pre_tokenizers
    from transformers import LlamaTokenizerFast

    sp = SentencePieceBPETokenizer()
    # Like Llama's model, where a newline is its own (byte) piece, never merged with text.
    sp._tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split("\n", behavior="isolated"), sp._tokenizer.pre_tokenizer])
    sp.train_from_iterator(CORPUS * 5, vocab_size=400, special_tokens=["<unk>", "<s>", "</s>"],
                           show_progress=False)
    tok = LlamaTokenizerFast(tokenizer_object=sp._tokenizer, bos_token="<s>", eos_token="</s>",
                             unk_token="<unk>", add_bos_token=True, add_eos_token=add_eos_token)
    if chat_template:
        tok.chat_template = LLAMA2_CHAT
    return tok


def random_checkpoint(out, kind: str, **size):
    """A random-weight Llama (SentencePiece-style tokenizer, Llama-2 chat template, no pad
    token) or Qwen2 (byte-level BPE, ChatML, no pad token) saved with save_pretrained."""
    import transformers

    if kind == "llama":
        tok = sentencepiece(chat_template=True)
        cfg = transformers.LlamaConfig(vocab_size=len(tok), bos_token_id=tok.bos_token_id,
                                       eos_token_id=tok.eos_token_id, **size)
        model = transformers.LlamaForCausalLM(cfg)
    else:
        tok = byte_level(chat_template=True, pad=False)
        cfg = transformers.Qwen2Config(vocab_size=len(tok), eos_token_id=tok.eos_token_id, **size)
        model = transformers.Qwen2ForCausalLM(cfg)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out
