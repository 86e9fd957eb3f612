"""Stop works from any thread: the HTTP response closes within a second even while no
chunk is arriving, nothing is sent after Stop, and the text that arrived is kept.

Answers are read in a background thread (as the chat widget reads them) and stopped
from the test's thread (as the Stop button or an interrupt does). The fake server
watches the connection while it pauses between events and logs when it closed.
"""

from __future__ import annotations

import threading
import time

import pytest

from gemini_magic.client import Connection
from gemini_magic.engine import Engine, Request, TextDelta
from gemini_magic.transport.limits import Limiter
from tests.fake_gemini import Error, Reply

MODEL = "gemini-2.5-flash"


@pytest.fixture
def engine(env):
    connection = Connection()
    yield Engine(connection)
    connection.close()


class Reader:
    """Reads an answer on its own thread; `first` is set at its first text."""

    def __init__(self, answer):
        self.answer = answer
        self.first = threading.Event()
        self.events: list = []
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        for event in self.answer:
            self.events.append(event)
            if isinstance(event, TextDelta):
                self.first.set()


def test_stop_closes_the_connection_within_a_second_while_no_chunk_arrives(engine, server):
    server.queue(Reply(chunks=["The first part. ", "never sent"], delay=10))
    answer = engine.send(Request(model=MODEL, contents="Tell me slowly"))
    reader = Reader(answer)
    assert reader.first.wait(10), "the first chunk never came"
    stopped = time.monotonic()
    answer.interrupt()  # from this thread, while the reader waits in a read
    reader.thread.join(5)
    assert not reader.thread.is_alive(), "the reading thread is still blocked"
    deadline = time.monotonic() + 2
    while not server.disconnects and time.monotonic() < deadline:
        time.sleep(0.01)
    assert server.disconnects, "the server never saw the connection close"
    assert server.disconnects[0] - stopped < 1.0
    assert answer.interrupted and answer.error is None
    assert answer.text == "The first part. "
    assert answer.notice() is None  # the front end that was interrupted says so, once


def test_nothing_is_sent_after_stop_even_from_a_rate_limit_wait(engine, server):
    engine.connection.limiter = Limiter("auto", {MODEL: {"rpm": 1}})
    engine.connection.transport  # noqa: B018  (hands the limiter to the quota layer)
    engine.send(Request(model=MODEL, contents="first")).wait()  # uses the one request a minute
    waiting = engine.send(Request(model=MODEL, contents="second"))
    reader = Reader(waiting)
    time.sleep(0.5)  # the reader is in the limiter's wait now
    stopped = time.monotonic()
    waiting.interrupt()
    reader.thread.join(5)
    assert time.monotonic() - stopped < 1.5
    assert waiting.interrupted
    assert [r.last_user_text() for r in server.requests] == ["first"]


def test_stop_before_anything_was_sent_sends_nothing(engine, server):
    answer = engine.send(Request(model=MODEL, contents="never"))
    answer.interrupt()
    assert list(answer) == [] or not any(isinstance(e, TextDelta) for e in answer)
    assert answer.interrupted and server.requests == []


def test_stop_during_a_retry_wait_ends_it_and_sends_no_retry(engine, server):
    server.queue(Error.quota(retry_delay="30s", limit=100), Reply(text="never asked for"))
    answer = engine.send(Request(model=MODEL, contents="limited"))
    reader = Reader(answer)
    deadline = time.monotonic() + 5
    while not server.requests and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.3)  # the reader is in the 30 s wait before its retry
    stopped = time.monotonic()
    answer.interrupt()
    reader.thread.join(5)
    assert time.monotonic() - stopped < 1.0
    assert answer.interrupted and len(server.requests) == 1


def test_a_stopped_answer_runs_its_completion_callbacks_once_marked_interrupted(engine, server):
    server.queue(Reply(chunks=["part ", "rest"], delay=10))
    answer = engine.send(Request(model=MODEL, contents="slow"))
    seen = []
    answer.on_done(lambda done: seen.append((done.interrupted, done.text)))
    reader = Reader(answer)
    assert reader.first.wait(10)
    answer.interrupt()
    reader.thread.join(5)
    assert seen == [(True, "part ")]
    answer.on_done(lambda done: seen.append("late"))  # after the end: called at once
    assert seen[-1] == "late"
