"""A fake Gemini API server that speaks the real REST wire protocol.

Tests point the real ``google-genai`` SDK at it with
``HttpOptions(base_url=server.url)``; the SDK then talks real HTTP to this
server on 127.0.0.1. Only the standard library is used.

Wire facts (see /work/shared/gemini-wire.md; the installed SDK is the
authority):

* Routes live under ``/v1/`` and ``/v1beta/`` (SDK 3.x defaults to v1).
* ``:streamGenerateContent?alt=sse`` answers ``text/event-stream`` where each
  event is ``data: <one full GenerateContentResponse JSON>`` plus ``\r\n\r\n``;
  there is no ``[DONE]`` marker, the stream ends with the body. Without
  ``alt=sse`` a stream is one pretty-printed JSON array.
* Answers follow what the real server sends (gemini-wire.md, "What the real
  server sends", checked against tests/realwire): Google's JSON formatting
  (pretty bodies, compact events, ``<``/``>`` as ``\u003c``/``\u003e``), usage,
  modelVersion and responseId on every streamed chunk, no null and no zero
  defaults, thought signatures by model family (``gemini-3*``: on text and
  image parts and a closing empty part; thinking models: on the first function
  call), ``finishMessage`` on function-call turns, empty grounding on all but
  the last chunk, ``X-Gemini-Service-Tier``, 403 for a request without a key,
  errors to ``?alt=sse`` as plain JSON typed ``text/event-stream``.
* Errors are ``{"error": {"code", "message", "status", "details"}}``. In a
  stream the SDK raises when an event's JSON *starts with* ``{"error":`` (it
  re-dumps the parsed event), so an error event must have ``error`` as its
  only key.
* Response keys are camelCase; request keys arrive in mixed casing (top
  level camelCase, nested pydantic dumps often snake_case), so every key we
  read is looked up in both spellings.
* Files API (``client.files.upload``) is the resumable protocol: ``POST
  /upload/{v}/files`` with ``X-Goog-Upload-Protocol: resumable`` and
  ``X-Goog-Upload-Command: start`` (body ``{"file": {...}}``) answers an
  ``X-Goog-Upload-URL``; the bytes then go in 8 MB chunks to that URL with
  ``X-Goog-Upload-Command: upload`` (``upload, finalize`` on the last one) and
  ``X-Goog-Upload-Offset``. Each chunk answer must carry
  ``X-Goog-Upload-Status`` (``active`` between chunks, ``final`` at the end):
  without it the SDK retries the chunk after sleeping 1, 2, 4 s. The SDK
  sends the chunks to the upload URL as given (SDK 3.6.1 rewrites its host
  only when the call's own http_options carry a base_url), and without the key:
  the session id in the URL is the credential.
* Batch API (``client.batches``, Gemini Developer API): ``POST
  /{v}/models/{m}:batchGenerateContent`` with ``{"batch": {"displayName",
  "inputConfig": {"fileName": "files/..."} | {"requests": {"requests":
  [{"request": GenerateContentRequest, "metadata": {...}}]}}}}`` answers an
  Operation ``{"name": "batches/{id}", "metadata": {"state":
  "BATCH_STATE_PENDING", "model", "displayName", "batchStats", ...}}``;
  ``GET /{v}/batches/{id}`` the same Operation, with ``done``,
  ``metadata.output`` (what the SDK reads as ``dest``: ``responsesFile`` or
  ``inlinedResponses.inlinedResponses``), ``response`` (the same output) and,
  for a failed job, ``error``; ``GET /{v}/batches`` lists ``operations``;
  ``POST /{v}/batches/{id}:cancel``; ``DELETE /{v}/batches/{id}``. The SDK maps
  ``BATCH_STATE_*`` to ``JOB_STATE_*`` and drops ``error`` and ``batchStats``.
  The input file has one ``{"key", "request"}`` per line; the results file
  one ``{"key", "response"}`` or ``{"key", "error"}`` per line. SDK 3.6.1
  downloads with ``GET /{v}/files/{id}:download?alt=media`` (the REST docs
  say ``/download/{v}/...``: both are served).
* Vertex AI express mode (``genai.Client(vertexai=True, api_key=...)``):
  ``/v1beta1/publishers/google/models/{m}:generateContent``; with project and
  location (ADC, ``Authorization: Bearer``)
  ``/v1beta1/projects/{p}/locations/{l}/publishers/google/models/{m}:...``.
  Generate, stream and countTokens are served on both.
* Token counts (see "Token counting" below for the rules): ``count_prompt``
  counts ``:countTokens`` and the ``promptTokenCount`` of every answer alike, so
  a dry run's ``totalTokens`` is the later answer's prompt count. countTokens
  takes ``contents``, the REST wrapper ``{"generateContentRequest": {model,
  contents, systemInstruction, tools, generationConfig, cachedContent}}`` or
  Vertex's top-level ``systemInstruction``/``tools``/``generationConfig``, and
  answers pretty JSON ``{"totalTokens", "promptTokensDetails"}`` (plus
  ``cachedContentTokenCount``/``cacheTokensDetails`` with a cache), as
  realwire/i_count_tokens_*. SDK 3.6.1's ``count_tokens`` sends only
  ``contents`` to the Developer API (system_instruction, tools and
  generation_config raise ValueError before any request) and keeps only
  ``total_tokens`` and ``cached_content_token_count`` of the answer.
* cachedContents (``client.caches``): ``POST /{v}/cachedContents`` (the body is
  the CachedContent: model "models/{m}", contents, systemInstruction, tools,
  toolConfig, ttl "300s" or expireTime, displayName), ``GET``, ``GET`` list
  (pageSize/pageToken, ``{}`` when none is alive), ``PATCH`` (ttl or expireTime;
  the SDK sends no updateMask), ``DELETE`` (``{}``). The answer is ``{name,
  model, createTime, updateTime, expireTime (nanoseconds), displayName ("" when
  none), usageMetadata: {totalTokenCount}}`` in that order
  (realwire/i_cached_contents_create). A generate request names one with a
  top-level ``cachedContent``; its usage then has ``cachedContentTokenCount`` and
  ``cacheTokensDetails``, and ``promptTokenCount`` includes the cached tokens
  (realwire/i_cached_contents_use). An expired, deleted or unknown cache is 403
  PERMISSION_DENIED, also on GET. Expiry follows ``now()``, which tests move
  with ``advance(seconds)``.
* Service tier: the request's top-level ``serviceTier`` (the SDK sends
  GenerateContentConfig.service_tier lower-cased: flex, standard, priority) is
  echoed in ``usageMetadata.serviceTier`` and ``X-Gemini-Service-Tier``; SDK
  3.6.1's usage type has no field for it, the header is readable through
  ``response.sdk_http_response.headers``.
* File Search (``client.file_search_stores``; Gemini Developer API only, every
  route on v1 and v1beta, Vertex paths 404): ``POST /{v}/fileSearchStores``
  (``{displayName, embeddingModel}``), ``GET`` list (``fileSearchStores``,
  pageSize/pageToken), ``GET``/``DELETE /{v}/fileSearchStores/{id}`` (``?force=True``:
  the SDK writes the Python bool). A store's int64 counts are strings, zero ones
  omitted. ``POST /upload/{v}/fileSearchStores/{id}:uploadToFileSearchStore`` is the
  Files API's resumable protocol (start body ``{mimeType, displayName,
  customMetadata, chunkingConfig}``, the last two nested in snake_case); the
  finalize answer is an Operation ``fileSearchStores/{id}/upload/operations/{op}``,
  not a File. ``POST /{v}/fileSearchStores/{id}:importFile`` (``{fileName}``) takes a
  Files API upload; its Operation is ``fileSearchStores/{id}/operations/{op}``.
  ``client.operations.get(op)`` sends ``GET /{v}/{op.name}``; once done the
  Operation has ``response {parent, documentName}`` or ``error``, and the Document
  is STATE_ACTIVE or STATE_FAILED. ``GET /{v}/fileSearchStores/{id}/documents``
  (``documents``), ``GET``/``DELETE /{v}/{document name}``. A generate request
  whose tools hold ``fileSearch`` (``file_search_store_names``, ``top_k``,
  ``metadata_filter``: nested snake_case as the SDK sends them) is answered as usual
  plus ``groundingMetadata``: ``groundingChunks[].retrievedContext {title, text,
  fileSearchStore, pageNumber (PDFs)}`` and one support spanning the answer. A
  missing store is 403 PERMISSION_DENIED on the store routes (what the SDK's
  replay test of ``file_search_stores.get`` expects) and 400 "... does not exist."
  in a generate request (the SDK's test expects "not exist").
"""

from __future__ import annotations

import base64
import collections
import copy
import hashlib
import json
import math
import re
import select
import socket
import socketserver
import sys
import threading
import time
import traceback
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Self
from urllib.parse import parse_qsl, quote_plus, unquote, urlsplit

API_VERSIONS = ("v1", "v1beta")
GENERATE_ACTIONS = ("generateContent", "streamGenerateContent")
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000

_GOOGLE_RPC = "type.googleapis.com/google.rpc."
_RATE_LIMIT_DOCS = "https://ai.google.dev/gemini-api/docs/rate-limits"
# Sent as the X-Gemini-Service-Tier header and usageMetadata.serviceTier.
SERVICE_TIER = "standard"
# What the echo answers besides text: speech as Gemini's TTS sends it (raw 16-bit mono PCM,
# `audio/L16;codec=pcm;rate=24000`), an image for image models (its shape from
# imageConfig; the pixel sizes per imageSize are ours: 1K, 2K, 4K as the longer side), and
# a place for --maps (groundingChunks[].maps, as GroundingChunkMaps has it).
PCM_RATE = 24_000
PCM_TYPE = f"audio/L16;codec=pcm;rate={PCM_RATE}"
IMAGE_SIDES = {"1K": 1024, "2K": 2048, "4K": 4096}


def echo_answer(request: ReceivedRequest) -> Reply:
    """The echo ("Echo: " + the prompt), in the modality the request asks for."""
    text = "Echo: " + request.last_user_text()
    fields = prompt_fields(request.body)
    config = _get(fields, "generationConfig") or {}
    modalities = [str(m).upper() for m in _get(config, "responseModalities") or []]
    if "AUDIO" in modalities:
        return Reply(parts=[{"inlineData": {"mimeType": PCM_TYPE, "data": base64.b64encode(
            echo_speech(text)).decode()}}])
    if "IMAGE" in modalities or "-image" in (request.model or ""):
        image = _get(config, "imageConfig") or {}
        png = echo_image(str(_get(image, "aspectRatio") or "1:1"), str(_get(image, "imageSize") or "1K"))
        return Reply(parts=[{"text": text}, {"inlineData": {"mimeType": "image/png",
                                                             "data": base64.b64encode(png).decode()}}])
    tools = _get(fields, "tools") or []
    if any(isinstance(t, dict) and (_get(t, "googleMaps") is not None) for t in tools):
        size = len(text.encode("utf-8"))
        place = hashlib.sha256(text.encode()).hexdigest()[:12]
        return Reply(text=text, grounding={
            "groundingChunks": [{"maps": {"uri": f"https://maps.google.com/?cid={int(place, 16)}",
                                          "title": "Echo Place", "placeId": f"places/{place}"}}],
            "groundingSupports": [{"segment": {"startIndex": 0, "endIndex": size, "text": text},
                                   "groundingChunkIndices": [0]}]})
    return Reply(text=text)


def echo_speech(text: str) -> bytes:
    """A tone a tenth of a second per word: 16-bit little-endian mono PCM at PCM_RATE."""
    samples = int(PCM_RATE * 0.1 * max(1, len(text.split())))
    return b"".join(int(8000 * math.sin(2 * math.pi * 440 * i / PCM_RATE)).to_bytes(2, "little", signed=True)
                    for i in range(samples))


def echo_image(aspect_ratio: str, image_size: str) -> bytes:
    """A plain PNG of the asked shape: the longer side from IMAGE_SIDES."""
    import io

    from PIL import Image

    width, _, height = aspect_ratio.partition(":")
    try:
        w, h = float(width), float(height)
    except ValueError:
        w = h = 1.0
    side = IMAGE_SIDES.get(image_size.upper(), 1024)
    size = (side, max(1, round(side * h / w))) if w >= h else (max(1, round(side * w / h)), side)
    out = io.BytesIO()
    Image.new("RGB", size, (90, 140, 200)).save(out, "PNG")
    return out.getvalue()


# Embeddings (batchEmbedContents): the most texts in one request, and the full vector size
# of gemini-embedding-001.
MAX_EMBED_BATCH = 100
EMBEDDING_SIZE = 3072


def embedding_of(text: str, size: int, task_type: str | None = None) -> list[float]:
    """A deterministic stand-in for an embedding: texts sharing words point alike (a
    bag of hashed words), so similarity tests mean something; the task type shifts it."""
    vector = [0.0] * size
    for word in (text.lower().split() + ([task_type] if task_type else [])):
        digest = hashlib.sha256(word.encode()).digest()
        for i in range(0, 8, 2):
            vector[int.from_bytes(digest[i:i + 2], "big") % size] += 1.0 if digest[i + 8] % 2 else -1.0
    norm = math.sqrt(sum(v * v for v in vector)) or 1.0
    # Only the full-size vector comes normalised; a shorter one (outputDimensionality) is
    # the client's to normalise, as Google's embeddings guide says.
    scale = 1.0 if size >= EMBEDDING_SIZE else 0.5
    return [round(scale * v / norm, 6) for v in vector]


# Requests that queue_raw() answers by default: the generate-like ones.
RAW_ACTIONS = ("generateContent", "streamGenerateContent", "countTokens")

# /{version}/models[/{model}][:{action}]; the model id may contain dots.
_ROUTE = re.compile(
    r"^/(?P<version>v1|v1beta)/models"
    r"(?:/(?P<model>[^/:]+))?"
    r"(?::(?P<action>[A-Za-z]+))?$"
)
# [/upload]/{version}/files[/{id}]: the Files API.
_FILES_ROUTE = re.compile(r"^/(?P<upload>upload/)?(?P<version>v1|v1beta)/files(?:/(?P<file>[^/:]+))?$")
# Actions of Files API requests, as ReceivedRequest.action.
FILE_ACTIONS = ("uploadStart", "uploadChunk", "getFile", "listFiles", "deleteFile", "downloadFile")
FILE_TTL = timedelta(hours=48)  # real uploads expire after 48 hours
# [/download]/{version}/files/{id}:download: a generated file's bytes (?alt=media).
_DOWNLOAD_ROUTE = re.compile(r"^/(?:download/)?(?P<version>v1|v1beta)/files/(?P<file>[^/:]+):download$")
# /{version}/batches[/{id}][:cancel]: the Batch API's jobs (long-running operations).
_BATCHES_ROUTE = re.compile(r"^/(?P<version>v1|v1beta)/batches(?:/(?P<batch>[^/:]+))?(?::(?P<verb>[A-Za-z]+))?$")
# Actions of Batch API requests, as ReceivedRequest.action (creation is on the model route).
BATCH_ACTIONS = ("batchGenerateContent", "asyncBatchEmbedContent", "getBatch", "listBatches", "cancelBatch",
                 "deleteBatch")
# Vertex AI: /{version}/[projects/{p}/locations/{l}/]publishers/{publisher}/models/{m}[:{action}]
_VERTEX_ROUTE = re.compile(
    r"^/(?P<version>v1|v1beta1)/"
    r"(?:projects/(?P<project>[^/]+)/locations/(?P<location>[^/]+)/)?"
    r"publishers/(?P<publisher>[^/]+)/models/(?P<model>[^/:]+)"
    r"(?::(?P<action>[A-Za-z]+))?$"
)
# /{version}/cachedContents[/{id}]: explicit context caches (client.caches).
_CACHES_ROUTE = re.compile(r"^/(?P<version>v1|v1beta)/cachedContents(?:/(?P<cache>[^/:]+))?$")
# Actions of cachedContents requests, as ReceivedRequest.action.
CACHE_ACTIONS = ("createCachedContent", "getCachedContent", "listCachedContents", "updateCachedContent",
                 "deleteCachedContent")
DEFAULT_CACHE_TTL = timedelta(hours=1)  # a cache created without ttl or expireTime
IMPLICIT_CACHE_WINDOW = timedelta(hours=1)  # how long a prompt prefix stays implicitly cached here
# [/upload]/{version}/fileSearchStores[/{id}[:{verb}]], .../{id}/documents[/{doc}] and
# .../{id}/[upload/]operations/{op}: File Search (Gemini Developer API only).
_STORES_ROUTE = re.compile(
    r"^/(?P<upload>upload/)?(?P<version>v1|v1beta)/fileSearchStores"
    r"(?:/(?P<store>[^/:]+)(?:"
    r":(?P<verb>[A-Za-z]+)"
    r"|(?P<documents>/documents)(?:/(?P<document>[^/:]+))?"
    r"|/(?:upload/)?operations/(?P<operation>[^/:]+)"
    r")?)?$"
)
# Actions of File Search requests, as ReceivedRequest.action. The upload's finalize is
# "uploadChunk", as for the Files API; ReceivedRequest.store tells the two apart.
STORE_ACTIONS = ("createFileSearchStore", "listFileSearchStores", "getFileSearchStore", "deleteFileSearchStore",
                 "uploadToFileSearchStore", "importFile", "getOperation", "listDocuments", "getDocument",
                 "deleteDocument")
MAX_STORE_FILE_BYTES = 100 * 1024 * 1024  # the documented per-document limit
# MIME types File Search refuses here (images, audio, video, opaque bytes); every other
# type is taken. SDK 3.6.1's own tests upload an image to a store made with
# gemini-embedding-2-preview on a pre-release endpoint: that multimodal search is not modelled.
UNSUPPORTED_STORE_TYPES = ("image/", "audio/", "video/", "application/octet-stream")
STORE_PASSAGE_WORDS = 60  # a passage without a chunkingConfig: a paragraph, cut into windows of this many words
DEFAULT_FILE_SEARCH_TOP_K = 5
# The @type of a finished operation's response (both names guessed, after the batches' v1main).
_UPLOAD_STORE_TYPE = "type.googleapis.com/google.ai.generativelanguage.v1main.UploadToFileSearchStoreResponse"
_IMPORT_FILE_TYPE = "type.googleapis.com/google.ai.generativelanguage.v1main.ImportFileResponse"
# What the Batch API's states are called on the wire (the SDK shows JOB_STATE_*).
BATCH_DONE_STATES = ("BATCH_STATE_SUCCEEDED", "BATCH_STATE_FAILED", "BATCH_STATE_CANCELLED", "BATCH_STATE_EXPIRED")
_BATCH_TYPE = "type.googleapis.com/google.ai.generativelanguage.v1main.GenerateContentBatch"
_EMBED_BATCH_TYPE = "type.googleapis.com/google.ai.generativelanguage.v1main.EmbedContentBatch"  # name guessed
_BATCH_OUTPUT_TYPE = "type.googleapis.com/google.ai.generativelanguage.v1main.GenerateContentBatchOutput"


# ---------------------------------------------------------------------------
# Default model catalogue (shaped like the real models.list answer)
# ---------------------------------------------------------------------------

_GENERATE_METHODS = [
    "generateContent",
    "countTokens",
    "createCachedContent",
    "batchGenerateContent",
]


def _gemini_model(model_id: str, display: str, description: str, version: str = "001") -> dict[str, Any]:
    return {
        "name": f"models/{model_id}",
        "baseModelId": model_id,
        "version": version,
        "displayName": display,
        "description": description,
        "inputTokenLimit": 1048576,
        "outputTokenLimit": 65536,
        "supportedGenerationMethods": list(_GENERATE_METHODS),
        "temperature": 1,
        "topP": 0.95,
        "topK": 64,
        "maxTemperature": 2,
        "thinking": True,
    }


DEFAULT_MODELS: list[dict[str, Any]] = [
    _gemini_model(
        "gemini-2.5-flash",
        "Gemini 2.5 Flash",
        "Stable version of Gemini 2.5 Flash, our mid-size multimodal model that supports up to 1 million tokens.",
    ),
    _gemini_model(
        "gemini-2.5-flash-lite",
        "Gemini 2.5 Flash-Lite",
        "Stable version of Gemini 2.5 Flash-Lite.",
    ),
    _gemini_model(
        "gemini-2.5-pro",
        "Gemini 2.5 Pro",
        "Stable release of Gemini 2.5 Pro.",
    ),
    _gemini_model(
        "gemini-3-flash-preview",
        "Gemini 3 Flash Preview",
        "Gemini 3 Flash Preview.",
        version="3-flash-preview",
    ),
    {
        "name": "models/gemma-3-27b-it",
        "baseModelId": "gemma-3-27b-it",
        "version": "001",
        "displayName": "Gemma 3 27B",
        "inputTokenLimit": 131072,
        "outputTokenLimit": 8192,
        "supportedGenerationMethods": ["generateContent", "countTokens"],
        "temperature": 1,
        "topP": 0.95,
        "topK": 64,
    },
    {
        "name": "models/gemini-embedding-001",
        "baseModelId": "gemini-embedding-001",
        "version": "001",
        "displayName": "Gemini Embedding 001",
        "description": "Obtain a distributed representation of a text.",
        "inputTokenLimit": 2048,
        "outputTokenLimit": 1,
        "supportedGenerationMethods": ["embedContent"],
    },
]

