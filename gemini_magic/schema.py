"""Structured output: a pydantic model, dataclass or TypedDict -> JSON schema -> parsed value.

pydantic's TypeAdapter handles all three kinds the same way, both for the schema
sent to Gemini and for validating the answer.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from typing import Any

from typing_extensions import is_typeddict

from .errors import GeminiError


class SchemaError(GeminiError):
    kind = "schema"


@dataclasses.dataclass
class Schema:
    """`target` is a type to validate against, or None for any JSON (`--json`)."""

    target: Any = None
    name: str = "JSON"

    def config(self) -> dict:
        config: dict[str, Any] = {"response_mime_type": "application/json"}
        if self.target is not None:
            from pydantic import TypeAdapter

            config["response_json_schema"] = TypeAdapter(self.target).json_schema()
        return config

    def parse(self, text: str) -> Any:
        try:
            value = json.loads(text)
        except ValueError as exc:
            raise SchemaError(
                f"The answer is not valid JSON ({exc.msg} at position {exc.pos}).",
                "The raw text is shown above; try again, or simplify the schema.",
            ) from exc
        if self.target is None:
            return value
        from pydantic import TypeAdapter, ValidationError

        try:
            return TypeAdapter(self.target).validate_python(value)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first.get("loc", ())) or "the answer"
            raise SchemaError(
                f"The answer does not match {self.name}: {where}: {first.get('msg')}.",
                "The raw JSON is shown above; try again, or loosen the schema.",
            ) from exc


def _pydantic_typeddict(cls):
    """pydantic rejects typing.TypedDict before Python 3.12; the same class rebuilt
    with typing_extensions.TypedDict (keeping which keys are required) works."""
    import typing

    import typing_extensions as te

    if sys.version_info >= (3, 12) or type(cls).__module__ != "typing":
        return cls
    hints = typing.get_type_hints(cls)
    fields = {k: (te.NotRequired[t] if k in cls.__optional_keys__ else te.Required[t]) for k, t in hints.items()}
    return te.TypedDict(cls.__name__, fields)


def is_schema_type(obj: Any) -> bool:
    if isinstance(obj, type) and dataclasses.is_dataclass(obj):
        return True
    if is_typeddict(obj):
        return True
    try:
        from pydantic import BaseModel
    except ImportError:  # pragma: no cover - pydantic comes with google-genai
        return False
    return isinstance(obj, type) and issubclass(obj, BaseModel)


def resolve(name: str, namespace: dict) -> Schema:
    """The schema named NAME in the user namespace, or a clear error."""
    if name not in namespace:
        raise SchemaError(
            f"--schema {name}: no variable named {name!r}.",
            "Define a pydantic model, dataclass or TypedDict with that name first.",
        )
    target = namespace[name]
    if not is_schema_type(target):
        raise SchemaError(
            f"--schema {name}: {name} is a {type(target).__name__}, not a schema.",
            "Use a pydantic model, a dataclass or a TypedDict class.",
        )
    return Schema(_pydantic_typeddict(target) if is_typeddict(target) else target, name)
