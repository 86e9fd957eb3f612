"""One turn with Gemini: request -> stream of events, knowing nothing of IPython.

Every front end (the cell magic, the terminal, later the chat widget and batches)
iterates an `Answer` and renders its events; retries and error translation happen
here once, so each front end gets them for free.

    engine = Engine(Connection())
    answer = engine.send(Request(model="gemini-2.5-flash", contents="Hi"))
    for event in answer:
        ...            # TextDelta, Retrying, Finished, Failed, ...
    answer.text
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from . import client as sdk
from .errors import Context, GeminiError, PromptBlocked, explain
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
from .history import PartsBuilder

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


# Finish reasons that end an answer early, with what to tell the user.
FINISH_NOTICES = {
    "MAX_TOKENS": "The answer was cut at the output token limit{limit}. Raise it with --max-tokens.",
    "SAFETY": "The answer was stopped by Gemini's safety filters.",
    "RECITATION": "The answer was stopped because it recited a source too closely (RECITATION).",
    "PROHIBITED_CONTENT": "The answer was stopped for prohibited content.",
    "BLOCKLIST": "The answer was stopped because it contained a blocked term.",
    "SPII": "The answer was stopped because it contained sensitive personal information.",
    "LANGUAGE": "The answer was stopped: the language is not supported.",
    "MALFORMED_FUNCTION_CALL": "The model produced a malformed function call.",
    "OTHER": "The answer was stopped for an unspecified reason (OTHER).",
}


class Answer:
    """A lazy answer: iterate it for events, or call `.wait()` to read it whole.

    With tools, one answer spans several requests (steps): the model calls
    functions, their results go back, and it continues. `blocks` keeps everything
    shown, in order (text, tool calls, code it ran, ...)."""

    def __init__(self, engine: Engine, request: Request):
        self.engine = engine
        self.request = request
        self.blocks: list[Any] = []
        self.text_parts: list[str] = []
        self.thought_parts: list[str] = []
        self.other_parts: list[Any] = []
        self.chunks = 0  # responses received, every chunk of every step
        self.step_parts = PartsBuilder()  # this step's parts, for history (not the responses)
        self._step_chunks = 0
        self.exchange: list[Any] = []  # contents added by the tool loop (model calls, tool results)
        self.tool_calls: list[Any] = []
        self.finish_reason: str | None = None
        self._done_usage: dict = {}  # of finished steps
        self._step_usage: dict = {}
        self.model_version: str | None = None
        self.grounding: Any = None
        self.error: GeminiError | None = None
        self.interrupted = False
        self.parsed: Any = None
        self.done = False
        self._calls: list[Any] = []  # function calls of the current step
        self.on_wait = None  # a front end's countdown for rate-limit waits: on_wait(quota.Wait)
        from .transport.cancel import Cancel

        self._cancel = Cancel()  # interrupt() from any thread closes this answer's responses
        self._when_done: list[Callable[[Answer], None]] = []
        self.commit = None  # a chat turn's history.Commit, once kept

    # The text is joined on demand: appending to a list keeps the hot path cheap.
    @property
    def text(self) -> str:
        return "".join(self.text_parts)

    @property
    def thoughts(self) -> str:
        return "".join(self.thought_parts)

    @property
    def usage(self) -> dict:
        """Token counts, added up over the steps of a tool loop."""
        if not self._done_usage:
            return self._step_usage
        return {k: self._done_usage.get(k, 0) + self._step_usage.get(k, 0)
                for k in self._done_usage.keys() | self._step_usage.keys()}

    def __iter__(self) -> Iterator[Any]:
        if self.done:
            return
        try:
            yield from self._run()
        except KeyboardInterrupt:
            # Ctrl-C in the thread reading: marked before the callbacks below run, so
            # a chat does not keep a partial turn.
            self.interrupt()
            raise
        finally:
            self.done = True
            callbacks, self._when_done = self._when_done, []
            for callback in callbacks:
                callback(self)

    def on_done(self, callback: Callable[[Answer], None]) -> None:
        """Call `callback(answer)` once the answer has ended, however it ended (on the
        thread that read it): a chat keeps its turn this way."""
        if self.done:
            callback(self)
        else:
            self._when_done.append(callback)

    def wait(self) -> Answer:
        try:
            for _ in self:
                pass
        except KeyboardInterrupt:
            pass  # interrupted: the partial answer is kept
        return self

    def read(self) -> str:
        """The whole answer's text, waiting for it; raises the error if it failed.

        >>> gemini_magic.ask("Two facts about otters").read()
        """
        self.wait()
        if self.error is not None:
            raise self.error
        return self.text

    def __str__(self) -> str:
        return self.text

    def interrupt(self) -> None:
        """Stop the answer (Ctrl-C, a Stop button), from any thread: its open responses
        close now (the server sees the connection go), nothing more is sent, and the
        text that arrived is kept."""
        self.interrupted = True
        self._cancel.cancel()

    def notice(self) -> str | None:
        """What the user should know about how the answer ended, if anything."""
        if self.interrupted:
            return "Interrupted: the answer above is partial."
        if self.error is not None:
            return None
        template = FINISH_NOTICES.get(self.finish_reason or "")
        if template:
            limit = self.request.config.get("max_output_tokens")
            return template.format(limit=f" ({limit})" if limit else "")
        if not self.text_parts and not self.other_parts and not self.tool_calls:
            return (
                "The model returned an empty answer. Rephrase the prompt, or raise --max-tokens "
                "(thinking can use up the whole budget)."
            )
        return None

    # -- the loop ---------------------------------------------------------------------

    def _run(self) -> Iterator[Any]:
        request = self.request
        contents = list(request.contents) if isinstance(request.contents, list) else [request.contents]
        toolbox = request.toolbox
        steps = 0
        final = False
        while True:
            yield from self._step(contents, tools_allowed=not final)
            if self.error is not None or self.interrupted or self._cancel.cancelled:
                self.interrupted = self.interrupted or self._cancel.cancelled
                return
            calls = self._calls
            if not calls or toolbox is None:
                break
            steps += 1
            model_turn = self._step_content()
            results = []
            for call in calls:
                self.tool_calls.append(call)
                self.blocks.append(ToolBlock(call))
                if final:
                    call.status = "skipped"
                    call.result = {"error": "Tool-call limit reached; not run."}
                else:
                    call.status = "running"
                    yield ToolUpdate(call)
                    toolbox.run(call)
                yield ToolUpdate(call)
                results.append(call)
            reply = _function_responses(results)
            if final:
                # The model called tools even when told not to: stop here. The calls and
                # their "not run" answers go into the exchange, and the turn ends on a
                # model text, so a chat's history stays one the API accepts.
                self.exchange += [model_turn, reply]
                self.step_parts = PartsBuilder()
                self.step_parts.add(sdk.types().Part(text="(No final answer: the tool-call limit was reached.)"))
                break
            if steps >= request.max_steps:
                # Claudette's way out of a loop: answer the pending calls, then ask for
                # an answer with function calling switched off.
                reply.parts.append(sdk.types().Part(
                    text=f"You have reached the limit of {request.max_steps} tool-call steps. "
                         "Answer now with what you have, without calling tools."))
                final = True
                yield Notice(f"Reached the limit of {request.max_steps} tool steps (--max-steps): "
                             "Gemini was asked to answer without more tool calls.")
            self.exchange += [model_turn, reply]
            contents = contents + [model_turn, reply]
        self._parse()
        if self.error is not None:
            yield Failed(self.error)
            return
        yield Finished(self.finish_reason, self.usage, self.model_version)

    def _step(self, contents: list, tools_allowed: bool) -> Iterator[Any]:
        limiter = self.engine.connection.limiter
        if limiter is None or self.on_wait is None:
            yield from self._send(contents, tools_allowed)
            return
        with limiter.listening(self.on_wait):  # waits for a rate-limit slot show as a countdown
            yield from self._send(contents, tools_allowed)

    def _send(self, contents: list, tools_allowed: bool) -> Iterator[Any]:
        """One request, with retries of what failed before any answer arrived."""
        policy = self.engine.retry
        waited = 0.0
        self._calls = []
        self.step_parts = PartsBuilder()
        self._step_chunks = 0
        self._done_usage, self._step_usage = self.usage, {}
        from .transport.cancel import Cancelled

        for attempt in range(1, policy.attempts + 1):
            try:
                for response in self._responses(contents, tools_allowed):
                    yield from self._absorb(response)
                self.engine.count(self.request.model_id, self._step_usage)
                for problem in self.engine.problems():
                    yield Notice(problem)
                if self.error is not None:
                    yield Failed(self.error)
                return
            except Cancelled:
                self.interrupted = True  # stopped: the text that arrived stays
                return
            except GeminiError as exc:
                error = exc
            except Exception as exc:  # SDK, HTTP and replay errors: translated below
                if self._cancel.cancelled:  # a read that cancel() ended
                    self.interrupted = True
                    return
                error = explain(exc, self.engine.context(self.request.model_id))
                error.__cause__ = exc
            # Retry only what failed before any of the answer arrived: text already
            # shown cannot be taken back, and a second answer would not continue it.
            delay = self._delay(error, attempt)
            if (
                error.transient
                and not self._step_chunks
                and attempt < policy.attempts
                and waited + delay <= policy.max_wait
            ):
                yield Retrying(error, delay, attempt + 1)
                if self.engine.pause(delay, self._cancel):
                    self.interrupted = True  # stopped while waiting to retry: nothing more is sent
                    return
                waited += delay
                continue
            self.error = error
            yield Failed(error)
            return

    def _delay(self, error: GeminiError, attempt: int) -> float:
        if error.retry_after is not None:
            return error.retry_after
        # No jitter: one notebook is no thundering herd, and a deterministic delay
        # keeps the retry notice identical between a recorded run and its replay.
        return self.engine.retry.base_delay * 2 ** (attempt - 1)

    def _config(self, tools_allowed: bool):
        config = dict(self.request.config)
        tools = list(self.request.server_tools)
        toolbox = self.request.toolbox
        if toolbox:
            tools.append({"function_declarations": toolbox.declarations()})
            if not tools_allowed:
                config["tool_config"] = {"function_calling_config": {"mode": "NONE"}}
        if tools:
            config["tools"] = tools
        return sdk.types().GenerateContentConfig(**config) if config else None

    def _open(self, contents: list, tools_allowed: bool):
        client = self.engine.connection.client()
        config = self._config(tools_allowed)
        models = client.models
        if self.request.stream:
            return models.generate_content_stream(model=self.request.model_id, contents=contents, config=config)
        return [models.generate_content(model=self.request.model_id, contents=contents, config=config)]

    def _responses(self, contents: list, tools_allowed: bool) -> Iterator[Any]:
        """The SDK's responses, each read with this answer's Cancel in force on this
        thread (so interrupt() can close what it opened); only while the SDK runs, not
        while a front end renders between chunks."""
        from .transport.cancel import leave

        cancel = self._cancel
        previous = cancel.enter()
        try:
            stream = iter(self._open(contents, tools_allowed))
        finally:
            leave(previous)
        try:
            while True:
                previous = cancel.enter()
                try:
                    response = next(stream)
                except StopIteration:
                    return
                finally:
                    leave(previous)
                yield response
        finally:
            close = getattr(stream, "close", None)
            if close is not None:
                close()  # on this thread: an interrupted stream's generator ends here

    def _step_content(self):
        return self.step_parts.content()

    def _absorb(self, response) -> Iterator[Any]:
        self.chunks += 1
        self._step_chunks += 1
        if response.model_version:
            self.model_version = response.model_version
        if response.usage_metadata is not None:
            # A step's latest chunk has its usage so far; finished steps add up.
            self._step_usage = usage_dict(response.usage_metadata)
        candidates = response.candidates or []
        if not candidates:
            feedback = response.prompt_feedback
            if feedback is not None and feedback.block_reason is not None:
                reason = _enum_name(feedback.block_reason)
                # Not raised here: the stream is read to its end (so a recording
                # keeps it), and _run reports the block after the loop.
                self.error = PromptBlocked(
                    f"The prompt was blocked by Gemini ({reason}).",
                    "Rephrase the prompt.",
                )
            return
        candidate = candidates[0]
        if candidate.finish_reason is not None:
            self.finish_reason = _enum_name(candidate.finish_reason)
        grounding = candidate.grounding_metadata
        # Streamed chunks carry an empty groundingMetadata until the last one.
        if grounding is not None and grounding.model_dump(exclude_none=True):
            self.grounding = grounding
        content = candidate.content
        show_thoughts = self._shows_thoughts()
        for part in (content.parts if content is not None and content.parts else ()):
            self.step_parts.add(part)  # history keeps every part as returned, signatures included
            if part.thought and part.function_call is None:
                # Thought summaries, and code Gemini ran while thinking (flagged even when
                # not asked for): shown, collapsed, only when the request asked for thoughts.
                if show_thoughts:
                    yield from self._thought(_thought_markdown(part))
                continue
            if part.text is not None:
                if part.text:
                    self.text_parts.append(part.text)
                    if self.blocks and type(self.blocks[-1]) is TextBlock:  # not a ThoughtBlock
                        self.blocks[-1].parts.append(part.text)
                    else:
                        self.blocks.append(TextBlock([part.text]))
                    yield TextDelta(part.text)
            elif part.function_call is not None:
                from .tools import ToolCall

                call = part.function_call
                self._calls.append(ToolCall(call.id, call.name or "", dict(call.args or {})))
            elif part.thought_signature is not None and not _has_payload(part):
                continue  # a bare signature: kept in step_parts for history
            else:
                self.other_parts.append(part)
                self.blocks.append(PartBlock(part))
                yield OtherPart(part)

    def _shows_thoughts(self) -> bool:
        """Whether the request asked for thoughts (--thoughts: thinking_config.include_thoughts)."""
        thinking = self.request.config.get("thinking_config")
        if isinstance(thinking, dict):
            return bool(thinking.get("include_thoughts"))
        return bool(getattr(thinking, "include_thoughts", False))

    def _thought(self, text: str) -> Iterator[Any]:
        if not text:
            return  # an empty thought part only carries a signature
        self.thought_parts.append(text)
        if self.blocks and isinstance(self.blocks[-1], ThoughtBlock):
            self.blocks[-1].parts.append(text)
        else:
            self.blocks.append(ThoughtBlock([text]))
        yield ThoughtDelta(text)

    def _parse(self) -> None:
        schema = self.request.schema
        if schema is None or self.error is not None or self.interrupted:
            return
        if self.finish_reason not in (None, "STOP"):
            return  # a cut answer is not valid JSON; the notice says why
        try:
            self.parsed = schema.parse(self.text)
        except GeminiError as exc:
            self.error = exc


def _function_responses(calls: list):
    """The user turn that carries the tool results back to the model."""
    types = sdk.types()
    parts = []
    for call in calls:
        response = types.FunctionResponse(id=call.id, name=call.name, response=call.result,
                                          parts=call.parts or None)
        parts.append(types.Part(function_response=response))
    return types.Content(role="user", parts=parts)


def _thought_markdown(part) -> str:
    """A thought part as Markdown for the thoughts block: its text, or the code Gemini
    ran while thinking and its output as code blocks, or an image."""
    if part.text is not None:
        return part.text
    if part.executable_code is not None:
        language = str(getattr(part.executable_code.language, "value", "") or "python").lower()
        return _fenced(part.executable_code.code or "", language)
    if part.code_execution_result is not None:
        return "Output:" + _fenced(part.code_execution_result.output or "")
    blob = part.inline_data
    if blob is not None and blob.data:
        import base64

        mime = (blob.mime_type or "").lower()
        if mime in ("image/png", "image/jpeg", "image/gif", "image/webp"):
            return f"\n\n![image](data:{mime};base64,{base64.b64encode(blob.data).decode()})\n\n"
        return f"\n\n[{mime} data, {len(blob.data):,} bytes]\n\n"
    return ""


def _fenced(code: str, language: str = "") -> str:
    """A fenced code block that the code cannot close early (its fence is longer than any backtick run)."""
    longest = run = 0
    for char in code:
        run = run + 1 if char == "`" else 0
        longest = max(longest, run)
    fence = "`" * max(3, longest + 1)
    return f"\n\n{fence}{language}\n{code.rstrip(chr(10))}\n{fence}\n\n"


def _has_payload(part) -> bool:
    return any(
        getattr(part, name, None) is not None
        for name in ("inline_data", "function_call", "function_response", "executable_code",
                     "code_execution_result", "file_data")
    )


def _enum_name(value) -> str:
    return getattr(value, "name", None) or str(value)


def usage_dict(metadata) -> dict:
    fields = {
        "prompt_tokens": metadata.prompt_token_count,
        "output_tokens": metadata.candidates_token_count,
        "thinking_tokens": metadata.thoughts_token_count,
        "total_tokens": metadata.total_token_count,
    }
    return {k: v for k, v in fields.items() if v is not None}


class Engine:
    """Sends requests through one connection, with one retry policy."""

    def __init__(self, connection: sdk.Connection | None = None, retry: RetryPolicy | None = None,
                 sleep: Callable[[float], None] = time.sleep):
        self.connection = connection or sdk.Connection()
        self.retry = retry or RetryPolicy()
        self.sleep = sleep
        self._model_ids: list[str] | None = None
        self._told: set[str] = set()  # problems already reported (see problems())

    def send(self, request: Request) -> Answer:
        return Answer(self, request)

    def replaying(self) -> bool:
        transport = self.connection._transport
        return transport is not None and transport.last_was_replayed

    def count(self, model: str, usage: dict) -> None:
        """Usage of a request that really went out (a replayed one cost nothing)."""
        store = self.connection.usage
        if store is not None and not self.replaying():
            store.add(model, usage)

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
