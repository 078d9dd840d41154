"""A fault-injecting fake OpenAI-compatible teacher on 127.0.0.1, for tests that must not need a real model.

It answers ``/v1/chat/completions`` in the shape DSPy's ChatAdapter and JSONAdapter ask for: it reads the
output fields the prompt requests and fills each one from a deterministic toy solution of the instruction
(a function named after the first ``name(`` in it). Faults are asked for inside the instruction, so they
stay attached to one input whatever the concurrency: ``FAULT:500x2`` makes the first two requests about that
instruction fail with HTTP 500; the kinds are ``500``, ``timeout`` (answers after the client gave up),
``drop`` (closes the connection without an answer) and ``garbage`` (an unparsable answer). Other markers:
``BUGGY`` makes the solution fail its own unit tests, ``JOINED_TESTS`` puts all unit tests in one string (as
small teachers do), ``NO_TESTS`` writes no assert at all, ``LEAK`` answers with ``LEAKED_CODE`` (a stand-in for
a benchmark solution) and ``SAME_TASK`` makes the decontamination judge say yes.
"""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from collections import defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["FakeOpenAI", "toy_solution", "LEAKED_CODE"]

LEAKED_CODE = (
    "def leaky_sum(xs):\n"
    "    total = 0\n"
    "    for value in xs:\n"
    "        total += value * value - value\n"
    "    return total\n"
)

_FAULT = re.compile(r"FAULT:(500|timeout|drop|garbage)x(\d+)")
_NAME = re.compile(r"\b([a-z_][a-z0-9_]*)\(")
_CHAT_FIELDS = re.compile(r"`\[\[ ## (\w+) ## \]\]`")
_JSON_FIELDS = re.compile(r"`(\w+)`")
_SECTION = re.compile(r"\[\[ ## (\w+) ## \]\]\n(.*?)(?=\n\n\[\[ ## |\n\nRespond with|\Z)", re.DOTALL)


def _last_turn(messages: list[dict[str, Any]]) -> str:
    """The last message's text, without the signature instructions that TextAdapter puts before a lone turn."""
    from signatures import DescribeModule, DirectResponse

    text = str(messages[-1].get("content", "")) if messages else ""
    for signature in (DirectResponse, DescribeModule):
        text = text.removeprefix(f"{signature.instructions}\n\n")
    return text


def toy_solution(instruction: str) -> tuple[str, str, list[str]]:
    """The function name, code and unit tests the fake teacher gives for ``instruction``."""
    if "LEAK" in instruction:
        return "leaky_sum", LEAKED_CODE, ["assert leaky_sum([2, 3]) == 8"]
    match = _NAME.search(instruction)
    name = match.group(1) if match else "solve"
    offset = len(name)
    wrong = " + 1" if "BUGGY" in instruction else ""
    code = (
        f"def {name}(*args: int) -> int:\n"
        f'    """Return the sum of the arguments plus {offset}, as {name.replace("_", " ")} requires."""\n'
        f"    return sum(args) + {offset}{wrong}\n"
    )
    tests = [f"assert {name}(1, 2) == {3 + offset}", f"assert {name}() == {offset}"]
    return name, code, tests


def _written_tests(instruction: str, tests: list[str]) -> list[str]:
    if "JOINED_TESTS" in instruction:
        return ["\n".join(tests)]
    return ["print(1)"] if "NO_TESTS" in instruction else tests


