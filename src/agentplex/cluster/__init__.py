"""Beyond one machine: one budget of limits for a whole Dask cluster.

Owns: the cluster-wide budget of concurrency, RPM and TPM lent to the workers
that have work (budget). The sharded batch that uses it is
:mod:`agentplex.batch.shard`; the Dask executor is
:mod:`agentplex.executors.dask`.

May import: agentplex.exceptions, agentplex.llm.
"""
