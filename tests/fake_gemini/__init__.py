"""A fake Gemini REST server for testing with the real google-genai SDK.

    from tests.fake_gemini import FakeGemini, Reply, Error, Blocked

    with FakeGemini() as server:  # 127.0.0.1, free port, daemon thread
        client = genai.Client(
            api_key="test-key",
            http_options=types.HttpOptions(base_url=server.url),
        )
        server.queue(Reply(text="Hello there"), Error.quota(), Blocked())

Knobs (reset() restores them and clears the queue, log and responder):
    server.queue(*answers)   FIFO answers for generate/stream calls (str = Reply(text=))
    server.queue_raw(status, headers, body)  a canned HTTP response, byte for byte, for
                             the next generate/stream/countTokens call (any path or
                             version; `actions=` for others), e.g. a real recording
    server.responder = fn    fn(ReceivedRequest) -> Reply|Error|Blocked|str|None when
                             the queue is empty; None falls back to the echo
    (default answer)         Reply(text="Echo: " + last user text)
    server.models            list of model dicts (None = accept and list nothing)
    server.accept_model_prefixes  unlisted ids accepted for generation ("gemini", "gemma")
    server.valid_keys        None = any key, else a set of accepted keys
    server.chunk_delay       seconds between streamed chunks
    server.now(), server.advance(seconds)  the server's clock (cache expiry) and moving it on
    server.caches            explicit caches by name; server.cache_min_tokens replaces the
                             per-model minimum (1024 Flash, 4096 Pro), e.g. 1 for tiny caches
    server.implicit_cache    report repeated prompt prefixes as cached (Gemini 2.5+), off
                             unless FakeGemini(implicit_cache=True) or set
    server.served_tier       the tier every answer reports (None: the one asked for)
    server.count(body, model)  a request body's prompt tokens, as countTokens counts them
Answers are shaped as the real API sends them (gemini-wire.md, "What the real
server sends"): usage on every streamed chunk, thought signatures by model family
(gemini-3* vs 2.5), Google's JSON formatting; grounding_metadata() builds grounding
with UTF-8 byte offsets.
Log: server.requests (ReceivedRequest list), server.last, server.errors
(exceptions raised by a responder, each answered with a 500). A request that uses a
cache shows the cache's turns first in user_texts()/all_texts() (cached_texts() alone)
and its token count in request.tokens; the default echo still answers its own last text.
Scripts: FakeGemini.from_script(path_or_dict), server.load_script(...);
CLI: python -m tests.fake_gemini --port 0 --script FILE.json.
"""

from .server import (
    DEFAULT_MODELS,
    Blocked,
    Error,
    FakeGemini,
    PromptTokens,
    RawResponse,
    ReceivedRequest,
    Reply,
    ScriptResponder,
    TokenCount,
    count_prompt,
    grounding_metadata,
)

__all__ = [
    "DEFAULT_MODELS",
    "Blocked",
    "Error",
    "FakeGemini",
    "PromptTokens",
    "RawResponse",
    "ReceivedRequest",
    "Reply",
    "ScriptResponder",
    "TokenCount",
    "count_prompt",
    "grounding_metadata",
]
