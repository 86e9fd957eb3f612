"""Batches: one prompt per item of a list, Series or DataFrame, through the real engine.

`gemini_magic.batch()` and `%%gemini --over VAR` against the fake server: results
aligned with the input, per-item errors kept in place, real concurrency, interrupt
and resume, the session cache and recordings, structured output, progress, and the
rate limiter keeping a batch free of 429s.
"""

from __future__ import annotations

import _thread
import json
import re
import signal
import threading
import time

import pandas as pd
import pytest
from pydantic import BaseModel

import gemini_magic
from gemini_magic.batches import ItemError
from gemini_magic.client import Connection
from gemini_magic.magics import CellFailed
from tests.fake_gemini import Error, Reply

FLASH = "gemini-2.5-flash"


# -- helpers ------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _no_last_batch():
    gemini_magic.batches.last_run = None
    yield
    gemini_magic.batches.last_run = None


@pytest.fixture
def bip(env, tmp_path, ip):
    """The in-process shell, with a data folder of this test's own (the session's
    shared one collects every test's counts, which would use up the daily quotas)."""
    env.setenv("GEMINI_MAGIC_DATA_DIR", str(tmp_path / "gemini-magic-data"))
    return ip


def sent(server) -> list[str]:
    """The prompts of the generate requests the server received, in order."""
    return [r.last_user_text() for r in server.requests if r.action in ("generateContent", "streamGenerateContent")]


def config(ip, assignment: str) -> None:
    ip.run_line_magic("config", f"GeminiMagics.{assignment}")


def reload_extension(ip) -> None:
    ip.run_line_magic("unload_ext", "gemini_magic")
    ip.run_line_magic("load_ext", "gemini_magic")


