"""The text a model is trained and scored on: one rendering (separator / chat template)
and one tokenisation of the whole text, checked by decoding, for byte-level BPE and
SentencePiece-style tokenizers (with and without chat template, BOS, add_eos_token)."""

from __future__ import annotations

import pytest

pytest.importorskip("transformers")

from taskpgm.errors import InputError
from taskpgm.models.encode import encode_pairs
from taskpgm.models.prompt_format import render, render_prompt
from tokenizer_zoo import byte_level, sentencepiece

FLAN = ("Premise: the cat sat on the mat.\nOPTIONS:\n- yes\n- no", "yes")
ALPACA = (("Below is an instruction. Write a response.\n### Instruction: name a colour.\n"
          "### Response:"), "red")
QA = ("Is this review positive or negative?", "negative")
SYNTH = ("Question: what is 2 + 2? Answer:", " 4")
CHAT = ({"role": "system", "content": "You are helpful."},
        {"role": "user", "content": "Hello"}, {"role": "assistant", "content": "Hello there!"})
CHAT_FLAT = ("system: You are helpful.\nuser: Hello\nassistant: ", "Hello there!")


def _decode(tok, item):
    e = encode_pairs(tok, [item])[0]
    return tok.decode(list(e.ids[:e.start])), tok.decode(list(e.ids[e.start:])), e


@pytest.mark.parametrize(("example", "prompt", "response"), [
    (FLAN, FLAN[0] + "\n", "yes<|endoftext|>"),
    (ALPACA, ALPACA[0] + "\n", "red<|endoftext|>"),
    (QA, QA[0] + "\n", "negative<|endoftext|>"),
    (SYNTH, SYNTH[0], " 4<|endoftext|>"),          # already spaced: left alone
    (CHAT_FLAT, CHAT_FLAT[0].rstrip(" "), " Hello there!<|endoftext|>"),
])
def test_byte_level_bpe_decodes_to_the_separated_text(example, prompt, response):
    tok = byte_level()
    got_prompt, got_response, _ = _decode(tok, render(*example, None, tok))
    # The space that ends "assistant: " is one token with the response's first word.
    assert (got_prompt, got_response) == (prompt, response)


def test_chat_example_uses_the_tokenizers_template_when_it_has_one():
    tok = byte_level(chat_template=True)
    prompt, response, _ = _decode(tok, render(*CHAT_FLAT, CHAT, tok))
    assert prompt == ("<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\n"
                      "Hello<|im_end|>\n<|im_start|>assistant\n")
    assert response == "Hello there!<|im_end|>\n"  # the template's end of turn, no extra EOS
    # Without a template (or with 'separator') the same example is flattened.
    flat = render(*CHAT_FLAT, CHAT, byte_level(), "auto")
    assert flat.prompt == CHAT_FLAT[0] and not flat.templated
    # Generation continues exactly the prompt the response was trained after.
    assert render_prompt(CHAT_FLAT[0], CHAT, tok).prompt == prompt


@pytest.mark.parametrize("add_eos", [False, True])
def test_sentencepiece_boundary_has_no_stray_space_and_one_eos(add_eos):
    tok = sentencepiece(add_eos_token=add_eos)
    for example, first in ((FLAN, "▁yes"), (QA, "▁negative"), (SYNTH, "▁4"),
                           (CHAT_FLAT, "▁Hello")):
        _, _, e = _decode(tok, render(*example, None, tok))
        tokens = tok.convert_ids_to_tokens(list(e.ids))
        response = tokens[e.start:]
        assert response[-1] == "</s>" and tokens.count("</s>") == 1, tokens
        assert tokens[0] == "<s>" and tokens.count("<s>") == 1
        assert "▁" not in tokens, tokens  # no lone dummy-prefix space anywhere
        assert tok.convert_tokens_to_string(response[:-1]).strip() == example[1].strip()
        assert response[0].startswith(first[:2])


def test_sentencepiece_chat_template_text_gets_one_bos_and_the_templates_eos():
    tok = sentencepiece(chat_template=True)
    _, _, e = _decode(tok, render(*CHAT_FLAT, CHAT, tok))
    tokens = tok.convert_ids_to_tokens(list(e.ids))
    assert tokens.count("<s>") == 1 and tokens[-1] == "</s>" and tokens.count("</s>") == 1
    assert tok.convert_tokens_to_string(tokens[e.start:-1]).strip() == "Hello there!"


def test_formats_raw_and_explicit_template_errors():
    tok = byte_level()
    assert render(*FLAN, None, tok, "raw").prompt == FLAN[0]
    assert render(*FLAN, None, tok, "separator", separator=" ").prompt == FLAN[0] + " "
    with pytest.raises(InputError, match="has no chat template"):
        render(*CHAT_FLAT, CHAT, tok, "chat_template")
    with pytest.raises(InputError, match="prompt_format must be one of"):
        render(*FLAN, None, tok, "chatml")
    # A plain example under an explicit template is one user and one assistant turn.
    t = byte_level(chat_template=True)
    r = render(*QA, None, t, "chat_template")
    assert r.prompt.endswith("<|im_start|>assistant\n") and r.response.startswith("negative")


@pytest.mark.parametrize("make", [byte_level, sentencepiece,
                                  lambda: sentencepiece(add_eos_token=True)])
def test_whole_text_is_tokenised_once_and_the_prompt_is_its_longest_common_prefix(make):
    tok = make()
    for prompt, response in (FLAN, ALPACA, QA, SYNTH, CHAT_FLAT, ("Answer: ", "yes"),
                             ("2+2=", "4"), ("", "only a response")):
        e = encode_pairs(tok, [(prompt, response)])[0]
        whole = tok(prompt + response)["input_ids"]
        if whole and whole[-1] == tok.eos_token_id:
            whole = whole[:-1]  # the tokenizer's own EOS (add_eos_token) is not doubled
        alone = tok(prompt)["input_ids"]
        ids = list(e.ids)
        if prompt:
            assert ids == [*whole, tok.eos_token_id]
            assert ids[:e.start] == alone[:e.start]
            # The first response token is where the two tokenisations part.
            assert e.start == len(alone) or alone[e.start] != ids[e.start]
        else:  # nothing to predict the first token from: BOS (or EOS) stands in
            assert ids[0] in (tok.bos_token_id, tok.eos_token_id) and e.start == 1
