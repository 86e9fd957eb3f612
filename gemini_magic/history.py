"""Conversations: named, multi-turn histories that behave right when cells are re-run.

A turn is one question and the model's answer, keyed by the cell that asked it. The
model's side is kept as the SDK's own `Content`, parts as returned (thought
signatures included: Gemini 3 rejects a history rebuilt from text).

    chat = conversations.get("story")
    chat.contents(new_user_content)   # what to send
    chat.commit(key, user, answer)    # after a complete answer only
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import client as sdk

FORMAT = "gemini-magic conversation"
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
    """What a commit changed, for the one-line notices the user gets."""

    replaced: bool = False
    dropped: int = 0  # later turns dropped because an earlier cell was re-run


class Conversation:
    """One conversation, shared by the cells and widgets that name it. Safe across
    threads (a chat widget commits from its own): every change holds its lock, and
    `reset`/`replace_turns` change it in place, so everyone holding it sees them."""

    def __init__(self, name: str):
        self.name = name
        self.turns: list[Turn] = []
        self.lock = threading.RLock()

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
        turn = Turn(key, user, model, model_id, usage or {}, exchange=list(exchange or []))
        with self.lock:
            for old in trimmed:
                old.trimmed = True
            index = self.index_of(key)
            if index is None:
                self.turns.append(turn)
                return Commit()
            dropped = len(self.turns) - index - 1
            self.turns[index:] = [turn]
            return Commit(replaced=True, dropped=dropped)

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
            "turns": [
                {
                    "key": t.key,
                    "model_id": t.model_id,
                    "usage": t.usage,
                    "trimmed": t.trimmed,
                    "user": t.user.model_dump(mode="json", exclude_none=True),
                    "model": t.model.model_dump(mode="json", exclude_none=True),
                    "exchange": [c.model_dump(mode="json", exclude_none=True) for c in t.exchange],
                }
                for t in self.turns
            ],
        }

    def save(self, path: str | os.PathLike) -> Path:
        from .files import write_atomic

        return write_atomic(path, json.dumps(self.to_json(), indent=1, ensure_ascii=False) + "\n")

    @classmethod
    def from_json(cls, data: dict, name: str | None = None) -> Conversation:
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ValueError("not a gemini-magic conversation file")
        Content = sdk.types().Content
        conversation = cls(name or data.get("name") or "chat")
        for t in data.get("turns", []):
            conversation.turns.append(Turn(
                key=t["key"], user=Content.model_validate(t["user"]), model=Content.model_validate(t["model"]),
                model_id=t.get("model_id", ""), usage=t.get("usage", {}), trimmed=t.get("trimmed", False),
                exchange=[Content.model_validate(c) for c in t.get("exchange", [])],
            ))
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


def begin(conversation: Conversation, key: str, user, budget: int) -> PendingTurn:
    """Start a turn of `conversation` from cell (or widget message) `key`."""
    text = "".join(p.text or "" for p in (user.parts or []))
    return PendingTurn(conversation, key, user, conversation.over_budget(key, budget, incoming=len(text) // 4))


class Conversations(dict):
    """Every conversation of a shell, by name; made on first use, one object per name."""

    _lock = threading.Lock()

    def get_or_create(self, name: str) -> Conversation:
        with self._lock:
            if name not in self:
                self[name] = Conversation(name)
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
