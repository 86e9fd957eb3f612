"""Every %%gemini option, and every GeminiMagics setting, reaches the wire.

The real SDK sends each cell over HTTP to the fake server; the assertions read the
request body the server received (server.last.body), not anything the extension
says about itself.
"""

from __future__ import annotations

import re

import pytest
from IPython.core.error import UsageError

import gemini_magic
from gemini_magic.magics import CellFailed
from tests.fake_gemini import FakeGemini, Reply

GENERATE = ("generateContent", "streamGenerateContent")
MISSING = object()
USAGE_LINE = "%gemini [-m MODEL]"


# -- helpers ------------------------------------------------------------------------


def _key(obj, camel: str):
    """obj[camel], or its snake_case spelling (the SDK mixes both), else MISSING."""
    if not isinstance(obj, dict):
        return MISSING
    if camel in obj:
        return obj[camel]
    snake = re.sub(r"(?<!^)(?=[A-Z])", "_", camel).lower()
    return obj.get(snake, MISSING)


def gen_config(request) -> dict:
    value = _key(request.body, "generationConfig")
    return value if isinstance(value, dict) else {}


def gen(request, *path: str):
    """A generationConfig value: gen(req, "thinkingConfig", "thinkingBudget")."""
    value = gen_config(request)
    for camel in path:
        value = _key(value, camel)
    return value


def generate_requests(server) -> list:
    return [r for r in server.requests if r.action in GENERATE]


def ask(ip, line: str = "", prompt: str = "Say hi"):
    return ip.run_cell_magic("gemini", line, prompt)


def config(ip, statement: str) -> None:
    ip.run_line_magic("config", f"GeminiMagics.{statement}")


@pytest.fixture
def next_input(ip, monkeypatch):
    """Captures ip.set_next_input calls (what `-f code` puts into the next cell)."""
    calls = []
    monkeypatch.setattr(ip, "set_next_input", lambda text, replace=False: calls.append((text, replace)))
    return calls


# -- model --------------------------------------------------------------------------


def test_default_model_is_gemini_2_5_flash(ip, server):
    ask(ip)
    assert server.last.path == "/v1/models/gemini-2.5-flash:streamGenerateContent"
    assert server.last.user_texts() == ["Say hi"]


@pytest.mark.parametrize("flag", ["-m", "--model"])
def test_model_option_without_prefix(ip, server, flag):
    ask(ip, f"{flag} gemini-2.5-pro")
    assert server.last.model == "gemini-2.5-pro"
    assert server.last.path == "/v1/models/gemini-2.5-pro:streamGenerateContent"


def test_model_option_with_models_prefix_is_not_doubled(ip, server):
    ask(ip, "-m models/gemini-2.5-flash-lite")
    assert server.last.path == "/v1/models/gemini-2.5-flash-lite:streamGenerateContent"


def test_default_model_from_config_and_option_overrides_it(ip, server):
    ip.run_line_magic("config", 'GeminiMagics.model = "gemini-2.5-pro"')
    ask(ip)
    assert server.last.model == "gemini-2.5-pro"
    ask(ip, "-m gemini-2.5-flash-lite")
    assert server.last.model == "gemini-2.5-flash-lite"


# -- sampling -----------------------------------------------------------------------


def test_no_options_send_no_generation_settings(ip, server):
    ask(ip)
    for camel in ("temperature", "topP", "topK", "maxOutputTokens", "seed", "stopSequences",
                  "thinkingConfig", "responseMimeType", "responseJsonSchema"):
        assert gen(server.last, camel) is MISSING, camel
    assert _key(server.last.body, "systemInstruction") is MISSING


@pytest.mark.parametrize(
    "line, camel, expected",
    [
        ("-t 0.7", "temperature", 0.7),
        ("--temperature 1.5", "temperature", 1.5),
        ("-t 0", "temperature", 0.0),
        ("--top-p 0.25", "topP", 0.25),
        ("--top-k 5", "topK", 5),
        ("--max-tokens 77", "maxOutputTokens", 77),
        ("--seed 42", "seed", 42),
    ],
)
def test_sampling_option_reaches_generation_config(ip, server, line, camel, expected):
    ask(ip, line)
    assert gen(server.last, camel) == expected


def test_all_sampling_options_together(ip, server):
    ask(ip, "-t 0.5 --top-p 0.9 --top-k 3 --max-tokens 50 --seed 7")
    cfg = server.last
    assert (gen(cfg, "temperature"), gen(cfg, "topP"), gen(cfg, "topK")) == (0.5, 0.9, 3)
    assert (gen(cfg, "maxOutputTokens"), gen(cfg, "seed")) == (50, 7)


