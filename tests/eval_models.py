"""Scripted models for the evaluation tests, served by tests/tgi_server.py.

`answerer(tag)` answers X-AlpacaEval prompts as "<tag> answers item N". `ScriptedJudge` is a
judge whose verdict depends on the item and on the order the answers are shown in, so every row
of PLUG's aggregation can be produced on purpose:

    item 0  prefers M1 in both orders                    -> win
    item 1  prefers M1 when M1 is shown first, else tie  -> slight win
    item 2  prefers whichever answer is shown first      -> tie (the orders disagree)
    item 3  a tie in both orders                          -> tie
    item 4  never readable, greedy or sampled            -> error
    item 5  prefers M2 in both orders                    -> loss
    item 6  unreadable when greedy, M1 when sampled      -> win (after the retry)
    others  prefers M1                                   -> win
"""

from __future__ import annotations

import re
import threading
from collections import Counter
from typing import Any

ITEM = re.compile(r"instruction #(\d+)\]")
BEHAVIOUR = {0: "m1", 1: "m1_first_else_tie", 2: "first", 3: "tie", 4: "garbage", 5: "m2", 6: "greedy_garbage"}
EXPECTED_OUTCOMES = {0: "win", 1: "slight_win", 2: "tie", 3: "tie", 4: "error", 5: "loss", 6: "win"}


def answerer(tag: str):
    def reply(prompt: str, parameters: dict[str, Any]) -> str:
        return f"{tag} answers item {ITEM.findall(prompt)[-1]}"

    return reply


def _between(text: str, start: str, end: str) -> str:
    return text.split(start, 1)[1].split(end, 1)[0]


class ScriptedJudge:
    """Reads which model's answer is shown first; answers in PLUG's or X-Instruction's format."""

    def __init__(self) -> None:
        self.calls: Counter = Counter()  # (item, m1 shown first, greedy) -> calls
        self.parameters: list[dict[str, Any]] = []
        self.lock = threading.Lock()

    def __call__(self, prompt: str, parameters: dict[str, Any]) -> str:
        plug = "[The Start of Assistant A's Answer]" in prompt
        first = _between(prompt, "[The Start of Assistant A's Answer]\n", "\n") if plug else _between(prompt, "<answer1>\n", "\n")
        item = int(ITEM.search(prompt).group(1))
        greedy = parameters.get("do_sample") is False or parameters.get("temperature") in (None, 0, 0.0)
        m1_first = first.startswith("M1")
        with self.lock:
            self.calls[(item, m1_first, greedy)] += 1
            self.parameters.append(dict(parameters))
        winner = self._winner(BEHAVIOUR.get(item, "m1"), m1_first, greedy)
        if winner is None:
            return "Both answers have merits. I cannot decide."
        if plug:
            mark = {"first": "[[A]]", "second": "[[B]]", "tie": "[[C]]"}[winner]
            return f"Assistant A is concise; assistant B is thorough. {mark}"
        scores = {"first": (8, 5), "second": (4, 9), "tie": (6, 6)}[winner]
        return f"<score1>{scores[0]}</score1>\n<score2>{scores[1]}</score2>"

    @staticmethod
    def _winner(behaviour: str, m1_first: bool, greedy: bool) -> str | None:
        """"first" / "second" (the answer shown first or second wins), "tie", or None (unreadable)."""
        m1, m2 = ("first", "second") if m1_first else ("second", "first")
        if behaviour == "m1":
            return m1
        if behaviour == "m2":
            return m2
        if behaviour == "m1_first_else_tie":
            return m1 if m1_first else "tie"
        if behaviour == "first":
            return "first"
        if behaviour == "tie":
            return "tie"
        if behaviour == "greedy_garbage":
            return None if greedy else m1
        return None
