"""The simulator: a deterministic stand-in for an LLM provider, in process and over HTTP.

Owns: the in-process provider (provider), its canned coordinator plans (plans),
and the fault-injecting HTTP server that speaks the OpenAI and Anthropic APIs
(app, http, server). Nothing in engine/, llm/ or model/ imports it: the
provider table names it as a string and imports it on first use, like any
provider.

May import: agentplex.exceptions, agentplex.result, agentplex.model,
agentplex.llm, agentplex.planning (the coordinator's prompts, to answer them
with a plan).
"""