def test_stop_is_repeatable(ip, server):
    ask(ip, "--stop END --stop HALT")
    assert gen(server.last, "stopSequences") == ["END", "HALT"]


def test_stop_quoted_with_a_space_is_sent_without_the_quotes(ip, server):
    ask(ip, '--stop "THE END"')
    assert gen(server.last, "stopSequences") == ["THE END"]


def test_single_stop(ip, server):
    ask(ip, "--stop END")
    assert gen(server.last, "stopSequences") == ["END"]


# -- thinking -----------------------------------------------------------------------


@pytest.mark.parametrize("value, budget", [("512", 512), ("0", 0), ("-1", -1), ("off", 0), ("OFF", 0)])
def test_thinking_budget(ip, server, value, budget):
    ask(ip, f"--thinking {value}")
    assert gen(server.last, "thinkingConfig", "thinkingBudget") == budget
    assert gen(server.last, "thinkingConfig", "thinkingLevel") is MISSING


@pytest.mark.parametrize("level", ["minimal", "low", "medium", "high", "High"])
def test_thinking_level(ip, server, level):
    ask(ip, f"--thinking {level}")
    assert gen(server.last, "thinkingConfig", "thinkingLevel") == level.upper()
    assert gen(server.last, "thinkingConfig", "thinkingBudget") is MISSING


@pytest.mark.parametrize("value", ["lots", "-5", "1.5"])
def test_bad_thinking_value_is_a_usage_error(ip, server, value):
    with pytest.raises(UsageError) as exc:
        ask(ip, f"--thinking {value}")
    assert "--thinking" in str(exc.value)
    assert server.requests == []


# -- system instruction -------------------------------------------------------------


def test_system_text_single_word(ip, server):
    ask(ip, "-s Pirate")
    assert server.last.system_texts() == ["Pirate"]


@pytest.mark.parametrize("quote", ['"', "'"])
def test_system_text_quoted_is_sent_without_the_quotes(ip, server, quote):
    ask(ip, f"-s {quote}Be brief and polite{quote}")
    assert server.last.system_texts() == ["Be brief and polite"]


def test_system_from_a_str_variable(ip, server):
    ip.user_ns["persona"] = "You are a pirate. Answer in one line."
    ask(ip, "--system persona")
    assert server.last.system_texts() == ["You are a pirate. Answer in one line."]
    assert server.last.user_texts() == ["Say hi"]


def test_system_name_of_a_non_str_variable_is_sent_as_text(ip, server):
    ip.user_ns["count"] = 3
    ask(ip, "-s count")
    assert server.last.system_texts() == ["count"]


# -- output variable, JSON and schemas ----------------------------------------------


def test_out_stores_the_answer_text(ip, server, capsys):
    server.queue(Reply(chunks=["Hello ", "there, ", "friend"]))
    ask(ip, "-o answer")
    assert ip.user_ns["answer"] == "Hello there, friend"
    assert "Hello there, friend" in capsys.readouterr().out


def test_out_with_no_stream(ip, server):
    server.queue(Reply(text="Whole answer"))
    ask(ip, "--out answer --no-stream")
    assert ip.user_ns["answer"] == "Whole answer"


def test_json_with_out_stores_the_parsed_value(ip, server, capsys):
    server.queue(Reply(chunks=['{"name": "Ada", ', '"langs": ["py", "ml"], ', '"age": 36}']))
    ask(ip, "--json -o data")
    assert ip.user_ns["data"] == {"name": "Ada", "langs": ["py", "ml"], "age": 36}
    assert gen(server.last, "responseMimeType") == "application/json"
    assert gen(server.last, "responseJsonSchema") is MISSING
    assert '"langs"' in capsys.readouterr().out


def test_json_answer_that_is_not_json_is_a_clear_error(ip, server, capsys):
    server.queue(Reply(text="Sure! Here it is: {oops"))
    with pytest.raises(CellFailed) as exc:
        ask(ip, "--json -o data")
    assert "not valid JSON" in exc.value.error.message
    assert "Sure! Here it is: {oops" in capsys.readouterr().out


