"""``amr-dspy teacher serve|check|build-server``: run the local teacher for other tools, check any teacher end to
end, or build the batching llama-server once."""

from __future__ import annotations

import time
from contextlib import ExitStack
from typing import Annotated

import typer
from rich.table import Table

from amr_dspy.cli._app import console, teacher_app
from amr_dspy.cli._options import ApiBaseOpt, ApiKeyOpt, ServerOpt, SlotsOpt, TeacherOpt, teacher_spec
from amr_dspy.errors import ConfigError, TeacherUnavailableError

_CHECK_PROMPT = "Write a Python function add(a, b) that returns the sum of a and b. Reply with only the code."


@teacher_app.command("build-server")
def build_server_command(
    force: Annotated[bool, typer.Option("--force", help="Rebuild even if the binary is already there.")] = False,
    jobs: Annotated[
        int | None, typer.Option("--jobs", "-j", min=1, help="Parallel compile jobs (default: cores).")
    ] = None,
) -> None:
    """Build llama.cpp's batching llama-server from the pinned llama-cpp-python sdist into the user cache."""
    from amr_dspy.server_build import build_server

    started = time.monotonic()
    with console.status("building llama-server") as status:
        path = build_server(jobs=jobs, force=force, say=lambda line: status.update(line))
    console.print(f"llama-server: {path} ({time.monotonic() - started:.0f} s)")


@teacher_app.command("serve")
def serve(
    teacher: TeacherOpt = None,
    port: Annotated[int | None, typer.Option(help="Port on 127.0.0.1 (default: a free one).")] = None,
    n_ctx: Annotated[int, typer.Option("--n-ctx", help="Context window in tokens per request.")] = 8192,
    server_kind: ServerOpt = None,
    slots: SlotsOpt = None,
) -> None:
    """Serve the embedded local teacher on loopback (OpenAI-compatible) until Ctrl-C."""
    from amr_dspy.model_files import EMBEDDED_MODELS, assemble_model
    from amr_dspy.server import LocalServer, ServerConfig
    from amr_dspy.teacher import resolve_server

    spec = teacher_spec(teacher, server=server_kind, slots=slots)
    if spec.kind != "local":
        raise ConfigError(f"teacher serve runs a local teacher only, not {spec.model!r}; use --teacher local[:1.5b]")
    model = EMBEDDED_MODELS[spec.model]
    with console.status(f"assembling {model.filename}"):
        path = assemble_model(model)
    settings, binary = resolve_server(spec)
    config = ServerConfig(model_path=path, alias=model.alias, port=port, n_ctx=n_ctx, settings=settings, binary=binary)
    with console.status(f"starting {settings.describe()}"):
        server = LocalServer(config).start()
    try:
        console.print(f"[green]serving[/] {model.alias} with {settings.describe()} at [bold]{server.api_base}[/] "
                      "(Ctrl-C to stop)")
        console.print(f'use it as: dspy.LM("hosted_vllm/{model.alias}", api_base="{server.api_base}", '
                      'api_key="sk-local")')
        while server.pid is not None:
            time.sleep(1)
    except KeyboardInterrupt:
        console.print("stopping")
    finally:
        server.stop()


@teacher_app.command("check")
def check(
    teacher: TeacherOpt = None,
    api_base: ApiBaseOpt = None,
    api_key: ApiKeyOpt = None,
    server_kind: ServerOpt = None,
    slots: SlotsOpt = None,
) -> None:
    """One real, uncached round trip through dspy.LM: prints model, server, latency and tokens/s."""
    from amr_dspy.teacher import open_teacher

    spec = teacher_spec(teacher, api_base, api_key, max_tokens=128, no_cache=True, server=server_kind, slots=slots)
    started = time.monotonic()
    with ExitStack() as stack:
        with console.status(f"starting teacher {spec.name}"):
            lm = stack.enter_context(open_teacher(spec))
        ready = time.monotonic()
        try:
            outputs = lm(_CHECK_PROMPT)
        except Exception as exc:  # litellm raises many types; the user needs one line
            raise TeacherUnavailableError(f"teacher {spec.name} did not answer: {type(exc).__name__}: {exc}") from None
        latency = time.monotonic() - ready
    usage = lm.history[-1].get("usage") or {}
    completion_tokens = int(usage.get("completion_tokens") or 0)
    table = Table(title="teacher check", show_header=False)
    table.add_row("model", spec.name)
    if server := getattr(lm, "server", None):
        table.add_row("server", server.describe())
    table.add_row("start-up", f"{ready - started:.1f} s")
    table.add_row("latency", f"{latency:.2f} s")
    table.add_row("prompt / completion tokens", f"{usage.get('prompt_tokens', 0)} / {completion_tokens}")
    table.add_row("tokens/s", f"{completion_tokens / latency:.1f}" if latency > 0 else "n/a")
    table.add_row("answer", str(outputs[0])[:200])
    console.print(table)
