"""What a workflow is, as data: pure, with no asyncio and no I/O.

Owns: node specs and the workflow builder (workflow), its validation and
compiled form (validation), how a function's parameters are bound (binding),
task templates, roles, node ids and the DAG algorithms (graph).

May import: agentplex.exceptions, agentplex.result, agentplex.llm (a workflow
names its providers and prices; the provider layer knows nothing of workflows).
"""
