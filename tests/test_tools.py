"""Notebook functions as Gemini tools: declarations, the call loop, approval, and cards.

Everything runs the real SDK over real HTTP against the fake server; each check
reads what the server received (declarations, function calls and responses sent
back) or what a frontend receives (the in-process shell's text, a real kernel's
display messages and stdin requests).
"""

from __future__ import annotations

import base64
import io
import json
import queue
import re
import time

import pytest
from IPython.core.error import StdinNotImplementedError

import gemini_magic
import gemini_magic.tools as tools_module
from gemini_magic.magics import CellFailed
from tests.fake_gemini import Reply
from tests.kernel import Execution

GENERATE = ("generateContent", "streamGenerateContent")
SIGNATURE = "c2lnbmF0dXJl"  # base64 of b"signature"


# -- helpers ------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _no_default_tools():
    """@gemini_magic.tool registers into a module-level dict: each test starts and ends empty."""
    saved = dict(tools_module._default_tools)
    tools_module._default_tools.clear()
    yield
    tools_module._default_tools.clear()
    tools_module._default_tools.update(saved)


def _k(obj, camel: str):
    """A wire key in camelCase or snake_case (the SDK sends both)."""
    if not isinstance(obj, dict):
        return None
    if camel in obj:
        return obj[camel]
    return obj.get(re.sub(r"(?<!^)(?=[A-Z])", "_", camel).lower())


def generate_requests(server) -> list:
    return [r for r in server.requests if r.action in GENERATE]


def define(ip, source: str) -> None:
    result = ip.run_cell(source)
    assert result.error_in_exec is None and result.error_before_exec is None, result.error_in_exec


def ok(ip, source: str, cell_id: str | None = None):
    result = ip.run_cell(source) if cell_id is None else ip.run_cell(source, cell_id=cell_id)
    assert result.error_in_exec is None, result.error_in_exec
    assert result.error_before_exec is None, result.error_before_exec
    return result


def failed(ip, source: str) -> CellFailed:
    result = ip.run_cell(source)
    assert isinstance(result.error_in_exec, CellFailed), result.error_in_exec
    return result.error_in_exec


def declarations(request) -> dict:
    out = {}
    for tool in _k(request.body, "tools") or []:
        for decl in _k(tool, "functionDeclarations") or []:
            out[decl["name"]] = decl
    return out


def parameters(request, name: str) -> dict:
    return _k(declarations(request)[name], "parametersJsonSchema")


def resolved(schema: dict, node: dict) -> dict:
    """A schema node with its $ref (into the schema's $defs) followed."""
    while "$ref" in node:
        node = schema["$defs"][node["$ref"].rsplit("/", 1)[-1]]
    return node


def fc(name: str, args: dict | None = None, call_id: str | None = None, signature: str | None = None) -> dict:
    """A model part calling a function, as the API sends it."""
    call: dict = {"name": name, "args": args or {}}
    if call_id is not None:
        call["id"] = call_id
    part: dict = {"functionCall": call}
    if signature is not None:
        part["thoughtSignature"] = signature
    return part


def contents(request) -> list[dict]:
    return _k(request.body, "contents")


def function_calls(content: dict) -> list[dict]:
    return [_k(p, "functionCall") for p in content.get("parts", []) if _k(p, "functionCall") is not None]


def function_responses(content: dict) -> list[dict]:
    return [_k(p, "functionResponse") for p in content.get("parts", []) if _k(p, "functionResponse") is not None]


def last_response(server) -> dict:
    """The `response` of the single functionResponse the last request sent back."""
    sent = function_responses(contents(server.last)[-1])
    assert len(sent) == 1, sent
    return sent[0]["response"]


def tool_config_mode(request):
    return _k(_k(_k(request.body, "toolConfig"), "functionCallingConfig"), "mode")


# -- declarations -------------------------------------------------------------------


def declare(ip, server, source: str, name: str) -> tuple[dict, dict]:
    """Define `source` in the shell, ask with `--tools name`; the declaration and its schema as sent."""
    define(ip, source)
    server.queue("fine")
    ok(ip, f"%%gemini --tools {name}\nhi")
    decl = declarations(server.last)[name]
    return decl, _k(decl, "parametersJsonSchema")


def test_scalar_types_are_declared_and_required(ip, server):
    decl, schema = declare(ip, server, (
        "def scalars(name: str, count: int, ratio: float, flag: bool) -> str:\n"
        "    return name\n"
    ), "scalars")
    assert decl["name"] == "scalars"
    assert schema["type"] == "object"
    assert {k: v["type"] for k, v in schema["properties"].items()} == {
        "name": "string", "count": "integer", "ratio": "number", "flag": "boolean"}
    assert schema["required"] == ["name", "count", "ratio", "flag"]
    # No pydantic titles leak into what the model reads.
    assert "title" not in schema and all("title" not in p for p in schema["properties"].values())


def test_optional_and_defaults_are_in_the_schema_and_not_required(ip, server):
    _, schema = declare(ip, server, (
        "from typing import Optional\n"
        "def opt(city: str, limit: Optional[int] = None, unit: str = 'C', days: int = 3) -> str:\n"
        "    return city\n"
    ), "opt")
    assert schema["required"] == ["city"]
    props = schema["properties"]
    assert {"type": "integer"} in props["limit"]["anyOf"] and {"type": "null"} in props["limit"]["anyOf"]
    assert props["limit"]["default"] is None
    assert props["unit"] == {"type": "string", "default": "C"}
    assert props["days"] == {"type": "integer", "default": 3}


def test_literal_enum_list_and_dict(ip, server):
    _, schema = declare(ip, server, (
        "import enum\n"
        "from typing import Literal\n"
        "class Color(enum.Enum):\n"
        "    RED = 'red'\n"
        "    GREEN = 'green'\n"
        "def mixed(unit: Literal['C', 'F'], color: Color, tags: list[str], counts: dict[str, int]) -> str:\n"
        "    return ''\n"
    ), "mixed")
    props = schema["properties"]
    assert props["unit"]["enum"] == ["C", "F"]
    color = resolved(schema, props["color"])
    assert color["enum"] == ["red", "green"] and color["type"] == "string"
    assert props["tags"] == {"type": "array", "items": {"type": "string"}}
    assert props["counts"] == {"type": "object", "additionalProperties": {"type": "integer"}}
    assert schema["required"] == ["unit", "color", "tags", "counts"]