SCHEMAS = {
    "pydantic": (
        "from pydantic import BaseModel\n"
        "class City(BaseModel):\n"
        "    name: str\n"
        "    population: int\n"
    ),
    "dataclass": (
        "from dataclasses import dataclass\n"
        "@dataclass\n"
        "class City:\n"
        "    name: str\n"
        "    population: int\n"
    ),
    # What a user writes on any Python the package supports (3.11 included).
    "typeddict": (
        "from typing import TypedDict\n"
        "class City(TypedDict):\n"
        "    name: str\n"
        "    population: int\n"
    ),
    "typeddict_ext": (
        "from typing_extensions import TypedDict\n"
        "class City(TypedDict):\n"
        "    name: str\n"
        "    population: int\n"
    ),
}


def define(ip, source: str) -> None:
    result = ip.run_cell(source)
    assert result.success, result.error_in_exec


@pytest.mark.parametrize("kind", sorted(SCHEMAS))
def test_schema_is_sent_and_out_stores_an_instance(ip, server, kind):
    define(ip, SCHEMAS[kind])
    server.queue(Reply(chunks=['{"name": "Paris", ', '"population": 2102650}']))
    ask(ip, "--schema City -o city", "The capital of France?")

    assert gen(server.last, "responseMimeType") == "application/json"
    schema = gen(server.last, "responseJsonSchema")
    assert isinstance(schema, dict), schema
    assert set(schema["properties"]) == {"name", "population"}
    assert schema["properties"]["population"]["type"] == "integer"
    assert sorted(schema["required"]) == ["name", "population"]

    city = ip.user_ns["city"]
    if kind.startswith("typeddict"):
        assert city == {"name": "Paris", "population": 2102650}
    else:
        assert isinstance(city, ip.user_ns["City"])
        assert (city.name, city.population) == ("Paris", 2102650)


def test_schema_name_not_defined(ip, server):
    with pytest.raises(CellFailed) as exc:
        ask(ip, "--schema Nowhere -o x")
    assert "Nowhere" in exc.value.error.message
    assert exc.value.error.hint
    assert server.requests == []
    assert "x" not in ip.user_ns


@pytest.mark.parametrize("value", [5, "City", object()])
def test_schema_name_that_is_not_a_schema(ip, server, value):
    ip.user_ns["thing"] = value
    with pytest.raises(CellFailed) as exc:
        ask(ip, "--schema thing")
    assert "not a schema" in exc.value.error.message
    assert "thing" in exc.value.error.message
    assert server.requests == []


def test_plain_class_is_not_a_schema(ip, server):
    define(ip, "class Plain:\n    name: str\n")
    with pytest.raises(CellFailed) as exc:
        ask(ip, "--schema Plain")
    assert "not a schema" in exc.value.error.message
    assert server.requests == []


def test_answer_not_matching_schema_is_a_clear_error_and_raw_text_shown(ip, server, capsys):
    define(ip, SCHEMAS["pydantic"])
    server.queue(Reply(text='{"name": "Paris", "population": "lots"}'))
    with pytest.raises(CellFailed) as exc:
        ask(ip, "--schema City -o city")
    message = exc.value.error.message
    assert "City" in message and "population" in message
    assert exc.value.error.hint
    assert '{"name": "Paris", "population": "lots"}' in capsys.readouterr().out
    assert not isinstance(ip.user_ns.get("city"), ip.user_ns["City"])


def test_answer_missing_a_required_field(ip, server):
    define(ip, SCHEMAS["dataclass"])
    server.queue(Reply(text='{"name": "Paris"}'))
    with pytest.raises(CellFailed) as exc:
        ask(ip, "--schema City")
    assert "population" in exc.value.error.message


# -- format -------------------------------------------------------------------------

FENCED = "Here you go:\n\n```python\ndef add(a, b):\n    return a + b\n```\n\nEnjoy."


def test_format_code_puts_the_fenced_code_in_the_next_cell(ip, server, next_input, capsys):
    server.queue(Reply(text=FENCED))
    ask(ip, "-f code", "Write add()")
    assert next_input == [("def add(a, b):\n    return a + b", False)]
    captured = capsys.readouterr()
    assert "def add(a, b):" in captured.out
    assert "cell below" not in captured.err  # whether a frontend made the cell is unknown


def test_format_code_without_a_fence_uses_the_whole_answer(ip, server, next_input):
    server.queue(Reply(text="print('hi')\n"))
    ask(ip, "--format code")
    assert next_input == [("print('hi')", False)]


@pytest.mark.parametrize("fmt", ["text", "markdown"])
def test_text_and_markdown_formats_print_the_answer_and_make_no_cell(ip, server, next_input, capsys, fmt):
    server.queue(Reply(text=FENCED))
    ask(ip, f"-f {fmt}")
    assert next_input == []
    assert "def add(a, b):" in capsys.readouterr().out


