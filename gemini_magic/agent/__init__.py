"""Agent mode (`%%gemini --agent`): Gemini works in the notebook through four built-in
tools, in the same tool loop as the user's functions (answer.py), by the same rules:
unknown names never run, errors go back to the model, a step limit and a wrap-up.

- `run_python(code)` runs the model's code in the user's namespace (code_runs.py). It
  is approved by its own rule, "ask" unless the user opted in with `--approve auto`
  (or `GeminiMagics.agent_approve = "auto"`): tools.Toolbox enforces it, whatever
  the system instruction or a tool result says.
- `list_variables()`, `inspect(name)`, `read_cells(count)` only read (looking.py).

The system instruction is fixed and versioned: recordings match requests byte for byte,
so changing it means re-recording (say so in the version).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..context import Limits

INSTRUCTION_VERSION = 2  # 2: shell commands through `!cmd` or subprocess with capture_output
INSTRUCTION = """\
You are a data-analysis agent working inside the user's Jupyter notebook, in a live Python kernel. \
Your tools:
- list_variables(): the notebook's variables, with their types and short summaries.
- inspect(name): a closer look at one variable (a name, or name.attribute).
- read_cells(count): the code the user ran most recently.
- run_python(code): runs Python in the user's kernel and namespace, like a new notebook cell. Variables \
you define stay for the next call. You get back stdout, stderr, the value of the last expression, the \
traceback if it fails, and figures as images.

How to work:
- Look before you assume: list the variables, inspect the ones that matter.
- Run small steps and read each result. When code fails, read the traceback, fix it and run again.
- Keep the user's existing variables and files unchanged unless asked: put your results in new variables.
- Plot with matplotlib (pandas' .plot is fine); the figure reaches you as an image.
- Run shell commands as `!cmd` or with subprocess and capture_output=True: output written straight to the \
process's file descriptors does not reach you.
- No top-level await. Never print secrets, keys or environment variables.
- The user approves each run_python call and may decline or edit it. If a call is declined, do not run \
the same code again: say what you wanted to do, or take another way.
- Finish with a short answer in Markdown: what you found, and what the code did.
"""


def instruction(system: str | None) -> str:
    """The agent's instruction, then the user's own (-s), which it does not replace."""
    return INSTRUCTION if not system else f"{INSTRUCTION}\n{system}"


def agent_tools(shell, limits: Limits, *, in_cell: bool = True,
                runner: Callable[[Callable[[], Any]], Any] | None = None,
                secrets: Callable[[], list[str]] | None = None) -> list:
    """The four tools, bound to `shell` (an IPython InteractiveShell). `runner(job)` runs
    a code run where it must run (the chat widget: the kernel's main thread); None: here."""
    from ..tools import bind
    from .code_runs import CodeRun, run_code
    from .looking import inspect_value, list_variables, read_cells

    def run_python(code: str) -> dict:
        """Run Python code in the user's notebook kernel, in their namespace, like a new cell.

        Args:
            code: Python source, as in a notebook cell. The value of its last expression is returned.
        """
        raise NotImplementedError  # declared from here; run by _run below

    def _run(call, kwargs: dict) -> CodeRun:
        run = CodeRun(kwargs["code"], limits=limits, secrets=secrets() if secrets else [])
        call.detail = run  # the card shows it as it goes, and keeps it if interrupted
        run.on_output = getattr(call, "progress", None)

        def job():
            return run_code(shell, run.code, run)

        return runner(job) if runner is not None else job()

    def list_variables_tool() -> dict:
        """The notebook's variables: each one's type and a short summary (a DataFrame's shape and columns)."""
        return list_variables(shell, limits)

    def inspect_tool(name: str) -> str:
        """A closer, bounded look at one variable: a DataFrame's dtypes and first rows, a list's items.

        Args:
            name: A variable's name, or name.attribute (not an expression: nothing is evaluated).
        """
        return inspect_value(shell, name, limits)

    def read_cells_tool(count: int = 10) -> list:
        """The code of the cells the user ran most recently, oldest first.

        Args:
            count: How many cells, at most 50.
        """
        return read_cells(shell, count, limits, in_cell=in_cell)

    code = bind(run_python)
    code.kind, code.run = "code", _run
    return [code, bind(list_variables_tool, "list_variables"), bind(inspect_tool, "inspect"),
            bind(read_cells_tool, "read_cells")]


NAMES = ("run_python", "list_variables", "inspect", "read_cells")