def test_dataclass_and_pydantic_model_parameters(ip, server):
    _, schema = declare(ip, server, (
        "from dataclasses import dataclass\n"
        "import pydantic\n"
        "@dataclass\n"
        "class Point:\n"
        "    x: float\n"
        "    y: float = 0.0\n"
        "class Person(pydantic.BaseModel):\n"
        "    name: str\n"
        "    age: int\n"
        "def place(where: Point, who: Person) -> str:\n"
        "    return ''\n"
    ), "place")
    point = resolved(schema, schema["properties"]["where"])
    assert point["type"] == "object"
    assert point["properties"]["x"]["type"] == "number" and point["properties"]["y"]["default"] == 0.0
    assert point["required"] == ["x"]
    person = resolved(schema, schema["properties"]["who"])
    assert person["properties"]["name"]["type"] == "string" and person["properties"]["age"]["type"] == "integer"
    assert sorted(person["required"]) == ["age", "name"]


GOOGLE_DOC = '''
def weather(city: str, days: int = 1) -> dict:
    """Current weather and forecast
    for a city.

    Args:
        city: The city name, e.g. "Paris".
        days (int): How many days
            to forecast.

    Returns:
        A dict of readings.
    """
    return {}
'''

NUMPY_DOC = '''
def weather(city: str, days: int = 1) -> dict:
    """Current weather and forecast for a city.

    Parameters
    ----------
    city : str
        The city name, e.g. "Paris".
    days : int, optional
        How many days
        to forecast.

    Returns
    -------
    dict
        Readings.
    """
    return {}
'''

REST_DOC = '''
def weather(city: str, days: int = 1) -> dict:
    """Current weather and forecast for a city.

    :param city: The city name, e.g. "Paris".
    :type city: str
    :param int days: How many days
        to forecast.
    :returns: Readings.
    :rtype: dict
    """
    return {}
'''


@pytest.mark.parametrize("source", [GOOGLE_DOC, NUMPY_DOC, REST_DOC], ids=["google", "numpy", "rest"])
def test_docstring_summary_and_parameter_descriptions(ip, server, source):
    decl, schema = declare(ip, server, source, "weather")
    assert decl["description"] == "Current weather and forecast for a city."
    assert schema["properties"]["city"]["description"] == 'The city name, e.g. "Paris".'
    assert schema["properties"]["days"]["description"] == "How many days to forecast."
    assert schema["properties"]["days"]["default"] == 1
    # Nothing of the Returns section is taken for a parameter or the summary.
    assert set(schema["properties"]) == {"city", "days"}
    assert "Readings" not in decl["description"]


def test_numpy_description_with_a_colon_stays_with_its_parameter(ip, server):
    decl, schema = declare(ip, server, '''
def convert(value: float, unit: str = "C") -> float:
    """Convert a temperature.

    Parameters
    ----------
    value : float
        The temperature.
    unit : str
        Target unit.
        Default: Celsius.
    """
    return value
''', "convert")
    assert set(schema["properties"]) == {"value", "unit"}
    assert schema["properties"]["unit"]["description"] == "Target unit. Default: Celsius."


def test_function_without_docstring_is_described_by_its_name(ip, server):
    decl, schema = declare(ip, server, "def bare(x: int) -> int:\n    return x\n", "bare")
    assert decl["description"] == "bare"
    assert "description" not in schema["properties"]["x"]


@pytest.mark.parametrize("source, parameter, words", [
    ("def nohint(city, days: int = 1):\n    return city\n", "city", "no type hint"),
    ("def starargs(city: str, *rest: str):\n    return city\n", "rest", "*args and **kwargs"),
    ("def kwargs(city: str, **options: str):\n    return city\n", "options", "*args and **kwargs"),
    ("import threading\ndef locked(city: str, lock: threading.Lock):\n    return city\n", "lock", "cannot be declared"),
    ("class Opaque:\n    pass\ndef opaque(thing: Opaque):\n    return thing\n", "thing", "cannot be declared"),
])
def test_undeclarable_parameter_fails_before_any_request(ip, server, source, parameter, words):
    define(ip, source)
    name = re.search(r"def (\w+)\(", source).group(1)
    error = failed(ip, f"%%gemini --tools {name}\nhi")
    message = error.error.message
    assert name in message and repr(parameter) in message and words in message
    assert server.requests == []


def test_tools_naming_a_missing_function(ip, server):
    error = failed(ip, "%%gemini --tools no_such_function\nhi")
    assert "no function named 'no_such_function'" in error.error.message
    assert server.requests == []


def test_tools_naming_a_non_function(ip, server):
    define(ip, "answer = 42")
    error = failed(ip, "%%gemini --tools answer\nhi")
    assert "answer" in error.error.message and "int" in error.error.message
    assert server.requests == []


def test_tool_is_exported_by_the_package():
    assert gemini_magic.tool is tools_module.tool
    assert "tool" in gemini_magic.__all__


def test_marked_tools_are_declared_in_every_cell(ip, server):
    define(ip, (
        "import gemini_magic\n"
        "@gemini_magic.tool\n"
        "def shout(text: str) -> str:\n"
        "    '''Upper-case a text.'''\n"
        "    return text.upper()\n"
        "def extra(n: int) -> int:\n"
        "    return n\n"
    ))
    server.queue("one", "two", "three")
    ok(ip, "%%gemini\nfirst")
    ok(ip, "%%gemini\nsecond")
    ok(ip, "%%gemini --tools extra\nthird")
    first, second, third = generate_requests(server)
    assert list(declarations(first)) == ["shout"]
    assert declarations(first)["shout"]["description"] == "Upper-case a text."
    assert list(declarations(second)) == ["shout"]
    assert sorted(declarations(third)) == ["extra", "shout"]


def test_a_cell_without_tools_sends_no_tools(ip, server):
    define(ip, "def unused(n: int) -> int:\n    return n\n")
    server.queue("plain")
    ok(ip, "%%gemini\nhi")
    assert _k(server.last.body, "tools") is None
    assert _k(server.last.body, "toolConfig") is None