def test_default_format_makes_no_cell(ip, server, next_input):
    server.queue(Reply(text=FENCED))
    ask(ip)
    assert next_input == []


# -- streaming, usage, interpolation ------------------------------------------------


def test_streaming_is_the_default(ip, server, capsys):
    server.queue(Reply(chunks=["one ", "two ", "three"]))
    ask(ip)
    assert server.last.action == "streamGenerateContent"
    assert server.last.path.endswith(":streamGenerateContent")
    assert server.last.query.get("alt") == "sse"
    assert capsys.readouterr().out == "one two three\n"


def test_no_stream_uses_generate_content(ip, server, capsys):
    server.queue(Reply(chunks=["one ", "two ", "three"]))
    ask(ip, "--no-stream")
    assert server.last.path == "/v1/models/gemini-2.5-flash:generateContent"
    assert "alt" not in server.last.query
    assert capsys.readouterr().out == "one two three\n"


USAGE = {"promptTokenCount": 11, "candidatesTokenCount": 7, "totalTokenCount": 18}


def test_usage_prints_a_footer_with_token_counts(ip, server, capsys):
    server.queue(Reply(text="Short answer", usage=USAGE))
    ask(ip, "--usage")
    out = capsys.readouterr().out
    assert out.startswith("Short answer\n")
    footer = out.splitlines()[-1]
    assert footer.startswith("[") and footer.endswith("]")
    assert "gemini-2.5-flash" in footer
    assert "11 in" in footer and "7 out" in footer


def test_usage_footer_counts_thinking_tokens(ip, server, capsys):
    usage = dict(USAGE, thoughtsTokenCount=40, totalTokenCount=58)
    server.queue(Reply(text="Short answer", usage=usage))
    ask(ip, "--usage --no-stream")
    assert "40 thinking" in capsys.readouterr().out.splitlines()[-1]


def test_no_footer_without_usage(ip, server, capsys):
    server.queue(Reply(text="Short answer", usage=USAGE))
    ask(ip)
    assert capsys.readouterr().out == "Short answer\n"


def test_prompt_is_interpolated_by_default(ip, server):
    ip.user_ns["city"] = "Lyon"
    ask(ip, "", "Tell me about {city}.")
    assert server.last.user_texts() == ["Tell me about Lyon."]


def test_no_interpolate_sends_braces_as_written(ip, server):
    ip.user_ns["city"] = "Lyon"
    ask(ip, "--no-interpolate", "Tell me about {city}.")
    assert server.last.user_texts() == ["Tell me about {city}."]


# -- settings (traitlets) are defaults; options override them -----------------------

SETTINGS = [
    # (%config statement, option overriding it, generationConfig path, default value, overridden value)
    ("temperature = 0.3", "-t 1.1", ("temperature",), 0.3, 1.1),
    ("top_p = 0.4", "--top-p 0.8", ("topP",), 0.4, 0.8),
    ("top_k = 7", "--top-k 2", ("topK",), 7, 2),
    ("max_tokens = 64", "--max-tokens 128", ("maxOutputTokens",), 64, 128),
    ("seed = 11", "--seed 12", ("seed",), 11, 12),
    ("stop = ['END']", "--stop HALT", ("stopSequences",), ["END"], ["HALT"]),
    ("thinking = '256'", "--thinking 1024", ("thinkingConfig", "thinkingBudget"), 256, 1024),
    ("thinking = 'low'", "--thinking high", ("thinkingConfig", "thinkingLevel"), "LOW", "HIGH"),
]


@pytest.mark.parametrize("statement, option, path, default, overridden", SETTINGS,
                         ids=[s[0] for s in SETTINGS])
def test_setting_is_the_default_and_option_overrides_it(ip, server, statement, option, path, default, overridden):
    config(ip, statement)
    ask(ip)
    assert gen(server.last, *path) == default
    ask(ip, option)
    assert gen(server.last, *path) == overridden
    ask(ip)
    assert gen(server.last, *path) == default  # an option lasts one cell


def test_system_setting_and_option_override(ip, server):
    config(ip, "system = 'Answer in French.'")
    ask(ip)
    assert server.last.system_texts() == ["Answer in French."]
    ask(ip, "-s Override")
    assert server.last.system_texts() == ["Override"]


def test_stream_setting_false_uses_generate_content(ip, server):
    config(ip, "stream = False")
    ask(ip)
    assert server.last.action == "generateContent"