def wait_until(condition, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


class InFlight:
    """A responder that counts the requests the server holds at once.

    Each request is held until `hold` requests are in flight together (or
    `timeout` passes), so a batch that really runs `hold` at a time reaches
    exactly `hold`, and one that runs fewer is caught without any timing."""

    def __init__(self, hold: int, timeout: float = 3.0):
        self.hold = hold
        self.timeout = timeout
        self.now = 0
        self.peak = 0
        self.lock = threading.Lock()
        self.full = threading.Event()

    def __call__(self, request):
        with self.lock:
            self.now += 1
            self.peak = max(self.peak, self.now)
            if self.now >= self.hold:
                self.full.set()
        try:
            self.full.wait(self.timeout)
        finally:
            with self.lock:
                self.now -= 1
        return None  # the echo


# -- shapes: list, Series, DataFrame --------------------------------------------------------


def test_list_gives_a_list_aligned_with_the_input(bip, server):
    countries = ["France", "Peru", "Japan", "Kenya"]
    results = gemini_magic.batch("Capital of {item}?", countries)
    assert results == [f"Echo: Capital of {c}?" for c in countries]
    assert sorted(sent(server)) == sorted(f"Capital of {c}?" for c in countries)
    run = gemini_magic.last_batch()
    assert run.done == 4 and run.errors == {} and not run.interrupted


def test_list_items_have_index_and_dict_items_have_their_fields(bip, server):
    assert gemini_magic.batch("{index}: {item}", ["a", "b"]) == ["Echo: 0: a", "Echo: 1: b"]
    rows = [{"country": "France", "lang": "French"}, {"country": "Peru", "lang": "Spanish"}]
    assert gemini_magic.batch("#{index} {country} speaks {lang}", rows) == [
        "Echo: #0 France speaks French", "Echo: #1 Peru speaks Spanish"]


def test_series_gives_a_series_with_the_same_index(bip, server):
    series = pd.Series(["France", "Peru", "Japan"], index=[10, 20, 30], name="country")
    results = gemini_magic.batch("{index}/{item}/{country}", series)
    assert isinstance(results, pd.Series)
    assert list(results.index) == [10, 20, 30] and results.name == "answer"
    assert list(results) == ["Echo: 10/France/France", "Echo: 20/Peru/Peru", "Echo: 30/Japan/Japan"]


def test_dataframe_gives_a_new_dataframe_with_an_answer_column(bip, server):
    df = pd.DataFrame({"country": ["France", "Peru"], "population": [68, 34]}, index=["fr", "pe"])
    results = gemini_magic.batch("Capital of {country} ({index}, {population} M)?", df)
    assert isinstance(results, pd.DataFrame) and results is not df
    assert list(results.columns) == ["country", "population", "answer"]
    assert list(results.index) == ["fr", "pe"]
    assert list(results["answer"]) == ["Echo: Capital of France (fr, 68 M)?", "Echo: Capital of Peru (pe, 34 M)?"]
    assert list(df.columns) == ["country", "population"]  # the input is left alone
    custom = gemini_magic.batch("Capital of {country}?", df, column="capital")
    assert list(custom.columns) == ["country", "population", "capital"]
    assert list(custom["capital"]) == ["Echo: Capital of France?", "Echo: Capital of Peru?"]


def test_notebook_variables_fill_the_template_and_row_fields_win(bip, server):
    bip.user_ns["style"] = "one word"
    bip.user_ns["country"] = "NOT THIS ONE"
    df = pd.DataFrame({"country": ["France", "Peru"]})
    results = gemini_magic.batch("Capital of {country}, in {style}", df)
    assert list(results["answer"]) == ["Echo: Capital of France, in one word", "Echo: Capital of Peru, in one word"]


def test_options_reach_each_request(bip, server):
    results = gemini_magic.batch("Hi {item}", ["a", "b"], model="gemini-2.5-flash-lite", temperature=0.3,
                                 system="Be brief.", max_tokens=50)
    assert results == ["Echo: Hi a", "Echo: Hi b"]
    for request in server.requests:
        assert request.model == "gemini-2.5-flash-lite"
        config_ = request.body["generationConfig"]
        assert config_["temperature"] == 0.3 and config_["maxOutputTokens"] == 50
        assert request.system_texts() == ["Be brief."]
    with pytest.raises(TypeError, match="unknown option 'colour'"):
        gemini_magic.batch("x {item}", ["a"], colour="red")


def test_empty_input(bip, server):
    assert gemini_magic.batch("x {item}", []) == []
    empty = gemini_magic.batch("x {country}", pd.DataFrame({"country": []}))
    assert list(empty.columns) == ["country", "answer"] and len(empty) == 0
    assert server.requests == []


# -- %%gemini --over ----------------------------------------------------------------------


def test_cell_over_dataframe_with_out(bip, server, capsys):
    bip.user_ns["df"] = pd.DataFrame({"country": ["France", "Peru", "Japan"]})
    value = bip.run_cell_magic("gemini", "--over df -o out", "Capital of {country}?")
    assert value is None
    out = bip.user_ns["out"]
    assert list(out["answer"]) == ["Echo: Capital of France?", "Echo: Capital of Peru?", "Echo: Capital of Japan?"]
    assert "3 of 3 done." in capsys.readouterr().err


def test_cell_over_without_out_returns_the_results(bip, server):
    bip.user_ns["names"] = pd.Series(["Ada", "Alan"], index=["a", "b"])
    value = bip.run_cell_magic("gemini", "--over names", "Hello {item}")
    assert isinstance(value, pd.Series) and list(value.index) == ["a", "b"]
    assert list(value) == ["Echo: Hello Ada", "Echo: Hello Alan"]
    bip.user_ns["df"] = pd.DataFrame({"city": ["Lima"]})
    frame = bip.run_cell_magic("gemini", "--over df --column summary -m gemini-2.5-flash-lite", "About {city}")
    assert list(frame.columns) == ["city", "summary"] and frame["summary"][0] == "Echo: About Lima"
    assert server.last.model == "gemini-2.5-flash-lite"
    assert not server.last.stream  # batch items are not streamed


@pytest.mark.parametrize("setup, message", [
    ({}, "--over: no variable named 'nope'."),
    ({"nope": "a string is not a list"}, "--over nope: a str is not a list of items."),
    ({"nope": 42}, "--over nope: a int is not a list of items."),
])
def test_bad_over_is_a_clear_error(bip, server, setup, message):
    bip.user_ns.update(setup)
    with pytest.raises(CellFailed) as info:
        bip.run_cell_magic("gemini", "--over nope", "Hi {item}")
    assert info.value.error.message == message
    assert "list, a pandas Series or a DataFrame" in info.value.error.hint
    assert server.requests == []


def test_batch_function_refuses_a_string_too(bip, server):
    """A string is iterable, but one request per character is never what was meant."""
    with pytest.raises((TypeError, ValueError, gemini_magic.errors.GeminiError)):
        gemini_magic.batch("Translate {item}", "hello")
    assert server.requests == []


# -- per-item errors ----------------------------------------------------------------------------


def test_failed_items_keep_a_falsy_error_in_place(bip, server, capsys):
    def responder(request):
        text = request.last_user_text()
        if "bad" in text:
            return Error(400, "INVALID_ARGUMENT", "Bad item.")
        if "secret" in text:
            return Error.permission()
        return None

    server.responder = responder
    items = ["ok-0", "bad-1", "ok-2", "secret-3", "ok-4"]
    results = gemini_magic.batch("Do {item}", items)
    assert results[0] == "Echo: Do ok-0" and results[2] == "Echo: Do ok-2" and results[4] == "Echo: Do ok-4"
    bad, secret = results[1], results[3]
    assert isinstance(bad, ItemError) and isinstance(secret, ItemError)
    assert not bad and not secret  # falsy: [r for r in results if r] keeps the answers
    assert [bool(r) for r in results] == [True, False, True, False, True]
    assert bad.kind == "bad-request" and bad.message == "The request was rejected (400 INVALID_ARGUMENT): Bad item."
    assert secret.kind == "permission" and "Permission denied" in secret.message
    assert str(bad).startswith("error: ")
    run = gemini_magic.last_batch()
    assert sorted(run.errors) == [1, 3]
    assert "3 of 5 done, 2 failed (their places hold the error)." in capsys.readouterr().err
    assert len(sent(server)) == 5  # 4xx are not retried

    # The failed items are what resume() sends again; the finished ones are kept.
    server.responder = None
    run.resume()
    assert run.results == [f"Echo: Do {i}" for i in items] and run.errors == {}
    assert len(sent(server)) == 7


def test_failed_items_in_a_dataframe_column(bip, server):
    server.responder = lambda r: Error.permission() if "Peru" in r.last_user_text() else None
    df = pd.DataFrame({"country": ["France", "Peru"]})
    out = gemini_magic.batch("Capital of {country}?", df)
    assert out["answer"][0] == "Echo: Capital of France?"
    assert isinstance(out["answer"][1], ItemError)
    assert list(out["answer"].astype(bool)) == [True, False]


# -- concurrency and order ------------------------------------------------------------------------


def test_items_really_run_in_parallel_up_to_the_concurrency(bip, server):
    counter = InFlight(hold=4)
    server.responder = counter
    results = gemini_magic.batch("Item {item}", list(range(12)), concurrency=4)
    assert results == [f"Echo: Item {i}" for i in range(12)]
    assert counter.full.is_set()
    assert counter.peak == 4  # four at once, and never more


def test_cell_concurrency_option(bip, server):
    counter = InFlight(hold=3)
    server.responder = counter
    bip.user_ns["xs"] = list(range(9))
    results = bip.run_cell_magic("gemini", "--over xs --concurrency 3", "N {item}")
    assert results == [f"Echo: N {i}" for i in range(9)]
    assert counter.peak == 3


def test_default_concurrency_is_eight(bip, server):
    counter = InFlight(hold=8)
    server.responder = counter
    gemini_magic.batch("Item {item}", list(range(16)))
    assert counter.peak == 8


def test_results_are_aligned_when_answers_finish_out_of_order(bip, server):
    items = [f"item-{i}" for i in range(6)]
    answered: list[str] = []
    lock = threading.Lock()

    def responder(request):
        text = request.last_user_text()
        if text == "item-0":  # the first item is answered last
            wait_until(lambda: len(answered) == len(items) - 1, timeout=5)
        with lock:
            answered.append(text)
        return Reply(text=f"answer to {text}")

    server.responder = responder
    results = gemini_magic.batch("{item}", items, concurrency=6)
    assert answered[-1] == "item-0"
    assert results == [f"answer to {i}" for i in items]


# -- interrupt and resume ---------------------------------------------------------------------------


def _ctrl_c() -> None:
    """Ctrl-C as a kernel or terminal delivers it: a real SIGINT to the main thread, which
    also wakes a wait that has no timeout (where the OS has signals; else simulated)."""
    if hasattr(signal, "pthread_kill"):
        signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)
    else:  # pragma: no cover - Windows
        _thread.interrupt_main()