def test_tools_command_lists_marked_and_named_tools_with_schemas(ip, server, capsys):
    define(ip, (
        "import gemini_magic\n"
        "from typing import Literal\n"
        "@gemini_magic.tool\n"
        "def forecast(city: str, unit: Literal['C', 'F'] = 'C') -> str:\n"
        "    '''Forecast for a city.\n\n    Args:\n        city: Where.\n    '''\n"
        "    return city\n"
        "@gemini_magic.tool(confirm=True)\n"
        "def wipe(path: str) -> str:\n"
        "    '''Delete a file.'''\n"
        "    return path\n"
        "def helper(n: int) -> int:\n"
        "    '''Named only.'''\n"
        "    return n\n"
    ))
    capsys.readouterr()
    ok(ip, "%gemini tools")
    out = capsys.readouterr().out
    assert "forecast: Forecast for a city." in out
    assert "wipe (asks before each call): Delete a file." in out
    assert "helper" not in out
    # The schemas are printed as JSON: parse the one after "forecast:".
    block = out.split("forecast: Forecast for a city.\n", 1)[1].split("\nwipe", 1)[0]
    schema = json.loads(block)
    assert schema["properties"]["unit"] == {"default": "C", "enum": ["C", "F"], "type": "string"}
    assert schema["properties"]["city"]["description"] == "Where."
    assert schema["required"] == ["city"]

    ok(ip, "%gemini tools helper")
    out = capsys.readouterr().out
    assert "helper: Named only." in out and "forecast:" in out
    assert server.requests == []


def test_tools_command_with_no_tools(ip, capsys):
    ok(ip, "%gemini tools")
    assert "No tools" in capsys.readouterr().out


def test_tools_command_reports_an_undeclarable_function(ip, server):
    define(ip, "def nohint(x):\n    return x\n")
    error = failed(ip, "%gemini tools nohint")
    assert "nohint" in error.error.message and "'x'" in error.error.message


# -- the loop -----------------------------------------------------------------------


LOOKUP = (
    "ran = []\n"
    "def lookup(city: str) -> dict:\n"
    "    '''Weather of a city.'''\n"
    "    ran.append(city)\n"
    "    return {'city': city, 'sky': 'sunny'}\n"
)


def test_call_runs_and_result_goes_back_with_the_call_as_returned(ip, server, capsys):
    define(ip, LOOKUP)
    server.queue(
        Reply(parts=[{"text": "Let me check. "}, fc("lookup", {"city": "Paris"}, "call-1", SIGNATURE)]),
        Reply(text="It is sunny in Paris."),
    )
    ok(ip, "%%gemini --tools lookup\nWeather in Paris?")
    assert ip.user_ns["ran"] == ["Paris"]
    first, second = generate_requests(server)
    assert len(contents(first)) == 1
    user, model, results = contents(second)
    assert user["role"] == "user" and user["parts"][0]["text"] == "Weather in Paris?"
    # The model's turn exactly as returned: its text, then the call with its signature.
    assert model["role"] == "model"
    assert model["parts"][0]["text"] == "Let me check. "
    call_part = model["parts"][1]
    assert _k(call_part, "functionCall") == {"id": "call-1", "name": "lookup", "args": {"city": "Paris"}}
    assert _k(call_part, "thoughtSignature") == SIGNATURE
    # Then a user turn with the result, same id and name.
    assert results["role"] == "user"
    assert function_responses(results) == [
        {"id": "call-1", "name": "lookup", "response": {"city": "Paris", "sky": "sunny"}}]
    # Both requests declare the tool; the final one allows calls still (no limit reached).
    assert list(declarations(second)) == ["lookup"] and tool_config_mode(second) is None
    out = capsys.readouterr().out
    assert "It is sunny in Paris." in out


def test_call_without_an_id_is_answered_by_name(ip, server):
    define(ip, LOOKUP)
    server.queue(Reply(parts=[fc("lookup", {"city": "Oslo"})]), Reply(text="Cold."))
    ok(ip, "%%gemini --tools lookup\nOslo?")
    sent = function_responses(contents(server.last)[-1])
    assert sent == [{"name": "lookup", "response": {"city": "Oslo", "sky": "sunny"}}]


def test_arguments_are_validated_into_their_types(ip, server):
    define(ip, (
        "import enum\n"
        "from dataclasses import dataclass\n"
        "import pydantic\n"
        "class Color(enum.Enum):\n"
        "    RED = 'red'\n"
        "    GREEN = 'green'\n"
        "@dataclass\n"
        "class Point:\n"
        "    x: float\n"
        "    y: float\n"
        "class Person(pydantic.BaseModel):\n"
        "    name: str\n"
        "    age: int\n"
        "got = {}\n"
        "def paint(where: Point, who: Person, color: Color, times: int, tags: list[str]) -> str:\n"
        "    got.update(where=where, who=who, color=color, times=times, tags=tags)\n"
        "    return 'painted'\n"
    ))
    args = {"where": {"x": 1.5, "y": 2}, "who": {"name": "Ada", "age": 36}, "color": "green",
            "times": 2.0, "tags": ["a", "b"]}
    server.queue(Reply(parts=[fc("paint", args, "p1")]), Reply(text="Done."))
    ok(ip, "%%gemini --tools paint\npaint")
    got = ip.user_ns["got"]
    assert type(got["where"]) is ip.user_ns["Point"] and (got["where"].x, got["where"].y) == (1.5, 2.0)
    assert type(got["who"]) is ip.user_ns["Person"] and (got["who"].name, got["who"].age) == ("Ada", 36)
    assert got["color"] is ip.user_ns["Color"].GREEN
    assert got["times"] == 2 and type(got["times"]) is int
    assert got["tags"] == ["a", "b"]
    assert last_response(server) == {"result": "painted"}


def test_invalid_arguments_are_not_run_and_the_error_goes_back(ip, server, capsys):
    define(ip, LOOKUP)
    server.queue(Reply(parts=[fc("lookup", {"town": "Paris"}, "bad")]), Reply(text="Sorry."))
    ok(ip, "%%gemini --tools lookup\nweather")
    assert ip.user_ns["ran"] == []
    error = last_response(server)["error"]
    assert error.startswith("ValidationError") and "city" in error
    assert "Sorry." in capsys.readouterr().out


