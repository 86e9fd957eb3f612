"""What a prompt can see of the notebook: `{In[N]}`, `{Out[N]}`, `{_}`, bounded
summaries of large values, `--context VAR`, and the last error (`--error`,
`%gemini explain`). Every check reads the prompt the fake server received.
"""

from __future__ import annotations

import sys

import pytest
from IPython.core.error import UsageError

from gemini_magic.magics import CellFailed
from tests.fake_gemini import Error

GENERATE = ("generateContent", "streamGenerateContent")


# -- helpers ------------------------------------------------------------------------


@pytest.fixture
def no_previous_error(monkeypatch):
    """The session shell is shared: forget any exception an earlier test left in sys."""
    for name in ("last_type", "last_value", "last_traceback", "last_exc"):
        monkeypatch.delattr(sys, name, raising=False)


def run(ip, source: str):
    """Run a cell as a notebook would, so IPython's events fire."""
    return ip.run_cell(source)


def ok(ip, source: str):
    result = run(ip, source)
    assert result.error_in_exec is None, result.error_in_exec
    assert result.error_before_exec is None, result.error_before_exec
    return result


def failed(ip, source: str) -> BaseException:
    result = run(ip, source)
    assert result.error_in_exec is not None, f"cell did not fail: {source!r}"
    return result.error_in_exec


def generate_requests(server) -> list:
    return [r for r in server.requests if r.action in GENERATE]


def prompt_of(server) -> str:
    """The single user text of the one request sent."""
    requests = generate_requests(server)
    assert len(requests) == 1, [r.user_texts() for r in requests]
    texts = requests[0].user_texts()
    assert len(texts) == 1, texts
    return texts[0]


def ask(ip, server, body: str, options: str = "") -> str:
    server.reset()
    ok(ip, f"%%gemini {options}\n{body}".replace("%%gemini \n", "%%gemini\n"))
    return prompt_of(server)


def config(ip, statement: str) -> None:
    ip.run_line_magic("config", f"GeminiMagics.{statement}")


FAILING_DEF = "def compute(x):\n    scale = 1 / 0\n    return x * scale\n"
FAILING_CALL = "result = compute(21)  # the failing call\n"


def assert_error_prompt(text: str) -> None:
    """The exception, its traceback (cell frames only) and the raising cell's source."""
    assert "ZeroDivisionError: division by zero" in text
    assert "Traceback (most recent call last)" in text
    assert "scale = 1 / 0" in text  # the def's line, from the traceback
    assert "in compute" in text
    assert "The cell that raised it:\n```python\nresult = compute(21)  # the failing call\n```" in text
    assert "interactiveshell.py" not in text and "site-packages" not in text
    assert "run_code" not in text


# -- In / Out / _ ---------------------------------------------------------------------


def test_in_out_and_underscore_interpolate_in_a_kernel(kern, server):
    first = kern.run("21 * 2", check=True)
    n = first.reply["execution_count"]
    kern.run("'banana'", check=True)
    kern.run(f"%%gemini\nInput: {{In[{n}]}} | Output: {{Out[{n}]}} | Last: {{_}}", check=True)
    assert server.last.user_texts() == ["Input: 21 * 2 | Output: 42 | Last: banana"]


def test_out_of_a_dataframe_is_summarized_in_a_kernel(kern, server):
    kern.run("import pandas as pd\nbig = pd.DataFrame({'n': range(1000)})", check=True)
    ex = kern.run("big", check=True)
    n = ex.reply["execution_count"]
    kern.run(f"%%gemini\nDescribe {{Out[{n}]}}", check=True)
    text = server.last.user_texts()[0]
    assert "pandas DataFrame, 1,000 rows x 1 columns" in text
    assert "999" not in text


def test_in_out_and_underscore_interpolate_in_process(ip, server):
    n = ip.execution_count
    ok_result = ip.run_cell("6 * 7", store_history=True)
    assert ok_result.result == 42
    ip.run_cell("'kiwi'", store_history=True)
    text = ask(ip, server, f"In: {{In[{n}]}}; Out: {{Out[{n}]}}; last: {{_}}")
    assert text == "In: 6 * 7; Out: 42; last: kiwi"


# -- the last error -------------------------------------------------------------------


def test_error_option_sends_error_traceback_source_and_user_text(ip, server):
    ok(ip, FAILING_DEF)
    exc = failed(ip, FAILING_CALL)
    assert isinstance(exc, ZeroDivisionError)
    text = ask(ip, server, "Why does this fail? I expected 42.", "--error")
    assert text.startswith("Why does this fail? I expected 42.")
    assert_error_prompt(text)


