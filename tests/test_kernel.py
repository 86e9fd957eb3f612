"""The notebook front end in a real kernel: what a frontend receives, message by message."""

from __future__ import annotations

import json
import subprocess
import sys
import threading

import nbformat
import pytest
from nbclient import NotebookClient

from tests.conftest import TEST_KEY, kernel_environment
from tests.fake_gemini import Error, Reply


def _data(msg) -> dict:
    return msg["content"].get("data", {})


def test_stream_output_sequence_is_placeholder_updates_reset_final(kern, server):
    server.queue(Reply(chunks=["Hello ", "**streaming** ", "world"], delay=0.15))
    ex = kern.run("%%gemini\nSay hello", check=True)
    kinds = [m["msg_type"] for m in ex.outputs]
    # 1. an empty placeholder; 2. updates while streaming; 3. reset to empty, then the answer once.
    assert kinds[0] == "display_data" and _data(ex.outputs[0]) == {"text/plain": ""}
    assert kinds[-2:] == ["update_display_data", "display_data"]
    assert _data(ex.outputs[-2]) == {"text/plain": ""}
    assert set(kinds[1:-2]) == {"update_display_data"} and len(kinds) >= 4
    placeholder_id = ex.outputs[0]["content"]["transient"]["display_id"]
    assert all(m["content"]["transient"]["display_id"] == placeholder_id for m in ex.outputs[1:-1])
    final = _data(ex.outputs[-1])
    assert final["text/plain"] == "Hello **streaming** world"
    assert "<strong>streaming</strong>" in final["text/html"]
    # Provenance travels in the output's metadata.
    meta = ex.outputs[-1]["content"]["metadata"]["gemini_magic"]
    assert meta["model"] == "gemini-2.5-flash"
    assert meta["finish_reason"] == "STOP"
    assert meta["usage"]["output_tokens"] == 3


def test_text_appears_as_it_arrives(kern, server):
    """The first words are on screen long before the answer ends."""
    import time

    server.queue(Reply(chunks=["one ", "two ", "three ", "four"], delay=0.4))
    seen = []
    kern.run("%%gemini\ncount", on_message=lambda m: seen.append((time.monotonic(), m)), check=True)
    updates = [(t, m) for t, m in seen if m["msg_type"] == "update_display_data" and _data(m).get("text/html")]
    final_time = [t for t, m in seen if m["msg_type"] == "display_data" and _data(m).get("text/html")][0]
    assert updates and _data(updates[0][1])["text/plain"] == "one "
    assert final_time - updates[0][0] > 0.8  # three more chunks, 0.4 s apart, came after it


def test_updates_are_throttled_by_update_interval(kern, server):
    chunks = [f"w{i} " for i in range(400)]
    server.queue(Reply(chunks=chunks, delay=0.002))
    ex = kern.run("%%gemini\nmany chunks", check=True)
    throttled = len(ex.of_type("update_display_data"))
    assert throttled < 40  # ~1 s of streaming at one update per 0.1 s, not 400
    assert _data(ex.outputs[-1])["text/plain"] == "".join(chunks)

    kern.run("%config GeminiMagics.update_interval = 0", check=True)
    try:
        server.queue(Reply(chunks=chunks[:50], delay=0.002))
        ex = kern.run("%%gemini\nfewer chunks", check=True)
        # Without throttling every chunk is an update (plus the final reset).
        assert len(ex.of_type("update_display_data")) == 51
    finally:
        kern.run("%config GeminiMagics.update_interval = 0.1", check=True)


def test_usage_footer_and_text_format(kern, server):
    server.queue(Reply(text="<b>plain</b> text"))
    ex = kern.run("%%gemini --usage -f text\nhi", check=True)
    final = _data(ex.outputs[-1])
    assert "&lt;b&gt;plain&lt;/b&gt;" in final["text/html"] and "<b>" not in final["text/html"]
    assert "gemini-2.5-flash" in final["text/plain"] and "tokens" in final["text/plain"]


def test_code_format_without_the_lab_extension_uses_set_next_input_and_claims_nothing(kern, server):
    server.queue(Reply(text="Here:\n```python\nprint('hi')\n```\nDone."))
    ex = kern.run("%%gemini -f code\nwrite code", check=True)
    payloads = [p for p in ex.payload if p.get("source") == "set_next_input"]
    assert payloads and payloads[0]["text"] == "print('hi')" and payloads[0]["replace"] is False
    # Whether a frontend acts on the payload is unknown (nbclient does not): no claim that it did.
    assert "cell below" not in ex.notes() + ex.stream_text("stderr") + ex.stream_text("stdout")
    # The extension, if it is there after all (its answer came late), is told the kernel inserted.
    insert = ex.outputs[-1]["content"]["metadata"]["gemini_magic"]["insert_code"]
    assert insert["code"] == "print('hi')" and insert["by_kernel"] is True and insert["key"]
    assert "print" in _data(ex.outputs[-1])["text/html"] and 'style="color' in _data(ex.outputs[-1])["text/html"]


