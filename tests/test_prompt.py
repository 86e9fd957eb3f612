"""Prompt interpolation: `{name}`, `{obj.attr}`, `{obj[key]}` from the namespace, and nothing more."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from gemini_magic.prompt import interpolate
from tests.fake_gemini import Reply


def _ns() -> dict:
    return {
        "name": "Ada",
        "n": 42,
        "obj": SimpleNamespace(attr="attribute value", inner=SimpleNamespace(items=[10, {"k": "deep"}])),
        "d": {"key": "by word", "two words": "by quoted", 3: "by int", "3": "by str"},
        "seq": ["first", "second", "third"],
    }


# -- fields that resolve: names, attributes, indexing, chains ------------------------


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("Hello {name}!", "Hello Ada!"),
        ("{n} + {n}", "42 + 42"),
        ("{ name }", "Ada"),  # spaces inside the braces are allowed
        ("{obj.attr}", "attribute value"),
        ("{seq[0]} and {seq[-1]}", "first and third"),
        ("{d[3]}", "by int"),  # an int literal is an int key
        ('{d["3"]}', "by str"),  # a quoted literal is a str key
        ("{d['two words']}", "by quoted"),
        ("{d[key]}", "by word"),  # a bare word is a str key, as in str.format
        ("{obj.inner.items[1][k]}", "deep"),  # chains of attributes and indexes
        ("{obj.inner.items[0]}", "10"),
        ("{d}", str(_ns()["d"])),  # the value's str()
    ],
)
def test_fields_resolve_from_namespace(template, expected):
    result = interpolate(template, _ns())
    assert result.text == expected
    assert result.unresolved == []


# -- escapes, and values are substituted once ------------------------------------------


def test_double_braces_are_literal_braces():
    result = interpolate("{{name}} is {name}; a set: {{1, 2}}", _ns())
    assert result.text == "{name} is Ada; a set: {1, 2}"
    assert result.unresolved == []


def test_value_containing_fields_is_not_expanded_again():
    ns = {"template": "{secret} and {{x}}", "secret": "MUST-NOT-APPEAR"}
    result = interpolate("Fill: {template}", ns)
    assert result.text == "Fill: {secret} and {{x}}"
    assert "MUST-NOT-APPEAR" not in result.text


# -- code and data with braces pass through untouched ----------------------------------


@pytest.mark.parametrize(
    "text",
    [
        '{"a": 1, "b": [1, 2]}',
        json.dumps({"outer": {"inner": {"deep": [1, {"x": 2}]}}}),  # nested JSON
        'd = {"a": {"b": 1}}',  # a nested dict literal in code
        "config = {'name': 'x', 'n': 2}",
        'print(f"{value!r:>10} {other:.2f}")',
        "{n:>4}",  # a format spec is not a field
        "{0} {} { }",
        "{x for x in range(3)}",
        "function f() { return {a: 1}; }",
        "if (a) {\n  b();\n}",
        "{",
        "}",
        "}{",
        "{obj[}",
        "{obj[[0]]}",
    ],
)
def test_code_and_data_with_braces_pass_through(text):
    # None of these braces is a field (or an escape pair): the text must come back as written.
    result = interpolate(text, _ns())
    assert result.text == text
    assert result.unresolved == []


# -- names that do not resolve are left as written and reported ---------------------------


def test_latex_groups_are_left_as_written():
    # Single-name groups look like fields: undefined ones stay as written (and are reported).
    result = interpolate("\\frac{a}{b} in \\mathbb{R}", _ns())
    assert result.text == "\\frac{a}{b} in \\mathbb{R}"
    assert result.unresolved == ["{a}", "{b}", "{R}"]


def test_unresolved_names_are_left_and_reported():
    result = interpolate("Hi {name}, {nmae} and {missing.attr}", _ns())
    assert result.text == "Hi Ada, {nmae} and {missing.attr}"
    assert result.unresolved == ["{nmae}", "{missing.attr}"]


@pytest.mark.parametrize(
    "field",
    ["{obj.nope}", "{obj.inner.nope.deeper}", "{seq[10]}", "{seq[key]}", "{d[missing]}", "{n[0]}", "{d[4]}"],
)
def test_failed_lookups_are_left_as_written(field):
    result = interpolate("before " + field + " after {name}", _ns())
    assert result.text == "before " + field + " after Ada"
    assert result.unresolved == [field]


def test_lookup_raising_any_exception_is_left_as_written():
    class Touchy:
        @property
        def boom(self):
            raise RuntimeError("no")

        def __getitem__(self, key):
            raise ZeroDivisionError(key)

    result = interpolate("{t.boom} {t[1]}", {"t": Touchy()})
    assert result.text == "{t.boom} {t[1]}"
    assert result.unresolved == ["{t.boom}", "{t[1]}"]


# -- no arbitrary evaluation ----------------------------------------------------------


def test_expressions_are_never_evaluated():
    calls = []

    def f():
        calls.append("called")
        return "CALLED"

    class Adder:
        def __add__(self, other):
            calls.append("added")
            return "ADDED"

    ns = {"f": f, "a": Adder(), "b": 1, "d": {"k": "v"}, "__import__": __import__}
    templates = [
        "{__import__('os')}",
        '{__import__("os").system("echo pwned")}',
        "{a+b}",
        "{f()}",
        "{f ()}",
        "{d[f()]}",
        '{d[__import__("os").getcwd()]}',
        "{(lambda: f())()}",
        "{[f() for _ in range(2)]}",
        "{f if f else f}",
        "{a.__add__(b)}",
    ]
    for template in templates:
        result = interpolate(template, ns)
        assert result.text == template, template
        assert "CALLED" not in result.text and "ADDED" not in result.text
    assert calls == []


# -- through the magic ----------------------------------------------------------------


def test_magic_interpolates_before_sending(ip, server):
    ip.user_ns["topic"] = "tuples"
    server.queue(Reply(text="ok"))
    ip.run_cell_magic("gemini", "", "Explain {topic}; keep {{braces}} and {'json': 1}")
    assert server.last.user_texts() == ["Explain tuples; keep {braces} and {'json': 1}"]


def test_no_interpolate_sends_braces_as_written(ip, server):
    ip.user_ns["topic"] = "tuples"
    server.queue(Reply(text="ok"))
    prompt = "Explain {topic} with {{doubled}} and {undefined_name}"
    ip.run_cell_magic("gemini", "--no-interpolate", prompt)
    assert server.last.user_texts() == [prompt]


def test_magic_notes_unresolved_names_on_stderr(ip, server, capsys):
    server.queue(Reply(text="ok"))
    ip.run_cell_magic("gemini", "", "Summarize {undefined_thing} please")
    err = capsys.readouterr().err
    assert "no such variable" in err
    assert "{undefined_thing}" in err
    assert server.last.user_texts() == ["Summarize {undefined_thing} please"]


def test_magic_is_silent_when_everything_resolves(ip, server, capsys):
    ip.user_ns["topic"] = "sets"
    server.queue(Reply(text="ok"))
    ip.run_cell_magic("gemini", "", "About {topic}")
    assert "no such variable" not in capsys.readouterr().err
    assert server.last.user_texts() == ["About sets"]
