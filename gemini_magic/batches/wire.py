"""The Batch API's wire format: requests as GenerateContentRequest JSON, keyed lines,
and result lines back into answers or ItemErrors.

- Each request is the JSON of a GenerateContentRequest (contents, generationConfig,
  systemInstruction, tools), made by the SDK's own converter, so it is exactly what a
  `%%gemini` cell would send. Every item carries a key, "item-<i>", its place in the
  input: results come back aligned by key, whatever order the service lists them in.
- A result line is {"key", "response"} or {"key", "error"} (a google.rpc.Status).
"""

from __future__ import annotations

import re
from typing import Any

from ..errors import GeminiError
from .local import ItemError

_KEY = re.compile(r"^item-(\d+)$")
# The job's display name ends with its number of prompts: a later kernel aligns its
# results to that many places (the SDK does not pass on the job's batchStats).
_COUNT = re.compile(r"\((\d+) prompts?\)$")
_JOB_ID = re.compile(r"^(?:batches/)?([A-Za-z0-9_-]+)$")

# google.rpc.Code numbers (a result line's error is a google.rpc.Status) by name,
# and what kind of ItemError each becomes (the kinds of errors.py).
_RPC_CODES = {
    1: "CANCELLED", 2: "UNKNOWN", 3: "INVALID_ARGUMENT", 4: "DEADLINE_EXCEEDED", 5: "NOT_FOUND",
    6: "ALREADY_EXISTS", 7: "PERMISSION_DENIED", 8: "RESOURCE_EXHAUSTED", 9: "FAILED_PRECONDITION",
    10: "ABORTED", 11: "OUT_OF_RANGE", 12: "UNIMPLEMENTED", 13: "INTERNAL", 14: "UNAVAILABLE",
    15: "DATA_LOSS", 16: "UNAUTHENTICATED",
}
_HTTP_STATUSES = {400: "INVALID_ARGUMENT", 403: "PERMISSION_DENIED", 404: "NOT_FOUND", 429: "RESOURCE_EXHAUSTED",
                  500: "INTERNAL", 503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED"}
_KINDS = {
    "RESOURCE_EXHAUSTED": "quota", "INVALID_ARGUMENT": "bad-request", "FAILED_PRECONDITION": "bad-request",
    "OUT_OF_RANGE": "bad-request", "PERMISSION_DENIED": "permission", "UNAUTHENTICATED": "permission",
    "NOT_FOUND": "not-found", "DEADLINE_EXCEEDED": "timeout", "INTERNAL": "server", "UNAVAILABLE": "server",
    "UNKNOWN": "server",
}


def key_for(index: int) -> str:
    """The key of the item at `index`: results are aligned by it."""
    return f"item-{index}"


def index_of(key: Any) -> int | None:
    match = _KEY.match(key) if isinstance(key, str) else None
    return int(match.group(1)) if match else None


# -- requests as JSON -----------------------------------------------------------------


def _sdk():
    from .. import client as sdk

    return sdk.sdk()


def _config(request) -> dict:
    """The request's GenerateContentConfig fields, server tools included."""
    if getattr(request, "toolbox", None):
        raise GeminiError("A Batch API job cannot call notebook functions (--tools).",
                          "Run it as a local batch (mode='local'), or drop the tools.")
    config = dict(request.config)
    tools = list(getattr(request, "server_tools", None) or [])
    if tools:
        config["tools"] = tools
    return config


def _contents(request) -> list:
    contents = request.contents
    return list(contents) if isinstance(contents, (list, tuple)) else [contents]


def _inlined(request, key: str | None = None):
    types = _sdk().types
    config = _config(request)
    return types.InlinedRequest(contents=_contents(request),
                                config=types.GenerateContentConfig(**config) if config else None,
                                metadata={"key": key} if key is not None else None)


def request_json(request, api_client=None) -> dict:
    """The GenerateContentRequest JSON of an engine Request, as generateContent sends it.

    Made by the SDK's own converter (the one it uses for inlined batch requests) when
    it is there, else by `_request_json_by_hand`."""
    from google.genai import _common

    try:
        from google.genai.batches import _InlinedRequest_to_mldev as convert
    except ImportError:  # a newer SDK moved it: build the same JSON ourselves
        convert = None
    if convert is None or api_client is None:
        return _request_json_by_hand(request)
    wire = convert(api_client, _inlined(request))
    wire = _common.encode_unserializable_types(_common.convert_to_dict(wire))
    return wire["request"]


# GenerateContentConfig fields that live at the top of a GenerateContentRequest;
# everything else goes in generationConfig.
_TOP_LEVEL = {"system_instruction": "systemInstruction", "tools": "tools", "tool_config": "toolConfig",
              "safety_settings": "safetySettings", "cached_content": "cachedContent", "labels": "labels"}
_NOT_SENT = {"http_options", "automatic_function_calling", "should_return_http_response"}


def _request_json_by_hand(request) -> dict:
    """The same JSON as the SDK's converter for the fields our requests use, from the
    SDK's pydantic types (camelCase aliases, bytes as base64)."""
    types = _sdk().types
    config = types.GenerateContentConfig(**_config(request))
    contents = [types.Content.model_validate(c) if isinstance(c, dict) else
                (types.Content(role="user", parts=[types.Part(text=c)]) if isinstance(c, str) else c)
                for c in _contents(request)]
    body: dict[str, Any] = {"contents": [c.model_dump(mode="json", by_alias=True, exclude_none=True)
                                         for c in contents]}
    generation: dict[str, Any] = {}
    for name in type(config).model_fields:
        value = getattr(config, name)
        if value is None or name in _NOT_SENT:
            continue
        if name == "system_instruction" and isinstance(value, str):
            value = types.Content(role="user", parts=[types.Part(text=value)])
        dumped = (value.model_dump(mode="json", by_alias=True, exclude_none=True) if hasattr(value, "model_dump")
                  else [v.model_dump(mode="json", by_alias=True, exclude_none=True) if hasattr(v, "model_dump")
                        else v for v in value] if isinstance(value, list) else value)
        if name in _TOP_LEVEL:
            body[_TOP_LEVEL[name]] = dumped
        else:
            field = type(config).model_fields[name]
            generation[field.alias or name] = dumped
    if generation:
        body["generationConfig"] = generation
    return body


def _response(data: dict):
    """A GenerateContentResponse from its JSON, as the SDK parses generateContent's."""
    types = _sdk().types
    try:
        from google.genai.batches import _GenerateContentResponse_from_mldev as convert
    except ImportError:
        convert = None
    if convert is not None:
        data = convert(data)
    try:
        return types.GenerateContentResponse._from_response(response=data, kwargs={})
    except AttributeError:
        return types.GenerateContentResponse.model_validate(data)


def _answer_value(response, schema):
    """What a local batch would hold for this answer: the text (parsed with
    structured output), or an ItemError for a blocked prompt."""
    candidates = response.candidates or []
    if not candidates:
        feedback = response.prompt_feedback
        reason = getattr(feedback, "block_reason", None) if feedback is not None else None
        if reason is not None:
            name = getattr(reason, "name", None) or str(reason)
            return ItemError(f"The prompt was blocked by Gemini ({name}).", "blocked")
        return ItemError("The model returned no answer.", "empty")
    candidate = candidates[0]
    parts = candidate.content.parts if candidate.content is not None and candidate.content.parts else []
    text = "".join(p.text for p in parts if p.text and not p.thought)
    finish = candidate.finish_reason
    finish = getattr(finish, "name", None) or (str(finish) if finish is not None else None)
    if schema is not None and finish in (None, "STOP"):
        try:
            return schema.parse(text)
        except GeminiError as exc:
            return ItemError(exc.message, exc.kind)
    return text


def _item_error(error: Any) -> ItemError:
    """An ItemError from a result line's error (a google.rpc.Status, or an HTTP-style body)."""
    if not isinstance(error, dict):
        return ItemError(str(error), "error")
    code = error.get("code")
    status = error.get("status") or ""
    if not status and isinstance(code, int):
        status = _RPC_CODES.get(code, "") if code < 100 else _HTTP_STATUSES.get(code, "")
    message = (error.get("message") or "").strip()
    first = message.splitlines()[0].strip() if message else "The request failed."
    shown = f"{first} ({status})" if status else first
    return ItemError(shown, _KINDS.get(status, "error"))


def align(lines: list[dict], size: int | None, requests: list | None = None) -> list:
    """Place each line's value at its key's index (by position when a line has no
    key of ours: inlined responses come back in input order)."""
    placed: dict[int, Any] = {}
    for line in lines:
        index = index_of(line.get("key"))
        if index is None:
            index = line["position"] if line.get("key") is None else None
        if index is None or (size is not None and index >= size):
            continue
        placed[index] = _value(line, index, requests)
    if size is None:
        size = max(placed, default=-1) + 1
    results: list = [None] * size
    for index, value in placed.items():
        results[index] = value
    return results

def _value(line: dict, index: int, requests: list | None):
    if line.get("error") is not None:
        return _item_error(line["error"])
    response = line.get("response")
    if response is None:
        return ItemError("The result line has neither a response nor an error.", "batch-missing")
    if isinstance(response, dict):
        response = _response(response)
    request = requests[index] if requests is not None and index < len(requests) else None
    return _answer_value(response, getattr(request, "schema", None))


def result_lines(data: bytes) -> tuple[list[dict], list[int]]:
    """A results file's lines as dicts with their "position", and the numbers of the
    lines that are not JSON objects (skipped, and said)."""
    import json

    lines, skipped = [], []
    for number, raw in enumerate(data.decode("utf-8", errors="replace").splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            line = json.loads(raw)
        except ValueError:
            line = None
        if not isinstance(line, dict):
            skipped.append(number)
            continue
        line["position"] = len(lines)
        lines.append(line)
    return lines, skipped


def inlined_lines(inlined) -> list[dict]:
    """A job's inlined responses as result lines (responses stay SDK objects)."""
    lines = []
    for position, item in enumerate(inlined):
        metadata = item.metadata or {}
        line: dict[str, Any] = {"key": metadata.get("key"), "position": position}
        if item.error is not None:
            line["error"] = item.error.model_dump(exclude_none=True)
        elif item.response is not None:
            line["response"] = item.response
        lines.append(line)
    return lines