def interrupted_call(fn, condition, then=None):
    """Call `fn()` and press Ctrl-C once `condition()` holds; `then()` runs a second
    after the Ctrl-C, on the watcher's thread (possibly after this returns).

    Ctrl-C only raises while `fn` runs: one that comes after it returned is counted as
    stray (the test then fails on it) instead of aborting the whole pytest session.
    Returns (fn's result, stray count)."""
    state = {"inside": False, "stray": 0}
    fired = threading.Event()

    def on_sigint(signum, frame):
        if state["inside"]:
            raise KeyboardInterrupt
        state["stray"] += 1

    def watch():
        if not wait_until(condition, 10):
            return
        _ctrl_c()
        fired.set()
        if then is not None:
            time.sleep(1.0)
            then()

    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        threading.Thread(target=watch, daemon=True).start()
        state["inside"] = True
        try:
            result = fn()
        finally:
            state["inside"] = False
        fired.wait(12)
        time.sleep(0.1)  # a Ctrl-C sent just now is handled here, by on_sigint
    finally:
        signal.signal(signal.SIGINT, previous)
    return result, state["stray"]


@pytest.fixture
def slow_items(server):
    """Prompts with "slow" are held by the server until `release` is set."""
    release = threading.Event()

    def responder(request):
        if "slow" in request.last_user_text():
            release.wait(20)
        return None

    server.responder = responder
    yield release
    release.set()


