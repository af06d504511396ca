"""The ``agentplex`` command line: a thin layer over the public API.

Owns: one module per command group (main: run, validate, graph, roles, report;
batch: batch, bench; plan: plan, ask; store: runs, show, resume; server: sim-
server) and the flags they share (options).

May import: agentplex (the public API), and every subpackage:
agentplex.exceptions, agentplex.events, agentplex.result, agentplex.model,
agentplex.files, agentplex.llm, agentplex.executors, agentplex.store,
agentplex.engine, agentplex.batch, agentplex.cluster, agentplex.planning,
agentplex.sim, agentplex.report.
"""
