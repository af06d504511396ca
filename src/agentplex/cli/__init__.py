"""The ``agentplex`` command line: a thin layer over the public API.

Owns: one module per command group (run: run; check: validate, graph, roles;
batch: batch, bench; plan: plan, ask; store: runs, show, resume, report,
cache; server: sim-server; main: the app and the entry point), the flags
they share, each declared once as a group (flags: ``EngineFlags``,
``LoadFlags``, ``OutputFlags``, ``StoreFlags`` and ``takes``), the script
every command follows (script: checks and missing extras before any work,
Ctrl-C keeps what finished, ``--json`` alone on stdout, exit codes 0 / 1 /
2 / 130, tables at full width when piped) and ``--verbose`` (verbose).

May import: agentplex (the public API), and every subpackage:
agentplex.exceptions, agentplex.events, agentplex.result, agentplex.model,
agentplex.files, agentplex.llm, agentplex.executors, agentplex.store,
agentplex.engine, agentplex.batch, agentplex.cluster, agentplex.planning,
agentplex.sim, agentplex.report.
"""
