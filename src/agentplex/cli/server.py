"""``agentplex sim-server``: the fault-injecting simulator server, in the foreground."""

from __future__ import annotations

import dataclasses
import json
from typing import Annotated, Any, Optional

import typer

from agentplex.cli.flags import OutputFlags, takes

FAULTS = {
    "p429": "Share of 429s with Retry-After.",
    "p429_bare": "Share of 429s without Retry-After.",
    "p500": "Share of 500s.",
    "p503": "Share of 503s.",
    "p529": "Share of 529s (Anthropic 'overloaded').",
    "p_hang": "Share of requests never answered.",
    "p_drop": "Share of connections dropped unanswered.",
    "p_malformed": "Share of 200s with a broken JSON body.",
}
"""The injected faults: each a share of requests, named as the server's config names it."""

FaultFlags: Any = dataclasses.make_dataclass(
    "FaultFlags",
    [(name, Annotated[float, typer.Option(help=text)], 0.0) for name, text in FAULTS.items()],
    frozen=True,
    kw_only=True,
)


@takes(FaultFlags, "faults")
@takes(OutputFlags, "output", only=("json_out",))
def sim_server(
    faults: Any,
    output: OutputFlags,
    port: Annotated[
        int, typer.Option(min=0, max=65535, help="Port on 127.0.0.1 (0: any free port).")
    ] = 8900,
    latency: Annotated[
        Optional[float],  # noqa: UP045 - typer needs Optional here
        typer.Option(help="Fixed latency of every answer (s) (default: the sim latency model)."),
    ] = None,
    scale: Annotated[float, typer.Option(help="Multiply every latency.")] = 1.0,
    retry_after: Annotated[
        float, typer.Option("--retry-after", help="Retry-After (s) sent with injected 429s.")
    ] = 1.0,
    rpm: Annotated[
        Optional[float],  # noqa: UP045
        typer.Option(help="Enforced requests per minute: real 429s beyond it."),
    ] = None,
    tpm: Annotated[Optional[float], typer.Option(help="Enforced tokens per minute.")] = None,  # noqa: UP045
    seed: Annotated[int, typer.Option(help="Seed of the fault draws.")] = 0,
) -> None:
    """Serve OpenAI- and Anthropic-compatible APIs on 127.0.0.1 with simulated answers and faults.

    Point a run at it with --model openai:sim --base-url http://127.0.0.1:PORT/v1
    (or anthropic:sim --base-url http://127.0.0.1:PORT). GET /stats shows counts
    per status and per prompt hash. --json prints the addresses as one JSON
    line once the server listens. Ctrl-C stops it (exit 130).
    """
    import asyncio
    import sys

    from agentplex.cli import script
    from agentplex.sim.server import HOST, ServerConfig, serve

    with script.errors(output.json_out):
        config = ServerConfig(
            latency_s=latency,
            scale=scale,
            retry_after_s=retry_after,
            rpm=rpm,
            tpm=tpm,
            seed=seed,
            **dataclasses.asdict(faults),
        ).check()

    def ready(bound: int) -> None:
        root = f"http://{HOST}:{bound}"
        if output.json_out:
            where = {"url": root, "port": bound, "openai_base_url": f"{root}/v1"}
            where.update(anthropic_base_url=root, stats_url=f"{root}/stats")
            sys.stdout.write(f"{json.dumps(where)}\n")
            sys.stdout.flush()
            return
        typer.echo(
            f"agentplex sim-server on {root}  (OpenAI: --base-url {root}/v1, Anthropic: "
            f"{root}; stats: /stats; Ctrl-C stops)"
        )

    try:
        asyncio.run(serve(config, port, ready=ready))
    except OSError as exc:
        script.fail(
            f"cannot listen on {HOST}:{port}: {exc.strerror or exc}. Fix: pick another --port."
        )
    except KeyboardInterrupt:
        sys.stderr.write("stopped\n")
        raise typer.Exit(script.EXIT_INTERRUPTED) from None