def test_interrupt_keeps_finished_items_and_resume_sends_only_the_rest(bip, server, slow_items, capsys):
    items = ["fast-0", "fast-1", "slow-2", "slow-3", "later-4", "later-5"]
    template = "Interrupt test: {item}"
    prompts = [template.format(item=i) for i in items]
    # Ctrl-C once the two slow items are in flight; the server answers them a second later.
    results, stray = interrupted_call(lambda: gemini_magic.batch(template, items, concurrency=2),
                                      lambda: set(prompts[2:4]) <= set(sent(server)), then=slow_items.set)
    assert stray == 0, "the batch ended before Ctrl-C"
    run = gemini_magic.last_batch()
    assert run.interrupted
    assert results[:2] == [f"Echo: {p}" for p in prompts[:2]]
    assert results[4:] == [None, None]  # never sent
    assert sorted(sent(server)) == sorted(prompts[:4])
    assert "Interrupted: run it again to resume; finished items are kept." in capsys.readouterr().err

    # Resumed at once: the two in flight are waited for, not asked again.
    run.resume()
    assert not run.interrupted
    assert run.results == [f"Echo: {p}" for p in prompts]
    assert sorted(sent(server)) == sorted(prompts)  # each item exactly once, over both runs


def test_rerunning_an_interrupted_cell_sends_only_the_rest(bip, server, slow_items):
    bip.user_ns["xs"] = ["fast-0", "slow-1", "slow-2", "later-3"]
    prompts = [f"Rerun test: {i}" for i in bip.user_ns["xs"]]

    def cell():
        return bip.run_cell_magic("gemini", "--over xs --concurrency 2", "Rerun test: {item}")

    partial, stray = interrupted_call(cell, lambda: set(prompts[1:3]) <= set(sent(server)), then=slow_items.set)
    assert stray == 0, "the batch ended before Ctrl-C"
    assert partial[0] == f"Echo: {prompts[0]}" and gemini_magic.last_batch().interrupted
    assert partial[3] is None
    again = cell()  # at once: the two still in flight are waited for
    assert again == [f"Echo: {p}" for p in prompts]
    assert sorted(sent(server)) == sorted(prompts)  # only what never went was sent again


