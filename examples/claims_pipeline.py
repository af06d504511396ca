"""A Python workflow with function, map, CPU-bound and fan-out nodes.

    python examples/claims_pipeline.py

A transcript is loaded (a function node), two things happen side by side: an
agent extracts its claims, and a CPU-bound keyword count runs in a process
pool. Then one fact-checker agent per claim runs in parallel (a map node),
another node asks three roles at once from inside itself (``fan_out``), and a
last function node tallies the verdicts.
"""

from __future__ import annotations

import collections
import re

import agentplex as ap

TRANSCRIPT = """\
Host: Welcome back. Today we're talking about coffee.
Guest: Coffee is the second most traded commodity in the world.
Guest: Drinking coffee dehydrates you more than water hydrates you.
Host: And the caffeine?
Guest: An espresso has more caffeine than a mug of drip coffee.
Guest: Finland drinks more coffee per person than any other country.
"""


def load_transcript(source: str) -> str:
    """Stand-in for downloading and transcribing a video."""
    return TRANSCRIPT.replace("coffee", source) if source != "coffee" else TRANSCRIPT


def keyword_counts(load_transcript: str) -> list[tuple[str, int]]:
    """CPU-bound in real life (tokenising, scoring); runs in the process pool."""
    words = re.findall(r"[a-z]{4,}", load_transcript.lower())
    return collections.Counter(words).most_common(5)


def tally(checks: list[str], keywords: list[tuple[str, int]]) -> dict[str, object]:
    verdicts = collections.Counter(
        m.group(1) for text in checks if (m := re.search(r"Verdict on [^:]+: ([a-z ]+);", text))
    )
    return {"claims_checked": len(checks), "verdicts": dict(verdicts), "top_keywords": keywords}


async def perspectives(ctx: ap.NodeContext, load_transcript: str) -> list[str]:
    """Three independent calls from inside one node, made side by side."""
    return await ap.fan_out(
        ctx.ask(role, f"Give the {angle} perspective on this transcript:\n{load_transcript}")
        for role, angle in [
            ("analyzer", "scientific"),
            ("critic", "skeptical"),
            ("writer", "consumer"),
        ]
    )


def build() -> ap.Workflow:
    wf = ap.Workflow("claims_pipeline", inputs=["source"])
    transcript = wf.function(load_transcript)
    claims = wf.agent(
        "researcher",
        "List every factual claim made in this transcript, one per line:\n{load_transcript}",
        id="claims",
        depends_on=[transcript],
    )
    keywords = wf.function(keyword_counts, depends_on=[transcript], cpu_bound=True, id="keywords")
    checks = wf.map(claims, role="fact_checker", task="Check this claim: {item}", id="checks")
    wf.function(perspectives, depends_on=[transcript])
    wf.function(tally, depends_on=[checks, keywords])
    return wf


if __name__ == "__main__":
    result = ap.run(build(), inputs={"source": "coffee"}, max_concurrency=8)
    print(result.outputs["tally"])
    print(
        f"wall {result.wall_s:.2f}s, sequential {result.sequential_s:.2f}s, speedup {result.speedup:.2f}x"
    )