def test_code_format_with_the_lab_extension_lets_it_replace_its_cell(server):
    """The handshake of js/src/index.ts, played by hand: once the frontend answers the
    kernel's hello, -f code stops using set_next_input and the output carries the same key
    on every re-run of the cell, so the extension replaces the cell it inserted."""
    from tests.kernel import KernelSession

    session = KernelSession(kernel_environment(server.url))
    session.start()
    try:
        opened = []
        session.run("%load_ext gemini_magic", check=True,
                    on_message=lambda m: opened.append(m) if m["msg_type"] == "comm_open" else None)
        assert [m["content"]["target_name"] for m in opened] == ["gemini_magic"]
        assert opened[0]["content"]["data"] == {"hello": "kernel", "version": 2}
        client = session.client
        reply = client.session.msg("comm_msg", {"comm_id": opened[0]["content"]["comm_id"], "data": {
            "hello": "jupyterlab", "version": 1, "inserts_cells": True}})
        client.shell_channel.send(reply)
        session.run("pass", check=True)  # the kernel reads the answer when idle
        keys = []
        for code in ("print(1)", "print(2)"):
            server.queue(Reply(text=f"```python\n{code}\n```"))
            ex = session.run("%%gemini -f code\nwrite code", check=True)
            assert not [p for p in ex.payload if p.get("source") == "set_next_input"]
            [insert] = [m["content"]["metadata"]["gemini_magic"]["insert_code"] for m in ex.of_type("display_data")
                        if "insert_code" in (m["content"].get("metadata") or {}).get("gemini_magic", {})]
            assert insert["code"] == code and "by_kernel" not in insert
            keys.append(insert["key"])
            assert ex.notes() == "The code is in the cell below.\n"
        assert keys[0] == keys[1]  # the same cell: the extension replaces, not adds
        # A failed answer asks for nothing.
        server.queue(Error.permission())
        ex = session.run("%%gemini -f code\nwrite code")
        assert ex.status == "error"
        assert not any("insert_code" in (m["content"].get("metadata") or {}).get("gemini_magic", {})
                       for m in ex.of_type("display_data"))
    finally:
        session.stop()


def test_error_is_short_and_fails_the_cell(kern, server):
    server.queue(Error.permission())
    ex = kern.run("%%gemini\nhi")
    assert ex.status == "error"
    error = ex.error
    text = "\n".join(error["traceback"])
    assert "Permission denied" in text
    assert "Traceback" not in text and "google/genai" not in text and TEST_KEY not in text
    assert len(error["traceback"]) <= 3
    # The kernel is still usable.
    assert kern.run("1 + 1", check=True).status == "ok"


def test_interrupt_keeps_partial_answer_and_kernel(kern, server):
    server.queue(Reply(chunks=[f"part{i} " for i in range(40)], delay=0.25))
    interrupted = threading.Event()

    def on_message(msg):
        if msg["msg_type"] == "update_display_data" and "part1" in _data(msg).get("text/plain", ""):
            if not interrupted.is_set():
                interrupted.set()
                kern.interrupt()

    ex = kern.run("%%gemini -o partial\nlong answer", timeout=30, on_message=on_message)
    assert interrupted.is_set()
    assert ex.status == "error"
    assert "Interrupted" in "\n".join(ex.error["traceback"])
    final = [m for m in ex.of_type("display_data") if _data(m).get("text/html")][-1]
    assert final["content"]["metadata"]["gemini_magic"]["interrupted"] is True
    partial = _data(final)["text/plain"]
    assert partial.startswith("part0 part1") and "part39" not in partial
    # The partial answer was stored, and the kernel runs the next cell.
    ex = kern.run("print(partial)", check=True)
    assert ex.stream_text().startswith("part0 part1")


def _streaming_notebook(path):
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell("%load_ext gemini_magic"),
        nbformat.v4.new_code_cell("%%gemini\nStream a long answer, please"),
        nbformat.v4.new_code_cell("%%gemini --usage\nAnd another"),
    ]
    nbformat.write(nb, path)


def _nbval(path, env) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "--nbval", "-p", "no:cacheprovider", "-q", str(path)],
        env=env, capture_output=True, text=True, timeout=180, cwd=path.parent,
    )


def test_streamed_notebook_passes_strict_nbval(tmp_path, server):
    """Save a notebook executed with streaming, then re-run it under strict nbval,
    which applies no display updates: it must compare equal."""
    server.chunk_delay = 0.03  # several display updates per answer
    env = kernel_environment(server.url)
    path = tmp_path / "streaming.ipynb"
    _streaming_notebook(path)
    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=60, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute(env=env)
    nbformat.write(nb, path)
    outputs = nb.cells[1].outputs
    # The saved cell holds the emptied placeholder and the answer, once.
    assert [o["output_type"] for o in outputs] == ["display_data", "display_data"]
    assert outputs[0]["data"] == {"text/plain": ""}
    assert outputs[1]["data"]["text/plain"] == "Echo: Stream a long answer, please"

    result = _nbval(path, env)
    assert result.returncode == 0, result.stdout[-3000:]
    assert "3 passed" in result.stdout

    # The same check fails when the answer changes: nbval really compares it.
    server.responder = lambda request: Reply(text="A different answer")
    result = _nbval(path, env)
    assert result.returncode != 0 and "2 failed" in result.stdout


@pytest.mark.parametrize("fmt", ["markdown", "json"])
def test_json_answers_display_as_code(kern, server, fmt):
    server.queue(Reply(text=json.dumps({"a": 1, "b": [1, 2]})))
    ex = kern.run("%%gemini --json -o data\ngive json", check=True)
    final = _data(ex.outputs[-1])
    assert 'class="language-json"' in final["text/html"]
    assert kern.run("print(data['b'])", check=True).stream_text().strip() == "[1, 2]"