def test_usage_setting_adds_the_footer(ip, server, capsys):
    config(ip, "usage = True")
    server.queue(Reply(text="Short answer", usage=USAGE))
    ask(ip)
    assert "11 in" in capsys.readouterr().out.splitlines()[-1]


def test_interpolate_setting_false(ip, server):
    config(ip, "interpolate = False")
    ip.user_ns["city"] = "Lyon"
    ask(ip, "", "About {city}")
    assert server.last.user_texts() == ["About {city}"]


def test_format_setting_and_option_override(ip, server, next_input):
    config(ip, "format = 'code'")
    server.queue(Reply(text=FENCED), Reply(text=FENCED))
    ask(ip)
    assert next_input == [("def add(a, b):\n    return a + b", False)]
    ask(ip, "-f text")
    assert len(next_input) == 1


def test_settings_are_checked_when_set(ip, server):
    """A bad %config value fails when set, saying what the setting takes, and the
    setting keeps its old value: it never fails later, inside a request."""
    from traitlets import TraitError

    magics = gemini_magic._magics
    with pytest.raises(TraitError, match=r"temperature must be between 0 and 2, not 3.0"):
        magics.temperature = 3.0
    assert magics.temperature is None
    ask(ip)
    assert gen(server.last, "temperature") is MISSING


# -- endpoint -----------------------------------------------------------------------


def test_base_url_setting_without_environment_variable(ip, server, env):
    env.delenv("GOOGLE_GEMINI_BASE_URL")
    config(ip, f"base_url = {server.url!r}")
    server.queue(Reply(text="via config"))
    ask(ip)
    assert len(generate_requests(server)) == 1
    assert server.last.user_texts() == ["Say hi"]


def test_changing_base_url_rebuilds_the_client(ip, server, env, capsys):
    env.delenv("GOOGLE_GEMINI_BASE_URL")
    config(ip, f"base_url = {server.url!r}")
    ask(ip)
    first_client = gemini_magic._magics.connection._client
    assert len(generate_requests(server)) == 1
    with FakeGemini() as other:
        other.queue(Reply(text="from the other server"))
        config(ip, f"base_url = {other.url!r}")
        ask(ip, "", "Where are you?")
        assert [r.user_texts() for r in generate_requests(other)] == [["Where are you?"]]
    assert len(generate_requests(server)) == 1
    assert gemini_magic._magics.connection._client is not first_client
    assert "from the other server" in capsys.readouterr().out


def test_base_url_setting_wins_over_environment(ip, server):
    with FakeGemini() as other:
        config(ip, f"base_url = {other.url!r}")
        ask(ip)
        assert len(generate_requests(other)) == 1
    assert generate_requests(server) == []


def test_api_version_v1beta(ip, server):
    config(ip, "api_version = 'v1beta'")
    ask(ip)
    assert server.last.path == "/v1beta/models/gemini-2.5-flash:streamGenerateContent"
    assert server.last.version == "v1beta"


# -- bad options --------------------------------------------------------------------


@pytest.mark.parametrize(
    "line",
    [
        "--bogus",
        "-t abc",
        "-t 5",
        "-t -0.1",
        "--top-p 2",
        "--top-k 0",
        "--max-tokens 0",
        "--seed x",
        "--format bogus",
        "-m",
    ],
)
def test_bad_option_is_a_usage_error_with_the_usage_line(ip, server, line):
    with pytest.raises(UsageError) as exc:
        ask(ip, line)
    text = str(exc.value)
    assert USAGE_LINE in text, text
    assert server.requests == []


@pytest.mark.parametrize("line, named", [("-t 5", "--temperature"), ("--top-p 2", "--top-p"),
                                         ("--format bogus", "bogus"), ("--bogus", "--bogus")])
def test_bad_option_message_names_the_problem(ip, server, line, named):
    with pytest.raises(UsageError) as exc:
        ask(ip, line)
    assert named in str(exc.value)
    assert server.requests == []


def test_help_lists_every_option(ip):
    doc = ip.find_cell_magic("gemini").__doc__
    for option in ("-m", "--model", "-t", "--temperature", "--top-p", "--top-k", "--max-tokens", "--seed",
                   "--stop", "--thinking", "-s", "--system", "-o", "--out", "-f", "--format", "--json",
                   "--schema", "--no-stream", "--no-interpolate", "--usage", "--debug"):
        assert re.search(rf"(^|[\s,\[]){re.escape(option)}\b", doc), option
    for fmt in ("markdown", "text", "code", "json"):
        assert fmt in doc
