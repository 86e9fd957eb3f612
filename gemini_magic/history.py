"""Conversations: named, multi-turn histories that behave right when cells are re-run.

A turn is one question and the model's answer, keyed by the cell that asked it. The
model's side is kept as the SDK's own `Content`, parts as returned (thought
signatures included: Gemini 3 rejects a history rebuilt from text).

    chat = conversations.get("story")
    chat.contents(new_user_content)   # what to send
    chat.commit(key, user, answer)    # after a complete answer only

A turn also lives in the notebook: each committed turn is saved with the output that
shows it, as a record (`turn_record`) holding what is needed to continue (the Contents,
thought signatures included; never the key), with the key of the turn before it, so a
new kernel rebuilds the chain from the saved file (notebook_file.py).
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from . import client as sdk

FORMAT = "gemini-magic conversation"
RECORD = "gemini-magic turn"
# A rough size for an inline image or file part when estimating a history's tokens.
_BLOB_TOKENS = 258


@dataclass
class Turn:
    key: str  # the cell's id, or its source where the frontend sends no id
    user: Any  # types.Content
    model: Any  # types.Content, as returned
    model_id: str = ""
    usage: dict = field(default_factory=dict)
    trimmed: bool = False  # kept for the record, no longer sent
    # Between the question and the answer: the model's function calls and the tool
    # results sent back, as exchanged (thought signatures included).
    exchange: list = field(default_factory=list)
    at: str = ""  # when it was committed (UTC, ISO 8601): the newest saved record wins
    before: str | None = None  # the key of the turn it followed, to chain saved records
    restored: bool = False  # rebuilt from the saved notebook, not asked in this kernel

    def to_json(self) -> dict:
        return {
            "key": self.key,
            "before": self.before,
            "at": self.at,
            "model_id": self.model_id,
            "usage": self.usage,
            "trimmed": self.trimmed,
            "user": self.user.model_dump(mode="json", exclude_none=True),
            "model": self.model.model_dump(mode="json", exclude_none=True),
            "exchange": [c.model_dump(mode="json", exclude_none=True) for c in self.exchange],
        }

    @classmethod
    def from_json(cls, t: dict, restored: bool = False) -> Turn:
        Content = sdk.types().Content
        return cls(key=str(t["key"]), user=Content.model_validate(t["user"]),
                   model=Content.model_validate(t["model"]), model_id=str(t.get("model_id") or ""),
                   usage=dict(t.get("usage") or {}), trimmed=bool(t.get("trimmed", False)),
                   exchange=[Content.model_validate(c) for c in t.get("exchange") or []],
                   at=str(t.get("at") or ""), before=t.get("before"), restored=restored)

    def text(self, side: str) -> str:
        content = self.user if side == "user" else self.model
        return "".join(p.text for p in (content.parts or []) if p.text and not p.thought)

    def estimated_tokens(self) -> int:
        """About four characters a token; good enough to decide what to trim."""
        total = 0
        for content in (self.user, *self.exchange, self.model):
            for part in content.parts or []:
                if part.function_call is not None or part.function_response is not None:
                    total += len(str(part.function_call or part.function_response)) // 4
                elif part.text:
                    total += len(part.text) // 4 + 1
                elif part.inline_data is not None or part.file_data is not None:
                    total += _BLOB_TOKENS
        return total


@dataclass
class Commit:
    """What a commit changed, for the one-line notices the user gets, and the turn
    made (saved with the output that shows it)."""

    replaced: bool = False
    dropped: int = 0  # later turns dropped because an earlier cell was re-run (restored ones not counted)
    turn: Turn | None = None
    conversation: str = ""

    def record(self) -> dict | None:
        return turn_record(self.conversation, self.turn) if self.turn is not None else None


def cell_key(cell_id: str | None, source: str) -> str:
    """The key of a cell's turn: its id where the frontend sends one (JupyterLab, VS Code),
    else its source (nbclient, nbval, the terminal)."""
    if cell_id:
        return f"cell:{cell_id}"
    import hashlib

    return "source:" + hashlib.sha256(source.strip().encode()).hexdigest()[:16]


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def turn_record(conversation: str, turn: Turn) -> dict:
    """A turn as saved in the notebook (an output's metadata): JSON, and never the key,
    even where a prompt or an answer quoted it."""
    from .client import find_api_key
    from .errors import scrub

    record = {"format": RECORD, "version": 1, "conversation": conversation, **turn.to_json()}
    key = find_api_key()
    if key:
        text = json.dumps(record, ensure_ascii=False)
        if key in text:
            record = json.loads(scrub(text, key))
    return record


class Conversation:
    """One conversation, shared by the cells and widgets that name it. Safe across
    threads (a chat widget commits from its own): every change holds its lock, and
    `reset`/`replace_turns` change it in place, so everyone holding it sees them."""

    def __init__(self, name: str):
        self.name = name
        self.turns: list[Turn] = []
        self.lock = threading.RLock()
        self.origin = ""  # the notebook its restored turns came from (notebook_file.py)
        self.broken = False  # ...where the outputs of its earliest turns were gone
        self.announced = False  # whether the user was told it continues from the notebook

    def reset(self) -> None:
        with self.lock:
            self.turns.clear()

    def replace_turns(self, turns: list[Turn]) -> None:
        """This conversation's turns become `turns` (`%gemini load`), in place."""
        with self.lock:
            self.turns[:] = list(turns)

    def __len__(self) -> int:
        return len(self.turns)

    def __repr__(self) -> str:
        return f"<Conversation {self.name!r}: {len(self.turns)} turns>"

    def index_of(self, key: str) -> int | None:
        for index, turn in enumerate(self.turns):
            if turn.key == key:
                return index
        return None

    def history_for(self, key: str, skip: list[Turn] = ()) -> list[Turn]:
        """The turns a request from cell `key` builds on: a re-run cell sees the
        conversation as it was when that cell first asked."""
        index = self.index_of(key)
        turns = self.turns if index is None else self.turns[:index]
        return [t for t in turns if not t.trimmed and not any(t is s for s in skip)]

    def contents(self, key: str, user, skip: list[Turn] = ()) -> list:
        history = []
        with self.lock:
            for turn in self.history_for(key, skip):
                history += [turn.user, *turn.exchange, turn.model]
        return history + [user]

    def commit(self, key: str, user, model, model_id: str = "", usage: dict | None = None,
               exchange: list | None = None, trimmed: list[Turn] = ()) -> Commit:
        turn = Turn(key, user, model, model_id, usage or {}, exchange=list(exchange or []), at=now())
        with self.lock:
            for old in trimmed:
                old.trimmed = True
            index = self.index_of(key)
            place = len(self.turns) if index is None else index
            turn.before = self.turns[place - 1].key if place else None
            if index is None:
                self.turns.append(turn)
                return Commit(turn=turn, conversation=self.name)
            # A re-run after a restart drops restored turns as a re-run always does, but
            # says nothing of them: "Run All" in a new kernel is not news.
            dropped = sum(not t.restored for t in self.turns[index + 1:])
            self.turns[index:] = [turn]
            return Commit(replaced=True, dropped=dropped, turn=turn, conversation=self.name)

    def over_budget(self, key: str, budget: int, incoming: int = 0) -> list[Turn]:
        """The oldest turns to stop sending so that the history cell `key` builds on
        fits the budget (the newest is always kept). Nothing is changed here: the
        caller marks them `trimmed` once the answer is committed, so a failed
        request trims nothing."""
        with self.lock:
            live = self.history_for(key)
        total = sum(t.estimated_tokens() for t in live) + incoming
        out = []
        for turn in live[:-1]:
            if total <= budget:
                break
            out.append(turn)
            total -= turn.estimated_tokens()
        return out

    def tokens(self) -> int:
        return sum(t.usage.get("total_tokens", 0) for t in self.turns)

    def messages(self) -> list[dict]:
        """The conversation as plain role/text pairs, for reading or exporting."""
        out = []
        for turn in self.turns:
            out.append({"role": "user", "text": turn.text("user")})
            out.append({"role": "model", "text": turn.text("model"), "model": turn.model_id})
        return out

    # -- files ------------------------------------------------------------------------

    def to_json(self) -> dict:
        return {
            "format": FORMAT,
            "version": 1,
            "name": self.name,
            "turns": [t.to_json() for t in self.turns],
        }

    def save(self, path: str | os.PathLike) -> Path:
        from .files import write_atomic

        return write_atomic(path, json.dumps(self.to_json(), indent=1, ensure_ascii=False) + "\n")

    @classmethod
    def from_json(cls, data: dict, name: str | None = None) -> Conversation:
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ValueError("not a gemini-magic conversation file")
        conversation = cls(name or data.get("name") or "chat")
        conversation.turns = [Turn.from_json(t) for t in data.get("turns", [])]
        return conversation

    @classmethod
    def load(cls, path: str | os.PathLike, name: str | None = None) -> Conversation:
        return cls.from_json(json.loads(Path(path).read_text(encoding="utf-8")), name)


@dataclass
class PendingTurn:
    """A question on its way: what to send, and how to keep the answer. Every front
    end (cells, the chat widget) asks through this, so they trim and commit alike."""

    conversation: Conversation
    key: str
    user: Any
    trimmed: list  # the oldest turns left out to fit the budget (marked on commit)

    @property
    def contents(self) -> list:
        return self.conversation.contents(self.key, self.user, skip=self.trimmed)

    def finish(self, answer) -> Commit | None:
        """Keep a complete answer as the turn; a failed or interrupted one leaves the
        conversation exactly as it was (None)."""
        if answer.error is not None or answer.interrupted:
            return None
        return self.conversation.commit(self.key, self.user, model_content(answer), answer.request.model_id,
                                        answer.usage, answer.exchange, trimmed=self.trimmed)


def continuing(conversation: Conversation, key: str) -> str | None:
    """The note for a request of cell `key` that builds on restored turns, said once per
    conversation ("Run All" in a new kernel replaces them from the first cell: no note)."""
    with conversation.lock:
        used = sum(t.restored for t in conversation.history_for(key))
    if not used or conversation.announced:
        return None
    conversation.announced = True
    where = Path(conversation.origin).name if conversation.origin.endswith(".ipynb") else conversation.origin
    text = f"Chat {conversation.name!r} continues from the {used} turn(s) saved in {where or 'the notebook'}"
    if conversation.broken:
        text += " (the outputs of earlier turns were cleared, so those are not sent)"
    return text + "."


def begin(conversation: Conversation, key: str, user, budget: int) -> PendingTurn:
    """Start a turn of `conversation` from cell (or widget message) `key`."""
    text = "".join(p.text or "" for p in (user.parts or []))
    return PendingTurn(conversation, key, user, conversation.over_budget(key, budget, incoming=len(text) // 4))


class Conversations(dict):
    """Every conversation of a shell, by name; made on first use, one object per name.
    `restore(conversation)`, when given, fills a conversation on its first use in this
    kernel (from the saved notebook: notebook_file.py)."""

    _lock = threading.Lock()

    def __init__(self, restore: Callable[[Conversation], None] | None = None):
        super().__init__()
        self.restore = restore

    def get_or_create(self, name: str) -> Conversation:
        with self._lock:
            if name not in self:
                conversation = Conversation(name)
                if self.restore is not None:
                    self.restore(conversation)
                self[name] = conversation
            return self[name]


def model_content(answer) -> Any:
    """One `Content` for the last step of a (possibly streamed) answer."""
    return answer.step_parts.content()


class PartsBuilder:
    """Builds one model `Content` from a step's parts as they stream in, keeping
    parts as returned: adjacent plain text pieces are joined, and any part with a
    thought signature or a non-text payload is kept as it came. Only the parts are
    kept, not the response objects, so a long stream costs little memory."""

    def __init__(self) -> None:
        self.items: list = []  # ("text", thought, [pieces]) runs, or a Part

    def __bool__(self) -> bool:
        return bool(self.items)

    def add(self, part) -> None:
        if part.text is not None and not part.thought_signature and _is_plain_text(part):
            thought = bool(part.thought)
            last = self.items[-1] if self.items else None
            if isinstance(last, tuple) and last[1] == thought:
                last[2].append(part.text)
            else:
                self.items.append(("text", thought, [part.text]))
        else:
            self.items.append(part)

    def content(self) -> Any:
        types = sdk.types()
        parts = [
            types.Part(text="".join(item[2]), thought=item[1] or None) if isinstance(item, tuple) else item
            for item in self.items
        ]
        return types.Content(role="model", parts=parts)


def _is_plain_text(part) -> bool:
    # Plain attribute tests, not a loop of getattr: this runs for every streamed chunk.
    return (part.inline_data is None and part.file_data is None and part.function_call is None
            and part.function_response is None and part.executable_code is None
            and part.code_execution_result is None and part.video_metadata is None)