def test_explain_command_sends_the_last_error(ip, server):
    ok(ip, FAILING_DEF)
    failed(ip, FAILING_CALL)
    server.reset()
    ok(ip, "%gemini explain")
    text = prompt_of(server)
    assert text.startswith("Explain this error")
    assert_error_prompt(text)


def test_error_option_in_a_kernel(kern, server):
    kern.run(FAILING_DEF, check=True)
    ex = kern.run(FAILING_CALL)
    assert ex.status == "error" and ex.error["ename"] == "ZeroDivisionError"
    kern.run("%%gemini --error\nPlease help me fix it.", check=True)
    text = server.last.user_texts()[0]
    assert text.startswith("Please help me fix it.")
    assert_error_prompt(text)
    assert "ipykernel/" not in text and "zmqshell" not in text


def test_explain_in_a_kernel(kern, server):
    kern.run(FAILING_DEF, check=True)
    kern.run(FAILING_CALL)
    ex = kern.run("%gemini explain", check=True)
    text = server.last.user_texts()[0]
    assert_error_prompt(text)
    assert ex.status == "ok"


def test_the_latest_user_error_wins(ip, server):
    failed(ip, "{}['missing_key']")
    ok(ip, FAILING_DEF)
    failed(ip, FAILING_CALL)
    text = ask(ip, server, "What now?", "--error")
    assert "ZeroDivisionError" in text and "KeyError" not in text


def test_gemini_failures_are_not_the_last_error(ip, server):
    ok(ip, FAILING_DEF)
    failed(ip, FAILING_CALL)
    server.queue(Error.permission())
    assert isinstance(failed(ip, "%%gemini\nThis request fails"), CellFailed)
    assert isinstance(failed(ip, "%gemini nosuchcommand"), UsageError)
    server.reset()
    ok(ip, "%gemini explain")
    text = prompt_of(server)
    assert_error_prompt(text)
    assert "Permission" not in text and "GeminiError" not in text and "nosuchcommand" not in text


@pytest.mark.parametrize("source", ["%gemini explain", "%%gemini --error\nWhat went wrong?"])
def test_no_error_yet_is_a_clear_error(ip, server, no_previous_error, capsys, source):
    exc = failed(ip, source)
    assert isinstance(exc, CellFailed)
    assert "There is no error to explain yet." in "\n".join(exc._render_traceback_())
    assert generate_requests(server) == []
    out = capsys.readouterr()
    assert "Traceback" not in out.out + out.err


@pytest.mark.parametrize("failure", ["gemini", "usage"])
def test_only_gemini_failures_so_far_means_no_error_yet(ip, server, no_previous_error, failure):
    if failure == "gemini":
        server.queue(Error.permission())
        assert isinstance(failed(ip, "%%gemini\nThis request fails"), CellFailed)
    else:
        assert isinstance(failed(ip, "%gemini nosuchcommand"), UsageError)
    server.reset()
    result = run(ip, "%gemini explain")
    sent = [r.user_texts() for r in generate_requests(server)]
    assert sent == [], f"gemini's own failure was explained as the last error: {sent}"
    exc = result.error_in_exec
    assert isinstance(exc, CellFailed)
    assert "There is no error to explain yet." in "\n".join(exc._render_traceback_())


# -- summaries of interpolated values -------------------------------------------------


def test_dataframe_becomes_shape_dtypes_and_head(ip, server):
    import pandas as pd

    ip.user_ns["df"] = pd.DataFrame({"n": range(1000), "name": [f"row{i}" for i in range(1000)]})
    text = ask(ip, server, "Look at {df}")
    assert "pandas DataFrame, 1,000 rows x 2 columns" in text
    assert "columns: n: int64, name: " in text
    assert "first 5 rows:" in text
    assert "row0" in text and "row4" in text
    assert "row5" not in text and "row999" not in text
    assert len(text) < 1000


def test_series_becomes_length_dtype_and_head(ip, server):
    import pandas as pd

    ip.user_ns["s"] = pd.Series(range(500), name="count")
    text = ask(ip, server, "{s}")
    assert "pandas Series 'count', length 500, dtype int64" in text
    assert "499" not in text


def test_function_becomes_its_source(ip, server):
    ok(ip, 'def add(a, b):\n    """Add two numbers."""\n    return a + b\n')
    text = ask(ip, server, "What does this do?\n{add}")
    assert 'def add(a, b):\n    """Add two numbers."""\n    return a + b' in text
    assert "<function" not in text


def test_long_string_is_cut_with_a_marker(ip, server):
    ip.user_ns["essay"] = "x" * 5000
    text = ask(ip, server, "Summarize: {essay}")
    assert text == "Summarize: " + "x" * 4000 + "... [truncated: 1,000 more characters]"


