"""The embedded model's tokenizer, read straight by the Rust `tokenizers` library.

`transformers.AutoTokenizer` reads Gemma 3's 33 MB `tokenizer.json` in Python, several times,
before handing it to Rust: about 4 s of the README's main job on 2 cores, against 0.8 s for
`tokenizers.Tokenizer.from_file`. The backend needs only encoding (with the file's own special
tokens, as `tokenizer(text)["input_ids"]` gives), decoding and three special ids, so it reads the
file directly; `transformers`' tokenizer is loaded only when a chat template is applied.

A folder with no `tokenizer.json`, another tokenizer class, or a `tokenizer_config.json` setting
beyond the neutral ones below (`add_bos_token`, `clean_up_tokenization_spaces`, `legacy`...
change what `transformers` encodes or decodes on top of the file) gets `transformers`' tokenizer:
there the two could disagree.
"""

from __future__ import annotations

import json
import threading
from functools import cached_property
from pathlib import Path
from typing import Any

# Tokenizer classes that use tokenizer.json's pipeline as it is (others, e.g. Llama's, rebuild
# their post-processor from settings).
_FILE_PIPELINE_CLASSES = frozenset({"GemmaTokenizer", "GemmaTokenizerFast", "PreTrainedTokenizerFast", "TokenizersBackend"})
# Settings that leave the file's encoding and decoding as they are (names, bookkeeping).
_NEUTRAL_SETTINGS = frozenset({
    "backend", "tokenizer_class", "is_local", "local_files_only", "model_max_length", "chat_template",
    "bos_token", "eos_token", "pad_token", "unk_token", "mask_token", "additional_special_tokens",
    "added_tokens_decoder", "extra_special_tokens", "padding_side", "truncation_side", "model_input_names",
})


def load_tokenizer(folder: str) -> Any:
    """A tokenizer with `__call__(text)["input_ids"]`, `decode`, `apply_chat_template` and the
    special ids: the fast one where it is exact (see module docstring), else transformers'."""
    config_file, tokenizer_file = Path(folder) / "tokenizer_config.json", Path(folder) / "tokenizer.json"
    config = json.loads(config_file.read_text(encoding="utf-8")) if config_file.is_file() else {}
    if tokenizer_file.is_file() and _file_alone_decides(config):
        return FileTokenizer(folder, tokenizer_file, config)
    return _transformers_tokenizer(folder)


def _file_alone_decides(config: dict[str, Any]) -> bool:
    """True when transformers would encode and decode exactly as tokenizer.json does: a class
    that keeps the file's pipeline (checked against transformers in the tests) and no setting
    that acts on top of it."""
    settings = {key for key, value in config.items() if not (key == "clean_up_tokenization_spaces" and value is False)}
    return config.get("tokenizer_class") in _FILE_PIPELINE_CLASSES and settings <= _NEUTRAL_SETTINGS


def _transformers_tokenizer(folder: str) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(folder, local_files_only=True)


class FileTokenizer:
    """`tokenizer.json` through Rust; the special tokens named by `tokenizer_config.json`."""

    def __init__(self, folder: str, tokenizer_file: Path, config: dict[str, Any]) -> None:
        from tokenizers import Tokenizer

        self.folder = folder
        self._rust = Tokenizer.from_file(str(tokenizer_file))
        self.pad_token_id = self._special_id(config, "pad_token")
        self.eos_token_id = self._special_id(config, "eos_token")
        self.bos_token_id = self._special_id(config, "bos_token")
        self._chat_lock = threading.Lock()

    def _special_id(self, config: dict[str, Any], key: str) -> int | None:
        token = config.get(key)
        if isinstance(token, dict):  # an AddedToken written out in full
            token = token.get("content")
        return self._rust.token_to_id(token) if token else None

    def __call__(self, text: str) -> dict[str, list[int]]:
        return {"input_ids": self.encode(text)}

    def encode(self, text: str) -> list[int]:
        return self._rust.encode(text).ids

    def decode(self, ids: list[int], skip_special_tokens: bool = False) -> str:
        return self._rust.decode(ids, skip_special_tokens=skip_special_tokens)

    def apply_chat_template(self, messages: list[dict[str, str]], **kwargs: Any) -> Any:
        with self._chat_lock:  # the chat route is rare for a base model: load it on first use, once
            templater = self._templater
        return templater.apply_chat_template(messages, **kwargs)

    @cached_property
    def _templater(self) -> Any:
        return _transformers_tokenizer(self.folder)
