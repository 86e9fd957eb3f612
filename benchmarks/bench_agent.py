"""Agent mode's overhead per step (`%%gemini --agent`), against a baseline from the same run.

Run from the repository root (no key, no network):

    python benchmarks/bench_agent.py           # the full run, under a minute on 2 cores
    python benchmarks/bench_agent.py --quick   # few repeats: checks the script, not the code

One agent step is a round trip to the model that answers with `run_python("x = 1")`,
the code's run, and its result sent back; the answer after the last step is text. The
fake server (tests/fake_gemini, in its own process: this script with --serve) answers
at once, so neither side waits for a model, and `x = 1` takes no time to run.

- Ours: a `%%gemini --agent --approve auto` cell (`run_cell_magic`, option parsing
  included) on an in-process shell with the extension loaded, its answer played into
  the NotebookRenderer (the shell's display publisher records instead of sending, as in
  bench_core.py) or, for one row, the TerminalRenderer into a StringIO.
- Baseline: the raw google-genai SDK doing the same exchange by hand: the same system
  instruction and four declarations, `exec` of each call's code in a dict, a function
  response per call, the history resent each round. The same number of round trips in
  the same mode (streamed, or not), so the HTTP cost is in both.

The overhead per step is the slope: the paired (ours - baseline) difference at STEPS
steps less that at one step, over the steps between. What a cell costs once (parsing,
the request's setup, the final display, the "code Gemini ran" block) is left out of it
and reported as its own row. Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import io
import json
import re
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench_core import (  # noqa: E402
    FAKE_KEY,
    MODEL,
    RecordingComm,
    Results,
    ServedScript,
    load_average,
    median,
    print_table,
    recording_shell,
    say,
    spread,
    use_environment,
)

STEPS = 10  # the long cell; the short one has 1 step
STEP_TARGET_MS = 20.0
CODE = "x = 1"
RAN = {"result": "(ran; no output and no value)"}  # what ours sends back for CODE (code_runs.CodeRun)


@dataclass
class Repeats:
    pairs: int = 25  # (ours, baseline) pairs per path and step count, alternated


QUICK = Repeats(pairs=3)


# -- the server process ---------------------------------------------------------------------------


def serve() -> int:
    """The fake server, in this process, until stdin closes. A prompt `bench-agent steps=N`
    is answered with run_python(CODE) until N function responses are in the history,
    then with text that says how many came back and how many carried an error."""
    from tests.fake_gemini import FakeGemini
    from tests.fake_gemini.server import Reply

    def responses(body: dict) -> list[dict]:
        found = []
        for content in (body or {}).get("contents", []):
            for part in content.get("parts", []):
                response = part.get("functionResponse") or part.get("function_response")
                if response is not None:
                    found.append(response)
        return found

    def responder(request):
        match = re.search(r"bench-agent steps=(\d+)", " ".join(request.user_texts()))
        if match is None:
            return None
        wanted, sent = int(match.group(1)), responses(request.body)
        if len(sent) < wanted:
            call = {"name": "run_python", "args": {"code": CODE}, "id": f"s{len(sent) + 1}"}
            return Reply(parts=[{"functionCall": call}])
        failed = sum("error" in (r.get("response") or {}) for r in sent)
        return Reply(text=f"Done: {len(sent)} responses, {failed} failed.")

    server = FakeGemini()
    server.responder = responder
    server.start()
    print(f"URL={server.url}", flush=True)
    try:
        for _ in sys.stdin:  # nothing to read: EOF stops the server
            pass
    finally:
        server.stop()
    return 0


def expected(steps: int) -> str:
    return f"Done: {steps} responses, 0 failed."


# -- the two sides ----------------------------------------------------------------------------------


class StandInKernel:
    """Enough of a kernel for the extension to render for a notebook (render.renderer_for)
    and to know it can ask (magics/cell.py); the frontend's hello goes to RecordingComm."""

    _allow_stdin = True


class Agents:
    def __init__(self, url: str):
        from google import genai

        from gemini_magic.agent import INSTRUCTION, agent_tools
        from gemini_magic.context import Limits

        self.comms = RecordingComm()  # before the extension opens its comm
        self.shell, self.publisher = recording_shell()
        self.shell.run_line_magic("load_ext", "gemini_magic")
        self.shell.run_line_magic("config", f"GeminiMagics.model = {MODEL!r}")
        # The baseline sends what ours sends: the agent's instruction and four declarations
        # (taken from ours once, here; building them is not timed).
        types = genai.types
        declarations = [types.FunctionDeclaration(**tool.declaration())
                        for tool in agent_tools(self.shell, Limits())]
        self.config = types.GenerateContentConfig(
            system_instruction=INSTRUCTION, tools=[types.Tool(function_declarations=declarations)])
        self.client = genai.Client(api_key=FAKE_KEY, http_options=types.HttpOptions(base_url=url))
        self.types = types

    def ours(self, steps: int, *, stream: bool = True, notebook: bool = True) -> None:
        """A %%gemini --agent --approve auto cell of `steps` steps."""
        self.shell.kernel = StandInKernel() if notebook else None
        self.shell.user_ns.pop("x", None)
        self.publisher.records = []
        line = f"--agent --approve auto --max-steps {steps + 1} -o bench_answer" + ("" if stream else " --no-stream")
        out = io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            self.shell.run_cell_magic("gemini", line, f"bench-agent steps={steps}")
        answer = str(self.shell.user_ns.pop("bench_answer", ""))
        if answer.strip() != expected(steps) or self.shell.user_ns.get("x") != 1:
            raise RuntimeError(f"ours, {steps} steps: {answer!r}; output: {out.getvalue()[-500:]!r}")
        if notebook and not self.publisher.records:
            raise RuntimeError("ours: nothing was displayed")

    def baseline(self, steps: int, *, stream: bool = True) -> None:
        """The same exchange with the raw SDK: exec each call's code, send its response back."""
        types = self.types
        contents = [types.Content(role="user", parts=[types.Part(text=f"bench-agent steps={steps}")])]
        namespace: dict = {}
        while True:
            if stream:
                parts = []
                for chunk in self.client.models.generate_content_stream(model=MODEL, contents=contents,
                                                                         config=self.config):
                    if chunk.candidates and chunk.candidates[0].content and chunk.candidates[0].content.parts:
                        parts.extend(chunk.candidates[0].content.parts)
            else:
                response = self.client.models.generate_content(model=MODEL, contents=contents, config=self.config)
                parts = list(response.candidates[0].content.parts or [])
            calls = [p.function_call for p in parts if p.function_call is not None]
            if not calls:
                text = "".join(p.text or "" for p in parts)
                break
            contents.append(types.Content(role="model", parts=parts))
            replies = []
            for call in calls:
                exec(call.args["code"], namespace)  # noqa: S102
                replies.append(types.Part(function_response=types.FunctionResponse(
                    id=call.id, name=call.name, response=RAN)))
            contents.append(types.Content(role="user", parts=replies))
        if text.strip() != expected(steps) or namespace.get("x") != 1:
            raise RuntimeError(f"baseline, {steps} steps: {text!r}")


