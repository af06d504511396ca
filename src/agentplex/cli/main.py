"""The ``agentplex`` command: the typer app, its commands, and the console-script entry point.

Exit codes, the same for every command: 0 ok; 1 the work failed; 2 bad input
or configuration (one clear line, no traceback); 130 interrupted (Ctrl-C:
what finished is kept and printed first). See :mod:`agentplex.cli.script`.
Heavy modules are imported inside the commands so ``agentplex --help`` stays fast.
"""

from __future__ import annotations

import sys

import typer

from agentplex.cli.batch import batch, bench
from agentplex.cli.check import graph, roles, validate
from agentplex.cli.plan import ask, plan
from agentplex.cli.run import run
from agentplex.cli.script import EXIT_INTERRUPTED
from agentplex.cli.server import sim_server
from agentplex.cli.store import cache, report, resume, runs, show

app = typer.Typer(
    name="agentplex",
    help="Run multi-agent LLM workflows with real parallelism.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # help texts hold [default: ...] and agentplex[extra]: plain text
)


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        sys.stdout.write(f"agentplex {version('agentplex')}\n")
        raise typer.Exit()


@app.callback()
def _options(
    show_version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Run multi-agent LLM workflows with real parallelism."""


for name, command in (
    ("run", run),
    ("graph", graph),
    ("validate", validate),
    ("roles", roles),
    ("sim-server", sim_server),
    ("batch", batch),
    ("bench", bench),
    ("report", report),
    ("runs", runs),
    ("show", show),
    ("resume", resume),
    ("cache", cache),
    ("plan", plan),
    ("ask", ask),
):
    app.command(name)(command)


def main() -> None:
    """Run the ``agentplex`` console script."""
    try:
        app()
    except KeyboardInterrupt:  # before a command could take over (while starting up)
        sys.stderr.write("interrupted before anything ran\n")
        sys.exit(EXIT_INTERRUPTED)
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else 1
        if "--json" in sys.argv[1:]:
            from agentplex.cli.script import json_for_exit

            json_for_exit(code)
        if code == EXIT_INTERRUPTED:
            _leave_running_steps()
        raise


def _leave_running_steps() -> None:
    """Exit now if only cancelled Python steps are left running in threads.

    A thread cannot be stopped, and the interpreter would wait for a step that
    sleeps for an hour before exiting. By now the command has printed and
    recorded what finished (the store's writer has committed and stopped), so
    nothing but those steps is lost by not waiting for them.
    """
    import os
    import threading

    from agentplex.executors.pools import THREAD_PREFIX

    others = [t for t in threading.enumerate() if t is not threading.main_thread()]
    left = [t for t in others if not t.daemon]
    if left and all(t.name.startswith(THREAD_PREFIX) for t in left):
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(EXIT_INTERRUPTED)