def test_two_rounds_carry_the_whole_exchange(ip, server, capsys):
    define(ip, (
        "log = []\n"
        "def find(name: str) -> int:\n"
        "    log.append(('find', name))\n"
        "    return 7\n"
        "def fetch(key: int) -> str:\n"
        "    log.append(('fetch', key))\n"
        "    return f'value-{key}'\n"
    ))
    server.queue(
        Reply(parts=[fc("find", {"name": "x"}, "a1", SIGNATURE)]),
        Reply(parts=[fc("fetch", {"key": 7}, "a2")]),
        Reply(text="The value is value-7."),
    )
    ok(ip, "%%gemini --tools find,fetch\nwhat is x?")
    assert ip.user_ns["log"] == [("find", "x"), ("fetch", 7)]
    requests = generate_requests(server)
    assert len(requests) == 3
    roles = [c["role"] for c in contents(requests[2])]
    assert roles == ["user", "model", "user", "model", "user"]
    sent = contents(requests[2])
    assert function_calls(sent[1]) == [{"id": "a1", "name": "find", "args": {"name": "x"}}]
    assert _k(sent[1]["parts"][0], "thoughtSignature") == SIGNATURE
    assert function_responses(sent[2]) == [{"id": "a1", "name": "find", "response": {"result": 7}}]
    assert function_calls(sent[3]) == [{"id": "a2", "name": "fetch", "args": {"key": 7}}]
    assert function_responses(sent[4]) == [{"id": "a2", "name": "fetch", "response": {"result": "value-7"}}]
    # The second request repeats the first round unchanged.
    assert contents(requests[1]) == sent[:3]
    assert "The value is value-7." in capsys.readouterr().out


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "no-stream"])
def test_parallel_calls_are_answered_in_order(ip, server, capsys, stream):
    define(ip, (
        "order = []\n"
        "def square(n: int) -> int:\n"
        "    order.append(n)\n"
        "    return n * n\n"
    ))
    server.queue(
        Reply(parts=[fc("square", {"n": 3}, "s3"), fc("square", {"n": 1}, "s1"), fc("square", {"n": 2}, "s2")]),
        Reply(text="9, 1 and 4."),
    )
    ok(ip, "%%gemini --tools square" + ("" if stream else " --no-stream") + "\nsquares")
    assert ip.user_ns["order"] == [3, 1, 2]
    assert generate_requests(server)[0].stream is stream
    user, model, results = contents(server.last)
    assert [c["id"] for c in function_calls(model)] == ["s3", "s1", "s2"]
    assert function_responses(results) == [
        {"id": "s3", "name": "square", "response": {"result": 9}},
        {"id": "s1", "name": "square", "response": {"result": 1}},
        {"id": "s2", "name": "square", "response": {"result": 4}},
    ]
    # The terminal prints one line per call, in order, and the answer.
    out = capsys.readouterr().out
    lines = [re.sub(r" in \d+ ms", "", line) for line in out.splitlines() if "square(" in line]
    assert lines == [f"✓ square(n={n}): done; result: {n * n}" for n in (3, 1, 2)]
    assert "9, 1 and 4." in out


def test_async_tool_runs_in_the_shell(ip, server):
    define(ip, (
        "import asyncio\n"
        "async def slow_upper(text: str) -> str:\n"
        "    await asyncio.sleep(0)\n"
        "    return text.upper()\n"
    ))
    server.queue(Reply(parts=[fc("slow_upper", {"text": "quiet"}, "u1")]), Reply(text="QUIET"))
    ok(ip, "%%gemini --tools slow_upper\nshout")
    assert last_response(server) == {"result": "QUIET"}


def test_raising_tool_sends_the_error_and_the_loop_continues(ip, server, capsys):
    define(ip, (
        "def divide(a: int, b: int) -> float:\n"
        "    return a / b\n"
    ))
    server.queue(
        Reply(parts=[fc("divide", {"a": 1, "b": 0}, "d1")]),
        Reply(parts=[fc("divide", {"a": 1, "b": 4}, "d2")]),
        Reply(text="One quarter."),
    )
    ok(ip, "%%gemini --tools divide\n1/0 then 1/4")
    requests = generate_requests(server)
    assert len(requests) == 3
    sent = contents(requests[2])
    assert function_responses(sent[2])[0]["response"] == {"error": "ZeroDivisionError: division by zero"}
    assert function_responses(sent[4])[0]["response"] == {"result": 0.25}
    out = capsys.readouterr().out
    assert "✗ divide(a=1, b=0): raised an error" in out and "ZeroDivisionError: division by zero" in out
    assert "One quarter." in out


def test_non_json_results_are_converted(ip, server):
    define(ip, (
        "class Point:\n"
        "    def __init__(self, x, y):\n"
        "        self.x, self.y = x, y\n"
        "    def __str__(self):\n"
        "        return f'Point({self.x}, {self.y})'\n"
        "def a_set() -> set:\n"
        "    return {3, 1, 2}\n"
        "def an_object() -> object:\n"
        "    return Point(1, 2)\n"
        "def a_tuple() -> tuple:\n"
        "    return (1, 'two')\n"
    ))
    server.queue(
        Reply(parts=[fc("a_set", {}, "r1"), fc("an_object", {}, "r2"), fc("a_tuple", {}, "r3")]),
        Reply(text="ok"),
    )
    ok(ip, "%%gemini --tools a_set,an_object,a_tuple\nresults")
    sent = [r["response"] for r in function_responses(contents(server.last)[-1])]
    assert sent == [{"result": "{1, 2, 3}"}, {"result": "Point(1, 2)"}, {"result": [1, "two"]}]


def test_dataframe_result_is_a_bounded_summary(ip, server, capsys):
    define(ip, (
        "import pandas as pd\n"
        "def table() -> object:\n"
        "    return pd.DataFrame({'id': range(100000, 110000), 'score': [i % 7 for i in range(10000)]})\n"
    ))
    server.queue(Reply(parts=[fc("table", {}, "t1")]), Reply(text="A table."))
    ok(ip, "%%gemini --tools table\ntable please")
    response = last_response(server)
    summary = response["result"]
    assert isinstance(summary, str)
    assert "pandas DataFrame, 10,000 rows x 2 columns" in summary
    assert "100000" in summary and "109999" not in summary
    assert len(json.dumps(response)) < 5000
    # The card line is bounded too.
    line = [x for x in capsys.readouterr().out.splitlines() if "table()" in x][0]
    assert len(line) < 200


def test_long_json_result_is_summarized(ip, server):
    define(ip, "def numbers() -> list:\n    return list(range(10000))\n")
    server.queue(Reply(parts=[fc("numbers", {}, "n1")]), Reply(text="Many."))
    ok(ip, "%%gemini --tools numbers\nnumbers")
    summary = last_response(server)["result"]
    assert isinstance(summary, str) and len(summary) < 5000
    assert summary.startswith("[0, 1, 2") and "more items" in summary and "9999" not in summary


def test_dict_with_non_string_keys_is_sent(ip, server, capsys):
    define(ip, "def by_id() -> dict:\n    return {1: 'one', 2: 'two'}\n")
    server.queue(Reply(parts=[fc("by_id", {}, "k1")]), Reply(text="Two names."))
    ok(ip, "%%gemini --tools by_id\nnames")
    assert last_response(server) in ({"1": "one", "2": "two"}, {"result": {"1": "one", "2": "two"}})
    assert "Two names." in capsys.readouterr().out


