"""``amr-dspy bench teacher``: how fast each way of serving the local teacher is, measured, not guessed.

Two parts, both on the same machine in the same run. Token rates: the same fixed prompts at several
concurrency levels, straight to the server's OpenAI endpoint (aggregate completion and prompt tokens per
second of wall time). Commands: real ``amr-dspy`` runs (eval of direct and amr on a benchmark, synthesis of
the sample instructions with the compiled program), uncached, once per server, timed end to end; their
outputs are compared so the report says how many greedy answers batching changed and whether pass@1 moved.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from pydantic import BaseModel, Field

from amr_dspy.model_files import EMBEDDED_MODELS, assemble_model
from amr_dspy.server import LocalServer, ServerConfig, ServerSettings, die_with_parent
from amr_dspy.server_build import find_server_binary

__all__ = [
    "BENCH_PROMPTS",
    "RateRow",
    "CommandRun",
    "Agreement",
    "TeacherBenchReport",
    "measure_rates",
    "run_command",
    "agreement",
    "markdown_report",
]

# Fixed coding prompts, answered greedily up to ``max_tokens``, taken in order at every level and for every server.
BENCH_PROMPTS = (
    "Write a Python function that merges overlapping intervals.",
    "Write a Python function that checks whether brackets in a string are balanced.",
    "Write a Python function that returns the n-th Fibonacci number iteratively.",
    "Write a Python function that flattens an arbitrarily nested list.",
    "Write a Python function that counts word frequencies in a text, case-insensitively.",
    "Write a Python function that rotates a matrix by 90 degrees clockwise.",
    "Write a Python function that parses a CSV line with quoted fields.",
    "Write a Python function that computes the longest common subsequence of two strings.",
    "Write a Python function that returns all primes below n with a sieve.",
    "Write a Python function that groups anagrams in a list of words.",
    "Write a Python function that converts a Roman numeral to an integer.",
    "Write a Python function that finds the k largest elements of a list.",
    "Write a Python function that validates an IPv4 address string.",
    "Write a Python function that computes the edit distance of two strings.",
    "Write a Python function that splits a list into chunks of size n.",
    "Write a Python function that returns the median of a list of numbers.",
)


_ROUNDS = 2  # requests per level: this many per concurrent stream, so every level keeps all its streams busy


class RateRow(BaseModel):
    """One server at one concurrency level over all bench prompts."""

    server: str  # ServerSettings.describe()
    settings: ServerSettings
    concurrency: int
    requests: int
    wall_s: float
    prompt_tokens: int
    completion_tokens: int

    @property
    def completion_tps(self) -> float:
        return self.completion_tokens / self.wall_s if self.wall_s else 0.0

    @property
    def prompt_tps(self) -> float:
        return self.prompt_tokens / self.wall_s if self.wall_s else 0.0


class CommandRun(BaseModel):
    """One ``amr-dspy`` command run end to end with one server."""

    name: str  # e.g. "eval direct mbpp+:dev"
    server: str
    settings: ServerSettings
    argv: list[str]
    wall_s: float
    returncode: int
    out: str  # its output folder (kept for the agreement check)
    pass_at_1: float | None = None  # eval: base+plus; synthesize: verified fraction
    extra: dict[str, float | int | str] = Field(default_factory=dict)


class Agreement(BaseModel):
    """Greedy answers of one eval under two servers: how many differ, and what that did to pass@1."""

    name: str
    tasks: int
    differing_answers: int
    pass_a: float
    pass_b: float
    outcome_changes: int  # tasks whose pass/fail differs


class TeacherBenchReport(BaseModel):
    model: str
    cores: int
    max_tokens: int
    rates: list[RateRow] = Field(default_factory=list)
    commands: list[CommandRun] = Field(default_factory=list)
    agreements: list[Agreement] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)  # what the numbers alone do not say (written by hand)
    created: str = ""


def _chat(url: str, alias: str, prompt: str, max_tokens: int) -> tuple[int, int]:
    body = json.dumps({"model": alias, "max_tokens": max_tokens, "temperature": 0.0,
                       "messages": [{"role": "user", "content": prompt}]}).encode()  # fmt: skip
    request = urllib.request.Request(f"{url}/v1/chat/completions", body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=600) as response:
        usage = json.loads(response.read())["usage"]
    return int(usage["prompt_tokens"]), int(usage["completion_tokens"])


def measure_rates(
    model_key: str,
    settings: ServerSettings,
    concurrency: Sequence[int],
    *,
    max_tokens: int = 128,
    prompts: Sequence[str] = BENCH_PROMPTS,
    binary: Path | None = None,
    say: Callable[[str], None] = print,
) -> list[RateRow]:
    """Serve the model once with ``settings``; at each concurrency level send two requests per stream."""
    model = EMBEDDED_MODELS[model_key]
    config = ServerConfig(model_path=assemble_model(model), alias=model.alias, settings=settings, binary=binary)
    rows = []
    with LocalServer(config) as server:
        for level in concurrency:
            # A fresh first line per level, so no slot's prompt cache holds an earlier level's prompts.
            nonce = uuid.uuid4().hex[:8]
            batch = [f"(request {nonce}-{i})\n{prompts[i % len(prompts)]}" for i in range(_ROUNDS * level)]
            say(f"{settings.describe()}: {len(batch)} requests at concurrency {level}")
            started = time.monotonic()
            with ThreadPoolExecutor(level) as pool:
                usage = list(pool.map(lambda p: _chat(server.url, model.alias, p, max_tokens), batch))
            rows.append(RateRow(server=settings.describe(), settings=settings, concurrency=level, requests=len(batch),
                                wall_s=round(time.monotonic() - started, 2),
                                prompt_tokens=sum(u[0] for u in usage),
                                completion_tokens=sum(u[1] for u in usage)))  # fmt: skip
    return rows


def run_command(
    name: str, args: list[str], settings: ServerSettings, out: Path, *, say: Callable[[str], None] = print
) -> CommandRun:
    """Run ``amr-dspy ARGS --out OUT`` in a subprocess with the given server; time it and read its result."""
    env = {**os.environ, "AMR_DSPY_SERVER": settings.kind, "AMR_DSPY_SLOTS": str(settings.slots)}
    argv = [sys.executable, "-m", "amr_dspy", *args, "--out", str(out)]
    say(f"{name} with {settings.describe()}")
    started = time.monotonic()
    parent = os.getpid()
    # The run dies with the bench (and its server with the run): a killed bench leaves no teacher working.
    done = subprocess.run(argv, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          preexec_fn=lambda: die_with_parent(parent))  # fmt: skip
    wall = round(time.monotonic() - started, 1)
    run = CommandRun(name=name, server=settings.describe(), settings=settings, argv=["amr-dspy", *args],
                     wall_s=wall, returncode=done.returncode, out=str(out))  # fmt: skip
    if done.returncode != 0:
        say(f"{name} failed ({done.returncode}): {done.stderr.strip().splitlines()[-1:] or done.stdout[-300:]}")
        return run
    _read_outcome(run, out)
    return run


def _read_outcome(run: CommandRun, out: Path) -> None:
    results, summary = out / "results.json", out / "summary.json"
    if results.is_file():
        data = json.loads(results.read_text())
        tasks = data.get("tasks", [])
        run.pass_at_1 = sum(bool(t.get("plus_passed")) for t in tasks) / len(tasks) if tasks else None
        run.extra = {"tasks": len(tasks)}
    elif summary.is_file():
        data = json.loads(summary.read_text())
        counts = {k: v for k, v in data.items() if isinstance(v, int | float) and not isinstance(v, bool)}
        run.extra = {k: counts[k] for k in sorted(counts)[:12]}
        if data.get("records"):
            run.pass_at_1 = (data.get("verification") or {}).get("passed", 0) / data["records"]


def agreement(name: str, a: CommandRun, b: CommandRun) -> Agreement | None:
    """Compare the per-task code and outcomes of two eval runs of the same command."""
    codes = [_codes(Path(run.out)) for run in (a, b)]
    outcomes = [_outcomes(Path(run.out)) for run in (a, b)]
    if not codes[0] or not codes[1]:
        return None
    shared = sorted(set(codes[0]) & set(codes[1]))
    return Agreement(
        name=name,
        tasks=len(shared),
        differing_answers=sum(codes[0][t] != codes[1][t] for t in shared),
        pass_a=a.pass_at_1 or 0.0,
        pass_b=b.pass_at_1 or 0.0,
        outcome_changes=sum(outcomes[0].get(t) != outcomes[1].get(t) for t in shared),
    )


def _codes(out: Path) -> dict[str, str | None]:
    path = out / "predictions.jsonl"
    if not path.is_file():
        return {}
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return {row["task_id"]: row.get("response") for row in rows}


def _outcomes(out: Path) -> dict[str, bool]:
    path = out / "results.json"
    if not path.is_file():
        return {}
    return {t["task_id"]: bool(t.get("plus_passed")) for t in json.loads(path.read_text()).get("tasks", [])}


def available_servers(slots: int) -> list[ServerSettings]:
    """The fallback server and, when built, llama-server with ``slots`` slots."""
    servers = [ServerSettings(kind="llama-cpp-python")]
    if find_server_binary() is not None:
        servers.append(ServerSettings(kind="llama-server", slots=slots))
    return servers


def markdown_report(report: TeacherBenchReport) -> str:
    """The report as Markdown tables, for the README and the committed report folder."""
    lines = [f"Teacher throughput · {report.model} · {report.cores} cores · greedy, up to {report.max_tokens} "
             "tokens per answer; tokens/s are aggregate over all requests in flight.", "",
             "| server | concurrency | requests | wall s | completion tokens/s | prompt tokens/s |",
             "|---|---|---|---|---|---|"]  # fmt: skip
    for row in report.rates:
        lines.append(f"| {row.server} | {row.concurrency} | {row.requests} | {row.wall_s:.1f} | "
                     f"{row.completion_tps:.1f} | {row.prompt_tps:.1f} |")  # fmt: skip
    if report.commands:
        lines += ["", "| command | server | wall s | speed-up | result |", "|---|---|---|---|---|"]
        base = {c.name: c.wall_s for c in report.commands if c.settings.kind == "llama-cpp-python"}
        for run in report.commands:
            speedup = f"{base[run.name] / run.wall_s:.2f}×" if run.name in base and run.wall_s else "—"
            result = "failed" if run.returncode else (f"{run.pass_at_1:.1%}" if run.pass_at_1 is not None else "—")
            lines.append(f"| `{' '.join(run.argv[1:])}` | {run.server} | {run.wall_s:.0f} | {speedup} | {result} |")
    for agree in report.agreements:
        lines += ["", f"{agree.name}: {agree.differing_answers} of {agree.tasks} greedy answers differ between the "
                  f"servers; {agree.outcome_changes} tasks change outcome; pass@1 {agree.pass_a:.1%} → "
                  f"{agree.pass_b:.1%}."]  # fmt: skip
    if report.notes:
        lines += ["", *(f"- {note}" for note in report.notes)]
    return "\n".join(lines) + "\n"
