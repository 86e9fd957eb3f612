"""An answer: iterate it for events, or read it whole; it sends its requests (the tool
loop's steps, retries) as it is read, and can be stopped from any thread."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from . import client as sdk
from .errors import GeminiError, explain
from .events import Failed, Finished, Notice, Retrying, ToolBlock, ToolUpdate
from .history import PartsBuilder
from .reading import absorb, usage_dict  # noqa: F401  (usage_dict is re-exported)

if TYPE_CHECKING:
    from .engine import Engine, Request

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
        self.on_progress = None  # a front end's refresh while a tool runs: on_progress(call)
        from .transport.cancel import Cancel

        self._cancel = Cancel()  # interrupt() from any thread closes this answer's responses
        self._when_done: list[Callable[[Answer], None]] = []
        self.commit = None  # a chat turn's history.Commit, once kept
        self.service_tier: str | None = None  # as the server says it served (X-Gemini-Service-Tier)
        self.cost = None  # costs.Cost of the steps so far; None without a price for the model

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

    @property
    def tier(self) -> str | None:
        """The service tier: the one that served the answer, else the one asked for."""
        return self.service_tier or self.request.config.get("service_tier")

    @property
    def free(self) -> bool:
        """Whether this key is on the free tier (it pays nothing), once that is known."""
        return self.engine.free_tier(self.request.model_id)

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
        # An interruption is said once, by the front end that was interrupted.
        if self.interrupted or self.error is not None:
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
        from .counting import check_limit

        try:
            check_limit(self.engine, request)  # a request over the model's input limit is not sent
        except GeminiError as error:
            self.error = error
            yield Failed(error)
            return
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
                    call.kind = toolbox.kind(call.name)
                    if call.kind == "code":
                        call.number = sum(c.kind == "code" for c in self.tool_calls)
                    if self.on_progress is not None:
                        call.progress = lambda call=call: self.on_progress(call)
                    # Shown before the question, so the code to approve is on screen.
                    call.status = "asking" if toolbox.needs_approval(call) else "running"
                    yield ToolUpdate(call)
                    toolbox.run(call)
                yield ToolUpdate(call)
                results.append(call)
            reply = _function_responses(results, self.engine.connection.secrets(),
                                        images_inside=takes_images_in_responses(request.model_id))
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
                             "Gemini was asked to answer without more tool calls.", "warning")
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
                    yield from absorb(self, response)
                step_cost = self.engine.count(self.request.model_id, self._step_usage, self.tier)
                if step_cost is not None:
                    self.cost = step_cost if self.cost is None else self.cost + step_cost
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
        if config.get("cached_content"):
            # The cache holds the declarations (the API refuses a request with a cache that
            # sets tools or tool_config): the toolbox only runs the calls, here.
            toolbox = None
        if toolbox:
            tools.append({"function_declarations": toolbox.declarations()})
            if not tools_allowed:
                config["tool_config"] = {**config.get("tool_config", {}), "function_calling_config": {"mode": "NONE"}}
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


def takes_images_in_responses(model_id: str) -> bool:
    """Whether the model reads images inside a function response (multimodal function
    responses: Gemini 3). Other models get them as image parts of the same turn."""
    return model_id.removeprefix("models/").startswith("gemini-3")


def _function_responses(calls: list, secrets: list[str] = (), images_inside: bool = True):
    """The user turn that carries the tool results back to the model: the one place every
    tool's result passes on its way, where the key is scrubbed from it (agent code can
    print os.environ). A tool's images (a figure the agent's code drew) go inside its
    response where the model takes them there, else after the responses, each group
    introduced by a line naming the call."""
    from .tools import scrub_all

    types = sdk.types()
    parts, images = [], []
    for call in calls:
        result = scrub_all(call.result, list(secrets)) if secrets else call.result
        inside = call.parts if images_inside else None
        response = types.FunctionResponse(id=call.id, name=call.name, response=result, parts=inside or None)
        parts.append(types.Part(function_response=response))
        if call.parts and not images_inside:
            images.append(types.Part(text=f"The image(s) {call.name} returned (call {call.id or call.name}):"))
            images += [types.Part(inline_data=types.Blob(mime_type=p.inline_data.mime_type, data=p.inline_data.data))
                       for p in call.parts]
    return types.Content(role="user", parts=parts + images)