def test_nan_result_is_sent_as_valid_json(ip, server, capsys):
    define(ip, "import math\ndef average() -> float:\n    return math.nan\n")
    server.queue(Reply(parts=[fc("average", {}, "m1")]), Reply(text="No data."))
    ok(ip, "%%gemini --tools average\naverage")

    def reject(constant):
        raise ValueError(f"not JSON: {constant}")

    # The API parses strict JSON: NaN and Infinity are not JSON.
    body = json.loads(server.last.raw_body, parse_constant=reject)
    assert function_responses(_k(body, "contents")[-1])[0]["name"] == "average"
    assert "No data." in capsys.readouterr().out


@pytest.mark.parametrize("model", ["gemini-3-flash-preview", "gemini-2.5-flash"])
def test_image_result_goes_back_as_inline_parts(ip, server, model):
    """Gemini 3 reads images inside a function response; earlier models get them as image
    parts of the same turn, after the responses, introduced by a line naming the call."""
    from PIL import Image

    define(ip, (
        "from PIL import Image\n"
        "def draw(width: int, height: int) -> object:\n"
        "    return Image.new('RGB', (width, height), (255, 0, 0))\n"
    ))
    server.queue(Reply(parts=[fc("draw", {"width": 12, "height": 7}, "img1", SIGNATURE)]), Reply(text="A red box."))
    ok(ip, f"%%gemini -m {model} --tools draw\ndraw")
    turn = contents(server.last)[-1]
    sent = function_responses(turn)[0]
    assert sent["id"] == "img1" and sent["name"] == "draw"
    assert sent["response"] == {"result": "image attached"}
    if model.startswith("gemini-3"):
        assert len(turn["parts"]) == 1
        inline = _k(sent["parts"][0], "inlineData")
    else:
        assert not sent.get("parts")
        assert turn["parts"][1]["text"] == "The image(s) draw returned (call img1):"
        inline = _k(turn["parts"][2], "inlineData")
    assert _k(inline, "mimeType") == "image/png"
    data = inline["data"]
    raw = base64.b64decode(data + "=" * (-len(data) % 4), altchars=b"-_")
    image = Image.open(io.BytesIO(raw))
    assert image.format == "PNG" and image.size == (12, 7) and image.getpixel((0, 0)) == (255, 0, 0)


def test_unknown_function_is_never_run(ip, server, capsys):
    define(ip, LOOKUP + (
        "deleted = []\n"
        "def delete_everything() -> str:\n"
        "    deleted.append(1)\n"
        "    return 'gone'\n"
    ))
    server.queue(Reply(parts=[fc("delete_everything", {}, "x1")]), Reply(text="I cannot."))
    ok(ip, "%%gemini --tools lookup\nclean up")
    assert ip.user_ns["deleted"] == [] and ip.user_ns["ran"] == []
    error = last_response(server)["error"]
    assert "'delete_everything'" in error and "Available: lookup." in error
    out = capsys.readouterr().out
    assert "delete_everything(): unknown function" in out and "I cannot." in out


def _keeps_calling(calls_seen: list):
    """A model that calls `step` until function calling is switched off, then answers."""

    def respond(request):
        if tool_config_mode(request) == "NONE":
            return Reply(text="Stopped after the limit.")
        calls_seen.append(len(calls_seen) + 1)
        return Reply(parts=[fc("step", {"n": len(calls_seen)}, f"c{len(calls_seen)}")])

    return respond


STEP = (
    "steps = []\n"
    "def step(n: int) -> int:\n"
    "    steps.append(n)\n"
    "    return n\n"
)


def test_max_steps_switches_function_calling_off(ip, server, capsys):
    define(ip, STEP)
    seen: list = []
    server.responder = _keeps_calling(seen)
    ok(ip, "%%gemini --tools step --max-steps 2\nloop")
    assert ip.user_ns["steps"] == [1, 2]
    requests = generate_requests(server)
    assert len(requests) == 3
    assert [tool_config_mode(r) for r in requests] == [None, None, "NONE"]
    last = contents(requests[2])
    # The second round's call is answered, then the user is told to stop calling.
    assert function_responses(last[-1]) == [{"id": "c2", "name": "step", "response": {"result": 2}}]
    limit_texts = [p["text"] for p in last[-1]["parts"] if "text" in p]
    assert len(limit_texts) == 1 and "limit of 2 tool-call steps" in limit_texts[0]
    captured = capsys.readouterr()
    assert "Stopped after the limit." in captured.out
    assert "Reached the limit of 2 tool steps (--max-steps)" in captured.err


def test_calls_after_the_limit_are_not_run(ip, server, capsys):
    define(ip, STEP)
    server.responder = lambda request: Reply(parts=[fc("step", {"n": 9}, "again")])
    ok(ip, "%%gemini --tools step --max-steps 2\nloop")
    assert ip.user_ns["steps"] == [9, 9]
    requests = generate_requests(server)
    assert len(requests) == 3  # no fourth request after the model ignored the limit
    assert tool_config_mode(requests[2]) == "NONE"
    out_lines = [x for x in capsys.readouterr().out.splitlines() if "step(n=9)" in x]
    assert len(out_lines) == 3
    assert out_lines[2].startswith("⊘ step(n=9): skipped")


def _calls_are_answered(history: list[dict]) -> None:
    """Every model turn that calls functions is followed by a user turn answering each call."""
    for index, content in enumerate(history):
        calls = function_calls(content)
        if not calls:
            continue
        assert index + 1 < len(history), "a function call is the last content"
        answered = function_responses(history[index + 1])
        assert [(c.get("id"), c["name"]) for c in calls] == [(r.get("id"), r["name"]) for r in answered], (
            f"content {index} calls {calls}, content {index + 1} answers {answered}")


def test_chat_after_an_ignored_limit_sends_a_valid_history(ip, server):
    define(ip, STEP)
    server.responder = lambda request: (
        Reply(text="Next answer.") if "second" in request.last_user_text()
        else Reply(parts=[fc("step", {"n": 1}, f"id{len(server.requests)}")]))
    ok(ip, "%%gemini -c limited --tools step --max-steps 1\nfirst", cell_id="m1")
    ok(ip, "%%gemini -c limited --tools step\nsecond", cell_id="m2")
    history = contents(server.last)
    assert history[-1]["parts"][0]["text"] == "second"
    _calls_are_answered(history)


def test_max_steps_from_config(ip, server, capsys):
    define(ip, STEP)
    server.responder = _keeps_calling([])
    ok(ip, "%config GeminiMagics.max_steps = 1")
    ok(ip, "%%gemini --tools step\nloop")
    assert ip.user_ns["steps"] == [1]
    assert [tool_config_mode(r) for r in generate_requests(server)] == [None, "NONE"]
    assert "limit of 1 tool steps" in capsys.readouterr().err


