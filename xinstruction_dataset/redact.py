"""Secrets never leave the process: one scrubber for every text that is written or printed from
something a server or the environment gave us (error bodies that echo request headers, messages).

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


_SECRET_NAME = re.compile(r"TOKEN|SECRET|PASSWORD|API_?KEY|CREDENTIAL", re.IGNORECASE)
_MIN_SECRET_CHARS = 8  # shorter values (a "1", "true") would blank out ordinary words


def environment_secrets() -> list[str]:
    """Values of the environment variables whose names say they hold a secret."""
    return [value for name, value in os.environ.items() if _SECRET_NAME.search(name) and len(value) >= _MIN_SECRET_CHARS]


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