# Model ids accepted for generation even when not listed in server.models,
# so tests can use arbitrary gemini ids without registering them.
DEFAULT_ACCEPT_PREFIXES: tuple[str, ...] = ("gemini", "gemma")


# ---------------------------------------------------------------------------
# What a test asks the server to answer
# ---------------------------------------------------------------------------


@dataclass
class Reply:
    """A successful answer to generateContent / streamGenerateContent.

    Exactly one source of content is used, in this order: ``parts`` (raw part
    dicts, one per streamed chunk), ``chunks`` (one text part per streamed
    chunk), ``text`` (split into up to 3 chunks when streamed). With none of
    them (or empty), the answer has no parts at all, like real Gemini.
    """

    text: str | None = None
    chunks: list[str] | None = None
    parts: list[dict[str, Any]] | None = None
    finish_reason: str | None = "STOP"
    # The answer's usageMetadata (streamed chunks count up to it), or one per
    # streamed event (the last one repeating), e.g. a prompt count that changes at the end.
    usage: dict[str, Any] | list[dict[str, Any]] | None = None
    delay: float | None = None
    model_version: str | None = None
    grounding: dict[str, Any] | None = None
    extra: dict[str, Any] | None = None
    hang: float | None = None

    def chunk_parts(self) -> list[list[dict[str, Any]]]:
        """The parts of each streamed chunk (a list with at least one entry)."""
        if self.parts:
            return [[part] for part in self.parts]
        if self.chunks:
            return [[{"text": chunk}] for chunk in self.chunks]
        if self.text:
            return [[{"text": piece}] for piece in split_text(self.text)]
        return [[]]

    def merged_parts(self) -> list[dict[str, Any]]:
        """The parts of the single non-streamed candidate."""
        if self.parts:
            return list(self.parts)
        text = "".join(self.chunks) if self.chunks else (self.text or "")
        return [{"text": text}] if text else []


@dataclass
class Error:
    """An error answer: HTTP ``code`` with a google.rpc error body.

    With ``after_chunks=N`` a *streaming* request first gets HTTP 200 and N
    chunks (texts from ``chunks``, or generated ones), then an SSE error
    event, then the body ends. A non-streaming request ignores after_chunks.
    """

    code: int
    status: str
    message: str
    details: list[dict[str, Any]] | None = None
    retry_delay: str | None = None
    after_chunks: int | None = None
    chunks: list[str] | None = None
    hang: float | None = None

    def body(self) -> dict[str, Any]:
        """The JSON error body exactly as sent."""
        details = list(self.details or [])
        if self.retry_delay is not None and not any(d.get("@type") == _GOOGLE_RPC + "RetryInfo" for d in details):
            details.append(retry_info(self.retry_delay))
        return error_body(self.code, self.status, self.message, details)

    def stream_texts(self) -> list[str]:
        """Texts of the chunks streamed before a mid-stream failure."""
        count = self.after_chunks or 0
        given = list(self.chunks or [])[:count]
        given += [f"chunk {i + 1} " for i in range(len(given), count)]
        return given

    # -- convenience constructors (real messages and detail shapes) --------

    @classmethod
    def quota(
        cls,
        retry_delay: str | None = "30s",
        model: str = "gemini-2.5-flash",
        limit: int = 5,
        quota_id: str = "GenerateRequestsPerMinutePerProjectPerModel-FreeTier",
        **kwargs: Any,
    ) -> Error:
        """429 RESOURCE_EXHAUSTED as Google sends it (realwire/h_429_*.json): Help,
        QuotaFailure and RetryInfo details. `quota_id` names the limit, its window and
        tier (e.g. ...PerDay...-FreeTier, GenerateContentPaidTierInputTokensPerModelPerMinute);
        the metric follows from it. RetryInfo carries whole seconds (rounded down, as
        Google does) while the message says the exact wait."""
        tier = "paid_tier" if "PaidTier" in quota_id else "free_tier"
        counted = "input_token_count" if "Token" in quota_id else "requests"
        metric = f"generativelanguage.googleapis.com/generate_content_{tier}_{counted}"
        message = (
            "You exceeded your current quota, please check your plan and "
            f"billing details. For more information on this error, head to: "
            f"{_RATE_LIMIT_DOCS}. To monitor your current usage, head to: "
            "https://ai.dev/rate-limit. \n"
            f"* Quota exceeded for metric: {metric}, limit: {limit}, "
            f"model: {model}"
        )
        whole = None
        if retry_delay:
            message += f"\nPlease retry in {retry_delay}."
            whole = f"{int(float(retry_delay.rstrip('s')))}s"
        details = [
            {
                "@type": _GOOGLE_RPC + "Help",
                "links": [
                    {
                        "description": "Learn more about Gemini API quotas",
                        "url": _RATE_LIMIT_DOCS,
                    }
                ],
            },
            {
                "@type": _GOOGLE_RPC + "QuotaFailure",
                "violations": [
                    {
                        "quotaMetric": metric,
                        "quotaId": quota_id,
                        "quotaDimensions": {"location": "global", "model": model},
                        "quotaValue": str(limit),
                    }
                ],
            },
        ]
        return cls(429, "RESOURCE_EXHAUSTED", message, details, whole, **kwargs)

    @classmethod
    def server(cls, code: int = 500, **kwargs: Any) -> Error:
        """5xx: 500 INTERNAL, 503 UNAVAILABLE (overloaded), 504 DEADLINE_EXCEEDED."""
        status, message = {
            500: (
                "INTERNAL",
                (
                    "An internal error has occurred. Please retry or report in "
                    "https://developers.generativeai.google/guide/troubleshooting"
                ),
            ),
            503: ("UNAVAILABLE", "The model is overloaded. Please try again later."),
            504: (
                "DEADLINE_EXCEEDED",
                "Deadline expired before operation could complete.",
            ),
        }.get(code, ("INTERNAL", "Internal error encountered."))
        return cls(code, status, message, **kwargs)

    @classmethod
    def not_found(
        cls,
        model: str = "gemini-nonexistent",
        version: str = "v1",
        method: str = "generateContent",
        listing: str = "ListModels",
        **kwargs: Any,
    ) -> Error:
        """404 NOT_FOUND for an unknown model (or one lacking the method). `listing` is
        the method the message points to: "ListModels" as realwire/h_404 (2025) says it,
        "ModelService.ListModels" in newer answers (gemini-wire.md fact 11)."""
        name = model if model.startswith("models/") else f"models/{model}"
        message = (
            f"{name} is not found for API version {version}, or is not "
            f"supported for {method}. Call {listing} to see the list of "
            "available models and their supported methods."
        )
        return cls(404, "NOT_FOUND", message, **kwargs)

    @classmethod
    def invalid_key(cls, **kwargs: Any) -> Error:
        """400 INVALID_ARGUMENT with ErrorInfo reason API_KEY_INVALID."""
        message = "API key not valid. Please pass a valid API key."
        details = [
            {
                "@type": _GOOGLE_RPC + "ErrorInfo",
                "reason": "API_KEY_INVALID",
                "domain": "googleapis.com",
                "metadata": {"service": "generativelanguage.googleapis.com"},
            },
            {
                "@type": _GOOGLE_RPC + "LocalizedMessage",
                "locale": "en-US",
                "message": message,
            },
        ]
        return cls(400, "INVALID_ARGUMENT", message, details, **kwargs)

    @classmethod
    def permission(cls, message: str = "The caller does not have permission", **kwargs: Any) -> Error:
        """403 PERMISSION_DENIED."""
        return cls(403, "PERMISSION_DENIED", message, **kwargs)

    @classmethod
    def unregistered(cls, **kwargs: Any) -> Error:
        """403 for a request with no key at all (the wording of real answers quoted in
        e.g. gunpal5/Google_GenerativeAI#15 and PublicAffairs/openai-gemini#92)."""
        message = (
            "Method doesn't allow unregistered callers (callers without established identity). "
            "Please use API Key or other form of API consumer identity to call this API."
        )
        return cls(403, "PERMISSION_DENIED", message, **kwargs)


@dataclass
class Blocked:
    """A prompt blocked by safety: 200, promptFeedback, no candidates (the key is
    absent, not empty). The reason may be SAFETY, PROHIBITED_CONTENT, OTHER, ..."""

    reason: str = "SAFETY"


# Headers a raw response cannot dictate: the server frames the body itself
# (recorded bodies are stored decoded, so a recorded Content-Encoding would lie).
_FRAMING_HEADERS = frozenset({"content-length", "transfer-encoding", "content-encoding", "connection"})


@dataclass
class RawResponse:
    """A canned HTTP response (see FakeGemini.queue_raw): status, headers as
    (name, value) pairs in order, and the exact body bytes."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes
    actions: tuple[str, ...] = RAW_ACTIONS


Answer = Reply | Error | Blocked
Responder = Callable[["ReceivedRequest"], Answer | str | None]


# ---------------------------------------------------------------------------
# The request log
# ---------------------------------------------------------------------------


def _get(obj: Any, camel: str, default: Any = None) -> Any:
    """Read a request key in camelCase or its snake_case spelling."""
    if not isinstance(obj, dict):
        return default
    if camel in obj:
        return obj[camel]
    snake = re.sub(r"(?<!^)(?=[A-Z])", "_", camel).lower()
    return obj.get(snake, default)


def _content_texts(content: Any) -> list[str]:
    """Text of the non-thought parts of one Content dict."""
    texts = []
    for part in _get(content, "parts") or []:
        is_text = isinstance(part, dict) and isinstance(part.get("text"), str)
        if is_text and not part.get("thought"):
            texts.append(part["text"])
    return texts


@dataclass
class ReceivedRequest:
    """One HTTP request as the server saw it."""

    method: str
    path: str  # without the query string
    version: str | None  # "v1" | "v1beta" | None for unknown routes
    model: str | None  # "gemini-2.5-flash" (no "models/" prefix)
    action: str | None  # generateContent, streamGenerateContent, countTokens, list, get
    query: dict[str, str]
    headers: dict[str, str]  # lower-case keys
    body: Any | None  # parsed JSON, None when empty or not JSON
    raw_body: bytes = b""
    file: str | None = None  # Files API: "files/{id}" for getFile/deleteFile/downloadFile
    batch: str | None = None  # Batch API: "batches/{id}" for getBatch/cancelBatch/deleteBatch
    vertex: bool = False  # a Vertex AI route (publishers/.../models/...)
    project: str | None = None  # Vertex AI: the project and location in the path, if any
    location: str | None = None
    cache: str | None = None  # cachedContents API: "cachedContents/{id}" for get/update/delete
    store: str | None = None  # File Search: "fileSearchStores/{id}" on every route under one
    document: str | None = None  # File Search: "fileSearchStores/{id}/documents/{d}" for get/deleteDocument
    # Set by the server once it has checked the request (None on a request it refused):
    # the explicit cache the request names, as stored ({"contents", "systemInstruction",
    # "tools", "toolConfig"}; its turns come first in user_texts(), all_texts(), ...), the
    # prompt's token count (``tokens.cached``: the explicit or implicit cache's share), and
    # the service tier the answer reports.
    cached: dict[str, Any] | None = None
    tokens: PromptTokens | None = None
    served_tier: str | None = None
    # File Search: what a generate request's fileSearch tool found (the retrievedContext
    # dicts, best first; [] when no passage matched; None without the tool).
    retrieved: list[dict[str, Any]] | None = None

    @property
    def api_key(self) -> str | None:
        return self.headers.get("x-goog-api-key") or self.query.get("key")

    @property
    def stream(self) -> bool:
        return self.action == "streamGenerateContent"

    def _contents(self, cached: bool = True) -> list[Any]:
        """The request's contents, after those of the cache it uses (unless ``cached=False``)."""
        body = self.body if isinstance(self.body, dict) else {}
        contents = _get(body, "contents")
        if contents is None:  # countTokens may wrap a whole request
            contents = _get(_get(body, "generateContentRequest"), "contents")
        own = contents if isinstance(contents, list) else []
        before = _get(self.cached, "contents") if cached else None
        return (before if isinstance(before, list) else []) + own

    def user_texts(self) -> list[str]:
        """All text parts of user turns (role "user" or no role), in order.

        Model turns of a chat history and the system instruction are left
        out; use ``all_texts()`` or ``body`` for those.
        """
        texts: list[str] = []
        for content in self._contents():
            if _get(content, "role") in (None, "user"):
                texts.extend(_content_texts(content))
        return texts

    def all_texts(self) -> list[str]:
        """Text parts of every content (any role), in order."""
        texts: list[str] = []
        for content in self._contents():
            texts.extend(_content_texts(content))
        return texts

    def system_texts(self) -> list[str]:
        """The system instruction's texts (the cache's, for a request using one)."""
        body = self.body if isinstance(self.body, dict) else {}
        system = _get(body, "systemInstruction")
        if system is None:
            system = _get(self.cached, "systemInstruction")
        return _content_texts(system)

    def cached_texts(self) -> list[str]:
        """Text parts of the explicit cache's contents (any role) that the request uses."""
        contents = _get(self.cached, "contents")
        return [text for content in contents or [] for text in _content_texts(content)]

    def last_user_text(self) -> str:
        texts = self.user_texts()
        return texts[-1] if texts else ""

    def prompt_words(self) -> int:
        """Whitespace words in all request texts (cached ones included): the TEXT tokens of
        a request made of text only (``prompt_tokens()`` counts everything)."""
        return sum(count_words(t) for t in self.all_texts() + self.system_texts())

    def prompt_tokens(self) -> PromptTokens:
        """The prompt's token count: as the server counted it, else counted here (without
        the server's uploaded files, caches and implicit caching)."""
        if self.tokens is not None:
            return self.tokens
        return PromptTokens(count_prompt(self.body, self.model))

    @property
    def service_tier(self) -> str | None:
        """The service tier asked for (``serviceTier``), lower case; "standard" when not
        given; None for a value the API does not know."""
        body = self.body if isinstance(self.body, dict) else {}
        return normalize_tier(_get(body, "serviceTier"))

    def after_tools(self) -> bool:
        """Whether the last turn carries function responses (a tool loop's next step)."""
        contents = self._contents()
        parts = (_get(contents[-1], "parts") or []) if contents else []
        return any(isinstance(p, dict) and _get(p, "functionResponse") is not None for p in parts)

    def user_parts(self, cached: bool = True) -> list[dict[str, Any]]:
        """Raw part dicts of user turns (role "user" or no role), in order."""
        parts: list[dict[str, Any]] = []
        for content in self._contents(cached):
            if _get(content, "role") in (None, "user"):
                parts.extend(p for p in _get(content, "parts") or [] if isinstance(p, dict))
        return parts

    def media(self, cached: bool = True) -> list[tuple[str, bytes | str]]:
        """The non-text user parts in order: (mime type, decoded inline bytes)
        for inlineData, (mime type, file URI) for fileData."""
        found: list[tuple[str, bytes | str]] = []
        for part in self.user_parts(cached):
            inline = _get(part, "inlineData")
            if isinstance(inline, dict):
                found.append((_get(inline, "mimeType"), b64decode(_get(inline, "data") or "")))
            data = _get(part, "fileData")
            if isinstance(data, dict):
                found.append((_get(data, "mimeType"), _get(data, "fileUri")))
        return found

    @property
    def upload_command(self) -> str | None:
        """X-Goog-Upload-Command of a Files API upload request ("start", "upload, finalize", ...)."""
        return self.headers.get("x-goog-upload-command")


def b64decode(text: str) -> bytes:
    """Inline data: the SDK sends URL-safe base64; accept the standard alphabet too."""
    padded = text + "=" * (-len(text) % 4)
    return base64.b64decode(padded.replace("-", "+").replace("_", "/"))


# ---------------------------------------------------------------------------
# Token counting: one rule for countTokens, usage, caches and implicit caching
# ---------------------------------------------------------------------------
#
# The server's stand-in for Gemini's tokenizer. One function, count_prompt(), counts a
# request for :countTokens, for the promptTokenCount of generate/stream answers and for
# cachedContents, so a dry run's count equals the later answer's prompt count.
#
# * Text: one token per whitespace-separated word (count_words). Texts of every content
#   (user and model turns; thought parts are left out), the system instruction, text-like
#   media (text/*, JSON, XML, ... decoded as UTF-8) and, as their JSON text, function
#   calls, function responses and the tools' functionDeclarations. Built-in tools
#   (googleSearch, codeExecution, urlContext) and toolConfig count nothing.
# * Images (inlineData image/*, or fileData of an image uploaded to this server), their
#   size read from the PNG/JPEG/GIF/WebP header. Gemini 2.x: both sides <= 384 px: 258;
#   else tiles, crop unit = floor(min(w, h) / 1.5) (at least 256 px here), tiles =
#   ceil(w / unit) * ceil(h / unit), 258 each. A media resolution makes it a fixed count
#   per image: LOW 64, MEDIUM 256, HIGH 256 (ULTRA_HIGH as HIGH). Gemini 3 (gemini-3*):
#   LOW 280, MEDIUM 560, HIGH 1120, ULTRA_HIGH 2240, HIGH when none is given. An image
#   whose size cannot be read counts as a small one.
# * PDFs: per page (``/Type /Page`` objects, at least 1): 258 on 2.x (LOW 64, MEDIUM and
#   HIGH 256), the Gemini 3 table with MEDIUM as the default (as Google's media-resolution
#   docs give it).
# * Audio 32 tokens a second, video 263 a second, whatever the resolution. The duration
#   comes from a WAV header or an MP4/MOV ``mvhd`` box; else from the byte size at an
#   assumed 128 kbit/s (audio) or 2 Mbit/s (video); a file we do not hold (gs://, YouTube,
#   another host) is assumed to last 10 s.
# * A part's own ``mediaResolution`` ({"level"} or {"numTokens"}) wins over
#   ``generationConfig.mediaResolution``; ``numTokens`` is used as the count as given.
# * Other binary data counts nothing.
#
# Modalities are named as the API names them (TEXT, IMAGE, VIDEO, AUDIO, DOCUMENT) and
# listed in that order (the SDK's MediaModality order; Google's own order is not known).

MODALITIES = ("TEXT", "IMAGE", "VIDEO", "AUDIO", "DOCUMENT")
IMAGE_TOKENS = 258  # a small image, or one 768x768 tile (Gemini 2.x)
SMALL_IMAGE_SIDE = 384
PDF_PAGE_TOKENS = 258
AUDIO_TOKENS_PER_SECOND = 32
VIDEO_TOKENS_PER_SECOND = 263
ASSUMED_AUDIO_BYTES_PER_SECOND = 16_000  # 128 kbit/s
ASSUMED_VIDEO_BYTES_PER_SECOND = 250_000  # 2 Mbit/s
UNKNOWN_MEDIA_SECONDS = 10
RESOLUTION_TOKENS_2X = {"LOW": 64, "MEDIUM": 256, "HIGH": 256, "ULTRA_HIGH": 256}
RESOLUTION_TOKENS_3 = {"LOW": 280, "MEDIUM": 560, "HIGH": 1120, "ULTRA_HIGH": 2240}
_TEXT_MIME_TYPES = ("application/json", "application/xml", "application/javascript", "application/x-python",
                    "application/x-sh", "application/rtf", "application/x-yaml", "application/sql")


@dataclass
class TokenCount:
    """Tokens by modality ("TEXT", "IMAGE", "VIDEO", "AUDIO", "DOCUMENT")."""

    by_modality: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.by_modality.values())

    def add(self, modality: str, tokens: int) -> None:
        if tokens:
            self.by_modality[modality] = self.by_modality.get(modality, 0) + tokens

    def __add__(self, other: TokenCount) -> TokenCount:
        both = TokenCount(dict(self.by_modality))
        for modality, tokens in other.by_modality.items():
            both.add(modality, tokens)
        return both

    def details(self) -> list[dict[str, Any]]:
        """As ``promptTokensDetails``: the modalities that have tokens (TEXT 0 when none has)."""
        found = [{"modality": m, "tokenCount": self.by_modality[m]} for m in MODALITIES if self.by_modality.get(m)]
        return found or [{"modality": "TEXT", "tokenCount": 0}]


@dataclass
class PromptTokens:
    """A prompt's tokens (``prompt``, cached ones included) and the part of them that
    came from a cache (``cached``: an explicit cache or an implicit cache hit)."""

    prompt: TokenCount
    cached: TokenCount | None = None


def _resolution_level(value: Any) -> str | None:
    """"MEDIA_RESOLUTION_LOW" | "low" | {"level": ...} -> "LOW"; None for unset/unspecified."""
    if isinstance(value, dict):
        value = _get(value, "level")
    if not isinstance(value, str):
        return None
    level = value.upper().removeprefix("MEDIA_RESOLUTION_")
    return level if level in RESOLUTION_TOKENS_3 else None


