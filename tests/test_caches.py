"""Explicit context caching: --cache-create, --cache, %gemini caches / cache-extend /
cache-delete, the Python API, their errors, dry runs, and record/replay.

All through the real SDK over HTTP to tests/fake_gemini, whose cachedContents follow
realwire/i_cached_contents_* (ttl "300s", the cache's tokens in promptTokenCount and
cachedContentTokenCount, a gone cache is 403).
"""

from __future__ import annotations

import json
import re

import pytest

import gemini_magic
from gemini_magic.caches import CacheInfo
from gemini_magic.counting import Count
from tests.conftest import ask, fails
from tests.fake_gemini import Reply

GENERATE = ("generateContent", "streamGenerateContent")
HANDBOOK = "The staff handbook. " + " ".join(f"Rule {i}: be kind to colleague number {i}." for i in range(200))


def actions(server) -> list[str]:
    return [r.action for r in server.requests]


def create(ip, name: str = "handbook", options: str = "", text: str = HANDBOOK) -> CacheInfo:
    ip.run_cell_magic("gemini", f"--cache-create {name} -o _made {options}".strip(), text)
    return ip.user_ns.pop("_made")


def command(ip, line: str) -> None:
    ip.run_line_magic("gemini", line)


def reload_extension(ip) -> None:
    ip.run_line_magic("unload_ext", "gemini_magic")
    ip.run_line_magic("load_ext", "gemini_magic")


@pytest.fixture
def small(server):
    server.cache_min_tokens = 50  # HANDBOOK is over it; a sentence is under


def test_create_caches_the_cells_context_and_asks_nothing(ip, server, small, capsys):
    def rota(day: str) -> str:
        """Who is on call on a day."""
        return "Ana"

    ip.user_ns["rota"] = rota
    info = create(ip, options="-s 'Answer from the handbook only.' --tools rota --ttl 2h")
    assert actions(server) == ["createCachedContent"]  # nothing generated
    body = server.last.body
    assert body["displayName"] == "handbook" and body["ttl"] == "7200s"
    assert body["model"] == "models/gemini-2.5-flash"
    assert body["systemInstruction"]["parts"][0]["text"] == "Answer from the handbook only."
    assert [d["name"] for t in body["tools"] for d in t.get("functionDeclarations", [])] == ["rota"]
    assert HANDBOOK in json.dumps(body["contents"])
    assert info.name == "handbook" and info.resource.startswith("cachedContents/") and info.tokens > 50
    said = capsys.readouterr()
    text = said.out + said.err
    assert f"Cached 'handbook': {info.tokens:,} tokens for gemini-2.5-flash" in text
    assert "(2 h left)" in text and "%%gemini --cache handbook" in text
    assert "an hour at the paid-tier price" in text  # storage, priced (prices.json)


def test_a_cell_with_cache_asks_the_caches_model_with_nothing_of_its_own(ip, server, small, capsys):
    info = create(ip)
    ip.run_line_magic("config", "GeminiMagics.model = 'gemini-2.5-pro'")  # the cache's model still wins
    server.queue(Reply(text="Be kind."))
    assert ask(ip, "What is rule 7?", "--cache handbook --usage") == "Be kind."
    sent = server.last
    assert sent.action in GENERATE and sent.model == "gemini-2.5-flash"
    assert sent.body["cachedContent"] == info.resource
    assert "systemInstruction" not in sent.body and "tools" not in sent.body
    assert json.dumps(sent.body["contents"]).count("Rule 7") == 0  # the context is not sent again
    footer = capsys.readouterr().out
    assert re.search(rf"{info.tokens:,} cached", footer), footer


def test_the_settings_system_instruction_is_left_out_and_said(ip, server, small, capsys):
    create(ip)
    ip.run_line_magic("config", "GeminiMagics.system = 'Be brief.'")
    capsys.readouterr()
    assert ask(ip, "Rule 3?", "--cache handbook").startswith("Echo")
    assert "systemInstruction" not in server.last.body
    said = capsys.readouterr()
    assert "GeminiMagics.system is not sent with --cache" in said.out + said.err


def test_functions_declared_in_the_cache_run_here(ip, server, small):
    ran = []

    def rota(day: str) -> str:
        """Who is on call on a day."""
        ran.append(day)
        return "Ana"

    ip.user_ns["rota"] = rota
    create(ip, options="--tools rota")

    def responder(request):
        if request.after_tools():
            return Reply(text="Ana is on call.")
        return Reply(parts=[{"functionCall": {"name": "rota", "args": {"day": "Monday"}, "id": "c1"}}])

    server.responder = responder
    assert ask(ip, "Who is on call Monday?", "--cache handbook --tools rota") == "Ana is on call."
    assert ran == ["Monday"]
    assert all("tools" not in r.body and "toolConfig" not in r.body for r in server.requests if r.action in GENERATE)


