"""Reading results and events: terminal views, batch progress, the HTML report, exports.

Owns: the live and final terminal views (terminal, batch_progress), the HTML
report (html, record, templating, templates/) and exports to Markdown, HTML,
PowerPoint and PDF (exports). It reads results and events; nothing imports it
back except the CLI.

May import: agentplex.exceptions, agentplex.events, agentplex.result,
agentplex.model, agentplex.store, agentplex.batch.
"""
