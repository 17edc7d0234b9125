"""Secrets never leave the process: one scrubber for every text that is written or printed from
something a server or the environment gave us (error bodies that echo request headers, messages),
and one matcher of the names that hold secrets.

`is_secret_name(name)` is that matcher, for a config key (`token`, `api_key`, `headers`) and an
environment variable (`HF_TOKEN`, `OPENAI_API_KEY`, `AWS_SECRET_ACCESS_KEY`) alike: the
fingerprint leaves such keys out, `redact_secret_values` blanks them in a config written out,
and their environment values are scrubbed from texts. A name that says where a secret is kept
(`token_env`, `token_file`) is no secret.

`scrub_secrets(text, secrets)` removes the given values and anything that looks like a credential;
`redact(text)` also removes the values of the environment's secret-looking variables (HF_TOKEN,
a `token_env` variable, *_API_KEY...), so a caller that does not know which token was used is
still safe. `Scrubber` is `redact` for a stream of texts (a filter run's quarantine and reject
reasons): the environment read once, a text seen before scrubbed from memory.
"""

from __future__ import annotations

import logging
import os
import re
from typing import Any

# Anything that looks like a credential: `Bearer <x>`, an Authorization header's value, `hf_<x>`,
# the user info of a URL (`https://user:password@host`).
_SECRET_PATTERNS = (
    (re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s@]+@"), r"\1***@"),
    (re.compile(r"(?i)(authorization[\"']?\s*[:=]\s*[\"']?)[^\"'\s,;}]+(\s+[^\"'\s,;}]+)?"), r"\1***"),
    (re.compile(r"(?i)\b(bearer\s+)[^\s\"',;}]+"), r"\1***"),
    (re.compile(r"\bhf_[A-Za-z0-9]{6,}"), "hf_***"),
)


def scrub_secrets(text: str, secrets: tuple[str, ...] | list[str] = ()) -> str:
    """`text` with every value in `secrets` and every token-looking string replaced by `***`."""
    for secret in sorted((s for s in secrets if s and len(s) >= 4), key=len, reverse=True):
        text = text.replace(secret, "***")
    for pattern, replacement in _SECRET_PATTERNS:
        text = pattern.sub(replacement, text)
    return text


# A secret word anywhere in the name, or a name that ends in `token`, `authorization` or
# `headers` (`max_new_tokens`, `tokenizer` and `token_env` do not; `bytes_per_token` does, as it
# always has: the fingerprint of every recipe keeps leaving it out).
_SECRET_NAME = re.compile(r"secret|password|passwd|api_?key|credential|(token|authorization|headers)$", re.IGNORECASE)
_MIN_SECRET_CHARS = 8  # shorter values (a "1", "true") would blank out ordinary words
REDACTED = "<redacted>"


def is_secret_name(name: str) -> bool:
    """Whether a config key or an environment variable named `name` holds a secret."""
    return _SECRET_NAME.search(name) is not None


def redact_secret_values(value: Any) -> Any:
    """`value` (mappings and lists, as a config dumps) with every secret-named key's value blanked."""
    if isinstance(value, dict):
        return {k: (REDACTED if is_secret_name(str(k)) else redact_secret_values(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [redact_secret_values(v) for v in value]
    return value


def environment_secrets() -> list[str]:
    """Values of the environment variables whose names say they hold a secret."""
    return [value for name, value in os.environ.items() if is_secret_name(name) and len(value) >= _MIN_SECRET_CHARS]


def redact(text: str) -> str:
    """`text` without the environment's secrets or anything that looks like a credential."""
    return scrub_secrets(text, environment_secrets())


class Scrubber:
    """`redact` for many texts: the environment's secrets are read once, and the scrubbed form of
    a repeated text (a filter's `length:too_short_chars:43`) is remembered."""

    _REMEMBERED = 4096

    def __init__(self, secrets: tuple[str, ...] | list[str] | None = None) -> None:
        self.secrets = tuple(environment_secrets() if secrets is None else secrets)
        self._scrubbed: dict[str, str] = {}

    def __call__(self, text: str) -> str:
        scrubbed = self._scrubbed.get(text)
        if scrubbed is None:
            scrubbed = scrub_secrets(text, self.secrets)
            if len(self._scrubbed) < self._REMEMBERED:
                self._scrubbed[text] = scrubbed
        return scrubbed


class RedactingFilter(logging.Filter):
    """A log handler's filter that scrubs every record, whichever library logged it (an HTTP
    client's request line carries the URL, user info included)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        scrubbed = redact(message)
        if scrubbed != message:
            record.msg, record.args = scrubbed, None
        return True
