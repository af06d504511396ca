"""Coordinator planning: from a question to a parallel plan, streamed into execution.

:func:`agentplex.planning.ask.ask` plans and runs; :func:`~agentplex.planning.ask.plan`
only plans. The pieces: :mod:`.prompts` (what the coordinator is asked),
:mod:`.parse` (finding a plan in an answer, and agents in a stream),
:mod:`.check` (a plan is untrusted input: validated, repaired or refused) and
:mod:`.controller` (the planner inside a run: streaming dispatch, repair,
delegation, budgets and review).

Owns: the coordinator's prompts, parsing of plans and of streamed agents, plan
checks and repair, and the planner inside a run (controller).

May import: agentplex.exceptions, agentplex.events, agentplex.result,
agentplex.model, agentplex.files, agentplex.llm, agentplex.store,
agentplex.engine.
"""
