"""Counting before sending: `--dry-run`, and the model's input limit.

    count = count_request(engine, prepared.request)     # countTokens only; nothing generated
    count.total, count.fits, count.pieces, count.cost

A dry run sends the request's parts to `countTokens`, one call for the whole contents
(the total Gemini will count) and one per piece for the breakdown: the conversation's
history, each text and attachment of the question, the system instruction and the tool
declarations. On the Gemini Developer API countTokens takes contents only, so the system
instruction and tool declarations are counted as text there (close, not exact; said so);
on Vertex AI they are counted as themselves. The model's input limit comes from
`models.get` (once per model and session), and the cost at the paid-tier price from
costs.py.

The input limit is also checked before a real request, where it matters: a request
estimated (transport/tokens.py) near or over the model's limit is counted first, and one
that is over is refused before sending, naming the limit and the count.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from . import client as sdk
from .errors import GeminiError, explain

# Below this estimate no request is near any Gemini model's input limit: nothing is checked.
CHECK_ABOVE = 32_000
# Near the limit (this share of it, estimated), the exact count decides.
NEAR = 0.8


@dataclass
class Piece:
    label: str
    tokens: int
    note: str = ""


@dataclass
class Count:
    """What a dry run found."""

    model: str
    total: int
    pieces: list[Piece] = field(default_factory=list)
    limit: int | None = None  # the model's input token limit, when known
    cost: float | None = None  # USD at the paid-tier price; None without a price
    rate: float | None = None  # the input price used, USD per 1M tokens
    tier: str = "standard"
    free: bool = False
    cached: int = 0  # of the total, tokens already in a context cache (billed at the cached rate)
    items: int = 1  # a batch: how many items the total covers
    counted: int = 1  # ... and how many were counted (a sample)
    notes: list[str] = field(default_factory=list)

    @property
    def fits(self) -> bool | None:
        return None if self.limit is None else self.total <= self.limit

    def text(self) -> str:
        """The report, as plain text."""
        return "\n".join(self._lines())

    def _lines(self) -> list[str]:
        from .costs import money

        what = "batch" if self.items > 1 else "request"
        lines = [f"Dry run ({self.model}): this {what} was counted, not sent."]
        width = max([len(p.label) for p in self.pieces] + [len("total")])
        for piece in self.pieces:
            note = f"  ({piece.note})" if piece.note else ""
            lines.append(f"  {piece.label.ljust(width)}  {piece.tokens:>10,}{note}")
        total = f"  {'total'.ljust(width)}  {self.total:>10,} input tokens"
        if self.items > 1:
            total += f" for {self.items:,} items"
        lines.append(total)
        if self.limit is not None:
            share = self.total / self.limit if self.items == 1 else self._largest / self.limit
            verdict = "fits" if (self.fits if self.items == 1 else self._largest <= self.limit) else "is OVER"
            subject = "It" if self.items == 1 else "The largest item"
            lines.append(f"{subject} {verdict} the model's input limit of {self.limit:,} tokens ({share:.1%}).")
        if self.free:
            lines.append("Cost: nothing (free tier).")
        elif self.cost is None:
            lines.append("Cost: no price for this model (add one with %config GeminiMagics.prices).")
        else:
            tier = "" if self.tier == "standard" else f", {self.tier} tier"
            lines.append(f"Estimated input cost: {money(self.cost)} at the paid-tier price (${self.rate:.2f} per 1M "
                         f"input tokens{tier}); the answer's tokens add to it.")
        lines += self.notes
        return lines

    def summary(self) -> str:
        """The report in one line (the chat widget's status line)."""
        from .costs import money

        pieces = " · ".join(f"{p.label} {p.tokens:,}" for p in self.pieces)
        line = f"{self.total:,} input tokens" + (f" ({pieces})" if pieces else "")
        if self.limit is not None:
            line += (f"; {'fits' if self.fits else 'OVER'} {self.model}'s limit of {self.limit:,} "
                     f"({self.total / self.limit:.1%})")
        if self.free:
            line += "; free tier"
        elif self.cost is None:
            line += "; no price for this model"
        else:
            line += f"; input about {money(self.cost)} at the paid-tier price"
        return line + ". Counted, not sent."

    @property
    def _largest(self) -> int:
        return max((p.tokens for p in self.pieces), default=self.total)

    def bundle(self) -> dict:
        import html

        return {"text/plain": self.text(),
                "text/html": '<pre class="gemini-dry-run" style="white-space:pre-wrap">'
                             f"{html.escape(self.text())}</pre>"}

    def _repr_mimebundle_(self, include=None, exclude=None):
        return self.bundle()


def count_request(engine, request, *, pieces: bool = True, cache=None) -> Count:
    """Count `request` (engine.Request) with countTokens: the total, and by piece; with
    `cache` (caches.CacheInfo, --cache NAME), its tokens as Gemini stated them at creation."""
    model = request.model_id
    contents = list(request.contents) if isinstance(request.contents, list) else [request.contents]
    config = request.config
    vertex = bool(engine.connection.vertexai)
    system = config.get("system_instruction")
    declarations = request.toolbox.declarations() if request.toolbox else []
    extra_config = {}
    if vertex:
        if system:
            extra_config["system_instruction"] = system
        if declarations:
            extra_config["tools"] = [{"function_declarations": declarations}]
    total = _count(engine, model, contents, extra_config)
    found: list[Piece] = []
    if pieces:
        if len(contents) > 1:
            turns = sum(1 for c in contents[:-1] if c.role == "user")
            found.append(Piece(f"history ({turns} turn{'s' * (turns != 1)})", _count(engine, model, contents[:-1])))
        found += _question(engine, model, contents[-1])
    notes = []
    if system:
        tokens = _count(engine, model, [_text(system if isinstance(system, str) else str(system))])
        found.append(Piece("system instruction", tokens, "" if vertex else "counted as text"))
        if not vertex:
            total += tokens
    if declarations:
        text = json.dumps([_plain(d) for d in declarations], ensure_ascii=False)
        tokens = _count(engine, model, [_text(text)])
        found.append(Piece(f"tool declarations ({len(declarations)})", tokens, "" if vertex else "counted as text"))
        if not vertex:
            total += tokens
    cached = 0
    if cache is not None and cache.tokens:
        cached = cache.tokens
        found.insert(0, Piece(f"context cache {cache.name!r}", cached, "billed at the cached rate"))
        total += cached
    if request.server_tools:
        names = ", ".join(next(iter(t)) for t in request.server_tools)
        notes.append(f"Server tools ({names}) add tokens Gemini counts when it uses them, not here.")
    return Count(model, total, found, notes=notes, cached=cached)


def price(count: Count, engine, service_tier: str | None = None, batch: bool = False) -> Count:
    """`count` with the model's input limit and the cost of its total."""
    from .costs import input_cost

    count.limit = input_limit(engine, count.model)
    count.free = engine.free_tier(count.model)
    count.tier = "batch" if batch else (service_tier or "standard")
    found = input_cost(count.total, count.model, cached=count.cached, service_tier=service_tier, batch=batch,
                       overrides=engine.prices)
    if found is not None:
        cost, rate = found
        count.cost = cost
        count.rate = rate.input[int(bool(rate.long_context_over and count.total > rate.long_context_over))]
    return count


def input_limit(engine, model: str) -> int | None:
    """The model's input token limit (models.get, once per model and session); None if the
    endpoint does not say."""
    cache = engine.__dict__.setdefault("_input_limits", {})
    if model not in cache:
        try:
            info = engine.connection.client().models.get(model=model)
        except GeminiError:
            raise
        except Exception as exc:
            raise explain(exc, engine.context(model)) from exc
        cache[model] = info.input_token_limit or None
    return cache[model]


def check_limit(engine, request) -> None:
    """Refuse, before sending, a request whose input is over the model's limit. Cheap:
    nothing is asked unless the estimate is large (see CHECK_ABOVE and NEAR)."""
    from .transport.tokens import contents_tokens

    contents = list(request.contents) if isinstance(request.contents, list) else [request.contents]
    estimate = contents_tokens(contents)
    if estimate <= CHECK_ABOVE:
        return
    limit = input_limit(engine, request.model_id)
    if limit is None or estimate < NEAR * limit:
        return
    total = _count(engine, request.model_id, contents)
    if total > limit:
        raise InputTooLong(total, limit, request.model_id)


class InputTooLong(GeminiError):
    kind = "too-long"

    def __init__(self, total: int, limit: int, model: str):
        super().__init__(f"The request is {total:,} input tokens, over {model}'s limit of {limit:,}: nothing was sent.",
                         "Send less (a shorter text, fewer attachments or chat turns), or use a model with a larger "
                         "context; --dry-run shows what takes the room.")
        self.total, self.limit = total, limit


# -- helpers --------------------------------------------------------------------------------


def _question(engine, model: str, content) -> list[Piece]:
    """One piece per part of the question: texts, and each attachment by kind."""
    out, numbers = [], {}
    for part in content.parts or []:
        label = _label(part, numbers)
        if label is None:
            continue
        out.append(Piece(label, _count(engine, model, [sdk.types().Content(role="user", parts=[part])])))
    return out


def _label(part, numbers: dict) -> str | None:
    if part.text is not None:
        if not part.text.strip():
            return None
        kind = "text"
    else:
        blob = part.inline_data or part.file_data
        if blob is None:
            return None
        mime = (blob.mime_type or "").lower()
        kind = ("image" if mime.startswith("image/") else "PDF" if mime == "application/pdf" else
                "audio" if mime.startswith("audio/") else "video" if mime.startswith("video/") else "file")
    numbers[kind] = numbers.get(kind, 0) + 1
    if kind == "text":
        return "text" if numbers[kind] == 1 else f"text {numbers[kind]}"
    blob = part.inline_data or part.file_data
    name = getattr(blob, "display_name", None) or (part.file_data.file_uri if part.file_data else blob.mime_type)
    resolution = getattr(getattr(part, "media_resolution", None), "level", None)
    level = f", {str(getattr(resolution, 'value', resolution)).removeprefix('MEDIA_RESOLUTION_').lower()}" \
        if resolution else ""
    return f"{kind} {numbers[kind]} ({name}{level})"


def _count(engine, model: str, contents: list, config: dict | None = None) -> int:
    try:
        result = engine.connection.client().models.count_tokens(
            model=model, contents=contents, config=sdk.types().CountTokensConfig(**config) if config else None)
    except GeminiError:
        raise
    except Exception as exc:
        raise explain(exc, engine.context(model)) from exc
    return result.total_tokens or 0


def _text(text: str):
    types = sdk.types()
    return types.Content(role="user", parts=[types.Part(text=text)])


def _plain(declaration: Any) -> Any:
    dump = getattr(declaration, "model_dump", None)
    return dump(mode="json", exclude_none=True) if dump else declaration


# A batch larger than this is counted from an evenly spaced sample of this many items.
SAMPLE = 20


def count_batch(engine, requests: list, *, batch_api: bool = False, service_tier: str | None = None,
                cache=None) -> Count:
    """A batch's input tokens: every item's counted when there are few, else an evenly
    spaced sample's, scaled to the whole batch (and said so). Each item sends the
    context cache's tokens too (`cache`), billed at the cached rate."""
    n = len(requests)
    if not n:
        raise GeminiError("The batch has no items: nothing to count.", "Give a non-empty list, Series or DataFrame.")
    step = max(1, n / SAMPLE)
    chosen = sorted({min(n - 1, int(i * step)) for i in range(min(n, SAMPLE))})
    cached = cache.tokens if cache is not None and cache.tokens else 0
    counts = [count_request(engine, requests[i], pieces=False).total + cached for i in chosen]
    mean = sum(counts) / len(counts)
    total = sum(counts) if len(chosen) == n else round(mean * n)
    first = requests[0]
    count = Count(first.model_id, total, [
        Piece("smallest item", min(counts)), Piece("average item", round(mean)), Piece("largest item", max(counts)),
    ], items=n, counted=len(chosen), cached=cached * n)
    if cached:
        count.notes.append(f"Each item includes the {cached:,} tokens of the context cache {cache.name!r}, billed at "
                           "the cached rate.")
    if len(chosen) < n:
        count.notes.append(f"Counted {len(chosen)} of {n:,} items, evenly spaced (every {step:.3g}th), and scaled "
                           "to the whole batch: an estimate.")
    return price(count, engine, service_tier=service_tier, batch=batch_api)