# -- the session cache and recordings ------------------------------------------------------------------


def test_each_run_asks_again_and_identical_prompts_are_each_sent(bip, server):
    """No cache across runs (it made N identical prompts give 1 or N answers, by timing,
    and left a re-run under %gemini record out of the recording)."""
    items = ["a", "b", "a", "a"]
    first = gemini_magic.batch("Say {item}", items)
    assert first == ["Echo: Say a", "Echo: Say b", "Echo: Say a", "Echo: Say a"]
    assert len(sent(server)) == 4  # every item, identical or not
    assert gemini_magic.batch("Say {item}", items) == first
    assert len(sent(server)) == 8  # a second run asks again


def test_a_batch_rerun_while_recording_is_recorded_and_replays(bip, server, tmp_path):
    items = ["x", "y", "x"]
    gemini_magic.batch("Echo {item}", items)  # asked once before recording
    rec = tmp_path / "rerun.gemini.json"
    bip.run_line_magic("gemini", f"record {rec}")
    recorded = gemini_magic.batch("Echo {item}", items)
    bip.run_line_magic("gemini", f"replay {rec}")
    server.reset()
    assert gemini_magic.batch("Echo {item}", items) == recorded
    assert server.requests == []


def _recorded_prompts(rec) -> list[str]:
    entries = json.loads(rec.read_text())["entries"]
    return sorted(e["request"]["body"]["contents"][0]["parts"][0]["text"] for e in entries)


def test_cache_recording_makes_a_rerun_after_reload_free(bip, server, tmp_path):
    rec = tmp_path / "batch.gemini.json"
    bip.run_line_magic("gemini", f"cache {rec}")
    bip.run_cell_magic("gemini", "-o _warm", "A cell before the batch")  # (the first client: see below)
    df = pd.DataFrame({"country": ["France", "Peru", "Japan"]})
    first = gemini_magic.batch("Capital of {country}?", df)
    assert len(sent(server)) == 4
    assert _recorded_prompts(rec) == sorted(["A cell before the batch", *(f"Capital of {c}?" for c in df["country"])])

    reload_extension(bip)  # as in a new kernel: only the recording remains
    bip.run_line_magic("gemini", f"cache {rec}")
    server.reset()
    again = gemini_magic.batch("Capital of {country}?", df)
    assert again.equals(first)
    assert server.requests == []


def test_first_batch_of_a_fresh_kernel_shares_one_client_and_records_everything(bip, server, tmp_path, monkeypatch):
    """The batch's threads all ask for the connection's first client at once. The first
    build is held a moment (as when the SDK import is slow in a fresh kernel); no other
    thread may build a second client meanwhile: one client, one transport, one recording."""
    rec = tmp_path / "batch.gemini.json"
    builds: list[str] = []
    another = threading.Event()
    build = Connection._build

    def held_build(self, *args, **kwargs):
        builds.append(threading.current_thread().name)
        if len(builds) == 1:
            another.wait(1.0)  # does another thread start building meanwhile?
        else:
            another.set()
        return build(self, *args, **kwargs)

    monkeypatch.setattr(Connection, "_build", held_build)
    bip.run_line_magic("gemini", f"cache {rec}")
    df = pd.DataFrame({"country": ["France", "Peru", "Japan"]})
    results = gemini_magic.batch("Capital of {country}?", df)
    assert list(results["answer"]) == [f"Echo: Capital of {c}?" for c in df["country"]]
    assert len(builds) == 1, f"{len(builds)} SDK clients built at once, by {builds}"
    assert _recorded_prompts(rec) == sorted(f"Capital of {c}?" for c in df["country"])


