"""One run of a compiled workflow on asyncio.

Owns: the pure scheduler, concurrency slots, the runner, the run state and the
planner's protocol (state), attempts with retries and timeouts (attempts,
retry), the work of a node (bodies, prompts, context, fanout), run options,
building the result (run_record).

May import: agentplex.exceptions, agentplex.events, agentplex.result,
agentplex.model, agentplex.llm, agentplex.executors, agentplex.store.
"""