def image_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a PNG, GIF, JPEG or WebP header; None if unknown."""
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 24:
        return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    if data[:6] in (b"GIF87a", b"GIF89a") and len(data) >= 10:
        return int.from_bytes(data[6:8], "little"), int.from_bytes(data[8:10], "little")
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP" and len(data) >= 25:
        kind = data[12:16]
        if kind == b"VP8 " and len(data) >= 30:
            return int.from_bytes(data[26:28], "little") & 0x3FFF, int.from_bytes(data[28:30], "little") & 0x3FFF
        if kind == b"VP8L":
            bits = int.from_bytes(data[21:25], "little")
            return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
        if kind == b"VP8X" and len(data) >= 30:
            return int.from_bytes(data[24:27], "little") + 1, int.from_bytes(data[27:30], "little") + 1
        return None
    if data[:2] == b"\xff\xd8":
        at = 2
        while at + 9 <= len(data):
            if data[at] != 0xFF:
                return None
            marker = data[at + 1]
            if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
                at += 2
                continue
            length = int.from_bytes(data[at + 2 : at + 4], "big")
            if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
                return int.from_bytes(data[at + 7 : at + 9], "big"), int.from_bytes(data[at + 5 : at + 7], "big")
            at += 2 + length
    return None


def pdf_pages(data: bytes) -> int:
    """Page objects (``/Type /Page``, not ``/Pages``) in a PDF; at least 1."""
    return max(1, len(re.findall(rb"/Type\s*/Page(?![A-Za-z])", data)))


def media_seconds(data: bytes) -> float | None:
    """Duration of a WAV (from its header) or an MP4/MOV (from its mvhd box); None if unknown."""
    if data[:4] == b"RIFF" and data[8:12] == b"WAVE":
        at, byte_rate, size = 12, None, None
        while at + 8 <= len(data):
            chunk, length = data[at : at + 4], int.from_bytes(data[at + 4 : at + 8], "little")
            if chunk == b"fmt " and at + 20 <= len(data):
                byte_rate = int.from_bytes(data[at + 16 : at + 20], "little")
            elif chunk == b"data":
                size = min(length, len(data) - at - 8)
                break
            at += 8 + length + (length & 1)
        return size / byte_rate if byte_rate and size is not None else None
    at = data.find(b"mvhd")
    if at >= 4:
        version = data[at + 4]
        # After version and flags: creation and modification times (4 or 8 bytes each),
        # the timescale (4) and the duration (4 or 8).
        fields = data[at + 16 : at + 24] if version == 0 else data[at + 24 : at + 36]
        if version == 0 and len(fields) == 8:
            scale, duration = int.from_bytes(fields[:4], "big"), int.from_bytes(fields[4:], "big")
        elif version == 1 and len(fields) == 12:
            scale, duration = int.from_bytes(fields[:4], "big"), int.from_bytes(fields[4:], "big")
        else:
            return None
        return duration / scale if scale else None
    return None


def media_tokens(mime: str | None, data: bytes | None, model: str | None, level: str | None = None,
                 num_tokens: int | None = None) -> tuple[str, int]:
    """(modality, tokens) of one inline or uploaded medium; ``data`` None for a file we do
    not hold. ``level``: the media resolution in force ("LOW", ...), ``num_tokens``: a
    part's own count."""
    mime = (mime or "").lower().split(";")[0].strip()
    gemini3 = is_gemini3(model)
    if mime.startswith("image/"):
        if num_tokens:
            return "IMAGE", num_tokens
        if gemini3:
            return "IMAGE", RESOLUTION_TOKENS_3[level or "HIGH"]
        if level:
            return "IMAGE", RESOLUTION_TOKENS_2X[level]
        size = image_size(data) if data else None
        if size is None or max(size) <= SMALL_IMAGE_SIDE:
            return "IMAGE", IMAGE_TOKENS
        width, height = size
        unit = max(256, min(width, height) * 2 // 3)  # floor(min / 1.5)
        return "IMAGE", IMAGE_TOKENS * math.ceil(width / unit) * math.ceil(height / unit)
    if mime == "application/pdf":
        pages = pdf_pages(data) if data else 1
        if num_tokens:
            return "DOCUMENT", num_tokens * pages
        if gemini3:
            return "DOCUMENT", RESOLUTION_TOKENS_3[level or "MEDIUM"] * pages
        return "DOCUMENT", (RESOLUTION_TOKENS_2X[level] if level else PDF_PAGE_TOKENS) * pages
    if mime.startswith(("audio/", "video/")):
        audio = mime.startswith("audio/")
        seconds = media_seconds(data) if data else None
        if seconds is None:
            rate = ASSUMED_AUDIO_BYTES_PER_SECOND if audio else ASSUMED_VIDEO_BYTES_PER_SECOND
            seconds = len(data) / rate if data else UNKNOWN_MEDIA_SECONDS
        per_second = AUDIO_TOKENS_PER_SECOND if audio else VIDEO_TOKENS_PER_SECOND
        return ("AUDIO" if audio else "VIDEO"), max(1, math.ceil(seconds * per_second))
    if data and (mime.startswith("text/") or mime in _TEXT_MIME_TYPES):
        return "TEXT", count_words(data.decode("utf-8", errors="replace"))
    return "TEXT", 0


# resolve(fileUri) -> (mime type, bytes) of a file the server holds, or None.
FileResolver = Callable[[str], "tuple[str | None, bytes] | None"]


def _json_words(value: Any) -> int:
    return count_words(json.dumps(value, ensure_ascii=False))


def count_part(part: Any, model: str | None, level: str | None = None,
               resolve: FileResolver | None = None) -> tuple[str, int]:
    """(modality, tokens) of one part; ``level`` is the request's media resolution."""
    if not isinstance(part, dict):
        return "TEXT", 0
    own = _get(part, "mediaResolution")
    part_level = _resolution_level(own) or level
    num_tokens = _get(own, "numTokens") if isinstance(own, dict) else None
    num_tokens = num_tokens if isinstance(num_tokens, int) and num_tokens > 0 else None
    if isinstance(part.get("text"), str):
        return "TEXT", 0 if part.get("thought") else count_words(part["text"])
    inline = _get(part, "inlineData")
    if isinstance(inline, dict):
        try:
            data = b64decode(_get(inline, "data") or "")
        except ValueError:
            data = b""
        return media_tokens(_get(inline, "mimeType"), data, model, part_level, num_tokens)
    file_data = _get(part, "fileData")
    if isinstance(file_data, dict):
        uri = _get(file_data, "fileUri")
        held = resolve(uri) if resolve is not None and isinstance(uri, str) else None
        mime = _get(file_data, "mimeType") or (held[0] if held else None)
        return media_tokens(mime, held[1] if held else None, model, part_level, num_tokens)
    for key in ("functionCall", "functionResponse"):
        if _get(part, key) is not None:
            return "TEXT", _json_words(_get(part, key))
    code = _get(part, "executableCode")
    if isinstance(code, dict):
        return "TEXT", count_words(str(_get(code, "code") or ""))
    result = _get(part, "codeExecutionResult")
    if isinstance(result, dict):
        return "TEXT", count_words(str(_get(result, "output") or ""))
    return "TEXT", 0


def count_contents(contents: Any, model: str | None, level: str | None = None,
                   resolve: FileResolver | None = None) -> TokenCount:
    """Tokens of a list of Content dicts (every role)."""
    count = TokenCount()
    for content in contents if isinstance(contents, list) else []:
        for part in _get(content, "parts") or []:
            count.add(*count_part(part, model, level, resolve))
    return count


def count_tools(tools: Any) -> int:
    """The function declarations' JSON text; built-in tools count nothing."""
    declarations = [d for tool in tools if isinstance(tool, dict) for d in _get(tool, "functionDeclarations") or []]
    return _json_words(declarations) if declarations else 0


def prompt_fields(body: Any) -> dict[str, Any]:
    """The generate-request fields of a body: itself, or the REST countTokens wrapper
    ``generateContentRequest`` (its Vertex form has systemInstruction/tools at the top)."""
    body = body if isinstance(body, dict) else {}
    inner = _get(body, "generateContentRequest")
    return inner if isinstance(inner, dict) else body


def count_prompt(body: Any, model: str | None, resolve: FileResolver | None = None) -> TokenCount:
    """Tokens of a request's own prompt: contents, system instruction, function
    declarations (a cache it names is not included)."""
    fields = prompt_fields(body)
    level = _resolution_level(_get(_get(fields, "generationConfig"), "mediaResolution"))
    count = count_contents(_get(fields, "contents"), model, level, resolve)
    system = _get(fields, "systemInstruction")
    if isinstance(system, dict):
        count += count_contents([system], model, level, resolve)
    elif isinstance(system, str):
        count.add("TEXT", count_words(system))
    tools = _get(fields, "tools")
    if isinstance(tools, list):
        count.add("TEXT", count_tools(tools))
    return count


def min_cache_tokens(model: str | None) -> int:
    """The smallest cache a model takes (explicit, and implicit hits): 4096 for Pro models,
    1024 for the others (Flash, Flash-Lite), as real "too small" errors name them."""
    return 4096 if "pro" in _bare(model).split("-") else 1024


def implicit_caching(model: str | None) -> bool:
    """Gemini 2.5 and later cache repeated prompt prefixes by themselves."""
    bare = _bare(model)
    if bare.startswith("gemini-") and bare.endswith("-latest"):
        return True
    found = re.match(r"gemini-(\d+)(?:\.(\d+))?", bare)
    return bool(found) and (int(found.group(1)), int(found.group(2) or 0)) >= (2, 5)


# Service tiers a request may ask for (serviceTier, any case; the enum names too).
SERVICE_TIERS = ("standard", "flex", "priority")


def normalize_tier(value: Any) -> str | None:
    """A request's serviceTier as the answer names it: "standard" when not given or
    unspecified; None when the API would not know it."""
    if value is None:
        return SERVICE_TIER
    if not isinstance(value, str):
        return None
    tier = value.lower().removeprefix("service_tier_")
    if tier == "unspecified":
        return SERVICE_TIER
    return tier if tier in SERVICE_TIERS else None



# ---------------------------------------------------------------------------
# Response JSON builders
# ---------------------------------------------------------------------------


def count_words(text: str) -> int:
    return len(text.split())


def split_text(text: str, pieces: int = 3) -> list[str]:
    """Split text into up to ``pieces`` chunks that join back to ``text``.

    Cuts fall between words; a text of fewer words than ``pieces`` is one chunk
    (a short answer streams as one event, as the real API sends it). Every
    chunk is non-empty.
    """
    words = re.findall(r"\S+\s*|\s+", text)
    if len(words) < pieces:
        return [text]
    n = pieces
    cuts = [round(i * len(words) / n) for i in range(n + 1)]
    return ["".join(words[cuts[i] : cuts[i + 1]]) for i in range(n)]


def wire_json(obj: Any, pretty: bool = True) -> bytes:
    """JSON as Google's servers write it: UTF-8 (not ASCII escapes), with ``<`` and
    ``>`` escaped as ``\\u003c``/``\\u003e`` in every string (HTML-safe JSON). Pretty is
    2-space indented (whole answers, JSON-array streams, errors); compact is
    ``{"a": 1,"b": 2}`` (SSE events)."""
    if pretty:
        text = json.dumps(obj, ensure_ascii=False, indent=2)
    else:
        text = json.dumps(obj, ensure_ascii=False, separators=(",", ": "))
    # Outside strings JSON has no < or >, so replacing them everywhere is exact.
    return text.replace("<", "\\u003c").replace(">", "\\u003e").encode("utf-8")


def json_array_stream(events: list[Any]) -> bytes:
    """A stream without alt=sse: one pretty JSON array, elements split by "\\n,\\r\\n"."""
    return b"[" + b"\n,\r\n".join(wire_json(event) for event in events) + b"\n]"


def error_body(code: int, status: str, message: str, details: list | None = None) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message, "status": status}
    if details:  # real answers omit an empty details list
        error["details"] = details
    return {"error": error}


# google.rpc.Code numbers by status name.
RPC_CODES = {
    "CANCELLED": 1, "UNKNOWN": 2, "INVALID_ARGUMENT": 3, "DEADLINE_EXCEEDED": 4, "NOT_FOUND": 5,
    "ALREADY_EXISTS": 6, "PERMISSION_DENIED": 7, "RESOURCE_EXHAUSTED": 8, "FAILED_PRECONDITION": 9,
    "ABORTED": 10, "OUT_OF_RANGE": 11, "UNIMPLEMENTED": 12, "INTERNAL": 13, "UNAVAILABLE": 14,
    "DATA_LOSS": 15, "UNAUTHENTICATED": 16,
}


def rpc_status(error: Error) -> dict[str, Any]:
    """A batch item's error as a google.rpc.Status: the rpc code and the message.

    No details: the SDK types them as strings (JobError.details: list[str]) and
    fails to parse a whole job whose inlined error carries detail objects."""
    return {"code": RPC_CODES.get(error.status, 2), "message": error.message}


def retry_info(delay: str) -> dict[str, Any]:
    return {"@type": _GOOGLE_RPC + "RetryInfo", "retryDelay": delay}


def usage_metadata(prompt: int | TokenCount | PromptTokens, candidates: int, thoughts: int = 0,
                   service_tier: str | None = None) -> dict[str, Any]:
    """usageMetadata as the real API writes it (key order of realwire/i_cached_contents_use):
    ``prompt`` is a TEXT count, a TokenCount, or PromptTokens whose cached share adds
    cachedContentTokenCount and cacheTokensDetails (promptTokenCount includes it)."""
    if not isinstance(prompt, PromptTokens):
        prompt = PromptTokens(prompt if isinstance(prompt, TokenCount) else TokenCount({"TEXT": prompt}))
    total = prompt.prompt.total
    cached = prompt.cached if prompt.cached is not None and prompt.cached.total else None
    usage: dict[str, Any] = {
        "promptTokenCount": total,
        "candidatesTokenCount": candidates,
        "totalTokenCount": total + candidates + thoughts,
    }
    if cached is not None:
        usage["cachedContentTokenCount"] = cached.total
    usage["promptTokensDetails"] = prompt.prompt.details()
    if cached is not None:
        usage["cacheTokensDetails"] = cached.details()
    if not candidates:
        del usage["candidatesTokenCount"]  # zero is a default: omitted on the wire
    if thoughts:
        usage["thoughtsTokenCount"] = thoughts
    usage["serviceTier"] = service_tier or SERVICE_TIER  # recent answers say which tier served them
    return usage


def reply_usage(reply: Reply, request: ReceivedRequest) -> dict[str, Any]:
    """usageMetadata for a reply: explicit, or counted (prompt: prompt_tokens(); output:
    whitespace words of the answer's text and thought parts)."""
    if isinstance(reply.usage, list):
        return reply.usage[-1]
    if reply.usage is not None:
        return reply.usage
    answer = thoughts = 0
    for part in reply.merged_parts():
        words = count_words(part.get("text") or "")
        if part.get("thought"):
            thoughts += words
        else:
            answer += words
    return usage_metadata(request.prompt_tokens(), answer, thoughts, request.served_tier)


def usage_so_far(final: dict[str, Any], done: int, total: int) -> dict[str, Any]:
    """A streamed chunk's usageMetadata: the final figures with the output counted
    up to this chunk (`done` of `total` answer words); thoughts come first, in full."""
    usage = copy.deepcopy(final)
    out = final.get("candidatesTokenCount")
    if not isinstance(out, int) or total <= 0 or done >= total:
        return usage
    now = out * done // total
    if now:
        usage["candidatesTokenCount"] = now
    else:
        usage.pop("candidatesTokenCount")  # zero is a default: omitted on the wire
    if isinstance(final.get("totalTokenCount"), int):
        usage["totalTokenCount"] = final["totalTokenCount"] - (out - now)
    return usage


# Stops for which the real API sends the candidate's content as an empty object.
SAFETY_STOPS = ("SAFETY", "PROHIBITED_CONTENT", "BLOCKLIST", "SPII", "IMAGE_SAFETY")
FUNCTION_CALL_MESSAGE = "Model generated function call(s)."


def candidate(
    parts: list[dict[str, Any]],
    finish_reason: str | None = None,
    grounding: dict[str, Any] | None = None,
    finish_message: str | None = None,
) -> dict[str, Any]:
    content: dict[str, Any] = {}
    if parts:  # real Gemini omits "parts" entirely for an empty answer
        content = {"parts": parts, "role": "model"}
    elif finish_reason not in SAFETY_STOPS:  # a safety stop's content is {}
        content = {"role": "model"}
    cand: dict[str, Any] = {"content": content}
    if finish_reason is not None:
        cand["finishReason"] = finish_reason
    cand["index"] = 0
    if finish_message is not None:
        cand["finishMessage"] = finish_message
    if grounding is not None:
        cand["groundingMetadata"] = grounding
    return cand