def test_max_steps_must_be_positive(ip, server):
    define(ip, STEP)
    result = ip.run_cell("%%gemini --tools step --max-steps 0\nloop")
    assert result.error_in_exec is not None and "--max-steps" in str(result.error_in_exec)
    assert server.requests == []


def test_approve_never_runs_nothing(ip, server, capsys):
    define(ip, LOOKUP)
    server.queue(Reply(parts=[fc("lookup", {"city": "Rome"}, "n1")]), Reply(text="I was not allowed."))
    ok(ip, "%%gemini --tools lookup --approve never\nRome?")
    assert ip.user_ns["ran"] == []
    error = last_response(server)["error"]
    assert "--approve never" in error and "answer without it" in error
    out = capsys.readouterr().out
    assert "⊘ lookup(city=\"Rome\"): not run" in out and "I was not allowed." in out


def test_approve_never_from_config(ip, server):
    define(ip, LOOKUP)
    ok(ip, "%config GeminiMagics.approve = 'never'")
    server.queue(Reply(parts=[fc("lookup", {"city": "Rome"}, "n1")]), Reply(text="No."))
    ok(ip, "%%gemini --tools lookup\nRome?")
    assert ip.user_ns["ran"] == []
    assert "--approve never" in last_response(server)["error"]


@pytest.mark.parametrize("reply, runs", [("y", True), ("yes", True), ("n", False), ("", False)])
def test_approve_ask_in_the_shell(ip, server, monkeypatch, reply, runs):
    define(ip, LOOKUP)
    prompts = []
    monkeypatch.setattr("builtins.input", lambda prompt="": prompts.append(prompt) or reply)
    server.queue(Reply(parts=[fc("lookup", {"city": "Rome"}, "q1")]), Reply(text="Answer."))
    ok(ip, "%%gemini --tools lookup --approve ask\nRome?")
    assert prompts == ['Allow Gemini to run lookup(city="Rome")? [y/N] ']
    if runs:
        assert ip.user_ns["ran"] == ["Rome"]
        assert last_response(server) == {"city": "Rome", "sky": "sunny"}
    else:
        assert ip.user_ns["ran"] == []
        assert "declined" in last_response(server)["error"]


def test_confirm_tool_asks_even_with_approve_auto(ip, server, monkeypatch):
    define(ip, (
        "import gemini_magic\n"
        "wiped = []\n"
        "@gemini_magic.tool(confirm=True)\n"
        "def wipe(path: str) -> str:\n"
        "    wiped.append(path)\n"
        "    return 'wiped'\n"
        "free = []\n"
        "def note(text: str) -> str:\n"
        "    free.append(text)\n"
        "    return 'noted'\n"
    ))
    prompts = []
    monkeypatch.setattr("builtins.input", lambda prompt="": prompts.append(prompt) or "n")
    server.queue(
        Reply(parts=[fc("note", {"text": "hi"}, "f1"), fc("wipe", {"path": "/data"}, "f2")]),
        Reply(text="Could not wipe."),
    )
    ok(ip, "%%gemini --tools note --approve auto\nwipe /data")
    # Only the confirm=True tool asked; the other ran without a question.
    assert prompts == ['Allow Gemini to run wipe(path="/data")? [y/N] ']
    assert ip.user_ns["wiped"] == [] and ip.user_ns["free"] == ["hi"]
    sent = function_responses(contents(server.last)[-1])
    assert sent[0]["response"] == {"result": "noted"}
    assert "declined" in sent[1]["response"]["error"]


@pytest.mark.parametrize("exc, says", [
    (EOFError, "Nobody can approve this call here (EOFError)"),
    (OSError, "Nobody can approve this call here (OSError)"),
    (StdinNotImplementedError, "Nobody can approve this call here (StdinNotImplementedError)"),
    # Anything else is a bug in asking: refused too, but said for what it is.
    (RuntimeError, "Asking for approval failed (RuntimeError: stdin is not available)"),
])
def test_no_stdin_refuses_instead_of_crashing(ip, server, monkeypatch, capsys, exc, says):
    define(ip, LOOKUP)

    def no_stdin(prompt=""):
        raise exc("stdin is not available")

    monkeypatch.setattr("builtins.input", no_stdin)
    server.queue(Reply(parts=[fc("lookup", {"city": "Rome"}, "q1")]), Reply(text="Refused then."))
    ok(ip, "%%gemini --tools lookup --approve ask\nRome?")
    assert ip.user_ns["ran"] == []
    assert says in last_response(server)["error"]
    assert "Refused then." in capsys.readouterr().out


def test_tools_in_a_chat_are_kept_in_history_and_survive_save_and_load(ip, server, tmp_path):
    define(ip, LOOKUP)
    server.queue(
        Reply(parts=[fc("lookup", {"city": "Paris"}, "h1", SIGNATURE)]),
        Reply(text="Sunny in Paris."),
        Reply(text="Yes, take sunglasses."),
    )
    ok(ip, "%%gemini -c trip --tools lookup\nWeather in Paris?", cell_id="t1")
    ok(ip, "%%gemini -c trip --tools lookup\nSunglasses?", cell_id="t2")
    history = contents(server.last)
    assert [c["role"] for c in history] == ["user", "model", "user", "model", "user"]
    assert function_calls(history[1]) == [{"id": "h1", "name": "lookup", "args": {"city": "Paris"}}]
    assert _k(history[1]["parts"][0], "thoughtSignature") == SIGNATURE
    assert function_responses(history[2]) == [
        {"id": "h1", "name": "lookup", "response": {"city": "Paris", "sky": "sunny"}}]
    assert history[3]["parts"][0]["text"] == "Sunny in Paris."
    assert history[4]["parts"][0]["text"] == "Sunglasses?"
    assert ip.user_ns["ran"] == ["Paris"]  # the history is resent, the tool is not rerun

    path = tmp_path / "trip.json"
    ok(ip, f"%gemini save trip {path}")
    saved = json.loads(path.read_text(encoding="utf-8"))
    assert len(saved["turns"][0]["exchange"]) == 2
    ok(ip, f"%gemini load again {path}")
    server.queue(Reply(text="Loaded."))
    ok(ip, "%%gemini -c again\nAnd tomorrow?", cell_id="t3")
    reloaded = contents(server.last)
    # The loaded conversation sends the same exchange, call, signature and result included.
    assert reloaded[:5] == history
    assert reloaded[5] == {"role": "model", "parts": [{"text": "Yes, take sunglasses."}]}
    assert reloaded[6] == {"role": "user", "parts": [{"text": "And tomorrow?"}]}
    assert ip.user_ns["ran"] == ["Paris"]


