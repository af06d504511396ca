"""``python -m agentplex``: the same as the ``agentplex`` command."""

from agentplex.cli.main import main

main()