def test_batch_threads_share_one_http_connection_pool(bip, server, monkeypatch):
    """The first requests of a fresh connection come from every thread at once; they
    must share the transport's one connection pool, not each open (and leak) their own."""
    import httpx2

    made: list[str] = []
    another = threading.Event()
    init = httpx2.HTTPTransport.__init__

    def held_init(self, *args, **kwargs):
        made.append(threading.current_thread().name)
        if len(made) == 1:
            another.wait(1.0)  # does another thread make a second pool meanwhile?
        else:
            another.set()
        init(self, *args, **kwargs)

    monkeypatch.setattr(httpx2.HTTPTransport, "__init__", held_init)
    results = gemini_magic.batch("Pool {item}", list(range(8)))
    assert results == [f"Echo: Pool {i}" for i in range(8)]
    assert len(made) == 1, f"{len(made)} HTTP connection pools made at once, by {made}"


# -- structured output, per item -------------------------------------------------------------------


class City(BaseModel):
    name: str
    population: int


def test_json_gives_parsed_values(bip, server):
    server.responder = lambda r: Reply(text=json.dumps({"asked": r.last_user_text(), "n": len(r.last_user_text())}))
    results = gemini_magic.batch("Facts about {item}", ["Lima", "Oslo"], json=True)
    assert results == [{"asked": "Facts about Lima", "n": 16}, {"asked": "Facts about Oslo", "n": 16}]
    for request in server.requests:
        assert request.body["generationConfig"]["responseMimeType"] == "application/json"


def test_schema_gives_instances_and_a_bad_answer_is_an_item_error(bip, server):
    def responder(request):
        text = request.last_user_text()
        if "Atlantis" in text:
            return Reply(text="not json at all")
        return Reply(text=json.dumps({"name": text.split()[-1], "population": 1000}))

    server.responder = responder
    results = gemini_magic.batch("City {item}", ["Lima", "Atlantis", "Oslo"], schema=City)
    assert results[0] == City(name="Lima", population=1000) and results[2] == City(name="Oslo", population=1000)
    assert isinstance(results[1], ItemError) and results[1].kind == "schema"
    schema = server.requests[0].body["generationConfig"]
    assert schema["responseMimeType"] == "application/json"
    assert set(schema["responseJsonSchema"]["properties"]) == {"name", "population"}


def test_cell_over_with_schema_name(bip, server):
    server.responder = lambda r: Reply(text=json.dumps({"name": r.last_user_text(), "population": 7}))
    bip.user_ns["City"] = City
    bip.user_ns["xs"] = ["Lima"]
    results = bip.run_cell_magic("gemini", "--over xs --schema City", "{item}")
    assert results == [City(name="Lima", population=7)]


# -- progress -------------------------------------------------------------------------------------------


def test_terminal_progress_lines_on_stderr(bip, server, capsys):
    server.responder = lambda r: Error.permission() if r.last_user_text().endswith(("3", "7")) else None
    gemini_magic.batch("Item {item}", list(range(10)))
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.startswith("Gemini batch:")]
    assert lines[0] == "Gemini batch: 0 done of 10"
    assert lines[-1] == "Gemini batch: 8 done, 2 failed of 10"
    assert 2 <= len(lines) <= 11  # at most a line every 10%
    for line in lines:
        assert re.fullmatch(r"Gemini batch: \d+ done(, \d+ failed)? of 10", line)
    assert "Gemini batch" not in captured.out