def test_usage_is_summed_over_steps(ip, server, capsys):
    define(ip, LOOKUP)
    server.queue(
        Reply(parts=[fc("lookup", {"city": "Paris"}, "u1")],
              usage={"promptTokenCount": 10, "candidatesTokenCount": 5, "totalTokenCount": 15}),
        Reply(text="Sunny.", usage={"promptTokenCount": 30, "candidatesTokenCount": 7, "totalTokenCount": 37}),
    )
    ok(ip, "%%gemini --tools lookup --usage\nParis?")
    out = capsys.readouterr().out
    # 40 in at $0.30 and 12 out at $2.50 per 1M tokens, both steps priced.
    assert "[gemini-2.5-flash · 40 in, 12 out tokens · $0.000042 · complete]" in out


def test_usage_is_summed_in_a_chat_turn(ip, server):
    define(ip, LOOKUP)
    server.queue(
        Reply(parts=[fc("lookup", {"city": "Paris"}, "u1")],
              usage={"promptTokenCount": 10, "candidatesTokenCount": 5, "totalTokenCount": 15}),
        Reply(text="Sunny.", usage={"promptTokenCount": 30, "candidatesTokenCount": 7, "totalTokenCount": 37}),
    )
    ok(ip, "%%gemini -c costs --tools lookup\nParis?", cell_id="u1")
    assert gemini_magic.conversation("costs").tokens() == 52


def test_hostile_call_in_terminal_is_one_line(ip, server, capsys):
    define(ip, LOOKUP)
    server.queue(Reply(parts=[fc("lookup", {"city": "Paris\n\x1b[2J<script>"}, "h1")]), Reply(text="ok"))
    ok(ip, "%%gemini --tools lookup\nParis")
    out = capsys.readouterr().out
    lines = [x for x in out.splitlines() if "lookup(" in x]
    assert len(lines) == 1
    assert "\x1b[2J" not in out  # the escape sequence stays escaped inside the JSON argument


# -- in a real kernel ---------------------------------------------------------------


def _data(msg) -> dict:
    return msg["content"].get("data", {})


def run_answering(kern, code: str, answers: list[str] | None = None, allow_stdin: bool = True,
                  timeout: float = 30) -> tuple[Execution, list[str]]:
    """Run a cell, answering the kernel's input requests (stdin channel) in turn.

    Returns the execution and the prompts the kernel showed."""
    client = kern.client
    msg_id = client.execute(code, store_history=True, allow_stdin=allow_stdin)
    pending = list(answers or [])
    prompts: list[str] = []
    execution = Execution()
    deadline = time.monotonic() + timeout
    while True:
        if time.monotonic() > deadline:
            raise TimeoutError(f"cell did not finish in {timeout} s: {code[:60]!r}")
        try:
            request = client.get_stdin_msg(timeout=0.02)
        except queue.Empty:
            pass
        else:
            if request["msg_type"] == "input_request" and request["parent_header"].get("msg_id") == msg_id:
                prompts.append(request["content"]["prompt"])
                client.input(pending.pop(0) if pending else "")
        try:
            msg = client.get_iopub_msg(timeout=0.02)
        except queue.Empty:
            continue
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
            break
        execution.messages.append(msg)
    reply = client.get_shell_msg(timeout=timeout)
    while reply["parent_header"].get("msg_id") != msg_id:
        reply = client.get_shell_msg(timeout=timeout)
    execution.reply = reply["content"]
    return execution, prompts


KERNEL_TOOL = (
    "kran = []\n"
    "def forecast(city: str) -> str:\n"
    "    '''Forecast of a city.'''\n"
    "    kran.append(city)\n"
    "    return f'sunny in {city}'\n"
)


def test_kernel_cards_go_from_running_to_done(kern, server):
    kern.run(KERNEL_TOOL, check=True)
    server.queue(Reply(parts=[fc("forecast", {"city": "Nice"}, "k1")]), Reply(text="It is **sunny**."))
    ex = kern.run("%%gemini --tools forecast\nNice?", check=True)
    updates = [_data(m).get("text/html", "") for m in ex.of_type("update_display_data")]
    running = [i for i, h in enumerate(updates) if 'gemini-tool-status">running' in h]
    done = [i for i, h in enumerate(updates) if 'gemini-tool-status">done' in h]
    assert running and done and running[0] < done[0]
    assert "…" in updates[running[0]] and "✓" in updates[done[0]]
    final = [m for m in ex.of_type("display_data") if _data(m).get("text/html")][-1]
    html_text = _data(final)["text/html"]
    assert html_text.count('<details class="gemini-tool"') == 1
    assert "<code>forecast(city=&quot;Nice&quot;)</code>" in html_text
    assert "&quot;sunny in Nice&quot;" in html_text
    # The card comes before the answer text, in order.
    assert html_text.index("gemini-tool") < html_text.index("<strong>sunny</strong>")
    assert 'gemini-tool-status">done' in html_text
    assert _data(final)["text/plain"].startswith('✓ forecast(city="Nice"): done')
    assert kern.run("print(kran)", check=True).stream_text().strip() == "['Nice']"
    assert last_response(server) == {"result": "sunny in Nice"}


def test_kernel_hostile_arguments_and_results_are_escaped(kern, server):
    kern.run(
        "def echo(text: str) -> str:\n"
        "    return '<img src=x onerror=alert(1)>' + text\n", check=True)
    hostile = "<script>alert('args')</script>"
    server.queue(
        Reply(parts=[fc("echo", {"text": hostile}, "e1"), fc("<img src=x onerror=alert(2)>", {"a": 1}, "e2")]),
        Reply(text="Done <script>alert(3)</script>"),
    )
    ex = kern.run("%%gemini --tools echo\nhostile", check=True)
    htmls = [_data(m)["text/html"] for m in ex.of_type("update_display_data", "display_data")
             if _data(m).get("text/html")]
    assert htmls
    for shown in htmls:
        assert "<script" not in shown.lower() and "<img" not in shown.lower()
    final = htmls[-1]
    assert "&lt;script&gt;alert(&#x27;args&#x27;)&lt;/script&gt;" in final
    assert "&lt;img src=x onerror=alert(1)&gt;" in final
    assert "&lt;img src=x onerror=alert(2)&gt;" in final
    assert final.count('<details class="gemini-tool"') == 2
    sent = function_responses(contents(server.last)[-1])
    assert sent[0]["response"] == {"result": "<img src=x onerror=alert(1)>" + hostile}
    assert "No function named" in sent[1]["response"]["error"]


