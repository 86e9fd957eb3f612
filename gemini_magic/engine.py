"""One turn with Gemini: request -> stream of events, knowing nothing of IPython.

Every front end (a cell, the chat widget, batches, `gemini_magic.ask`) iterates an
`Answer` (answer.py) and renders its events; retries, error translation and
cancellation happen there once, so each front end gets them for free.

    engine = Engine(Connection())
    answer = engine.send(Request(model="gemini-2.5-flash", contents="Hi"))
    for event in answer:
        ...            # TextDelta, Retrying, Finished, Failed, ...
    answer.text
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from . import client as sdk
from .answer import FINISH_NOTICES, Answer, usage_dict  # noqa: F401  (re-exported)
from .errors import Context, GeminiError, explain
from .events import (  # noqa: F401  (re-exported: front ends import events from here too)
    Failed,
    Finished,
    Notice,
    OtherPart,
    PartBlock,
    Retrying,
    TextBlock,
    TextDelta,
    ThoughtBlock,
    ThoughtDelta,
    ToolBlock,
    ToolUpdate,
    provenance,
    retry_line,
    usage_line,
)

# -- request --------------------------------------------------------------------------

@dataclass
class Request:
    model: str
    contents: Any
    config: dict = field(default_factory=dict)  # GenerateContentConfig fields
    stream: bool = True
    schema: Any = None  # a structured-output Schema (see schema.py), parsed at the end
    toolbox: Any = None  # tools.Toolbox: notebook functions the model may call
    server_tools: list = field(default_factory=list)  # e.g. {"google_search": {}}
    max_steps: int = 10

    @property
    def model_id(self) -> str:
        return self.model.removeprefix("models/")


@dataclass
class RetryPolicy:
    attempts: int = 4  # tries in all, the first included
    max_wait: float = 90.0  # seconds of waiting in all, across retries
    base_delay: float = 2.0


class Engine:
    """Sends requests through one connection, with one retry policy."""

    def __init__(self, connection: sdk.Connection | None = None, retry: RetryPolicy | None = None,
                 sleep: Callable[[float], None] = time.sleep):
        self.connection = connection or sdk.Connection()
        self.retry = retry or RetryPolicy()
        self.sleep = sleep
        self._model_ids: list[str] | None = None
        self._told: set[str] = set()  # problems already reported (see problems())
        self.prices: dict = {}  # GeminiMagics.prices: models added to, or overriding, prices.json

    def send(self, request: Request) -> Answer:
        return Answer(self, request)

    def replaying(self) -> bool:
        transport = self.connection._transport
        return transport is not None and transport.last_was_replayed

    def count(self, model: str, usage: dict, service_tier: str | None = None):
        """Usage of one request that went out: its cost (costs.Cost, None without a price),
        kept in the usage store with its tokens (a replayed one cost nothing today)."""
        from .costs import cost_of

        cost = cost_of(usage, model, service_tier=service_tier, overrides=self.prices)
        store = self.connection.usage
        if store is not None and not self.replaying():
            free = self.free_tier(model)
            store.add(model, {**usage, "cost_micros": 0 if free or cost is None else round(cost.total * 1e6)})
        return cost

    def free_tier(self, model: str) -> bool:
        """Whether requests to `model` are free: the user chose the free tier, or Google
        said so in a 429 (learned limits name the tier)."""
        limiter = self.connection.limiter
        if limiter is None:
            return False
        if limiter.tier == "free":
            return True
        learned = getattr(limiter, "learned", None)
        stated = learned.for_model(model) if learned is not None else []
        return any(s.tier == "free" for s in stated) and not any(s.tier == "paid" for s in stated)

    def problems(self) -> list[str]:
        """What went wrong keeping usage or learned limits (a damaged or unwritable
        file in the data folder), each said once: never a failed cell for it."""
        found = []
        for holder in (self.connection.usage, getattr(self.connection.limiter, "learned", None),
                       self.connection.limiter):
            problem = getattr(holder, "problem", None)
            if problem and problem not in self._told:
                self._told.add(problem)
                found.append(problem)
        return found

    def pause(self, seconds: float, cancel=None) -> bool:
        """Wait before a retry; True if `cancel` was cancelled meanwhile (it wakes the wait)."""
        # A replayed error's retry needs no real wait: the answer is on disk.
        if self.replaying():
            return bool(cancel is not None and cancel.cancelled)
        if cancel is not None and self.sleep is time.sleep:
            return cancel.wait(seconds)
        self.sleep(seconds)
        return bool(cancel is not None and cancel.cancelled)

    def context(self, model: str = "") -> Context:
        conn = self.connection
        return Context(model=model, base_url=conn.base_url or "", timeout=conn.timeout,
                       list_models=self.model_ids)

    def models(self) -> list:
        """The live model list (every page)."""
        try:
            return list(self.connection.client().models.list(config={"page_size": 100}))
        except GeminiError:
            raise
        except Exception as exc:
            raise explain(exc, self.context()) from exc

    def model_ids(self) -> list[str]:
        if self._model_ids is None:
            self._model_ids = [m.name.removeprefix("models/") for m in self.models() if m.name]
        return self._model_ids


def can_generate(model) -> bool:
    methods = getattr(model, "supported_actions", None) or getattr(model, "supported_generation_methods", None) or []
    return "generateContent" in methods