def test_notebook_progress_bar_ends_at_max(kern, server):
    kern.run("xs = ['a', 'b', 'c', 'd', 'e']", check=True)
    ex = kern.run("%%gemini --over xs -o out\nSay {item}", check=True)
    opens = {m["content"]["comm_id"]: m["content"]["data"]["state"] for m in ex.of_type("comm_open")}
    bars = [cid for cid, state in opens.items() if state.get("_model_name") == "IntProgressModel"]
    assert len(bars) == 1, [s.get("_model_name") for s in opens.values()]
    state = dict(opens[bars[0]])
    for msg in ex.of_type("comm_msg"):
        data = msg["content"]["data"]
        if msg["content"]["comm_id"] == bars[0] and data.get("method") == "update":
            state.update(data["state"])
    assert state["max"] == 5 and state["value"] == 5
    labels = [cid for cid, s in opens.items() if s.get("_model_name") == "LabelModel"]
    label = dict(opens[labels[0]])
    for msg in ex.of_type("comm_msg"):
        if msg["content"]["comm_id"] == labels[0] and msg["content"]["data"].get("method") == "update":
            label.update(msg["content"]["data"]["state"])
    assert label["value"] == "5 done of 5"
    widget_view = "application/vnd.jupyter.widget-view+json"
    views = [m for m in ex.of_type("display_data") if widget_view in m["content"]["data"]]
    assert len(views) == 1
    check = kern.run("print(out)", check=True)
    assert "Echo: Say e" in check.stream_text()


# -- the limiter keeps a batch free of 429s --------------------------------------------------------------


def test_limiter_keeps_a_batch_under_the_servers_limit(bip, server):
    window = 1.0  # a shortened "minute", on both sides
    server.rate_limit, server.rate_window = 5, window
    config(bip, "quota_tier = 'free'")
    config(bip, f'rate_limits = {{"{FLASH}": {{"rpm": 5}}}}')
    magics = gemini_magic._magics
    magics.engine  # noqa: B018  (makes the limiter)
    limiter = magics.connection.limiter
    limiter.window = window
    items = [f"item {i}" for i in range(12)]
    results = gemini_magic.batch("{item}", items, concurrency=8)
    assert results == [f"Echo: {i}" for i in items]
    assert server.rejected == 0  # the server's own limit never had to answer 429
    assert len(sent(server)) == 12
    assert limiter.waited > 0  # the limit did bind: requests were held back


# -- mode="api": the same call, as a Batch API job -------------------------------------------------


def test_batch_mode_api_submits_one_job_and_aligns_its_results(bip, server, monkeypatch, capsys):
    from gemini_magic.batches import api as batch_api

    monkeypatch.setattr(batch_api, "POLL_DELAYS", (0.01,))
    server.batch_polls = 1
    df = pd.DataFrame({"country": ["France", "Peru"]})
    out = gemini_magic.batch("Capital of {country}?", df, mode="api")
    assert list(out["answer"]) == ["Echo: Capital of France?", "Echo: Capital of Peru?"]
    actions = [r.action for r in server.requests]
    assert actions.count("batchGenerateContent") == 1
    assert "streamGenerateContent" not in actions and "generateContent" not in actions
    assert "batch-status" in capsys.readouterr().out  # the id is printed for a later kernel


def test_over_with_batch_api_runs_a_job(bip, server, monkeypatch):
    from gemini_magic.batches import api as batch_api

    monkeypatch.setattr(batch_api, "POLL_DELAYS", (0.01,))
    server.batch_polls = 1
    bip.user_ns["xs"] = ["one", "two", "three"]
    out = bip.run_cell_magic("gemini", "--over xs --batch-api", "Say {item}")
    assert out == ["Echo: Say one", "Echo: Say two", "Echo: Say three"]
    assert [r.action for r in server.requests].count("batchGenerateContent") == 1


def test_batch_mode_must_be_local_or_api(bip):
    with pytest.raises(ValueError):
        gemini_magic.batch("{item}", ["a"], mode="cloud")
