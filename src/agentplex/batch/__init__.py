"""Many inputs through one workflow, and stored runs finished later.

Owns: running a batch (driver), reading its inputs (inputs), what it leaves
behind (result), sharding its items over the workers of a Dask cluster (shard),
the side-by-side benchmark of designs (benchmark), and resuming a stored run or
batch (resume: it lives here, not in engine/, because resuming a batch runs a
batch).

May import: agentplex.exceptions, agentplex.events, agentplex.result,
agentplex.model, agentplex.files, agentplex.llm, agentplex.executors,
agentplex.store, agentplex.engine, agentplex.cluster.
"""
