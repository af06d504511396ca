"""The file boundary: workflow files in, a :class:`~agentplex.model.workflow.Workflow` out.

Owns: reading named-node YAML/JSON (loader), the meta-agent plan format (plan),
and the trust checks an untrusted file must pass.

May import: agentplex.exceptions, agentplex.result, agentplex.model,
agentplex.llm, agentplex.executors (a file may name a registered executor).
"""
