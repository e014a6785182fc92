"""Where a model lives: a local directory with weights and a tokenizer (torch-free, so
``taskpgm run --plan`` can check ``model.base`` without loading anything)."""

from __future__ import annotations

from pathlib import Path

from taskpgm.errors import InputError

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json")


def check_model_dir(path: str | Path, what: str = "model directory") -> Path:
    """A local directory with a tokenizer, or one line saying what is wrong. A hub id
    (``org/name``) is refused: taskpgm never downloads (runs must be reproducible
    offline), so the user downloads once and points at the directory."""
    path = Path(path)
    if not path.is_dir():
        text = str(path)
        if text.count("/") == 1 and not text.startswith((".", "/", "~")):
            raise InputError(f"{text}: not a local directory; taskpgm downloads nothing from "
                             "the Hugging Face hub: download it first (e.g. `hf download "
                             f"{text} --local-dir DIR`) and pass that directory")
        raise InputError(f"{path}: {what} not found")
    if not any((path / f).is_file() for f in TOKENIZER_FILES):
        raise InputError(f"{path}: no tokenizer here (none of {', '.join(TOKENIZER_FILES)}); "
                         "save it beside the weights with tokenizer.save_pretrained(DIR)")
    return path