def timed(fn) -> float:
    gc.collect()
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


# -- the figures ------------------------------------------------------------------------------------

PATHS = [
    # (label, ours' options, the baseline streams)
    ("streamed (the default), NotebookRenderer", {"stream": True, "notebook": True}, True),
    ("streamed, TerminalRenderer -> StringIO", {"stream": True, "notebook": False}, True),
    ("--no-stream, NotebookRenderer", {"stream": False, "notebook": True}, False),
]


def bench(results: Results, agents: Agents, pairs: int) -> None:
    say(f"\n[1-3] Agent steps of run_python({CODE!r}) with the server answering at once: 1 and {STEPS} steps, "
        f"{pairs} (ours, baseline) pairs of each per path, alternated")
    for number, (label, options, stream) in enumerate(PATHS, 1):
        for _ in range(2):  # warm-up, discarded: connections, imports, pygments' lexer
            agents.ours(STEPS, **options)
            agents.baseline(STEPS, stream=stream)
        diffs: dict[int, list[float]] = {1: [], STEPS: []}
        ours: dict[int, list[float]] = {1: [], STEPS: []}
        base: dict[int, list[float]] = {1: [], STEPS: []}
        for i in range(pairs):
            for steps in (1, STEPS) if i % 2 == 0 else (STEPS, 1):
                order = ("ours", "base") if (i + steps) % 2 == 0 else ("base", "ours")
                times = {}
                for side in order:
                    if side == "ours":
                        times[side] = timed(lambda: agents.ours(steps, **options)) * 1000  # noqa: B023
                    else:
                        times[side] = timed(lambda: agents.baseline(steps, stream=stream)) * 1000  # noqa: B023
                ours[steps].append(times["ours"])
                base[steps].append(times["base"])
                diffs[steps].append(times["ours"] - times["base"])
        per_step = (median(diffs[STEPS]) - median(diffs[1])) / (STEPS - 1)
        fixed = median(diffs[1]) - per_step
        # The same slope per round (its two cells ran back to back): a check on the one above.
        rounds = [(long - short) / (STEPS - 1) for long, short in zip(diffs[STEPS], diffs[1], strict=True)]
        say(f"  {label}:")
        for steps in (1, STEPS):
            say(f"    {steps:>2} step(s): ours ms {spread(ours[steps])}; baseline ms {spread(base[steps])}; "
                f"ours - baseline ms {spread(diffs[steps])}")
        say(f"    per step: {per_step:.2f} ms (slope of the paired medians; per round: {spread(rounds, '{:.2f}')}); "
            f"once per cell: {fixed:.1f} ms")
        results.add(f"{number}. Overhead per agent step, {label} (slope from 1 to {STEPS} steps, "
                    f"median of {pairs} pairs each)",
                    f"{per_step:.2f} ms/step ({STEPS}-step cell: {median(ours[STEPS]):.0f} ms)",
                    f"{median(base[STEPS]):.0f} ms for {STEPS} steps (raw SDK round trips + exec)",
                    f"<= {STEP_TARGET_MS:g} ms/step", per_step <= STEP_TARGET_MS)
        results.add(f"{number}. Once per agent cell, {label}", f"{fixed:.1f} ms",
                    f"{median(base[1]):.1f} ms (raw SDK, 1 step)", "-", None)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few repeats: checks the script works")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)  # the server process
    args = parser.parse_args(argv)
    if args.serve:
        return serve()
    repeats = QUICK if args.quick else Repeats()
    started = time.perf_counter()
    load_before = load_average()
    results = Results()
    crashed = False
    with tempfile.TemporaryDirectory(prefix="bench-agent-") as tmp, ServedScript(__file__) as server:
        use_environment(server.url, Path(tmp))
        say(f"Fake Gemini server (own process) at {server.url}; "
            + ("QUICK run: too few repeats to trust the figures" if args.quick else "full run"))
        try:
            bench(results, Agents(server.url), repeats.pairs)
        except Exception:
            crashed = True
            traceback.print_exc()
    print_table(results, time.perf_counter() - started, load_before,
                how="baseline measured in the same run, paired and alternated with ours")
    say(f"- Ours sends the same {json.dumps(RAN)} for each step as the baseline does.")
    return 1 if crashed else 0


if __name__ == "__main__":
    sys.exit(main())