@pytest.mark.parametrize("options, says", [
    ("--cache handbook -s 'Be brief.'", "-s cannot go with --cache"),
    ("--cache handbook --search", "--search cannot go with --cache"),
    ("--cache handbook -m gemini-2.5-pro", "made for gemini-2.5-flash: -m gemini-2.5-pro cannot use it"),
    ("--ttl 2h", "--ttl goes with --cache-create NAME"),
    ("--cache-create other --cache handbook", "--cache-create and --cache cannot go together"),
    ("--cache-create other -c trip", "--cache-create caches a context, not a chat's turn"),
])
def test_what_cannot_go_with_a_cache_is_refused_before_sending(ip, server, small, options, says):
    create(ip)
    before = len(server.requests)
    failure = fails(ip, "Rule 3?", options)
    assert says in str(failure.error)
    assert not [r for r in server.requests[before:] if r.action in (*GENERATE, "createCachedContent")]


def test_caches_lists_name_model_tokens_and_time_left_from_the_servers_clock(ip, server, small, capsys):
    info = create(ip, options="--ttl 1h")
    create(ip, "notes", text=HANDBOOK + " Notes.")
    capsys.readouterr()
    server.advance(600)  # the server's clock: its Date header, and what is left
    command(ip, "caches")
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["name", "model", "tokens", "expires"]
    row = next(line for line in out if line.startswith("handbook"))
    assert "gemini-2.5-flash" in row and f"{info.tokens:,}" in row and "(50 min left)" in row
    assert any(line.startswith("notes") for line in out)


def test_no_caches_says_how_to_make_one(ip, server, capsys):
    command(ip, "caches")
    assert "No context caches alive" in capsys.readouterr().out


def test_extend_keeps_a_cache_longer(ip, server, small, capsys):
    create(ip, options="--ttl 10m")
    capsys.readouterr()
    command(ip, "cache-extend handbook 3h")
    assert server.last.action == "updateCachedContent" and server.last.body == {"ttl": "10800s"}
    assert "Cache 'handbook' kept until" in capsys.readouterr().out
    server.advance(2 * 3600)  # past the first TTL, inside the new one
    assert ask(ip, "Rule 1?", "--cache handbook").startswith("Echo")


def test_a_duration_that_is_none_is_refused_with_an_example(ip, server, small):
    from gemini_magic.magics import CellFailed

    create(ip)
    with pytest.raises(CellFailed, match="cache-extend NAME 2h"):
        command(ip, "cache-extend handbook soon")
    assert fails(ip, HANDBOOK, "--cache-create x --ttl soon").error.message.startswith("--ttl takes a duration")


def test_delete_then_use_says_it_is_gone_and_how_to_make_it_again(ip, server, small, capsys):
    info = create(ip)
    command(ip, "cache-delete handbook")
    assert server.last.action == "deleteCachedContent" and server.last.cache == info.resource
    assert "Deleted cache 'handbook'" in capsys.readouterr().out
    failure = fails(ip, "Rule 1?", "--cache handbook")
    assert failure.error.kind == "cache-gone"
    assert "No context cache is called 'handbook'" in failure.error.message
    assert "%%gemini --cache-create handbook" in failure.error.hint


def test_an_expired_cache_is_named_forgotten_and_looked_for_again(ip, server, small):
    create(ip, options="--ttl 5m")
    server.advance(400)
    failure = fails(ip, "Rule 1?", "--cache handbook")
    assert failure.error.kind == "cache-gone"
    assert failure.error.message == "The context cache 'handbook' is gone: it expired, or was deleted."
    assert "Traceback" not in str(failure.error)
    before = len(server.requests)
    fails(ip, "Rule 1?", "--cache handbook")  # looked for again, not the stale resource sent
    assert [r.action for r in server.requests[before:]] == ["listCachedContents"]


def test_a_new_kernel_finds_the_newest_cache_of_that_name(ip, server, small):
    create(ip)
    server.advance(5)
    newer = create(ip, text=HANDBOOK + " Revised.")
    reload_extension(ip)
    ask(ip, "Rule 2?", "--cache handbook")
    assert "listCachedContents" in actions(server)
    assert server.last.body["cachedContent"] == newer.resource


def test_too_small_a_context_names_both_counts(ip, server):
    failure = fails(ip, "A short note.", "--cache-create tiny")
    error = failure.error
    assert error.kind == "cache"
    assert re.fullmatch(r"The context is too small to cache: \d+ tokens, and gemini-2.5-flash caches 1,024 or "
                        r"more\.", error.message), error.message
    assert "implicit caching" in error.hint


def test_a_model_without_caching_says_so(ip, server):
    failure = fails(ip, HANDBOOK, "--cache-create h -m gemma-3-27b-it")
    assert failure.error.kind == "cache"
    assert failure.error.message == "gemma-3-27b-it cannot cache context (it does not support createCachedContent)."