def test_kernel_async_tool_runs_under_the_running_loop(kern, server):
    kern.run(
        "import asyncio\n"
        "async def later(n: int) -> int:\n"
        "    await asyncio.sleep(0.01)\n"
        "    return n + 1\n", check=True)
    server.queue(Reply(parts=[fc("later", {"n": 41}, "a1")]), Reply(text="42."))
    ex = kern.run("%%gemini --tools later\nadd one", check=True)
    assert last_response(server) == {"result": 42}
    final = [m for m in ex.of_type("display_data") if _data(m).get("text/html")][-1]
    assert 'gemini-tool-status">done' in _data(final)["text/html"]


KERNEL_DELETE = (
    "removed = []\n"
    "def remove(path: str) -> str:\n"
    "    removed.append(path)\n"
    "    return f'removed {path}'\n"
)


@pytest.mark.parametrize("reply, runs", [("y", True), ("n", False)])
def test_kernel_approve_ask_uses_stdin(kern, server, reply, runs):
    kern.run(KERNEL_DELETE, check=True)
    server.queue(Reply(parts=[fc("remove", {"path": "/tmp/x"}, "r1")]), Reply(text="Handled."))
    ex, prompts = run_answering(kern, "%%gemini --tools remove --approve ask\nremove /tmp/x", [reply])
    assert ex.status == "ok", ex.error
    assert prompts == ['Allow Gemini to run remove(path="/tmp/x")? [y/N] ']
    removed = kern.run("print(removed)", check=True).stream_text().strip()
    if runs:
        assert removed == "['/tmp/x']"
        assert last_response(server) == {"result": "removed /tmp/x"}
    else:
        assert removed == "[]"
        error = last_response(server)["error"]
        assert "The user declined this call." in error
        final = [m for m in ex.of_type("display_data") if _data(m).get("text/html")][-1]
        assert 'gemini-tool-status">not run' in _data(final)["text/html"]


def test_kernel_confirm_tool_asks_with_approve_auto(kern, server):
    kern.run(
        "import gemini_magic\n"
        "burned = []\n"
        "@gemini_magic.tool(confirm=True)\n"
        "def burn(what: str) -> str:\n"
        "    burned.append(what)\n"
        "    return 'burned'\n", check=True)
    try:
        server.queue(Reply(parts=[fc("burn", {"what": "notes"}, "b1")]), Reply(text="Burned."))
        ex, prompts = run_answering(kern, "%%gemini --approve auto\nburn the notes", ["yes"])
        assert ex.status == "ok", ex.error
        assert prompts == ['Allow Gemini to run burn(what="notes")? [y/N] ']
        assert kern.run("print(burned)", check=True).stream_text().strip() == "['notes']"
        assert last_response(server) == {"result": "burned"}
    finally:
        kern.run("import gemini_magic.tools as _t; _t._default_tools.clear()", check=True)


def test_kernel_without_stdin_refuses(kern, server):
    kern.run(KERNEL_DELETE, check=True)
    server.queue(Reply(parts=[fc("remove", {"path": "/tmp/y"}, "r2")]), Reply(text="Not removed."))
    ex, prompts = run_answering(kern, "%%gemini --tools remove --approve ask\nremove /tmp/y", allow_stdin=False)
    assert ex.status == "ok", ex.error
    assert prompts == []
    assert kern.run("print(removed)", check=True).stream_text().strip() == "[]"
    assert "Nobody can approve this call here (StdinNotImplementedError)" in last_response(server)["error"]


def test_kernel_max_steps_notice_is_a_note_not_stderr(kern, server):
    kern.run("kcount = []\ndef tick(n: int) -> int:\n    kcount.append(n)\n    return n\n", check=True)

    def respond(request):
        if tool_config_mode(request) == "NONE":
            return Reply(text="Enough.")
        return Reply(parts=[fc("tick", {"n": 1}, "t")])

    server.responder = respond
    ex = kern.run("%%gemini --tools tick --max-steps 2\ntick", check=True)
    assert "Reached the limit of 2 tool steps" in ex.notes("warning")
    assert "Reached the limit" not in ex.stream_text("stderr")
    assert kern.run("print(kcount)", check=True).stream_text().strip() == "[1, 1]"
    final = [m for m in ex.of_type("display_data") if _data(m).get("text/html")][-1]
    assert _data(final)["text/html"].count('<details class="gemini-tool"') == 2
    assert "Enough." in _data(final)["text/plain"]


# -- tool cards: labelled, and a duration only where it means something -------------------


def _card(status="ok", seconds=0.002, args=None, shown="21 °C", error=""):
    from gemini_magic.tools import ToolCall

    return ToolCall("c1", "weather", {"city": "Paris", "days": 2} if args is None else args, status=status,
                    shown=shown, error=error, seconds=seconds)


def test_a_card_labels_each_argument_and_the_result():
    from gemini_magic.render.tools import card_html, card_text
    from tests.markup import visible_text

    html_text = card_html(_card())
    seen = visible_text(html_text)
    assert "arguments" in seen and "city\"Paris\"" in seen and "days2" in seen
    assert "result21 °C" in seen
    assert card_text(_card()) == '✓ weather(city="Paris", days=2): done; result: 21 °C'
    failed = visible_text(card_html(_card(status="error", shown="", error="KeyError: 'x'")))
    assert "errorKeyError: 'x'" in failed
    assert "none" in visible_text(card_html(_card(args={})))


@pytest.mark.parametrize(("seconds", "shown"), [(0.0004, ""), (0.3, ""), (0.5, " in 0.5 s"), (12.34, " in 12.3 s")])
def test_a_quick_tool_shows_no_time_and_a_slow_one_does(seconds, shown):
    from gemini_magic.render.tools import card_html, card_text

    assert f'gemini-tool-status">done{shown}</span>' in card_html(_card(seconds=seconds))
    assert f": done{shown};" in card_text(_card(seconds=seconds))
    assert " ms" not in card_html(_card(seconds=seconds))


@pytest.mark.parametrize(("reason", "words"), [("STOP", "complete"), ("MAX_TOKENS", "cut at the token limit"),
                                               ("SAFETY", "stopped by safety filters"),
                                               ("SOMETHING_NEW", "something new")])
def test_finish_reasons_are_said_in_words(reason, words):
    from gemini_magic.events import finish_words

    assert finish_words(reason) == words