class FakeOpenAI:
    """``with FakeOpenAI() as server: dspy.LM("openai/fake", api_base=server.api_base, api_key="x")``."""

    def __init__(self, *, delay_s: float = 0.0, timeout_sleep_s: float = 3.0) -> None:
        self.delay_s = delay_s
        self.timeout_sleep_s = timeout_sleep_s
        self.requests: list[dict[str, Any]] = []
        self._served: dict[str, int] = defaultdict(int)  # requests seen per instruction
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def api_base(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def start(self) -> FakeOpenAI:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> FakeOpenAI:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def lm(self, **kwargs: Any) -> Any:
        import dspy

        settings = {"cache": False, "num_retries": 2, "timeout": 1.0, "max_tokens": 512, "temperature": 0.0} | kwargs
        return dspy.LM("openai/fake-teacher", api_base=self.api_base, api_key="sk-fake", **settings)

    def faults(self, kind: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            return [r for r in self.requests if r["fault"] and (kind is None or r["fault"] == kind)]

    # ------------------------------------------------------------------ answering

    def _plan(self, text: str) -> tuple[str, str | None]:
        """The instruction a request is about and the fault (if any) this request gets."""
        sections = dict(_SECTION.findall(text))
        instruction = sections.get("instruction") or sections.get("task_a") or text
        faults = [kind for kind, count in _FAULT.findall(instruction) for _ in range(int(count))]
        with self._lock:
            seen = self._served[instruction]
            self._served[instruction] += 1
        return instruction, faults[seen] if seen < len(faults) else None

    def answer(self, messages: list[dict[str, Any]]) -> str:
        text = _last_turn(messages)
        instruction = dict(_SECTION.findall(text)).get("instruction") or text
        name, code, tests = toy_solution(instruction)
        values: dict[str, Any] = {
            "response": f"Here is the solution.\n\n```python\n{code}```\n",
            "repaired_response": f"Fixed.\n\n```python\n{code}```\n",
            "reasoning": "Add the arguments.",
            "modules": [{"name": name, "signature": f"def {name}(*args: int) -> int:",
                         "description": f"Sum the arguments and add {len(name)}.", "calls": []}],
            "implementations": [{"name": name, "code": code}],
            "tests": _written_tests(instruction, tests),
            "same_task": "SAME_TASK" in text,
        }  # fmt: skip
        if "Respond with a JSON object" in text:
            fields = [f for f in _JSON_FIELDS.findall(text.split("Respond with a JSON object", 1)[1])]
            return json.dumps({f: values.get(f, "OK") for f in fields if f in values or f.isidentifier()})
        if "Respond with the corresponding output fields" not in text:  # a plain conversation (TextAdapter)
            first = str(messages[0].get("content", ""))  # the signature's instructions lead the first turn
            return f"Sums the arguments of {name}." if first.startswith("Describe") else values["response"]
        fields = [f for f in _CHAT_FIELDS.findall(text.split("Respond with the corresponding output fields", 1)[1])
                  if f != "completed"]  # fmt: skip
        parts = []
        for field in fields:
            value = values.get(field, "OK")
            parts.append(f"[[ ## {field} ## ]]\n{value if isinstance(value, str) else json.dumps(value)}\n")
        return "\n".join(parts) + "\n[[ ## completed ## ]]\n"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def _send(self, status: int, payload: dict[str, Any]) -> None:
                body = json.dumps(payload).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except OSError:  # the client gave up (timeout faults)
                    pass

            def do_GET(self) -> None:
                if self.path.rstrip("/").endswith("/models"):
                    self._send(200, {"object": "list", "data": [{"id": "fake-teacher", "object": "model"}]})
                else:
                    self._send(404, {"error": {"message": "not found"}})

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                try:
                    body = json.loads(self.rfile.read(length) or b"{}")
                except json.JSONDecodeError:
                    self._send(400, {"error": {"message": "bad json"}})
                    return
                if not self.path.rstrip("/").endswith("/chat/completions"):
                    self._send(404, {"error": {"message": f"unknown path {self.path}"}})
                    return
                messages = body.get("messages") or []
                instruction, fault = fake._plan(_last_turn(messages))
                with fake._lock:
                    fake.requests.append({"instruction": instruction, "fault": fault, "at": time.time(),
                                          "max_tokens": body.get("max_tokens")})  # fmt: skip
                if fake.delay_s:
                    time.sleep(fake.delay_s)
                if fault == "500":
                    self._send(500, {"error": {"message": "injected server error", "type": "server_error"}})
                    return
                if fault == "drop":
                    try:
                        self.connection.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
                    self.close_connection = True
                    return
                if fault == "timeout":
                    time.sleep(fake.timeout_sleep_s)
                content = "I am not sure what you mean." if fault == "garbage" else fake.answer(messages)
                prompt_chars = sum(len(str(m.get("content", ""))) for m in messages)
                usage = {"prompt_tokens": prompt_chars // 4 + 1, "completion_tokens": len(content) // 4 + 1}
                usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
                self._send(200, {
                    "id": f"chatcmpl-{len(fake.requests)}", "object": "chat.completion", "created": int(time.time()),
                    "model": body.get("model", "fake-teacher"),
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                                 "finish_reason": "stop"}],
                    "usage": usage,
                })  # fmt: skip

        return Handler