def generate_response(
    cand: dict[str, Any] | None,
    model_version: str,
    response_id: str,
    usage: dict[str, Any] | None = None,
    prompt_feedback: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    response: dict[str, Any] = {}
    if cand is not None:
        response["candidates"] = [cand]
    if prompt_feedback is not None:
        response["promptFeedback"] = prompt_feedback
    if usage is not None:
        response["usageMetadata"] = usage
    response["modelVersion"] = model_version
    response["responseId"] = response_id
    if extra:
        response.update(extra)
    return _pruned(response)


def _pruned(value: Any) -> Any:
    """Drop null fields at any depth: the real API omits unset fields, never sends null."""
    if isinstance(value, dict):
        return {k: _pruned(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_pruned(v) for v in value]
    return value


# -- model families -----------------------------------------------------------

def _bare(model: str | None) -> str:
    return (model or "").removeprefix("models/")


def is_gemini3(model: str | None) -> bool:
    """Gemini 3 models sign text and image parts and end streams with an empty part."""
    return _bare(model).startswith("gemini-3")


def signs_calls(model: str | None) -> bool:
    """Thinking models (2.5 and 3) put a thoughtSignature on the first function call of a turn."""
    return _bare(model).startswith(("gemini-3", "gemini-2.5"))


def thought_signature(response_id: str, index: int, size: int = 96) -> str:
    """A deterministic, opaque signature (standard base64, as the API sends it)."""
    seed = hashlib.sha256(f"{response_id}/{index}".encode()).digest()
    return base64.b64encode((seed * (size // len(seed) + 1))[:size]).decode()


def _is_text(part: dict[str, Any]) -> bool:
    return isinstance(part.get("text"), str) and not part.get("thought")


def _signed_parts(parts: list[dict[str, Any]], model: str | None, response_id: str,
                  after_tools: bool) -> tuple[list[dict[str, Any]], bool]:
    """Copies of a turn's parts with the signatures the model family adds (a part that
    has one keeps it); also whether the turn still wants a closing signature (a
    Gemini 3 text answer: on its last text part, or a stream's final empty part)."""
    parts = [dict(part) for part in parts]
    calls = [p for p in parts if "functionCall" in p]
    if calls and signs_calls(model) and not any("thoughtSignature" in p for p in calls):
        # Only the first of parallel calls is signed.
        calls[0]["thoughtSignature"] = thought_signature(response_id, 0)
    if not is_gemini3(model):
        return parts, False
    for index, part in enumerate(parts, start=1):
        if "inlineData" in part and "thoughtSignature" not in part:
            part["thoughtSignature"] = thought_signature(response_id, index, 1024)  # images' are long
    wants = not calls and not after_tools and not any("thoughtSignature" in p and "inlineData" not in p for p in parts)
    return parts, wants


def reply_events(reply: Reply, request: ReceivedRequest, response_id: str) -> list[dict[str, Any]]:
    """The streamed events of a reply, shaped as the real API streams them.

    Every event carries usageMetadata (output counts growing, the last one the
    answer's), modelVersion and responseId. finishReason goes on the last event
    (and, in a code-execution stream, also on the event of the code it ran);
    groundingMetadata is ``{}`` until the last event; a function-call turn adds
    finishMessage. Gemini 3 streams end with an extra event holding an empty
    text part, signed unless the turn's signature went on a function call.
    """
    version = reply.model_version or request.model or ""
    model = request.model
    chunks = reply.chunk_parts()
    flat, signed_tail = _signed_parts([p for parts in chunks for p in parts], model, response_id,
                                      request.after_tools())
    it = iter(flat)
    chunks = [[next(it) for _ in parts] for parts in chunks]
    finish = reply.finish_reason
    if is_gemini3(model) and any(chunks):
        tail: dict[str, Any] = {"text": ""}
        if signed_tail:
            tail["thoughtSignature"] = thought_signature(response_id, len(flat) + 1)
        chunks.append([tail])
    elif finish in SAFETY_STOPS and any(chunks):
        chunks.append([])  # the stop comes alone, with an empty content
    final = reply_usage(reply, request)
    total = sum(count_words(p.get("text") or "") for p in flat if _is_text(p))
    code_stop = None
    if finish == "STOP":
        code_events = [i for i, parts in enumerate(chunks) if any(
            "executableCode" in p and not p.get("thought") for p in parts)]
        if code_events and code_events[-1] < len(chunks) - 1:
            code_stop = code_events[-1]
    has_calls = any("functionCall" in p for p in flat)
    last = len(chunks) - 1
    events, done = [], 0
    given = reply.usage if isinstance(reply.usage, list) else None
    for i, parts in enumerate(chunks):
        done += sum(count_words(p.get("text") or "") for p in parts if _is_text(p))
        usage = given[min(i, len(given) - 1)] if given else usage_so_far(final, done, total)
        if i < last:
            grounding = {} if reply.grounding is not None else None
            cand = candidate(parts, "STOP" if i == code_stop else None, grounding)
            events.append(generate_response(cand, version, response_id, usage))
        else:
            message = FUNCTION_CALL_MESSAGE if has_calls and finish == "STOP" else None
            cand = candidate(parts, finish, _wire_grounding(reply.grounding), message)
            events.append(generate_response(cand, version, response_id, final if not given else usage,
                                            extra=reply.extra))
    return events


def reply_response(reply: Reply, request: ReceivedRequest, response_id: str) -> dict[str, Any]:
    """The single non-streamed response: all chunks merged in one candidate."""
    model = request.model
    parts, signed_tail = _signed_parts(reply.merged_parts(), model, response_id, request.after_tools())
    if signed_tail:
        texts = [p for p in parts if _is_text(p)]
        if texts:
            texts[-1]["thoughtSignature"] = thought_signature(response_id, len(parts) + 1)
    has_calls = any("functionCall" in p for p in parts)
    message = FUNCTION_CALL_MESSAGE if has_calls and reply.finish_reason == "STOP" else None
    return generate_response(
        candidate(parts, reply.finish_reason, _wire_grounding(reply.grounding), message),
        reply.model_version or model or "",
        response_id,
        usage=reply_usage(reply, request),
        extra=reply.extra,
    )


def _wire_grounding(grounding: dict[str, Any] | None) -> dict[str, Any] | None:
    """Grounding as the API sends it: a segment's startIndex of 0 is omitted."""
    if grounding is None:
        return None
    grounding = copy.deepcopy(grounding)
    for support in grounding.get("groundingSupports") or []:
        segment = support.get("segment") if isinstance(support, dict) else None
        if isinstance(segment, dict) and segment.get("startIndex") == 0:
            del segment["startIndex"]
    return grounding


def grounding_metadata(
    text: str,
    supports: list[tuple[str, list[int]]],
    sources: list[tuple[str, str]],
    queries: list[str] | None = None,
) -> dict[str, Any]:
    """groundingMetadata for an answer `text`, built the way the API builds it.

    `supports` are (segment text, source indices): each segment is found in `text`
    (after the previous one) and located by UTF-8 byte offsets; `sources` are
    (uri, title) pairs, sent as given (real URIs are not always URL-safe).
    """
    raw = text.encode("utf-8")
    found = []
    start = 0
    for segment, indices in supports:
        at = raw.find(segment.encode("utf-8"), start)
        if at < 0:
            raise ValueError(f"segment {segment!r} is not in the text")
        end = at + len(segment.encode("utf-8"))
        found.append({"segment": {"startIndex": at, "endIndex": end, "text": segment},
                      "groundingChunkIndices": list(indices)})
        start = at
    queries = list(queries or [])
    chips = "\n".join(f'<a class="chip" href="https://www.google.com/search?q={quote_plus(q)}">{q}</a>'
                      for q in queries)
    rendered = f'<style>\n.chip {{}}\n</style>\n<div class="carousel">\n{chips}\n</div>'
    metadata: dict[str, Any] = {
        "searchEntryPoint": {"renderedContent": rendered},
        "groundingChunks": [{"web": {"uri": uri, "title": title}} for uri, title in sources],
        "groundingSupports": found,
        "webSearchQueries": queries,
    }
    return _wire_grounding(metadata) or {}


def blocked_response(blocked: Blocked, request: ReceivedRequest, response_id: str) -> dict[str, Any]:
    usage = usage_metadata(request.prompt_tokens(), 0, 0, request.served_tier)
    return generate_response(
        None,
        request.model or "",
        response_id,
        usage=usage,
        prompt_feedback={"blockReason": blocked.reason},
    )


def text_chunk_event(text: str, model_version: str, response_id: str, usage: dict[str, Any] | None = None) -> dict:
    return generate_response(candidate([{"text": text}]), model_version, response_id, usage)


def _model_id(model: dict[str, Any]) -> str:
    name = str(model.get("name", ""))
    return name.split("/", 1)[1] if name.startswith("models/") else name


def synthesized_model(model_id: str) -> dict[str, Any]:
    """A model dict for an id we accept but do not list."""
    return _gemini_model(model_id, model_id, f"Fake model {model_id}.")


def _encode_page_token(offset: int) -> str:
    return base64.urlsafe_b64encode(f"offset:{offset}".encode()).decode()


def _decode_page_token(token: str) -> int | None:
    try:
        raw = base64.urlsafe_b64decode(token.encode()).decode()
        prefix, _, number = raw.partition(":")
        return int(number) if prefix == "offset" and int(number) >= 0 else None
    except ValueError:
        return None

def _send_page(request: ReceivedRequest, handler: _Handler, key: str, items: list, default_size: int,
               max_size: int, omit_empty: bool = False) -> None:
    """One page of a list call (pageSize/pageToken/nextPageToken), as the API pages."""
    try:
        size = int(request.query.get("pageSize") or default_size)
    except ValueError:
        size = -1
    token = request.query.get("pageToken")
    start = _decode_page_token(token) if token else 0
    if size < 0 or start is None:
        err = Error(400, "INVALID_ARGUMENT", "Invalid pageSize or pageToken.")
        handler.send_json(err.code, err.body())
        return
    size = min(size or default_size, max_size)
    answer: dict[str, Any] = {key: items[start : start + size]} if items or not omit_empty else {}
    if start + size < len(items):
        answer["nextPageToken"] = _encode_page_token(start + size)
    handler.send_json(200, answer)



# ---------------------------------------------------------------------------
# Script rules (shared by the CLI and FakeGemini.from_script)
# ---------------------------------------------------------------------------

_ERROR_KINDS = {
    "quota": Error.quota,
    "server": Error.server,
    "not_found": Error.not_found,
    "invalid_key": Error.invalid_key,
    "permission": Error.permission,
}


def answer_from_spec(spec: dict[str, Any]) -> Answer:
    """Build an answer from a rule: {"reply": {...}} | {"error": {...}} | {"blocked": r}.

    A dict with none of those keys is taken as Reply keyword arguments. An
    error dict may name a convenience constructor with "kind" (quota, server,
    not_found, invalid_key, permission) and pass its arguments alongside.
    """
    if "error" in spec:
        kwargs = dict(spec["error"])
        kind = kwargs.pop("kind", None)
        if kind is not None:
            if kind not in _ERROR_KINDS:
                raise ValueError(f"unknown error kind {kind!r}")
            return _ERROR_KINDS[kind](**kwargs)
        return Error(**kwargs)
    if "blocked" in spec:
        reason = spec["blocked"]
        return Blocked("SAFETY" if reason is True else str(reason))
    reply = spec.get("reply", spec)
    if isinstance(reply, str):
        return Reply(text=reply)
    return Reply(**{k: v for k, v in reply.items() if k not in ("match", "model")})


class ScriptResponder:
    """A responder made of rules: the first matching rule wins.

    A rule matches when its "match" is a substring of the last user text (a
    missing "match" matches everything) and, if it has "model", the request
    is for that model. A rule with "after_tools": true matches only a request
    whose last turn carries function responses (the model's next step in a tool
    loop), and a rule without it only one whose last turn does not. With no
    match the "default" answer is used, or the server's echo when there is no
    default.
    """

    def __init__(self, rules: list[dict[str, Any]], default: dict | None = None):
        # Build every answer now so a bad script fails at load time. A rule with
        # "sequence" answers its items in turn, the last one repeating (a 429,
        # then the retry's success).
        self.rules = [
            (rule.get("match", ""), rule.get("model"), bool(rule.get("after_tools")),
             [answer_from_spec(item) for item in rule["sequence"]] if "sequence" in rule else [answer_from_spec(rule)])
            for rule in rules
        ]
        self.default = answer_from_spec(default) if default else None
        self._served: dict[int, int] = {}
        self._lock = threading.Lock()

    def __call__(self, request: ReceivedRequest) -> Answer | None:
        text = request.last_user_text()
        after_tools = request.after_tools()
        for index, (match, model, wants_tools, answers) in enumerate(self.rules):
            if model is not None and _strip_models(model) != request.model:
                continue
            if wants_tools != after_tools:
                continue
            if match in text:
                with self._lock:
                    served = self._served.get(index, 0)
                    self._served[index] = served + 1
                return answers[min(served, len(answers) - 1)]
        return self.default


def _strip_models(model: str) -> str:
    return model.removeprefix("models/")


_SCRIPT_KEYS = {"rules", "default", "chunk_delay", "valid_keys", "models"}


def load_script_data(path_or_dict: str | Path | dict) -> dict[str, Any]:
    if isinstance(path_or_dict, dict):
        data = path_or_dict
    else:
        data = json.loads(Path(path_or_dict).read_text(encoding="utf-8"))
    unknown = set(data) - _SCRIPT_KEYS
    if unknown:
        raise ValueError(f"unknown script keys: {sorted(unknown)}")
    return data


# ---------------------------------------------------------------------------
# HTTP plumbing
# ---------------------------------------------------------------------------


class _ClientGone(Exception):
    """The client closed the connection, or the server is stopping."""


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True  # a hung handler must not block interpreter exit
    allow_reuse_address = True
    # socketserver's default backlog of 5 drops the connects of a batch's burst, and
    # the kernel retries them a second later: requests would arrive out of time.
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], fake: FakeGemini):
        self.fake = fake
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind does a reverse DNS lookup (getfqdn), which
        # can stall without a network; we do not need the name.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        """Cut kept-alive connections so stop() really stops serving."""
        with self._connections_lock:
            connections = list(self._connections)
        for conn in connections:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive and chunked streaming
    server_version = "FakeGemini/1.0"
    sys_version = ""
    server: _HTTPServer

    def setup(self) -> None:
        super().setup()
        # Small SSE writes must leave at once, not wait for Nagle/delayed ACK.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def date_time_string(self, timestamp: float | None = None) -> str:
        """The Date header from the server's clock, which advance() moves, as a real
        server's Date agrees with the expireTime it writes."""
        if timestamp is not None:
            return super().date_time_string(timestamp)
        from email.utils import format_datetime

        return format_datetime(self.server.fake.now(), usegmt=True)

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.fake.verbose:
            sys.stderr.write("fake_gemini: " + (format % args) + "\n")

    def do_GET(self) -> None:
        self._handle()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_GET

    def _handle(self) -> None:
        fake = self.server.fake
        request = self._read_request()
        fake._record(request)
        self._headers_sent = False
        # Per request: a kept-alive connection reuses this handler.
        self.sse_request = request.stream and request.query.get("alt") == "sse"
        self.extra_headers: dict[str, str] = {}
        try:
            fake._serve(request, self)
        except (_ClientGone, BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except Exception as exc:  # noqa: BLE001 - a responder's bug becomes a 500
            fake.errors.append(exc)
            traceback.print_exc(file=sys.stderr)
            if self._headers_sent:
                self.close_connection = True
            else:
                err = Error(500, "INTERNAL", f"fake_gemini: {exc!r}")
                self.send_json(err.code, err.body())

    def _read_request(self) -> ReceivedRequest:
        split = urlsplit(self.path)
        path = unquote(split.path)
        query = dict(parse_qsl(split.query, keep_blank_values=True))
        headers = {k.lower(): v for k, v in self.headers.items()}
        raw = self._read_body(headers)
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        version = model = action = file = batch = project = location = cache = store = document = None
        vertex = False
        route = _ROUTE.match(path)
        files_route = _FILES_ROUTE.match(path)
        download_route = _DOWNLOAD_ROUTE.match(path)
        batches_route = _BATCHES_ROUTE.match(path)
        caches_route = _CACHES_ROUTE.match(path)
        stores_route = _STORES_ROUTE.match(path)
        vertex_route = _VERTEX_ROUTE.match(path)
        if route:
            version, model, action = route.group("version", "model", "action")
            if action is None:
                action = "get" if model else "list"
        elif files_route:
            version = files_route.group("version")
            file, action = _file_action(self.command, files_route.group("upload") is not None,
                                        files_route.group("file"), query)
        elif download_route:
            version = download_route.group("version")
            file = f"files/{download_route.group('file')}"
            action = "downloadFile" if self.command == "GET" else None
        elif batches_route:
            version = batches_route.group("version")
            batch, action = _batch_action(self.command, batches_route.group("batch"), batches_route.group("verb"))
        elif caches_route:
            version = caches_route.group("version")
            cache, action = _cache_action(self.command, caches_route.group("cache"))
        elif stores_route:
            version = stores_route.group("version")
            store, document, action = _store_action(self.command, stores_route, query)
        elif vertex_route:
            vertex = True
            version, model, action = vertex_route.group("version", "model", "action")
            project, location = vertex_route.group("project", "location")
        else:
            parts = path.strip("/").split("/")
            version = parts[0] if parts and parts[0] in API_VERSIONS else None
        return ReceivedRequest(
            method=self.command,
            path=path,
            version=version,
            model=model,
            action=action,
            query=query,
            headers=headers,
            body=body,
            raw_body=raw,
            file=file,
            batch=batch,
            vertex=vertex,
            project=project,
            location=location,
            cache=cache,
            store=store,
            document=document,
        )

    def _read_body(self, headers: dict[str, str]) -> bytes:
        if headers.get("transfer-encoding", "").lower() == "chunked":
            data = bytearray()
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return bytes(data)
                data += self.rfile.read(size)
                self.rfile.readline()
        length = int(headers.get("content-length") or 0)
        return self.rfile.read(length) if length else b""

    # -- writing -----------------------------------------------------------

    def send_json(self, code: int, obj: Any, headers: dict[str, str] | None = None) -> None:
        """A whole JSON answer, pretty-printed as Google's servers send it. An error to
        a ``?alt=sse`` request keeps Content-Type text/event-stream, with a plain JSON
        body (no ``data:`` framing), as the real API answers it."""
        content_type = "application/json; charset=UTF-8"
        if code >= 400 and self.sse_request:
            content_type = "text/event-stream"
        self.send_bytes(code, wire_json(obj) + b"\n", content_type, headers)

    def send_bytes(self, code: int, data: bytes, content_type: str, headers: dict[str, str] | None = None) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for name, value in {**self.extra_headers, **(headers or {})}.items():
            self.send_header(name, value)
        self.end_headers()
        self._headers_sent = True
        self.wfile.write(data)

    def send_raw(self, raw: RawResponse) -> None:
        """A canned response, its body byte for byte; framing is this server's own."""
        self.send_response(raw.status)
        for name, value in raw.headers:
            if name.lower() not in _FRAMING_HEADERS:
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(raw.body)))
        self.end_headers()
        self._headers_sent = True
        self.wfile.write(raw.body)

    def start_sse(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Content-Disposition", "attachment")
        self.send_header("Cache-Control", "no-cache")
        for name, value in self.extra_headers.items():
            self.send_header(name, value)
        # Chunked framing lets each event leave as soon as it is written
        # and keeps the connection reusable afterwards.
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self._headers_sent = True

    def send_event(self, obj: Any) -> None:
        payload = b"data: " + wire_json(obj, pretty=False) + b"\r\n\r\n"
        # One write per event: chunk header, payload, chunk trailer. wfile
        # is unbuffered, so this is one sendall and the client sees it now.
        self.wfile.write(b"%x\r\n%s\r\n" % (len(payload), payload))

    def end_sse(self) -> None:
        self.wfile.write(b"0\r\n\r\n")


# ---------------------------------------------------------------------------
# The server
# ---------------------------------------------------------------------------


class FakeGemini:
    """A fake Gemini REST server for the real SDK. See the module docstring."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, verbose: bool = False,
                 implicit_cache: bool = False):
        self.host = host
        self.port = port
        self.verbose = verbose
        self._implicit_cache_default = implicit_cache
        self._lock = threading.Lock()
        self._queue: collections.deque[Answer] = collections.deque()
        self._raw: collections.deque[RawResponse] = collections.deque()
        self._stopping = threading.Event()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.requests: list[ReceivedRequest] = []
        self.errors: list[BaseException] = []  # exceptions raised while serving
        self.reset()

    # -- lifecycle ---------------------------------------------------------

    def start(self) -> FakeGemini:
        if self._httpd is not None:
            raise RuntimeError("FakeGemini already started")
        self._stopping.clear()
        self._httpd = _HTTPServer((self.host, self.port), self)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="fake-gemini",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        self._stopping.set()  # wakes handlers sleeping in hang/delay
        httpd.shutdown()
        httpd.close_connections()
        httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        if self._httpd is None:
            raise RuntimeError("FakeGemini is not started")
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    # -- configuration -----------------------------------------------------

    def reset(self) -> None:
        """Forget queued answers, the log, the responder; restore defaults."""
        with self._lock:
            self._queue.clear()
            self._raw.clear()
            self.requests.clear()
            self.errors.clear()
            self._response_count = 0
            self._file_count = 0
            self._upload_count = 0
            self._upload_sessions: dict[str, dict[str, Any]] = {}
            self.files: dict[str, dict[str, Any]] = {}  # "files/{id}" -> {"meta": File JSON, "data": bytes}
        self.responder: Responder | None = None
        self.models: list[dict[str, Any]] | None = copy.deepcopy(DEFAULT_MODELS)
        self.accept_model_prefixes: tuple[str, ...] = DEFAULT_ACCEPT_PREFIXES
        self.valid_keys: set[str] | None = None
        self.chunk_delay: float = 0.0
        # Files API: an upload is PROCESSING until this many files.get calls
        # have been made for it (the Nth answers ACTIVE; 0 = ACTIVE at once);
        # with file_fail it ends FAILED instead. Both are read at upload time.
        self.file_processing_polls: int = 1
        self.file_fail: bool = False
        # Batch API: jobs by name ("batches/{id}" -> {"op": the Operation JSON,
        # "requests": [{"key"|"metadata", "request"}] as received, ...}). A job is
        # PENDING when created, RUNNING on each GET before the `batch_polls`-th,
        # and finished on that one (read at creation; 0 and 1 both finish on the
        # first GET). Each item is answered like a generateContent call (queue,
        # responder, echo; the rate limit does not apply). When a job finishes:
        # `batch_fail` makes it FAILED and `batch_expire` EXPIRED; `batch_partial`
        # = N keeps the answers of the first N items for a job that ends FAILED,
        # EXPIRED or CANCELLED (None: no output at all); `batch_results_hook`
        # (lines -> lines) edits the output lines (file lines or inlined
        # responses) before they are stored, e.g. to reorder or drop some.
        self.batches: dict[str, dict[str, Any]] = {}
        self._batch_count = 0
        self.batch_polls: int = 2
        self.batch_fail: bool = False
        self.batch_expire: bool = False
        self.batch_partial: int | None = None
        self.batch_results_hook: Callable[[list[dict[str, Any]]], list[dict[str, Any]]] | None = None
        # Rate limit, as Gemini enforces it: at most `rate_limit` generate requests
        # in any `rate_window` seconds (None: unlimited); over it, a 429 with a
        # RetryInfo delay until a slot frees. `rate_window` is shortened in tests
        # and benchmarks so that a "minute" passes quickly.
        self.rate_limit: int | None = None
        self.rate_window: float = 60.0
        self.rejected = 0  # 429s answered for the rate limit
        self.rejections: list[float] = []  # when (time.monotonic) each of them arrived
        # When (time.monotonic) a client closed a stream the server was pausing in.
        self.disconnects: list[float] = []
        self._admitted: collections.deque[float] = collections.deque()
        # The server's clock (cache expiry, implicit caching): the wall clock moved on by
        # advance(seconds).
        self._clock_offset = timedelta(0)
        # Explicit context caches by name ("cachedContents/{id}" -> {"meta": the
        # CachedContent JSON, "expire": datetime, "model": bare id, "request": the cached
        # contents/systemInstruction/tools/toolConfig, "tokens": TokenCount}). Expired
        # ones are dropped when next looked at. `cache_min_tokens` replaces the
        # per-model minimum (1024 Flash, 4096 Pro) when set, e.g. 1 to cache a short text.
        self.caches: dict[str, dict[str, Any]] = {}
        self._cache_count = 0
        self.cache_min_tokens: int | None = None
        # Implicit caching (Gemini 2.5+), off unless asked: a generate request whose
        # leading items (system instruction, function declarations, then each part of
        # each content) repeat those of an earlier request to the same model within the last hour
        # reports them as cached when they reach the model's minimum.
        self.implicit_cache: bool = self._implicit_cache_default
        self._prefixes: list[tuple[datetime, str | None, list[str]]] = []
        # The tier every answer reports instead of the one asked for (None: as asked),
        # e.g. "standard" for a priority request downgraded when over its limit.
        self.served_tier: str | None = None
        # File Search: stores by name ("fileSearchStores/{id}" -> the FileSearchStore JSON
        # without its counts, which follow its documents), documents by name (-> {"meta":
        # the Document JSON, "store", "data", "passages": [(text, page number or None)]})
        # and the operations that ingest them by name (-> {"op": the Operation JSON,
        # "document", "store", "polls_left", "fail", "type"}). An operation is done on its
        # `store_polls`-th GET (read at upload time; 0: done in the upload's own answer),
        # its document then STATE_ACTIVE; `store_fail_next` makes the next upload or import
        # end with an error and its document STATE_FAILED, then clears itself.
        self.stores: dict[str, dict[str, Any]] = {}
        self.documents: dict[str, dict[str, Any]] = {}
        self.operations: dict[str, dict[str, Any]] = {}
        self._store_uploads: dict[str, dict[str, Any]] = {}
        self._store_count = 0
        self._document_count = 0
        self.store_polls: int = 1
        self.store_fail_next: bool = False

    def queue(self, *answers: Answer | str) -> FakeGemini:
        """Queue answers (FIFO) for the next generate/stream calls; a str is Reply(text=...)."""
        with self._lock:
            for answer in answers:
                self._queue.append(_as_answer(answer))
        return self

    def queue_raw(
        self,
        status: int,
        headers: dict[str, str | list[str]] | list[tuple[str, str]] | None,
        body: bytes | str,
        actions: tuple[str, ...] = RAW_ACTIONS,
    ) -> FakeGemini:
        """Queue a canned HTTP response (FIFO), served byte for byte to the next request
        whose action is in `actions` (default: generate, stream, countTokens), whatever
        its path, API version, key or model: no check runs and no answer is built.
        `headers` as recorded (a list value repeats the header); Content-Length,
        Transfer-Encoding, Content-Encoding and Connection are the server's own."""
        pairs: list[tuple[str, str]] = []
        for name, value in (headers.items() if isinstance(headers, dict) else headers or []):
            pairs.extend((name, str(v)) for v in (value if isinstance(value, list) else [value]))
        data = body.encode("utf-8") if isinstance(body, str) else bytes(body)
        with self._lock:
            self._raw.append(RawResponse(status, pairs, data, tuple(actions)))
        return self

    def _take_raw(self, request: ReceivedRequest) -> RawResponse | None:
        with self._lock:
            if self._raw and request.action in self._raw[0].actions:
                return self._raw.popleft()
        return None

    @property
    def pending(self) -> int:
        """Number of queued answers not yet used (raw responses included)."""
        return len(self._queue) + len(self._raw)

    @property
    def last(self) -> ReceivedRequest:
        if not self.requests:
            raise IndexError("FakeGemini has received no requests")
        return self.requests[-1]

    def now(self) -> datetime:
        """The server's clock: UTC now, moved on by every advance()."""
        return datetime.now(UTC) + self._clock_offset

    def advance(self, seconds: float) -> FakeGemini:
        """Move the server's clock on (caches expire, implicit prefixes age); reset() undoes it."""
        with self._lock:
            self._clock_offset += timedelta(seconds=seconds)
        return self

    def load_script(self, path_or_dict: str | Path | dict) -> FakeGemini:
        """Apply a script (rules become the responder). reset() undoes it."""
        data = load_script_data(path_or_dict)
        self.responder = ScriptResponder(data.get("rules", []), data.get("default"))
        if "chunk_delay" in data:
            self.chunk_delay = float(data["chunk_delay"])
        if "valid_keys" in data:
            keys = data["valid_keys"]
            self.valid_keys = None if keys is None else set(keys)
        if "models" in data:
            self.models = data["models"]
        return self

    @classmethod
    def from_script(cls, path_or_dict: str | Path | dict, **kwargs: Any) -> FakeGemini:
        """A new (not started) server answering by the script's rules."""
        return cls(**kwargs).load_script(path_or_dict)

    # -- serving (runs on handler threads) ---------------------------------

    def _record(self, request: ReceivedRequest) -> None:
        with self._lock:
            self.requests.append(request)

    def _next_response_id(self) -> str:
        with self._lock:
            self._response_count += 1
            return f"resp-{self._response_count}"

    def _sleep(self, seconds: float | None) -> None:
        """Sleep, but give up at once when the server stops."""
        if seconds and self._stopping.wait(seconds):
            raise _ClientGone()

    def _find_model(self, model_id: str) -> dict[str, Any] | None:
        for model in self.models or []:
            if _model_id(model) == model_id:
                return model
        return None

    def _model_error(self, request: ReceivedRequest, method: str | None = None, model_id: str | None = None,
                     listing: str = "ListModels") -> Error | None:
        """404 unless the model may serve this action (or `method`)."""
        model_id = request.model or "" if model_id is None else model_id
        if method is None:
            method = "generateContent" if request.action in GENERATE_ACTIONS else str(request.action)
        listed = self._find_model(model_id)
        if listed is not None:
            methods = listed.get("supportedGenerationMethods")
            if methods is None or method in methods:
                return None
        elif self.models is None or model_id.startswith(tuple(self.accept_model_prefixes)):
            return None
        return Error.not_found(model_id, request.version or "v1", method, listing)

    def _key_error(self, request: ReceivedRequest) -> Error | None:
        if not request.api_key and "authorization" not in request.headers:
            return Error.unregistered()  # no identity at all: 403, not the bad-key 400
        if self.valid_keys is None or request.api_key in self.valid_keys:
            return None
        return Error.invalid_key()

    def _over_rate_limit(self, request: ReceivedRequest) -> Error | None:
        if self.rate_limit is None:
            return None
        now = time.monotonic()
        with self._lock:
            while self._admitted and now - self._admitted[0] >= self.rate_window:
                self._admitted.popleft()
            if len(self._admitted) < self.rate_limit:
                self._admitted.append(now)
                return None
            self.rejected += 1
            self.rejections.append(now)
            wait = self.rate_window - (now - self._admitted[0])
        return Error.quota(retry_delay=f"{max(wait, 0.001):.9f}s", limit=self.rate_limit,
                           model=request.model or "gemini-2.5-flash")

    def _next_answer(self, request: ReceivedRequest) -> Answer:
        limited = self._over_rate_limit(request)
        if limited is not None:
            return limited
        return self._scripted_answer(request)

    def _scripted_answer(self, request: ReceivedRequest) -> Answer:
        """The queue's next answer, else the responder's, else the echo."""
        with self._lock:
            if self._queue:
                return self._queue.popleft()
        responder = self.responder
        if responder is not None:
            answer = responder(request)
            if answer is not None:
                return _as_answer(answer)
        return echo_answer(request)

    def _serve(self, request: ReceivedRequest, handler: _Handler) -> None:
        action = request.action
        raw = self._take_raw(request)
        if raw is not None:
            handler.send_raw(raw)
            return
        if action in (*GENERATE_ACTIONS, "countTokens"):
            handler.extra_headers["X-Gemini-Service-Tier"] = SERVICE_TIER
        if action in STORE_ACTIONS or (action == "uploadChunk" and request.store is not None):
            self._serve_stores(request, handler)
            return
        if action in FILE_ACTIONS:
            self._serve_files(request, handler)
            return
        if action in BATCH_ACTIONS:
            self._serve_batches(request, handler)
            return
        if action in CACHE_ACTIONS:
            self._serve_caches(request, handler)
            return
        known = (request.method == "GET" and action in ("list", "get") and not request.vertex) or (
            request.method == "POST" and request.model and action in (*GENERATE_ACTIONS, "countTokens",
                                                                      "batchEmbedContents")
        )
        if request.version is None or not known:
            message = f"The requested URL {request.path} was not found on this server."
            handler.send_json(404, error_body(404, "NOT_FOUND", message))
            return
        problem = self._key_error(request)
        if problem is None and request.method == "POST" and request.body is None:
            problem = Error(400, "INVALID_ARGUMENT", "Invalid JSON payload received.")
        if problem is None and action not in ("list", "get"):
            problem = self._model_error(request, "embedContent" if action == "batchEmbedContents" else None)
        if problem is not None:
            handler.send_json(problem.code, problem.body())
        elif action == "list":
            self._serve_list(request, handler)
        elif action == "get":
            self._serve_get(request, handler)
        elif action == "countTokens":
            self._serve_count(request, handler)
        elif action == "batchEmbedContents":
            self._serve_embed(request, handler)
        else:
            problem = self._prepare_generate(request, handler)
            if problem is None:
                problem = self._file_search(request)
            if problem is not None:
                handler.send_json(problem.code, problem.body())
            else:
                answer = self._next_answer(request)
                if request.retrieved and isinstance(answer, Reply):
                    answer = with_retrieval(answer, request.retrieved)
                self._serve_generate(request, handler, answer)

    # -- embeddings -----------------------------------------------------------------

    def _serve_embed(self, request: ReceivedRequest, handler: _Handler) -> None:
        """batchEmbedContents: one vector per request, made from its text (the same text
        always gives the same vector, of outputDimensionality or EMBEDDING_SIZE values)."""
        items = _get(request.body, "requests") or []
        if len(items) > MAX_EMBED_BATCH:
            message = f"* BatchEmbedContentsRequest.requests: at most {MAX_EMBED_BATCH} requests can be in one batch\n"
            handler.send_json(400, Error(400, "INVALID_ARGUMENT", message).body())
            return
        embeddings = []
        for item in items:
            content = _get(item, "content") or {}
            text = " ".join(str(_get(p, "text") or "") for p in _get(content, "parts") or [])
            if not text.strip():
                handler.send_json(400, Error(400, "INVALID_ARGUMENT", "* BatchEmbedContentsRequest.requests["
                                             f"{len(embeddings)}].content.parts: contents.parts must not be empty.\n"
                                             ).body())
                return
            size = _get(item, "outputDimensionality") or EMBEDDING_SIZE
            embeddings.append({"values": embedding_of(text, int(size), _get(item, "taskType"))})
        handler.send_json(200, {"embeddings": embeddings})

    # -- counting, caches, tiers -----------------------------------------------

    def _resolve_file(self, uri: str) -> tuple[str | None, bytes] | None:
        """(mime type, bytes) of a file uploaded here that a fileData URI points at."""
        match = re.match(re.escape(self.url) + r"/(?:v1|v1beta)/files/([^/?#]+)$", uri)
        with self._lock:
            entry = self.files.get(f"files/{match.group(1)}") if match else None
            return (entry["meta"].get("mimeType"), entry["data"]) if entry else None

    def count(self, body: Any, model: str | None) -> TokenCount:
        """A request body's own prompt tokens (count_prompt with this server's files)."""
        return count_prompt(body, model, self._resolve_file)

    def _tier(self, request: ReceivedRequest, handler: _Handler) -> Error | None:
        """Check serviceTier; set the tier the answer reports (usage and header)."""
        tier = request.service_tier
        if tier is None:
            given = json.dumps(_get(prompt_fields(request.body), "serviceTier"))
            version = "v1beta" if request.version == "v1beta" else "v1"
            # The shape of Google's JSON parse errors for an unknown enum value; the
            # enum's type name is our guess.
            message = (f"Invalid value at 'service_tier' (type.googleapis.com/google.ai.generativelanguage."
                       f"{version}.GenerateContentRequest.ServiceTier), {given}")
            return Error(400, "INVALID_ARGUMENT", message, [{
                "@type": _GOOGLE_RPC + "BadRequest",
                "fieldViolations": [{"field": "service_tier", "description": message}]}])
        request.served_tier = self.served_tier or tier
        handler.extra_headers["X-Gemini-Service-Tier"] = request.served_tier
        return None

    def _use_cache(self, request: ReceivedRequest) -> tuple[Error | None, dict[str, Any] | None]:
        """The live cache a generate (or countTokens) request names, or the error."""
        fields = prompt_fields(request.body)
        name = _get(fields, "cachedContent")
        if name is None:
            return None, None
        if any(_get(fields, key) is not None for key in ("systemInstruction", "tools", "toolConfig")):
            return Error(400, "INVALID_ARGUMENT", (
                "CachedContent can not be used with GenerateContent request setting system_instruction, "
                "tools or tool_config.\n\nProposed fix: move those values to CachedContent from "
                "GenerateContent request.")), None
        name = str(name)
        entry = self._live_cache(name if name.startswith("cachedContents/") else f"cachedContents/{name}")
        if entry is None:
            return _missing_cache(), None
        if entry["model"] != request.model:
            return Error(400, "INVALID_ARGUMENT", (
                f"Model used by GenerateContent request (models/{request.model}) and CachedContent "
                f"(models/{entry['model']}) has to be the same.")), None
        return None, entry

    def _serve_count(self, request: ReceivedRequest, handler: _Handler) -> None:
        """countTokens: contents, or the REST wrapper generateContentRequest (with its
        cachedContent), or Vertex's top-level systemInstruction/tools."""
        problem, entry = self._use_cache(request)
        if problem is not None:
            handler.send_json(problem.code, problem.body())
            return
        own = self.count(request.body, request.model)
        cached = entry["tokens"] if entry is not None else None
        request.cached = entry["request"] if entry is not None else None
        request.tokens = PromptTokens(own + cached if cached else own, cached)
        answer: dict[str, Any] = {"totalTokens": request.tokens.prompt.total}
        if cached is not None:
            answer["cachedContentTokenCount"] = cached.total
        answer["promptTokensDetails"] = request.tokens.prompt.details()
        if cached is not None:
            answer["cacheTokensDetails"] = cached.details()
        handler.send_json(200, answer)

    def _prepare_generate(self, request: ReceivedRequest, handler: _Handler) -> Error | None:
        """Check a generate request (tier, cache, files, signatures) and count its prompt."""
        problem = self._tier(request, handler)
        entry = None
        if problem is None:
            problem, entry = self._use_cache(request)
        if problem is None:
            request.cached = entry["request"] if entry is not None else None
            problem = self._file_data_error(request)
        if problem is None:
            problem = _missing_signature(request)
        if problem is not None:
            request.cached = None
            return problem
        own = self.count(request.body, request.model)
        if entry is not None:
            request.tokens = PromptTokens(entry["tokens"] + own, entry["tokens"])
        else:
            request.tokens = PromptTokens(own, self._implicit_hit(request))
        return None

    def _implicit_hit(self, request: ReceivedRequest) -> TokenCount | None:
        """With implicit_cache on: the tokens of the longest run of leading prompt items
        that an earlier request to the same model sent within the window (None below the
        model's minimum); this request's items are remembered for later ones."""
        if not self.implicit_cache or not implicit_caching(request.model):
            return None
        units = prompt_units(request.body, request.model, self._resolve_file)
        prints = [fingerprint for fingerprint, _ in units]
        now = self.now()
        best = 0
        with self._lock:
            self._prefixes = [p for p in self._prefixes if now - p[0] < IMPLICIT_CACHE_WINDOW]
            for _when, model, earlier in self._prefixes:
                if model != request.model:
                    continue
                same = 0
                while same < min(len(earlier), len(prints)) and earlier[same] == prints[same]:
                    same += 1
                best = max(best, same)
            self._prefixes.append((now, request.model, prints))
        cached = TokenCount()
        for _fingerprint, tokens in units[:best]:
            cached += tokens
        minimum = self.cache_min_tokens if self.cache_min_tokens is not None else min_cache_tokens(request.model)
        return cached if best and cached.total >= max(1, minimum) else None

    # -- cachedContents API ------------------------------------------------------

    def _live_cache(self, name: str) -> dict[str, Any] | None:
        """The cache of that name unless it expired (an expired one is dropped)."""
        with self._lock:
            entry = self.caches.get(name)
            if entry is not None and self.now() >= entry["expire"]:
                del self.caches[name]
                entry = None
            return entry

    def _serve_caches(self, request: ReceivedRequest, handler: _Handler) -> None:
        problem = self._key_error(request)
        if problem is None and request.action in ("createCachedContent", "updateCachedContent") and not isinstance(
                request.body, dict):
            problem = Error(400, "INVALID_ARGUMENT", "Invalid JSON payload received.")
        if problem is not None:
            handler.send_json(problem.code, problem.body())
            return
        serve = {
            "createCachedContent": self._create_cache,
            "getCachedContent": self._get_cache,
            "listCachedContents": self._list_caches,
            "updateCachedContent": self._update_cache,
            "deleteCachedContent": self._delete_cache,
        }[str(request.action)]
        serve(request, handler)

    def _expiry(self, ttl: Any, expire_time: Any, default: timedelta | None) -> datetime | Error:
        """The expiry a create/update asks for: ttl ("300s") or expireTime (RFC 3339),
        not both; `default` when neither is given (None: one is required). The messages of
        these 400s are our guesses."""
        if ttl is not None and expire_time is not None:
            return Error(400, "INVALID_ARGUMENT", "Only one of ttl or expire_time can be set.")
        now = self.now()
        if ttl is not None:
            match = re.fullmatch(r"(-?\d+(?:\.\d{1,9})?)s", str(ttl).strip())
            if match is None:
                return Error(400, "INVALID_ARGUMENT", (
                    f"Invalid value at 'cached_content.ttl' (type.googleapis.com/google.protobuf.Duration), "
                    f"{json.dumps(ttl)}"))
            expire = now + timedelta(seconds=float(match.group(1)))
        elif expire_time is not None:
            try:
                expire = datetime.fromisoformat(str(expire_time).replace("Z", "+00:00"))
            except ValueError:
                expire = None
            if expire is None or expire.tzinfo is None:
                return Error(400, "INVALID_ARGUMENT", (
                    f"Invalid value at 'cached_content.expire_time' (type.googleapis.com/google.protobuf."
                    f"Timestamp), {json.dumps(expire_time)}"))
        elif default is not None:
            expire = now + default
        else:
            return Error(400, "INVALID_ARGUMENT", "An update of a CachedContent must set ttl or expire_time.")
        if expire <= now:
            return Error(400, "INVALID_ARGUMENT", "The expiration time of a CachedContent must be in the future.")
        return expire

    def _create_cache(self, request: ReceivedRequest, handler: _Handler) -> None:
        body = request.body
        model = _get(body, "model")
        bare = _bare(model) if isinstance(model, str) else ""
        problem: Error | None = None
        if not bare:
            problem = Error(400, "INVALID_ARGUMENT", "CachedContent.model is required.")  # wording guessed
        if problem is None:
            # Real answers name the newer ListModels method here.
            problem = self._model_error(request, "createCachedContent", bare, "ModelService.ListModels")
        expire = self._expiry(_get(body, "ttl"), _get(body, "expireTime"), DEFAULT_CACHE_TTL)
        if problem is None and isinstance(expire, Error):
            problem = expire
        stored = {key: copy.deepcopy(_get(body, key)) for key in ("contents", "systemInstruction", "tools",
                                                                   "toolConfig") if _get(body, key) is not None}
        if problem is None:
            problem = self._files_error(stored.get("contents"))
        tokens = self.count(stored, bare)
        minimum = self.cache_min_tokens if self.cache_min_tokens is not None else min_cache_tokens(bare)
        if problem is None and tokens.total < minimum:
            problem = Error(400, "INVALID_ARGUMENT", (
                f"Cached content is too small. total_token_count={tokens.total}, min_total_token_count={minimum}"))
        if problem is not None or isinstance(expire, Error):
            problem = problem or Error(500, "INTERNAL", "no expiry")
            handler.send_json(problem.code, problem.body())
            return
        now = self.now()
        with self._lock:
            self._cache_count += 1
            name = "cachedContents/" + _resource_id(f"cache/{self._cache_count}")
            meta = {
                "name": name,
                "model": f"models/{bare}",
                "createTime": _timestamp(now),
                "updateTime": _timestamp(now),
                "expireTime": _timestamp_ns(expire, name),
                "displayName": str(_get(body, "displayName") or ""),
                "usageMetadata": {"totalTokenCount": tokens.total},
            }
            self.caches[name] = {"meta": meta, "expire": expire, "model": bare, "request": stored, "tokens": tokens}
            answer = copy.deepcopy(meta)
        handler.send_json(200, answer)

    def _get_cache(self, request: ReceivedRequest, handler: _Handler) -> None:
        entry = self._live_cache(request.cache or "")
        if entry is None:
            err = _missing_cache()
            handler.send_json(err.code, err.body())
        else:
            handler.send_json(200, copy.deepcopy(entry["meta"]))

    def _list_caches(self, request: ReceivedRequest, handler: _Handler) -> None:
        with self._lock:
            names = list(self.caches)
        metas = [copy.deepcopy(entry["meta"]) for entry in map(self._live_cache, names) if entry is not None]
        # Nothing alive answers {} (a real probe after deleting the last cache).
        _send_page(request, handler, "cachedContents", metas, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, omit_empty=True)

    def _update_cache(self, request: ReceivedRequest, handler: _Handler) -> None:
        """PATCH: ttl or expireTime (SDK 3.6.1 sends no updateMask; a given one must name
        only those)."""
        entry = self._live_cache(request.cache or "")
        mask = [m.strip() for m in request.query.get("updateMask", "").split(",") if m.strip()]
        body = request.body
        ttl, expire_time = _get(body, "ttl"), _get(body, "expireTime")
        problem: Error | None = None
        if entry is None:
            problem = _missing_cache()
        elif any(m not in ("ttl", "expireTime", "expire_time") for m in mask):
            problem = Error(400, "INVALID_ARGUMENT", "Only ttl and expire_time of a CachedContent can be updated.")
        if mask:
            ttl = ttl if "ttl" in mask else None
            expire_time = expire_time if {"expireTime", "expire_time"} & set(mask) else None
        expire = self._expiry(ttl, expire_time, None)
        if problem is None and isinstance(expire, Error):
            problem = expire
        if problem is not None or entry is None or isinstance(expire, Error):
            problem = problem or _missing_cache()
            handler.send_json(problem.code, problem.body())
            return
        with self._lock:
            entry["expire"] = expire
            entry["meta"]["updateTime"] = _timestamp(self.now())
            entry["meta"]["expireTime"] = _timestamp_ns(expire, entry["meta"]["name"])
            answer = copy.deepcopy(entry["meta"])
        handler.send_json(200, answer)

    def _delete_cache(self, request: ReceivedRequest, handler: _Handler) -> None:
        name = request.cache or ""
        entry = self._live_cache(name)
        if entry is None:
            err = _missing_cache()
            handler.send_json(err.code, err.body())
            return
        with self._lock:
            self.caches.pop(name, None)
        handler.send_json(200, {})

    # -- Files API -----------------------------------------------------------

    def _serve_files(self, request: ReceivedRequest, handler: _Handler) -> None:
        # An upload session's URL is its own credential: the SDK sends chunks without a key.
        problem = None if request.action == "uploadChunk" else self._key_error(request)
        if problem is not None:
            handler.send_json(problem.code, problem.body(), _upload_status(request, "final"))
            return
        serve = {
            "uploadStart": self._upload_start,
            "uploadChunk": self._upload_chunk,
            "getFile": self._get_file,
            "listFiles": self._list_files,
            "deleteFile": self._delete_file,
            "downloadFile": self._download_file,
        }[str(request.action)]
        serve(request, handler)

    def _upload_start(self, request: ReceivedRequest, handler: _Handler) -> None:
        headers = request.headers
        problem = None
        if headers.get("x-goog-upload-protocol") != "resumable" or request.upload_command != "start":
            problem = "Expected X-Goog-Upload-Protocol: resumable and X-Goog-Upload-Command: start."
        elif not isinstance(request.body, dict) or not isinstance(request.body.get("file", {}), dict):
            problem = 'Invalid JSON payload received: expected {"file": {...}}.'
        if problem:
            handler.send_json(400, error_body(400, "INVALID_ARGUMENT", problem))
            return
        given = dict(request.body.get("file") or {})
        with self._lock:
            self._upload_count += 1
            upload_id = f"upload{self._upload_count:08d}"
            self._upload_sessions[upload_id] = {
                "file": given,
                "size": _int_or_none(headers.get("x-goog-upload-header-content-length")),
                "mime_type": headers.get("x-goog-upload-header-content-type"),
                "data": bytearray(),
                "version": request.version,
            }
        url = f"{self.url}/upload/{request.version}/files?upload_id={upload_id}&upload_protocol=resumable"
        # As the real API: an empty text/plain body, the session in the headers.
        handler.send_bytes(200, b"", "text/plain; charset=utf-8", {
            "X-Goog-Upload-Status": "active",
            "X-Goog-Upload-URL": url,
            "X-Goog-Upload-Control-URL": url,
            "X-Goog-Upload-Chunk-Granularity": "8388608",
        })

    def _upload_chunk(self, request: ReceivedRequest, handler: _Handler) -> None:
        command = {c.strip() for c in (request.upload_command or "").split(",")}
        with self._lock:
            session = self._upload_sessions.get(request.query.get("upload_id", ""))
        if session is None or "upload" not in command:
            message = "Unknown upload session." if session is None else "Expected X-Goog-Upload-Command: upload."
            handler.send_json(400, error_body(400, "INVALID_ARGUMENT", message), {"X-Goog-Upload-Status": "final"})
            return
        offset = _int_or_none(request.headers.get("x-goog-upload-offset"))
        if offset != len(session["data"]):
            message = f"Invalid X-Goog-Upload-Offset {offset}: {len(session['data'])} bytes received so far."
            handler.send_json(400, error_body(400, "INVALID_ARGUMENT", message), {"X-Goog-Upload-Status": "final"})
            return
        session["data"] += request.raw_body
        if "finalize" not in command:
            handler.send_json(200, {}, {"X-Goog-Upload-Status": "active"})
            return
        with self._lock:
            self._upload_sessions.pop(request.query["upload_id"], None)
        data = bytes(session["data"])
        if session["size"] is not None and session["size"] != len(data):
            message = f"Upload size mismatch: declared {session['size']} bytes, received {len(data)}."
            handler.send_json(400, error_body(400, "INVALID_ARGUMENT", message), {"X-Goog-Upload-Status": "final"})
            return
        meta = self._new_file(session, data)
        if meta is None:
            message = f"File {session['file'].get('name')} already exists."
            handler.send_json(409, error_body(409, "ALREADY_EXISTS", message), {"X-Goog-Upload-Status": "final"})
            return
        handler.send_json(200, {"file": meta}, {"X-Goog-Upload-Status": "final"})

    def _new_file(self, session: dict[str, Any], data: bytes) -> dict[str, Any] | None:
        """Store an uploaded file; None when its requested name is taken."""
        given = session["file"]
        now = datetime.now(UTC)
        with self._lock:
            if given.get("name"):
                name = given["name"]
                if name in self.files:
                    return None
            else:
                self._file_count += 1
                name = f"files/file{self._file_count:08d}"
            file_id = name.removeprefix("files/")
            polls = max(0, int(self.file_processing_polls))
            meta: dict[str, Any] = {
                "name": name,
                "displayName": _get(given, "displayName") or "",
                "mimeType": session["mime_type"] or _get(given, "mimeType") or "application/octet-stream",
                "sizeBytes": str(len(data)),
                "createTime": _timestamp(now),
                "updateTime": _timestamp(now),
                "expirationTime": _timestamp(now + FILE_TTL),
                # As the real API: base64 of the hex digest.
                "sha256Hash": base64.b64encode(hashlib.sha256(data).hexdigest().encode()).decode(),
                "uri": f"{self.url}/v1beta/files/{file_id}",
                "state": "PROCESSING",
                "source": "UPLOADED",
            }
            if not meta["displayName"]:
                del meta["displayName"]
            self.files[name] = {"meta": meta, "data": data, "polls_left": polls, "fail": bool(self.file_fail)}
            if polls == 0:
                self._finish_processing(self.files[name])
            return copy.deepcopy(meta)

    @staticmethod
    def _finish_processing(entry: dict[str, Any]) -> None:
        meta = entry["meta"]
        if entry["fail"]:
            meta["state"] = "FAILED"
            meta["error"] = {"code": 400, "message": "The file could not be processed."}
        else:
            meta["state"] = "ACTIVE"
        meta["updateTime"] = _timestamp(datetime.now(UTC))

    def _missing_file(self, name: str) -> Error:
        file_id = name.removeprefix("files/")
        # What the real API answers for a file that is not (or no longer) there.
        return Error.permission(f"You do not have permission to access the File {file_id} or it may not exist.")

    def _get_file(self, request: ReceivedRequest, handler: _Handler) -> None:
        name = request.file or ""
        with self._lock:
            entry = self.files.get(name)
            if entry is not None and entry["meta"]["state"] == "PROCESSING":
                entry["polls_left"] -= 1
                if entry["polls_left"] <= 0:
                    self._finish_processing(entry)
            meta = copy.deepcopy(entry["meta"]) if entry is not None else None
        if meta is None:
            err = self._missing_file(name)
            handler.send_json(err.code, err.body())
        else:
            handler.send_json(200, meta)

    def _list_files(self, request: ReceivedRequest, handler: _Handler) -> None:
        with self._lock:
            files = [copy.deepcopy(entry["meta"]) for entry in self.files.values()]
        _send_page(request, handler, "files", files, 10, 100, omit_empty=True)

    def _delete_file(self, request: ReceivedRequest, handler: _Handler) -> None:
        name = request.file or ""
        with self._lock:
            entry = self.files.pop(name, None)
        if entry is None:
            err = self._missing_file(name)
            handler.send_json(err.code, err.body())
        else:
            handler.send_json(200, {})

    def _download_file(self, request: ReceivedRequest, handler: _Handler) -> None:
        name = request.file or ""
        with self._lock:
            entry = self.files.get(name)
            data = entry["data"] if entry is not None else b""
            generated = entry is not None and entry["meta"].get("source") == "GENERATED"
        if entry is None:
            err = self._missing_file(name)
        elif not generated:
            err = Error(400, "INVALID_ARGUMENT", "Only generated files can be downloaded; uploaded files cannot.")
        else:
            handler.send_bytes(200, data, entry["meta"].get("mimeType") or "application/octet-stream")
            return
        handler.send_json(err.code, err.body())

    # -- File Search -----------------------------------------------------------

    def _serve_stores(self, request: ReceivedRequest, handler: _Handler) -> None:
        uploading = request.action in ("uploadToFileSearchStore", "uploadChunk")
        # Upload answers carry X-Goog-Upload-Status, or the SDK retries the chunk.
        final = {"X-Goog-Upload-Status": "final"} if uploading else {}
        # An upload session's URL is its own credential: the SDK sends the bytes without a key.
        problem = None if request.action == "uploadChunk" else self._key_error(request)
        if problem is None and request.store is not None:
            problem = _store_name_error(request.store, request.document)
        takes_body = request.action in ("createFileSearchStore", "uploadToFileSearchStore", "importFile")
        if problem is None and takes_body and request.raw_body and not isinstance(request.body, dict):
            problem = Error(400, "INVALID_ARGUMENT", "Invalid JSON payload received.")
        if problem is not None:
            handler.send_json(problem.code, problem.body(), final)
            return
        serve = {
            "createFileSearchStore": self._create_store,
            "listFileSearchStores": self._list_stores,
            "getFileSearchStore": self._get_store,
            "deleteFileSearchStore": self._delete_store,
            "uploadToFileSearchStore": self._store_upload_start,
            "uploadChunk": self._store_upload_chunk,
            "importFile": self._import_file,
            "getOperation": self._get_operation,
            "listDocuments": self._list_documents,
            "getDocument": self._get_document,
            "deleteDocument": self._delete_document,
        }[str(request.action)]
        serve(request, handler)

    def _store_json(self, name: str) -> dict[str, Any]:
        """A store as the API answers it, its counts following its documents (int64 as
        strings, zero ones omitted as Google omits defaults). Call with the lock held."""
        meta = self.stores[name]
        docs = [doc for doc in self.documents.values() if doc["store"] == name]
        states = collections.Counter(doc["meta"]["state"] for doc in docs)
        # "The size of raw bytes ingested": only ACTIVE documents count here (guessed).
        size = sum(len(doc["data"]) for doc in docs if doc["meta"]["state"] == "STATE_ACTIVE")
        answer = {key: meta[key] for key in ("name", "displayName", "createTime", "updateTime") if key in meta}
        for key, value in (("activeDocumentsCount", states["STATE_ACTIVE"]),
                           ("pendingDocumentsCount", states["STATE_PENDING"]),
                           ("failedDocumentsCount", states["STATE_FAILED"]), ("sizeBytes", size)):
            if value:
                answer[key] = str(value)
        if "embeddingModel" in meta:
            answer["embeddingModel"] = meta["embeddingModel"]
        return answer

    def _create_store(self, request: ReceivedRequest, handler: _Handler) -> None:
        body = request.body if isinstance(request.body, dict) else {}
        display = _get(body, "displayName")
        model = _get(body, "embeddingModel")
        now = _timestamp(self.now())
        with self._lock:
            self._store_count += 1
            name = "fileSearchStores/" + _derived_id(display, f"store/{self._store_count}", dashes=True)
            # The embedding model is echoed only when one was asked for (guessed).
            self.stores[name] = _pruned({"name": name, "displayName": display or None, "createTime": now,
                                         "updateTime": now, "embeddingModel": model or None})
            answer = self._store_json(name)
        handler.send_json(200, answer)

    def _list_stores(self, request: ReceivedRequest, handler: _Handler) -> None:
        with self._lock:
            stores = [self._store_json(name) for name in self.stores]
        # The REST reference: 10 a page unless asked, at most 20.
        _send_page(request, handler, "fileSearchStores", stores, 10, 20, omit_empty=True)

    def _get_store(self, request: ReceivedRequest, handler: _Handler) -> None:
        name = request.store or ""
        with self._lock:
            answer = self._store_json(name) if name in self.stores else None
        if answer is None:
            err = _missing_store(name)
            handler.send_json(err.code, err.body())
        else:
            handler.send_json(200, answer)

    def _delete_store(self, request: ReceivedRequest, handler: _Handler) -> None:
        name = request.store or ""
        force = _flag(request.query.get("force"))
        with self._lock:
            exists = name in self.stores
            docs = [doc for doc, entry in self.documents.items() if entry["store"] == name]
            if exists and (force or not docs):
                del self.stores[name]
                for doc in docs:
                    del self.documents[doc]
        if not exists:
            err = _missing_store(name)
        elif docs and not force:
            # The status follows the documented force flag; the wording is guessed.
            err = Error(400, "FAILED_PRECONDITION", f"File search store {name} is not empty: it holds {len(docs)} "
                        "document(s). Set force to delete it together with its documents.")
        else:
            handler.send_json(200, {})
            return
        handler.send_json(err.code, err.body())

    def _store_upload_start(self, request: ReceivedRequest, handler: _Handler) -> None:
        final = {"X-Goog-Upload-Status": "final"}
        headers = request.headers
        if headers.get("x-goog-upload-protocol") != "resumable" or request.upload_command != "start":
            err = Error(400, "INVALID_ARGUMENT",
                        "Expected X-Goog-Upload-Protocol: resumable and X-Goog-Upload-Command: start.")
            handler.send_json(err.code, err.body(), final)
            return
        body = request.body if isinstance(request.body, dict) else {}
        mime = _get(body, "mimeType") or headers.get("x-goog-upload-header-content-type")
        size = _int_or_none(headers.get("x-goog-upload-header-content-length"))
        store = request.store or ""
        with self._lock:
            exists = store in self.stores
        problem = _store_file_error(mime, size) if exists else _missing_store(store)
        if problem is not None:
            handler.send_json(problem.code, problem.body(), final)
            return
        with self._lock:
            self._upload_count += 1
            upload_id = f"upload{self._upload_count:08d}"
            self._store_uploads[upload_id] = {"store": store, "body": body, "mime_type": mime, "size": size,
                                              "data": bytearray()}
        url = (f"{self.url}/upload/{request.version}/{store}:uploadToFileSearchStore"
               f"?upload_id={upload_id}&upload_protocol=resumable")
        # As the Files API's start: an empty body, the session in the headers.
        handler.send_bytes(200, b"", "text/plain; charset=utf-8", {
            "X-Goog-Upload-Status": "active",
            "X-Goog-Upload-URL": url,
            "X-Goog-Upload-Control-URL": url,
            "X-Goog-Upload-Chunk-Granularity": "8388608",
        })

    def _store_upload_chunk(self, request: ReceivedRequest, handler: _Handler) -> None:
        final = {"X-Goog-Upload-Status": "final"}
        command = {c.strip() for c in (request.upload_command or "").split(",")}
        upload_id = request.query.get("upload_id", "")
        with self._lock:
            session = self._store_uploads.get(upload_id)
        problem = None
        if session is None or session["store"] != request.store:
            problem = Error(400, "INVALID_ARGUMENT", "Unknown upload session.")
        elif "upload" not in command:
            problem = Error(400, "INVALID_ARGUMENT", "Expected X-Goog-Upload-Command: upload.")
        else:
            offset = _int_or_none(request.headers.get("x-goog-upload-offset"))
            if offset != len(session["data"]):
                problem = Error(400, "INVALID_ARGUMENT", f"Invalid X-Goog-Upload-Offset {offset}: "
                                f"{len(session['data'])} bytes received so far.")
        if problem is None:
            session["data"] += request.raw_body
            # Checked again on the bytes: the declared length may be missing or wrong.
            problem = _store_file_error(session["mime_type"], len(session["data"]))
        if problem is None and "finalize" not in command:
            handler.send_json(200, {}, {"X-Goog-Upload-Status": "active"})
            return
        with self._lock:
            if session is not None and (problem is not None or "finalize" in command):
                self._store_uploads.pop(upload_id, None)
            exists = session is not None and session["store"] in self.stores
        if problem is None and session["size"] is not None and session["size"] != len(session["data"]):
            problem = Error(400, "INVALID_ARGUMENT", f"Upload size mismatch: declared {session['size']} bytes, "
                            f"received {len(session['data'])}.")
        if problem is None and not exists:  # deleted while the bytes were on their way
            problem = _missing_store(session["store"])
        if problem is not None:
            handler.send_json(problem.code, problem.body(), final)
            return
        body = session["body"]
        op = self._add_document(session["store"], _get(body, "displayName"), str(session["mime_type"]),
                                bytes(session["data"]), body, "upload/operations", _UPLOAD_STORE_TYPE)
        handler.send_json(200, op, final)

    def _import_file(self, request: ReceivedRequest, handler: _Handler) -> None:
        """importFile: a file uploaded to this server's Files API becomes a document
        (its bytes, MIME type and display name, else its id: guessed)."""
        body = request.body if isinstance(request.body, dict) else {}
        store = request.store or ""
        file_name = str(_get(body, "fileName") or "")
        with self._lock:
            exists = store in self.stores
            entry = self.files.get(file_name)
            meta = copy.deepcopy(entry["meta"]) if entry is not None else None
            data = entry["data"] if entry is not None else b""
        problem = None
        if not exists:
            problem = _missing_store(store)
        elif not file_name:
            problem = Error(400, "INVALID_ARGUMENT", "file_name is required.")  # wording guessed
        elif meta is None:
            problem = self._missing_file(file_name)
        elif meta["state"] != "ACTIVE":
            file_id = file_name.removeprefix("files/")
            problem = Error(400, "FAILED_PRECONDITION",
                            f"The File {file_id} is not in an ACTIVE state and usage is not allowed.")
        else:
            problem = _store_file_error(meta.get("mimeType"), len(data))
        if problem is not None:
            handler.send_json(problem.code, problem.body())
            return
        display = meta.get("displayName") or file_name.removeprefix("files/")
        op = self._add_document(store, display, str(meta.get("mimeType")), data, body, "operations",
                                _IMPORT_FILE_TYPE)
        handler.send_json(200, op)

    def _add_document(self, store: str, display: Any, mime: str, data: bytes, body: dict[str, Any], kind: str,
                      response_type: str) -> dict[str, Any]:
        """Store a STATE_PENDING document in `store` and the operation that ingests it
        ("{store}/{kind}/{id}"); return the Operation as first answered."""
        custom = _wire_metadata(_get(body, "customMetadata"))
        passages = document_passages(mime, data, _get(body, "chunkingConfig"))
        now = _timestamp(self.now())
        with self._lock:
            self._document_count += 1
            count = self._document_count
            name = f"{store}/documents/" + _derived_id(display, f"document/{count}", dashes=False)
            # Keys in the REST reference's order (Google writes fields in proto order).
            meta = _pruned({"name": name, "displayName": display or None, "customMetadata": custom or None,
                            "updateTime": now, "createTime": now, "state": "STATE_PENDING",
                            "sizeBytes": str(len(data)), "mimeType": mime})
            self.documents[name] = {"meta": meta, "store": store, "data": data, "passages": passages}
            op_name = f"{store}/{kind}/" + _resource_id(f"operation/{count}", 12)
            polls = max(0, int(self.store_polls))
            entry = {"op": {"name": op_name}, "document": name, "store": store, "polls_left": polls,
                     "fail": bool(self.store_fail_next), "type": response_type}
            self.store_fail_next = False
            self.operations[op_name] = entry
            if polls == 0:
                self._finish_operation(entry)
            return copy.deepcopy(entry["op"])

    def _finish_operation(self, entry: dict[str, Any]) -> None:
        """End an ingesting operation: its document ACTIVE, or FAILED with the error on
        the operation. Call with the lock held."""
        op = entry["op"]
        op["done"] = True
        if entry["fail"]:
            op["error"] = {"code": 3, "message": "Document processing failed."}
            state = "STATE_FAILED"
        else:
            op["response"] = {"@type": entry["type"], "parent": entry["store"], "documentName": entry["document"]}
            state = "STATE_ACTIVE"
        doc = self.documents.get(entry["document"])
        if doc is not None:  # not deleted meanwhile
            doc["meta"]["state"] = state
            doc["meta"]["updateTime"] = _timestamp(self.now())

    def _get_operation(self, request: ReceivedRequest, handler: _Handler) -> None:
        name = request.path.split("/", 2)[2]  # "/v1/fileSearchStores/..." -> "fileSearchStores/..."
        with self._lock:
            entry = self.operations.get(name)
            if entry is not None and not entry["op"].get("done"):
                entry["polls_left"] -= 1
                if entry["polls_left"] <= 0:
                    self._finish_operation(entry)
            op = copy.deepcopy(entry["op"]) if entry is not None else None
        if op is None:
            err = _missing_entity(name)
            handler.send_json(err.code, err.body())
        else:
            handler.send_json(200, op)

    def _list_documents(self, request: ReceivedRequest, handler: _Handler) -> None:
        store = request.store or ""
        with self._lock:
            exists = store in self.stores
            docs = [copy.deepcopy(doc["meta"]) for doc in self.documents.values() if doc["store"] == store]
        if not exists:
            err = _missing_store(store)
            handler.send_json(err.code, err.body())
            return
        _send_page(request, handler, "documents", docs, 10, 20, omit_empty=True)

    def _get_document(self, request: ReceivedRequest, handler: _Handler) -> None:
        name = request.document or ""
        with self._lock:
            exists = request.store in self.stores
            doc = self.documents.get(name)
            meta = copy.deepcopy(doc["meta"]) if doc is not None else None
        if meta is not None:
            handler.send_json(200, meta)
            return
        err = _missing_document(name) if exists else _missing_store(request.store or "")
        handler.send_json(err.code, err.body())

    def _delete_document(self, request: ReceivedRequest, handler: _Handler) -> None:
        name = request.document or ""
        force = _flag(request.query.get("force"))
        with self._lock:
            exists = request.store in self.stores
            doc = self.documents.get(name)
            # The REST reference: without force, a document that has chunks is refused.
            chunked = doc is not None and doc["meta"]["state"] == "STATE_ACTIVE" and bool(doc["passages"])
            if doc is not None and (force or not chunked):
                del self.documents[name]
        if doc is None:
            err = _missing_document(name) if exists else _missing_store(request.store or "")
        elif chunked and not force:
            err = Error(400, "FAILED_PRECONDITION", f"Document {name} has chunks. Set force to delete it "
                        "together with its chunks.")  # wording guessed
        else:
            handler.send_json(200, {})
            return
        handler.send_json(err.code, err.body())

    def _file_search(self, request: ReceivedRequest) -> Error | None:
        """Run a generate request's fileSearch tools (Developer API): every store they
        name must exist; request.retrieved becomes the best passages of the stores'
        ACTIVE documents (those its metadata filter keeps) for the last user text: a
        passage scores the distinct words of 3+ letters it shares with it, best first,
        document order among equals, `top_k` at most (5 unless given)."""
        body = request.body if isinstance(request.body, dict) else {}
        tools = _get(body, "tools")
        if not isinstance(tools, list):  # the cache the request uses may hold the tools
            tools = _get(request.cached, "tools")
        searches = [_get(tool, "fileSearch") for tool in tools or [] if isinstance(_get(tool, "fileSearch"), dict)]
        if request.vertex or not searches:
            return None
        query = _search_words(request.last_user_text())
        scored: list[tuple[int, dict[str, Any]]] = []
        top_k = 0
        for search in searches:
            names = _get(search, "fileSearchStoreNames")
            if not isinstance(names, list) or not names:
                return Error(400, "INVALID_ARGUMENT", "file_search_store_names must name at least one "
                             "file search store.")  # wording guessed
            given_k = _get(search, "topK")
            top_k = max(top_k, given_k if isinstance(given_k, int) and given_k > 0 else DEFAULT_FILE_SEARCH_TOP_K)
            metadata_filter = _get(search, "metadataFilter")
            try:
                keep = parse_metadata_filter(str(metadata_filter)) if metadata_filter else None
            except ValueError as exc:
                return Error(400, "INVALID_ARGUMENT", f"Invalid metadata_filter: {exc}")  # wording guessed
            with self._lock:
                missing = next((str(n) for n in names if str(n) not in self.stores), None)
                docs = [(doc["meta"], doc["store"], doc["passages"]) for doc in self.documents.values()
                        if doc["store"] in names and doc["meta"]["state"] == "STATE_ACTIVE"]
            if missing is not None:
                # The SDK's replay test expects "not exist" in the message; the rest is guessed.
                return Error(400, "INVALID_ARGUMENT", f"File search store {missing} does not exist.")
            docs.sort(key=lambda found: names.index(found[1]))  # the stores in the order named
            for meta, store, passages in docs:
                custom = meta.get("customMetadata") or []
                if keep is not None and not keep(custom):
                    continue
                title = meta.get("displayName") or meta["name"].rsplit("/", 1)[1]  # untitled: its id (guessed)
                for text, page in passages:
                    score = len(query & _search_words(text))
                    if score:
                        context = _pruned({"title": title, "text": text, "fileSearchStore": store,
                                           "pageNumber": page, "customMetadata": copy.deepcopy(custom) or None})
                        scored.append((score, context))
        scored.sort(key=lambda item: -item[0])  # stable: document and passage order among equals
        request.retrieved = [context for _score, context in scored[:top_k]]
        return None

    # -- Batch API -----------------------------------------------------------

    def _serve_batches(self, request: ReceivedRequest, handler: _Handler) -> None:
        problem = self._key_error(request)
        if problem is None and (request.vertex or request.version not in API_VERSIONS):
            message = f"The requested URL {request.path} was not found on this server."
            problem = Error(404, "NOT_FOUND", message)
        if problem is not None:
            handler.send_json(problem.code, problem.body())
            return
        if request.action in ("batchGenerateContent", "asyncBatchEmbedContent"):
            if request.method != "POST":
                err = Error(404, "NOT_FOUND", f"The requested URL {request.path} was not found on this server.")
                handler.send_json(err.code, err.body())
                return
            self._create_batch(request, handler)
            return
        if request.action == "listBatches":
            self._list_batches(request, handler)
            return
        name = request.batch or ""
        serve = {"getBatch": self._get_batch, "cancelBatch": self._cancel_batch,
                 "deleteBatch": self._delete_batch}[str(request.action)]
        serve(name, handler)

    def _missing_batch(self, name: str) -> Error:
        # What Google APIs answer for a resource that is not there.
        return Error(404, "NOT_FOUND", f"Requested entity was not found. ({name})")

    def _create_batch(self, request: ReceivedRequest, handler: _Handler) -> None:
        embed = request.action == "asyncBatchEmbedContent"  # an embeddings job (batches.create_embeddings)
        problem = self._model_error(request, "embedContent" if embed else None)
        body = request.body if isinstance(request.body, dict) else None
        batch = _get(body, "batch") if body is not None else None
        config = _get(batch, "inputConfig") if isinstance(batch, dict) else None
        file_name = _get(config, "fileName") or _get(config, "file_name")  # the embeddings job sends snake_case
        inlined = _get(_get(config, "requests"), "requests")
        items: list[dict[str, Any]] = []
        if problem is None and (not isinstance(config, dict) or (file_name is None) == (inlined is None)):
            problem = Error(400, "INVALID_ARGUMENT",
                            "batch.inputConfig must have exactly one of fileName or requests.")
        if problem is None and not _get(batch, "displayName") and not embed:
            # Required by the REST reference (the SDK sends it only when given).
            problem = Error(400, "INVALID_ARGUMENT", "batch.displayName is required.")
        if problem is None and file_name is not None:
            with self._lock:
                entry = self.files.get(str(file_name))
                data = entry["data"] if entry is not None else None
            if data is None:
                problem = self._missing_file(str(file_name))
            else:
                items = _input_lines(data)
        elif problem is None:
            if not isinstance(inlined, list):
                problem = Error(400, "INVALID_ARGUMENT", "batch.inputConfig.requests.requests must be a list.")
            else:
                items = [_inlined_item(item) for item in inlined]
        if problem is not None:
            handler.send_json(problem.code, problem.body())
            return
        now = _timestamp(datetime.now(UTC))
        with self._lock:
            self._batch_count += 1
            name = f"batches/job{self._batch_count:08d}"
            metadata: dict[str, Any] = {
                "@type": _EMBED_BATCH_TYPE if embed else _BATCH_TYPE,
                "model": f"models/{request.model}",
                "displayName": _get(batch, "displayName"),
                "inputConfig": copy.deepcopy(config),
                "createTime": now,
                "updateTime": now,
                "batchStats": {"requestCount": str(len(items)), "pendingRequestCount": str(len(items))},
                "state": "BATCH_STATE_PENDING",
                "name": name,
            }
            self.batches[name] = {
                "op": {"name": name, "metadata": metadata},
                "requests": items,
                "kind": "file" if file_name is not None else "inline",
                "embed": embed,
                "model": request.model,
                "version": request.version,
                "polls": 0,
                "polls_needed": max(1, int(self.batch_polls)),
                "finishing": False,
            }
            op = copy.deepcopy(self.batches[name]["op"])
        handler.send_json(200, op)

    def _get_batch(self, name: str, handler: _Handler) -> None:
        finish = False
        with self._lock:
            job = self.batches.get(name)
            if job is not None and job["op"]["metadata"]["state"] not in BATCH_DONE_STATES and not job["finishing"]:
                job["polls"] += 1
                if job["polls"] >= job["polls_needed"]:
                    job["finishing"] = finish = True
                else:
                    self._set_batch_state(job, "BATCH_STATE_RUNNING")
        if job is None:
            err = self._missing_batch(name)
            handler.send_json(err.code, err.body())
            return
        if finish:
            state = "BATCH_STATE_SUCCEEDED"
            if self.batch_fail:
                state = "BATCH_STATE_FAILED"
            elif self.batch_expire:
                state = "BATCH_STATE_EXPIRED"
            self._finish_batch(name, job, state)
        with self._lock:
            op = copy.deepcopy(job["op"])
        handler.send_json(200, op)

    def _cancel_batch(self, name: str, handler: _Handler) -> None:
        with self._lock:
            job = self.batches.get(name)
            done = job is not None and (job["op"]["metadata"]["state"] in BATCH_DONE_STATES or job["finishing"])
            if job is not None and not done:
                job["finishing"] = True
        if job is None:
            err = self._missing_batch(name)
        elif done:
            err = Error(400, "FAILED_PRECONDITION", f"The batch {name} has already finished.")
        else:
            self._finish_batch(name, job, "BATCH_STATE_CANCELLED")
            handler.send_json(200, {})
            return
        handler.send_json(err.code, err.body())

    def _delete_batch(self, name: str, handler: _Handler) -> None:
        with self._lock:
            job = self.batches.pop(name, None)
        if job is None:
            err = self._missing_batch(name)
            handler.send_json(err.code, err.body())
        else:
            handler.send_json(200, {})

    def _list_batches(self, request: ReceivedRequest, handler: _Handler) -> None:
        with self._lock:
            ops = [copy.deepcopy(job["op"]) for job in self.batches.values()]
        _send_page(request, handler, "operations", ops, 50, 1000, omit_empty=True)

    @staticmethod
    def _set_batch_state(job: dict[str, Any], state: str) -> None:
        metadata = job["op"]["metadata"]
        metadata["state"] = state
        metadata["updateTime"] = _timestamp(datetime.now(UTC))

    def _finish_batch(self, name: str, job: dict[str, Any], state: str) -> None:
        """Answer the job's items (all, or the first `batch_partial` of an unsuccessful
        job), store its output and end it in `state`. Runs outside the lock: the
        answers come from the queue and the responder, which take it."""
        items = job["requests"]
        if state == "BATCH_STATE_SUCCEEDED":
            answered = items
        else:
            answered = items[: max(0, self.batch_partial)] if self.batch_partial is not None else []
        lines = [self._batch_line(job, item) for item in answered]
        failed = sum("error" in line for line in lines)
        if self.batch_results_hook is not None:
            lines = list(self.batch_results_hook(lines))
        output: dict[str, Any] | None = None
        if job["kind"] == "inline" and (lines or state == "BATCH_STATE_SUCCEEDED"):
            key = "inlinedEmbedContentResponses" if job.get("embed") else "inlinedResponses"
            output = {key: {"inlinedResponses": lines}}
        elif job["kind"] == "file" and (lines or state == "BATCH_STATE_SUCCEEDED"):
            data = b"".join(json.dumps(line).encode("utf-8") + b"\n" for line in lines)
            output = {"responsesFile": self._generated_file(name, data)}
        now = _timestamp(datetime.now(UTC))
        with self._lock:
            op = job["op"]
            metadata = op["metadata"]
            metadata["batchStats"] = {
                "requestCount": str(len(items)),
                "successfulRequestCount": str(len(answered) - failed),
                "failedRequestCount": str(failed),
                "pendingRequestCount": str(len(items) - len(answered)),
            }
            if output is not None:
                metadata["output"] = output
                op["response"] = {"@type": _BATCH_OUTPUT_TYPE, **copy.deepcopy(output)}
            if state == "BATCH_STATE_FAILED":
                op["error"] = {"code": 13, "message": "The batch failed: an internal error has occurred."}
            metadata["endTime"] = now
            self._set_batch_state(job, state)
            op["done"] = True
            job["finishing"] = False

    def _batch_line(self, job: dict[str, Any], item: dict[str, Any]) -> dict[str, Any]:
        """One output line: {"key"|"metadata", "response"|"error"}."""
        line: dict[str, Any] = {}
        if job["kind"] == "file":
            line["key"] = item.get("key")
        elif item.get("metadata") is not None:
            line["metadata"] = item["metadata"]
        if "invalid" in item:
            line["error"] = rpc_status(Error(400, "INVALID_ARGUMENT", item["invalid"]))
            return line
        if job.get("embed"):
            return {**line, **self._embed_line(item["request"])}
        version = job["version"]
        model = job["model"]
        inner = ReceivedRequest(
            method="POST", path=f"/{version}/models/{model}:generateContent", version=version, model=model,
            action="generateContent", query={}, headers={}, body=item["request"],
        )
        answer = self._scripted_answer(inner)
        response_id = self._next_response_id()
        if isinstance(answer, Error):
            line["error"] = rpc_status(answer)
        elif isinstance(answer, Blocked):
            line["response"] = blocked_response(answer, inner, response_id)
        else:
            line["response"] = reply_response(answer, inner, response_id)
        return line

    def _embed_line(self, request: dict[str, Any]) -> dict[str, Any]:
        """An embeddings job's answer to one request: {"response": {"embedding"}} or an error."""
        content = _get(request, "content") or {}
        text = " ".join(str(_get(p, "text") or "") for p in _get(content, "parts") or [])
        if not text.strip():
            return {"error": rpc_status(Error(400, "INVALID_ARGUMENT", "contents.parts must not be empty."))}
        size = int(_get(request, "outputDimensionality") or EMBEDDING_SIZE)
        return {"response": {"embedding": {"values": embedding_of(text, size, _get(request, "taskType"))}}}

    def _generated_file(self, batch_name: str, data: bytes) -> str:
        """Store a batch's results file (downloadable, unlike uploads); return its name."""
        now = datetime.now(UTC)
        file_id = "batch-" + batch_name.removeprefix("batches/")
        name = f"files/{file_id}"
        meta = {
            "name": name,
            "mimeType": "application/jsonl",
            "sizeBytes": str(len(data)),
            "createTime": _timestamp(now),
            "updateTime": _timestamp(now),
            "expirationTime": _timestamp(now + FILE_TTL),
            "sha256Hash": base64.b64encode(hashlib.sha256(data).hexdigest().encode()).decode(),
            "uri": f"{self.url}/v1beta/files/{file_id}",
            "downloadUri": f"{self.url}/download/v1beta/files/{file_id}:download?alt=media",
            "state": "ACTIVE",
            "source": "GENERATED",
        }
        with self._lock:
            self.files[name] = {"meta": meta, "data": data, "polls_left": 0, "fail": False}
        return name

    def _file_data_error(self, request: ReceivedRequest) -> Error | None:
        """Check fileData parts that point at this server: the file must exist and be ACTIVE.

        Other URIs (gs://, YouTube, another host) pass unchecked, and so do the parts of
        a cache the request uses (they were checked when it was created).
        """
        return self._uris_error([uri for _mime, uri in request.media(cached=False)])

    def _files_error(self, contents: Any) -> Error | None:
        """_file_data_error for a list of contents (every role): a cache being created."""
        uris = [_get(_get(part, "fileData"), "fileUri") for content in contents or []
                for part in _get(content, "parts") or [] if isinstance(_get(part, "fileData"), dict)]
        return self._uris_error(uris)

    def _uris_error(self, uris: list[Any]) -> Error | None:
        prefix = re.escape(self.url) + r"/(?:v1|v1beta)/files/([^/?#]+)$"
        for uri in uris:
            match = re.match(prefix, uri) if isinstance(uri, str) else None
            if match is None:
                continue
            name = f"files/{match.group(1)}"
            with self._lock:
                entry = self.files.get(name)
                state = entry["meta"]["state"] if entry else None
            if entry is None:
                return self._missing_file(name)
            if state != "ACTIVE":
                return Error(
                    400,
                    "FAILED_PRECONDITION",
                    f"The File {match.group(1)} is not in an ACTIVE state and usage is not allowed.",
                )
        return None

    def _serve_list(self, request: ReceivedRequest, handler: _Handler) -> None:
        _send_page(request, handler, "models", self.models or [], DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)

    def _serve_get(self, request: ReceivedRequest, handler: _Handler) -> None:
        model_id = request.model or ""
        model = self._find_model(model_id)
        if model is None and self.models is None:
            model = synthesized_model(model_id)
        if model is None:
            err = Error.not_found(model_id, request.version or "v1", "get")
            handler.send_json(err.code, err.body())
        else:
            handler.send_json(200, model)

    def _serve_generate(self, request: ReceivedRequest, handler: _Handler, answer: Answer) -> None:
        # Real streaming needs alt=sse; without it the API answers one JSON
        # array holding every chunk.
        sse = request.stream and request.query.get("alt") == "sse"
        array = request.stream and not sse

        if isinstance(answer, Error):
            self._sleep(answer.hang)
            if not (request.stream and answer.after_chunks is not None):
                handler.send_json(answer.code, answer.body())
                return
            version = request.model or ""
            response_id = self._next_response_id()
            events: list[Any] = []
            words = 0
            for text in answer.stream_texts():
                words += count_words(text)  # every chunk carries the usage so far
                usage = usage_metadata(request.prompt_tokens(), words, 0, request.served_tier)
                events.append(text_chunk_event(text, version, response_id, usage))
            self._send_events(handler, events + [answer.body()], self.chunk_delay, array)
            return

        response_id = self._next_response_id()
        if isinstance(answer, Blocked):
            response = blocked_response(answer, request, response_id)
            if request.stream:
                self._send_events(handler, [response], 0, array)
            else:
                handler.send_json(200, response)
            return

        self._sleep(answer.hang)
        if not request.stream:
            handler.send_json(200, reply_response(answer, request, response_id))
            return
        delay = self.chunk_delay if answer.delay is None else answer.delay
        self._send_events(handler, reply_events(answer, request, response_id), delay, array)

    def _send_events(self, handler: _Handler, events: list[Any], delay: float, array: bool) -> None:
        if array:  # streamGenerateContent without alt=sse
            handler.send_bytes(200, json_array_stream(events), "application/json; charset=UTF-8")
            return
        handler.start_sse()
        for i, event in enumerate(events):
            if i:
                self._pause_streaming(handler, delay)
            handler.send_event(event)
        handler.end_sse()

    def _pause_streaming(self, handler: _Handler, seconds: float | None) -> None:
        """Wait between events, watching the connection: a client that closes it (a
        Stop button) is noticed at once and logged in `disconnects`, as a real server
        stops generating for a client that went away."""
        deadline = time.monotonic() + (seconds or 0)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            if self._stopping.is_set():
                raise _ClientGone()
            readable, _, _ = select.select([handler.connection], [], [], min(left, 0.05))
            if readable:
                try:
                    gone = handler.connection.recv(1, socket.MSG_PEEK) == b""
                except OSError:
                    gone = True
                if gone:
                    with self._lock:
                        self.disconnects.append(time.monotonic())
                    raise _ClientGone()


_SKIP_SIGNATURE = "skip_thought_signature_validator"  # the documented opt-out for foreign history


def _missing_signature(request: ReceivedRequest) -> Error | None:
    """Gemini 3 rejects a current turn whose function-call step lost its thoughtSignature
    (the first call of each model step carries one). The current turn starts at the
    last user content that is not only function responses; earlier turns are not checked."""
    if not is_gemini3(request.model):
        return None
    contents = [c for c in request._contents() if isinstance(c, dict)]
    start = 0
    for index, content in enumerate(contents):
        parts = [p for p in _get(content, "parts") or [] if isinstance(p, dict)]
        if _get(content, "role") in (None, "user") and any(_get(p, "functionResponse") is None for p in parts):
            start = index
    for index in range(start, len(contents)):
        content = contents[index]
        calls = [p for p in _get(content, "parts") or [] if isinstance(p, dict) and _get(p, "functionCall")]
        if _get(content, "role") != "model" or not calls or _get(calls[0], "thoughtSignature"):
            continue
        name = _get(_get(calls[0], "functionCall"), "name")
        return Error(400, "INVALID_ARGUMENT", (
            "Function call is missing a thought_signature in functionCall parts. This is required for tools "
            "to work correctly, and missing thought_signature may lead to degraded model performance. "
            f"Additional data, function call `default_api:{name}` , position {index + 1}. Please refer to "
            "https://ai.google.dev/gemini-api/docs/thought-signatures for more details."))
    return None


def _file_action(
    method: str, upload: bool, file_id: str | None, query: dict[str, str]
) -> tuple[str | None, str | None]:
    """(file name, action) of a Files API request; action None for an unknown route."""
    if upload:
        if method != "POST" or file_id:
            return None, None
        return None, "uploadChunk" if "upload_id" in query else "uploadStart"
    if file_id is None:
        return None, "listFiles" if method == "GET" else None
    action = {"GET": "getFile", "DELETE": "deleteFile"}.get(method)
    return f"files/{file_id}", action


def _batch_action(method: str, batch_id: str | None, verb: str | None) -> tuple[str | None, str | None]:
    """(batch name, action) of a Batch API request; action None for an unknown route."""
    if batch_id is None:
        return None, "listBatches" if method == "GET" and verb is None else None
    name = f"batches/{batch_id}"
    if verb is None:
        return name, {"GET": "getBatch", "DELETE": "deleteBatch"}.get(method)
    return name, "cancelBatch" if method == "POST" and verb == "cancel" else None


def _inlined_item(item: Any) -> dict[str, Any]:
    """An inlined request as an item: {"request", "metadata"}, or {"invalid": reason}."""
    metadata = _get(item, "metadata")
    request = _get(item, "request")
    if not isinstance(request, dict):
        return {"metadata": metadata, "invalid": "An inlined request has no request object."}
    return {"request": request, "metadata": metadata}


def _input_lines(data: bytes) -> list[dict[str, Any]]:
    """The items of a batch input file: {"key", "request"} per non-blank line; a line
    that is not one becomes {"key", "invalid": reason} (answered with an error line)."""
    items: list[dict[str, Any]] = []
    for number, raw in enumerate(data.decode("utf-8", errors="replace").splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            line = json.loads(raw)
        except ValueError:
            items.append({"key": None, "invalid": f"Line {number} is not valid JSON."})
            continue
        if not isinstance(line, dict) or not isinstance(line.get("request"), dict):
            key = line.get("key") if isinstance(line, dict) else None
            items.append({"key": key, "invalid": f"Line {number} has no request object."})
            continue
        items.append({"key": line.get("key"), "request": line["request"]})
    return items


def _cache_action(method: str, cache_id: str | None) -> tuple[str | None, str | None]:
    """(cache name, action) of a cachedContents request; action None for an unknown route."""
    if cache_id is None:
        return None, {"POST": "createCachedContent", "GET": "listCachedContents"}.get(method)
    name = f"cachedContents/{cache_id}"
    actions = {"GET": "getCachedContent", "PATCH": "updateCachedContent", "DELETE": "deleteCachedContent"}
    return name, actions.get(method)


def _missing_cache() -> Error:
    """What the real API answers for an expired, deleted or unknown cache, whether a
    generate request uses it or it is fetched (403, never 404)."""
    return Error(403, "PERMISSION_DENIED", "CachedContent not found (or permission denied)")


# ---------------------------------------------------------------------------
# File Search helpers: names, errors, documents' text and passages, filters, grounding
# ---------------------------------------------------------------------------


def _store_action(method: str, route: re.Match[str], query: dict[str, str]) -> tuple[str | None, str | None,
                                                                                     str | None]:
    """(store name, document name, action) of a File Search request; action None for an unknown route."""
    store_id, verb, document_id, operation = route.group("store", "verb", "document", "operation")
    store = f"fileSearchStores/{store_id}" if store_id else None
    if route.group("upload"):
        if method != "POST" or store is None or verb != "uploadToFileSearchStore":
            return store, None, None
        return store, None, "uploadChunk" if "upload_id" in query else "uploadToFileSearchStore"
    if store is None:
        return None, None, {"POST": "createFileSearchStore", "GET": "listFileSearchStores"}.get(method)
    if verb is not None:
        return store, None, "importFile" if method == "POST" and verb == "importFile" else None
    if operation is not None:
        return store, None, "getOperation" if method == "GET" else None
    if route.group("documents"):
        if document_id is None:
            return store, None, "listDocuments" if method == "GET" else None
        document = f"{store}/documents/{document_id}"
        return store, document, {"GET": "getDocument", "DELETE": "deleteDocument"}.get(method)
    return store, None, {"GET": "getFileSearchStore", "DELETE": "deleteFileSearchStore"}.get(method)


_STORE_ID = re.compile(r"[a-z0-9][a-z0-9-]*")


def _store_name_error(store: str, document: str | None) -> Error | None:
    """400 for a name no store or document can have (real ids are lower-case letters,
    digits and dashes): the SDK's replay test of get expects INVALID_ARGUMENT for
    "fileSearchStores/_invalid_file_search_store_name". The wording is guessed."""
    for name in (store, document):
        if name and not _STORE_ID.fullmatch(name.rsplit("/", 1)[1]):
            return Error(400, "INVALID_ARGUMENT", f"Invalid resource name: {name}.")
    return None


def _missing_store(name: str) -> Error:
    """A store that is not there: 403 PERMISSION_DENIED, not 404 (the SDK's replay test
    of file_search_stores.get expects PERMISSION_DENIED for a missing store, as the
    Files API answers for a missing file). The wording is guessed, after the Files API's."""
    store_id = name.removeprefix("fileSearchStores/")
    return Error.permission(f"You do not have permission to access the FileSearchStore {store_id} "
                            "or it may not exist.")


def _missing_document(name: str) -> Error:
    """A document not in its (existing) store: the SDK's replay test of documents.get
    expects "Documents does not exist" in the message; the status and the rest are guessed."""
    return Error(404, "NOT_FOUND", f"Documents does not exist: {name}")


def _missing_entity(name: str) -> Error:
    """What Google APIs answer for a resource that is not there (an unknown operation)."""
    return Error(404, "NOT_FOUND", f"Requested entity was not found. ({name})")


def _flag(value: str | None) -> bool:
    """A boolean query parameter: the SDK writes Python's "True", REST clients "true"."""
    return str(value).lower() in ("true", "1")


def _derived_id(display_name: Any, seed: str, dashes: bool) -> str:
    """A store or document id as Google derives them (ids in the SDK's replay tests): the
    display name in lower case, stores keeping its words apart with dashes
    ("my-file-search-store-l65kcyel9lkz"), documents running them together
    ("asurveyofmodernistpoetrytxt-uvmqjtmkm1h2"); then a dash and 12 characters, random
    there and from `seed` here. Without a name, 12 characters stand in for it
    ("acxjj7m366ln-aw6xyp94icll"). The 40-character cap on the name part is guessed."""
    text = str(display_name or "").lower()
    base = re.sub(r"[^a-z0-9]+", "-" if dashes else "", text).strip("-")[:40].strip("-")
    return f"{base or _resource_id(seed + '/name', 12)}-{_resource_id(seed, 12)}"


def _base_mime(mime: Any) -> str:
    return str(mime or "").split(";", 1)[0].strip().lower()


def _store_file_error(mime: Any, size: int | None) -> Error | None:
    """Why File Search refuses a file, if it does: its MIME type or its size. Both
    messages are guessed."""
    base = _base_mime(mime)
    if not base or base.startswith(UNSUPPORTED_STORE_TYPES):
        return Error(400, "INVALID_ARGUMENT", f"Unsupported MIME type: {mime}")
    limit = MAX_STORE_FILE_BYTES  # read at call time, so a test can lower it
    if size is not None and size > limit:
        return Error(400, "INVALID_ARGUMENT", f"The file is {size} bytes, over the {limit} bytes "
                     f"({limit / (1024 * 1024):g} MB) a file search store document may have.")
    return None


def _wire_metadata(given: Any) -> list[dict[str, Any]]:
    """customMetadata as the API answers it (camelCase; the SDK sends the values snake_case)."""
    entries = []
    for item in given if isinstance(given, list) else []:
        if not isinstance(item, dict):
            continue
        entry: dict[str, Any] = {"key": _get(item, "key")}
        for camel in ("stringValue", "stringListValue", "numericValue"):
            value = _get(item, camel)
            if value is not None:
                entry[camel] = {"values": list(_get(value, "values") or [])} if camel == "stringListValue" else value
        entries.append(entry)
    return entries


def document_passages(mime: str, data: bytes, chunking: Any = None) -> list[tuple[str, int | None]]:
    """A document's passages as File Search here retrieves them: (text, page number for
    a PDF, else None). Text is decoded as UTF-8; a PDF's is the text its pages show
    (pdf_text_pages), or its bytes decoded when it shows none; any other type is decoded
    with undecodable bytes dropped. See split_passages for the cutting."""
    base = _base_mime(mime)
    if base == "application/pdf":
        pages = pdf_text_pages(data)
        texts: list[tuple[str, int | None]] = [(t, i) for i, t in enumerate(pages, start=1)]
        if not any(t.strip() for t in pages):
            texts = [(data.decode("utf-8", errors="ignore"), 1)]
    else:
        texty = base.startswith("text/") or base in _TEXT_MIME_TYPES
        texts = [(data.decode("utf-8", errors="replace" if texty else "ignore"), None)]
    return [(passage, page) for text, page in texts for passage in split_passages(text, chunking)]


def split_passages(text: str, chunking: Any = None) -> list[str]:
    """Passages of a text. With a chunkingConfig's whiteSpaceConfig: windows of
    maxTokensPerChunk words overlapping by maxOverlapTokens (a word stands for a token,
    as in this server's counting). Without: paragraphs (split at blank lines), a long
    one cut into windows of STORE_PASSAGE_WORDS words."""
    space = _get(chunking, "whiteSpaceConfig")
    size = _get(space, "maxTokensPerChunk")
    if isinstance(size, int) and size > 0:
        overlap = _get(space, "maxOverlapTokens")
        step = size - min(overlap if isinstance(overlap, int) and overlap > 0 else 0, size - 1)
        words = text.split()
        return [" ".join(words[at:at + size]) for at in range(0, len(words), step)
                if at == 0 or at + size - step < len(words)]
    passages = []
    for paragraph in re.split(r"\n\s*\n", text):
        words = paragraph.split()
        if len(words) <= STORE_PASSAGE_WORDS:
            if words:
                passages.append(paragraph.strip())
            continue
        passages += [" ".join(words[at:at + STORE_PASSAGE_WORDS])
                     for at in range(0, len(words), STORE_PASSAGE_WORDS)]
    return passages


_PDF_OBJECT = re.compile(rb"(\d+)\s+\d+\s+obj\b(.*?)\bendobj", re.S)
_PDF_PAGE_TYPE = re.compile(rb"/Type\s*/Page(?![A-Za-z])")
_PDF_PAGES_TYPE = re.compile(rb"/Type\s*/Pages\b")
_PDF_REF = re.compile(rb"(\d+)\s+\d+\s+R")
# A literal string (one level of balanced parentheses inside) shown by Tj, ' or ",
# or an array of them shown by TJ.
_PDF_SHOW = re.compile(rb"\(((?:\\.|[^\\()]|\((?:\\.|[^\\()])*\))*)\)\s*(?:Tj|'|\")"
                       rb"|\[((?:\\.|[^\\\]])*)\]\s*TJ", re.S)
_PDF_STRING = re.compile(rb"\(((?:\\.|[^\\()]|\((?:\\.|[^\\()])*\))*)\)", re.S)


def pdf_text_pages(data: bytes) -> list[str]:
    """The text each page of a PDF shows (the strings of its Tj, TJ, ' and " operators),
    in page order: the pages tree's /Kids when it can be followed, else the page objects
    (``/Type /Page``) in file order. Content streams may be FlateDecode'd. No font
    encodings: strings are read as UTF-8, else Latin-1 (UTF-16 with a BOM). [] when
    the file has no page objects."""
    objects = {int(m.group(1)): m.group(2) for m in _PDF_OBJECT.finditer(data)}

    def head(body: bytes) -> bytes:  # the dictionary, not the stream after it
        return body.split(b"stream", 1)[0]

    pages = [number for number, body in objects.items() if _PDF_PAGE_TYPE.search(head(body))]
    ordered: list[int] = []
    roots = [n for n, body in objects.items() if _PDF_PAGES_TYPE.search(head(body))
             and not re.search(rb"/Parent\s", head(body))]

    def walk(number: int, depth: int = 0) -> None:
        body = head(objects.get(number, b""))
        if depth > 32 or number in ordered:
            return
        if _PDF_PAGE_TYPE.search(body):
            ordered.append(number)
            return
        kids = re.search(rb"/Kids\s*\[([^\]]*)\]", body)
        for ref in _PDF_REF.finditer(kids.group(1) if kids else b""):
            walk(int(ref.group(1)), depth + 1)

    for root in roots[:1]:
        walk(root)
    if sorted(ordered) == sorted(pages):
        pages = ordered
    texts = []
    for number in pages:
        contents = re.search(rb"/Contents\s*(\[[^\]]*\]|\d+\s+\d+\s+R)", head(objects[number]))
        streams = [_pdf_stream(objects.get(int(ref.group(1)), b""))
                   for ref in _PDF_REF.finditer(contents.group(1) if contents else b"")]
        texts.append(_pdf_shown_text(b"\n".join(streams)))
    return texts


def _pdf_stream(body: bytes) -> bytes:
    match = re.search(rb"stream\r?\n(.*?)endstream", body, re.S)
    if match is None:
        return b""
    if b"/FlateDecode" in body[:match.start()]:
        try:  # decompressobj stops at the end of the data, ignoring the EOL before endstream
            return zlib.decompressobj().decompress(match.group(1))
        except zlib.error:
            return b""
    return match.group(1)


def _pdf_shown_text(content: bytes) -> str:
    pieces = []
    for match in _PDF_SHOW.finditer(content):
        if match.group(1) is not None:
            pieces.append(_pdf_string(match.group(1)))
        else:
            pieces.append("".join(_pdf_string(s.group(1)) for s in _PDF_STRING.finditer(match.group(2))))
    return " ".join(piece for piece in pieces if piece)


def _pdf_string(raw: bytes) -> str:
    """A PDF literal string's text: escapes resolved (\\n, \\(, \\ddd octal, ...)."""
    escapes = {ord("n"): b"\n", ord("r"): b"\r", ord("t"): b"\t", ord("b"): b"\b", ord("f"): b"\f"}
    out = bytearray()
    at = 0
    while at < len(raw):
        char = raw[at]
        if char != 0x5C or at + 1 >= len(raw):
            out.append(char)
            at += 1
            continue
        after = raw[at + 1]
        if after in escapes:
            out += escapes[after]
            at += 2
        elif 0x30 <= after <= 0x37:
            digits = re.match(rb"[0-7]{1,3}", raw[at + 1:at + 4])
            assert digits is not None
            out.append(int(digits.group(), 8) & 0xFF)
            at += 1 + len(digits.group())
        elif after in (0x0A, 0x0D):  # a line continuation
            at += 3 if raw[at + 1:at + 3] == b"\r\n" else 2
        else:
            out.append(after)
            at += 2
    data = bytes(out)
    if data.startswith(b"\xfe\xff"):
        return data[2:].decode("utf-16-be", errors="ignore")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def _search_words(text: str) -> set[str]:
    """The words File Search matches on here: distinct, lower case, 3+ letters."""
    return set(re.findall(r"[^\W\d_]{3,}", text.lower()))


_FILTER_TOKEN = re.compile(r'\s*(?:(?P<string>"(?:\\.|[^"\\])*")|(?P<op><=|>=|!=|=|<|>|:)|(?P<paren>[()])'
                           r'|(?P<word>[^\s()"=!<>:]+))')


def parse_metadata_filter(text: str) -> Callable[[list[dict[str, Any]]], bool]:
    """A metadata_filter as a test of a document's customMetadata (the wire entries).

    The subset of AIP-160 (the syntax Google's docs name for it) read here: comparisons
    ``key OP value`` with OP one of = != < <= > >= : and value a quoted string, a
    number or a bare word; AND (or a bare space), OR (binding tighter than AND, as in
    AIP-160), NOT or a leading -, parentheses. = and : on a string list mean "holds";
    < <= > >= compare numbers. A document without the key matches no comparison.
    Anything else raises ValueError. How Google reads a filter in detail is guessed.
    """
    tokens: list[tuple[str, str]] = []
    at = 0
    while at < len(text):
        match = _FILTER_TOKEN.match(text, at)
        if match is None or match.end() == at:
            if text[at:].strip():
                raise ValueError(f"cannot read {text[at:]!r}")
            break
        kind = str(match.lastgroup)
        tokens.append((kind, match.group(kind)))
        at = match.end()
    position = 0

    def peek() -> tuple[str, str] | None:
        return tokens[position] if position < len(tokens) else None

    def take() -> tuple[str, str]:
        nonlocal position
        if position >= len(tokens):
            raise ValueError(f"{text!r} ends too soon")
        position += 1
        return tokens[position - 1]

    def sequence() -> Callable[[list[dict[str, Any]]], bool]:
        parts = [disjunction()]
        while (token := peek()) is not None and token != ("paren", ")"):
            if token == ("word", "AND"):
                take()
            parts.append(disjunction())
        return lambda entries: all(part(entries) for part in parts)

    def disjunction() -> Callable[[list[dict[str, Any]]], bool]:
        parts = [negation()]
        while peek() == ("word", "OR"):
            take()
            parts.append(negation())
        return lambda entries: any(part(entries) for part in parts)

    def negation() -> Callable[[list[dict[str, Any]]], bool]:
        token = peek()
        if token == ("word", "NOT"):
            take()
            inner = negation()
            return lambda entries: not inner(entries)
        if token is not None and token[0] == "word" and token[1].startswith("-") and len(token[1]) > 1:
            tokens[position] = ("word", token[1][1:])
            inner = negation()
            return lambda entries: not inner(entries)
        if token == ("paren", "("):
            take()
            inner = sequence()
            if take() != ("paren", ")"):
                raise ValueError(f"unbalanced parentheses in {text!r}")
            return inner
        return comparison()

    def comparison() -> Callable[[list[dict[str, Any]]], bool]:
        kind, key = take()
        if kind != "word":
            raise ValueError(f"expected a key, got {key!r}")
        kind, op = take()
        if kind != "op":
            raise ValueError(f"expected an operator after {key!r}, got {op!r}")
        kind, raw = take()
        if kind not in ("word", "string"):
            raise ValueError(f"expected a value after {key} {op}, got {raw!r}")
        value = json.loads(raw) if kind == "string" else raw
        return lambda entries: _metadata_matches(entries, key, op, value)

    test = sequence()
    if position != len(tokens):
        raise ValueError(f"unexpected {tokens[position][1]!r} in {text!r}")
    return test


def _metadata_matches(entries: list[dict[str, Any]], key: str, op: str, value: str) -> bool:
    for entry in entries:
        if entry.get("key") != key:
            continue
        if "numericValue" in entry:
            try:
                number, given = float(entry["numericValue"]), float(value)
            except ValueError:
                return False
            return {"=": number == given, ":": number == given, "!=": number != given, "<": number < given,
                    "<=": number <= given, ">": number > given, ">=": number >= given}[op]
        if "stringListValue" in entry:
            held = value in (entry["stringListValue"].get("values") or [])
            return held if op in ("=", ":") else (not held if op == "!=" else False)
        text = str(entry.get("stringValue"))
        return text == value if op in ("=", ":") else (text != value if op == "!=" else False)
    return False


def with_retrieval(reply: Reply, retrieved: list[dict[str, Any]]) -> Reply:
    """`reply` with File Search's grounding: the retrieved contexts as groundingChunks
    (after any of Reply.grounding's) and one groundingSupport spanning the whole answer
    text (UTF-8 byte offsets) that points at all of them."""
    grounding = copy.deepcopy(reply.grounding) if reply.grounding else {}
    chunks = grounding.setdefault("groundingChunks", [])
    first = len(chunks)
    chunks.extend({"retrievedContext": copy.deepcopy(context)} for context in retrieved)
    text = "".join(part["text"] for part in reply.merged_parts() if _is_text(part))
    if text:
        grounding.setdefault("groundingSupports", []).append({
            "segment": {"startIndex": 0, "endIndex": len(text.encode("utf-8")), "text": text},
            "groundingChunkIndices": list(range(first, first + len(retrieved))),
        })
    return replace(reply, grounding=grounding)


def _resource_id(seed: str, length: int = 40) -> str:
    """A deterministic id like the real ones: lower-case letters and digits."""
    alphabet = "0123456789abcdefghijklmnopqrstuvwxyz"
    number = int.from_bytes(hashlib.sha256(seed.encode()).digest(), "big")
    chars = []
    for _ in range(length):
        number, digit = divmod(number, len(alphabet))
        chars.append(alphabet[digit])
    return "".join(chars)


def _timestamp_ns(moment: datetime, seed: str) -> str:
    """RFC 3339 with nanoseconds, as real expireTimes are written ("...11.796558493Z")."""
    nanos = int(hashlib.sha256(f"{seed}/{moment.isoformat()}".encode()).hexdigest()[:6], 16) % 1000
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f") + f"{nanos:03d}Z"


def prompt_units(body: Any, model: str | None, resolve: FileResolver | None = None) -> list[tuple[str, TokenCount]]:
    """A prompt's items in order, each (fingerprint, tokens): the system instruction, the
    function declarations, then each part of each content (with its role and place).
    Implicit caching matches leading items: a token-level prefix, to the part."""
    fields = prompt_fields(body)
    level = _resolution_level(_get(_get(fields, "generationConfig"), "mediaResolution"))
    units: list[tuple[str, TokenCount]] = []

    def unit(kind: str, value: Any, tokens: TokenCount) -> None:
        raw = json.dumps([kind, value], sort_keys=True, ensure_ascii=False)
        units.append((hashlib.sha256(raw.encode()).hexdigest(), tokens))

    system = _get(fields, "systemInstruction")
    if system is not None:
        unit("system", system, count_prompt({"systemInstruction": system}, model, resolve))
    tools = _get(fields, "tools")
    if isinstance(tools, list) and tools:
        unit("tools", tools, TokenCount({"TEXT": count_tools(tools)}))
    for content in _get(fields, "contents") or []:
        role = _get(content, "role")
        for index, part in enumerate(_get(content, "parts") or []):
            unit("part", [role, index, part], count_contents([{"parts": [part]}], model, level, resolve))
    return units


def _upload_status(request: ReceivedRequest, status: str) -> dict[str, str]:
    """Upload answers carry X-Goog-Upload-Status, or the SDK retries the chunk."""
    return {"X-Goog-Upload-Status": status} if request.action in ("uploadStart", "uploadChunk") else {}


def _int_or_none(text: str | None) -> int | None:
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


def _timestamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _as_answer(answer: Any) -> Answer:
    if isinstance(answer, str):
        return Reply(text=answer)
    if isinstance(answer, (Reply, Error, Blocked)):
        return answer
    raise TypeError(f"expected Reply, Error, Blocked or str, got {answer!r}")
