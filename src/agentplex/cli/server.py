"""``agentplex sim-server``: the fault-injecting simulator server, in the foreground."""

from __future__ import annotations

from typing import Annotated, Optional

import typer


def sim_server(
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1 (0: any free port).")] = 8900,
    latency: Annotated[
        Optional[float],  # noqa: UP045 - typer needs Optional here
        typer.Option(help="Fixed latency of every answer (s) (default: the sim latency model)."),
    ] = None,
    scale: Annotated[float, typer.Option(help="Multiply every latency.")] = 1.0,
    p429: Annotated[float, typer.Option(help="Share of 429s with Retry-After.")] = 0.0,
    p429_bare: Annotated[
        float, typer.Option("--p429-bare", help="Share of 429s without Retry-After.")
    ] = 0.0,
    p500: Annotated[float, typer.Option(help="Share of 500s.")] = 0.0,
    p503: Annotated[float, typer.Option(help="Share of 503s.")] = 0.0,
    p529: Annotated[float, typer.Option(help="Share of 529s (Anthropic 'overloaded').")] = 0.0,
    p_hang: Annotated[
        float, typer.Option("--p-hang", help="Share of requests never answered.")
    ] = 0.0,
    p_drop: Annotated[
        float, typer.Option("--p-drop", help="Share of connections dropped unanswered.")
    ] = 0.0,
    p_malformed: Annotated[
        float, typer.Option("--p-malformed", help="Share of 200s with a broken JSON body.")
    ] = 0.0,
    retry_after: Annotated[
        float, typer.Option("--retry-after", help="Retry-After (s) sent with injected 429s.")
    ] = 1.0,
    rpm: Annotated[
        Optional[float],  # noqa: UP045
        typer.Option(help="Enforced requests per minute: real 429s beyond it."),
    ] = None,
    tpm: Annotated[
        Optional[float],  # noqa: UP045
        typer.Option(help="Enforced tokens per minute."),
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the fault draws.")] = 0,
) -> None:
    """Serve OpenAI- and Anthropic-compatible APIs on 127.0.0.1 with simulated answers and faults.

    Point a run at it with --model openai:sim --base-url http://127.0.0.1:PORT/v1
    (or anthropic:sim --base-url http://127.0.0.1:PORT). GET /stats shows counts
    per status and per prompt hash.
    """
    import asyncio

    from agentplex.cli.main import _die
    from agentplex.exceptions import ConfigError
    from agentplex.sim.server import HOST, ServerConfig, serve

    try:
        config = ServerConfig(
            latency_s=latency,
            scale=scale,
            p429=p429,
            p429_bare=p429_bare,
            p500=p500,
            p503=p503,
            p529=p529,
            p_hang=p_hang,
            p_drop=p_drop,
            p_malformed=p_malformed,
            retry_after_s=retry_after,
            rpm=rpm,
            tpm=tpm,
            seed=seed,
        ).check()
    except ConfigError as exc:
        _die(str(exc))

    def ready(bound: int) -> None:
        typer.echo(
            f"agentplex sim-server on http://{HOST}:{bound}  "
            f"(OpenAI: --base-url http://{HOST}:{bound}/v1, Anthropic: http://{HOST}:{bound}; "
            "stats: /stats; Ctrl-C stops)",
        )

    try:
        asyncio.run(serve(config, port, ready=ready))
    except OSError as exc:
        _die(f"cannot listen on {HOST}:{port}: {exc.strerror or exc}. Fix: pick another --port.")
    except KeyboardInterrupt:
        typer.echo("stopped")