def test_short_string_is_left_whole(ip, server):
    ip.user_ns["name"] = "Ada"
    assert ask(ip, server, "Hello {name}!") == "Hello Ada!"


def test_long_list_shows_items_then_a_marker(ip, server):
    ip.user_ns["numbers"] = list(range(100))
    text = ask(ip, server, "{numbers}")
    assert text == "[" + ", ".join(str(i) for i in range(50)) + ", ... [50 more items]]"


def test_long_dict_shows_items_then_a_marker(ip, server):
    ip.user_ns["table"] = {f"k{i}": i for i in range(60)}
    text = ask(ip, server, "{table}")
    assert text == "{" + ", ".join(f"'k{i}': {i}" for i in range(50)) + ", ... [10 more items]}"


def test_numpy_array_shows_shape_and_dtype(ip, server):
    import numpy as np

    ip.user_ns["grid"] = np.arange(10_000, dtype=np.int64).reshape(100, 100)
    text = ask(ip, server, "{grid}")
    assert text.startswith("numpy array, shape (100, 100), dtype int64\n")
    assert "..." in text
    assert "5050" not in text  # the middle is elided
    assert len(text) < 2000


def test_summary_limits_follow_config(ip, server):
    import pandas as pd

    config(ip, "summary_chars = 100")
    config(ip, "summary_items = 3")
    config(ip, "summary_rows = 2")
    ip.user_ns["essay"] = "y" * 500
    ip.user_ns["numbers"] = list(range(10))
    ip.user_ns["df"] = pd.DataFrame({"name": [f"row{i}" for i in range(50)]})

    assert ask(ip, server, "{essay}") == "y" * 100 + "... [truncated: 400 more characters]"
    assert ask(ip, server, "{numbers}") == "[0, 1, 2, ... [7 more items]]"
    text = ask(ip, server, "{df}")
    assert "first 2 rows:" in text and "row1" in text and "row2" not in text


def test_summary_items_limits_dataframe_columns(ip, server):
    import pandas as pd

    config(ip, "summary_items = 2")
    ip.user_ns["wide"] = pd.DataFrame({f"col{i}": [i] for i in range(6)})
    text = ask(ip, server, "{wide}")
    assert "col0: int64, col1: int64, ... [4 more columns]" in text


def test_value_whose_str_raises_does_not_crash_interpolation(ip, server):
    ok(ip, "class Hostile:\n    def __str__(self):\n        raise RuntimeError('no str')\n"
           "    __repr__ = __str__\nhostile = Hostile()\n")
    text = ask(ip, server, "Value: {hostile}")
    assert text == "Value: <Hostile object>"


# -- --context VAR --------------------------------------------------------------------


def test_context_puts_titled_summaries_before_the_prompt(ip, server):
    import pandas as pd

    ip.user_ns["df"] = pd.DataFrame({"n": range(1000)})
    ok(ip, "def double(v):\n    return v * 2\n")
    text = ask(ip, server, "How would I apply double to df?", "--context df --context double")
    assert text.startswith("Context from the notebook:\n\n### df (pandas.")
    assert "DataFrame)\npandas DataFrame, 1,000 rows x 1 columns" in text
    assert "### double (builtins.function)\ndef double(v):\n    return v * 2" in text
    assert text.index("### df") < text.index("### double") < text.index("How would I apply")
    assert text.endswith("How would I apply double to df?")
    assert "999" not in text


def test_context_respects_summary_limits(ip, server):
    config(ip, "summary_chars = 50")
    ip.user_ns["essay"] = "z" * 300
    text = ask(ip, server, "Shorten it.", "--context essay")
    assert "### essay (builtins.str)\n" + "z" * 50 + "... [truncated: 250 more characters]" in text


def test_context_missing_variable_is_a_clear_error_and_nothing_is_sent(ip, server, capsys):
    ip.user_ns["present"] = 1
    exc = failed(ip, "%%gemini --context present --context missing\nExplain")
    assert isinstance(exc, CellFailed)
    text = "\n".join(exc._render_traceback_())
    assert "--context: no variable named missing" in text
    assert generate_requests(server) == []
    out = capsys.readouterr()
    assert "Traceback" not in out.out + out.err


def test_context_value_whose_str_raises_does_not_crash_the_cell(ip, server):
    ok(ip, "class Hostile:\n    def __str__(self):\n        raise RuntimeError('no str')\n"
           "    __repr__ = __str__\nhostile = Hostile()\n")
    server.reset()
    result = run(ip, "%%gemini --context hostile\nWhat is this?")
    assert result.error_in_exec is None, repr(result.error_in_exec)
    text = prompt_of(server)
    assert "### hostile (" in text and text.endswith("What is this?")
