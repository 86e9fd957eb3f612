"""A real ipykernel driven over ZMQ, collecting the messages a frontend would see."""

from __future__ import annotations

import queue
import time
from dataclasses import dataclass, field


@dataclass
class Execution:
    messages: list = field(default_factory=list)  # iopub messages for this cell, in order
    reply: dict = field(default_factory=dict)
    payload: list = field(default_factory=list)

    @property
    def status(self) -> str:
        return self.reply.get("status", "")

    def of_type(self, *types: str) -> list:
        return [m for m in self.messages if m["msg_type"] in types]

    @property
    def outputs(self) -> list:
        return self.of_type("display_data", "update_display_data", "stream", "execute_result", "error")

    def stream_text(self, name: str = "stdout") -> str:
        return "".join(m["content"]["text"] for m in self.of_type("stream") if m["content"]["name"] == name)

    def notes(self, kind: str | None = None) -> str:
        """The text of gemini-magic's notes (render/notes.py): display outputs, never stderr."""
        found = []
        for m in self.of_type("display_data"):
            note = (m["content"].get("metadata") or {}).get("gemini_magic", {}).get("note")
            if note and (kind is None or note == kind):
                found.append(m["content"]["data"]["text/plain"] + "\n")
        return "".join(found)

    @property
    def error(self) -> dict | None:
        errors = self.of_type("error")
        return errors[0]["content"] if errors else None


class KernelSession:
    def __init__(self, env: dict, cwd: str | None = None):
        self.env = env
        self.cwd = cwd

    def start(self) -> None:
        from jupyter_client import KernelManager

        self.manager = KernelManager(kernel_name="python3")
        self.manager.start_kernel(env=self.env, cwd=self.cwd)
        self.client = self.manager.client()
        self.client.start_channels()
        self.client.wait_for_ready(timeout=60)

    def stop(self) -> None:
        self.client.stop_channels()
        self.manager.shutdown_kernel(now=True)

    def run(self, code: str, timeout: float = 30, on_message=None, check: bool = False,
            cell_id: str | None = None) -> Execution:
        """Run a cell; `on_message(msg)` sees each iopub message as it arrives. `cell_id`
        is sent as JupyterLab and VS Code send it (the request's metadata.cellId)."""
        if cell_id is None:
            msg_id = self.client.execute(code, store_history=True)
        else:
            content = {"code": code, "silent": False, "store_history": True, "user_expressions": {},
                       "allow_stdin": False, "stop_on_error": True}
            msg = self.client.session.msg("execute_request", content, metadata={"cellId": cell_id})
            self.client.shell_channel.send(msg)
            msg_id = msg["header"]["msg_id"]
        execution = Execution()
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"cell did not finish in {timeout} s: {code[:60]!r}")
            try:
                msg = self.client.get_iopub_msg(timeout=remaining)
            except queue.Empty:
                continue
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                break
            execution.messages.append(msg)
            if on_message is not None:
                on_message(msg)
        reply = self.client.get_shell_msg(timeout=timeout)
        while reply["parent_header"].get("msg_id") != msg_id:
            reply = self.client.get_shell_msg(timeout=timeout)
        execution.reply = reply["content"]
        execution.payload = reply["content"].get("payload", [])
        if check and execution.status != "ok":
            raise AssertionError(f"cell failed: {execution.error}")
        return execution

    def interrupt(self) -> None:
        self.manager.interrupt_kernel()