def test_a_dry_run_with_a_cache_counts_it_at_the_cached_rate(ip, server, small):
    info = create(ip)
    ip.run_cell_magic("gemini", "--dry-run --cache handbook -o _count", "What is rule 9?")
    count: Count = ip.user_ns.pop("_count")
    piece = count.pieces[0]
    assert piece.label == "context cache 'handbook'" and piece.tokens == info.tokens
    assert count.cached == info.tokens and count.total > info.tokens
    fresh = count.total - info.tokens
    # gemini-2.5-flash: $0.30 input, $0.03 cached input per 1M (prices.json)
    assert count.cost == pytest.approx(fresh * 0.30 / 1e6 + info.tokens * 0.03 / 1e6)
    assert not [r for r in server.requests if r.action in GENERATE]


def test_a_batch_asks_each_item_with_the_cache(ip, server, small):
    info = create(ip)
    ip.user_ns["rules"] = ["1", "2", "3"]
    ip.run_cell_magic("gemini", "--over rules --cache handbook -o _out", "Rule {item}?")
    sent = [r for r in server.requests if r.action in GENERATE]
    assert len(sent) == 3 and {r.body["cachedContent"] for r in sent} == {info.resource}


def test_the_python_api_creates_lists_and_asks(ip, server, small):
    info = gemini_magic.create_cache("api", HANDBOOK, system="Only the handbook.", ttl="30m")
    assert server.last.body["ttl"] == "1800s" and server.last.body["systemInstruction"]
    assert [c.name for c in gemini_magic.list_caches()] == ["api"]
    answer = gemini_magic.ask("Rule 4?", cache="api")
    answer.read()
    assert server.last.body["cachedContent"] == info.resource
    assert answer.usage["cached_tokens"] == info.tokens


def test_creating_using_listing_and_deleting_replay_offline(ip, server, small, tmp_path, env, capsys):
    rec = tmp_path / "caches.gemini.json"
    # Recorded as if hours ago: the cache has long expired by this machine's clock, so only
    # the recorded Date can make the replayed listing say what the recorded one said.
    server.advance(-3 * 3600)
    command(ip, f"record {rec}")
    create(ip)
    server.queue(Reply(text="Rule 5 is kindness."))
    ask(ip, "Rule 5?", "--cache handbook")
    capsys.readouterr()
    command(ip, "caches")
    listed = capsys.readouterr().out
    command(ip, "cache-delete handbook")
    command(ip, "live")
    assert "GEMINI_API_KEY" not in rec.read_text() and "test-key" not in rec.read_text()

    server.reset()
    env.delenv("GEMINI_API_KEY")
    reload_extension(ip)
    command(ip, f"replay {rec}")
    again = create(ip)
    assert again.resource.startswith("cachedContents/")
    assert ask(ip, "Rule 5?", "--cache handbook") == "Rule 5 is kindness."
    capsys.readouterr()
    command(ip, "caches")
    assert " left)" in listed
    assert capsys.readouterr().out == listed  # time left from the recorded Date: the same words
    command(ip, "cache-delete handbook")
    assert server.requests == []


@pytest.mark.parametrize("message, says", [
    ("CachedContent can not be used with GenerateContent request setting system_instruction, tools or "
     "tool_config.\n\nProposed fix: move those values to CachedContent from GenerateContent request.",
     "A request that uses a context cache cannot set its own system instruction or tools."),
    ("Model used by GenerateContent request (models/gemini-2.5-pro) and CachedContent (models/gemini-2.5-flash) "
     "has to be the same.", "The context cache was made for another model than the one asked."),
])
def test_the_servers_other_cache_refusals_read_as_sentences(ip, server, small, message, says):
    """What a request we build never provokes, but a gateway or an older recording may."""
    from tests.fake_gemini import Error

    create(ip)
    server.queue(Error(400, "INVALID_ARGUMENT", message))
    failure = fails(ip, "Rule 1?", "--cache handbook")
    assert failure.error.kind == "cache" and failure.error.message == says
    assert "INVALID_ARGUMENT" not in str(failure.error)


def test_count_from_python_includes_the_cache_as_a_cell_does(ip, server, small):
    info = create(ip)
    count = gemini_magic.count("What is rule 9?", cache="handbook")
    assert count.cached == info.tokens and count.total > info.tokens


def test_a_batch_that_meets_a_gone_cache_forgets_it(ip, server, small):
    create(ip, options="--ttl 5m")
    server.advance(400)
    ip.user_ns["rules"] = ["1", "2"]
    ip.run_cell_magic("gemini", "--over rules --cache handbook -o _out", "Rule {item}?")
    assert all(getattr(v, "kind", "") == "cache-gone" for v in ip.user_ns["_out"])
    before = len(server.requests)
    fails(ip, "Rule 1?", "--cache handbook")  # looked for again, not the stale resource sent
    assert [r.action for r in server.requests[before:]] == ["listCachedContents"]


def test_a_cache_keeps_the_location_of_a_maps_context(ip, server, small):
    create(ip, options="--maps --location 35.01,135.77")
    body = server.last.body
    assert {"googleMaps": {}} in body["tools"]
    assert body["toolConfig"]["retrievalConfig"]["lat_lng"] == {"latitude": 35.01, "longitude": 135.77}
