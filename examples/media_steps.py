"""Function steps of examples/media_intelligence.yaml: real work on local sample data.

- ``acquire`` reads an episode's captions and metadata from ``examples/data/media``;
- ``transcribe`` turns WebVTT captions into a speaker-labelled transcript;
- ``extract_claims`` picks the checkable sentences (numbers, comparisons, "always");
- ``store_memory`` adds the transcript's chunks to a local vector-like memory
  (hashed bag-of-words vectors in a JSON-lines file) and answers a similarity
  query against it;
- ``store_graph`` adds (speaker, said, claim) and (episode, mentions, entity)
  triples to a local knowledge graph (a JSON file).

The two stores run side by side (thread executor: they do file I/O); the
files go under ``memory_dir`` so repeated runs accumulate, as a real memory does.
"""

from __future__ import annotations

import csv
import fcntl
import hashlib
import json
import math
import re
from pathlib import Path
from typing import Any

DATA = Path(__file__).resolve().parent / "data" / "media"


def acquire(episode: str) -> dict[str, str]:
    """Load an episode's captions and its row of the index."""
    path = DATA / f"{episode}.vtt"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in DATA.glob("*.vtt")))
        raise FileNotFoundError(f"no captions for episode {episode!r} (known: {known})")
    with (DATA / "index.csv").open(encoding="utf-8") as handle:
        meta = next((row for row in csv.DictReader(handle) if row["episode"] == episode), {})
    return {"episode": episode, "title": meta.get("title", episode), "captions": path.read_text()}


def transcribe(acquire: dict[str, str]) -> str:
    """WebVTT cues to ``Speaker: text`` lines (the cue timings are dropped)."""
    lines = []
    for block in acquire["captions"].split("\n\n"):
        text = [ln for ln in block.splitlines() if ln and "-->" not in ln and ln != "WEBVTT"]
        for line in text:
            voice = re.match(r"<v ([^>]+)>(.*)", line)
            lines.append(f"{voice.group(1)}: {voice.group(2)}" if voice else line)
    return f"# {acquire['title']}\n" + "\n".join(lines)


CHECKABLE = re.compile(r"\d|more than|less than|always|never|every|all\b|most\b", re.I)


def extract_claims(transcribe: str) -> list[str]:
    """Sentences worth fact-checking: they state numbers, comparisons or absolutes."""
    claims = []
    for line in transcribe.splitlines()[1:]:
        speaker, _, text = line.partition(": ")
        if text and CHECKABLE.search(text):
            claims.append(f"{speaker} said: {text}")
    return claims


def _vector(text: str, dims: int = 64) -> list[float]:
    """A hashed bag-of-words vector, unit length: enough for a toy similarity search."""
    counts = [0.0] * dims
    for word in re.findall(r"[a-z]{3,}", text.lower()):
        counts[int(hashlib.blake2b(word.encode(), digest_size=2).hexdigest(), 16) % dims] += 1
    norm = math.sqrt(sum(c * c for c in counts)) or 1.0
    return [c / norm for c in counts]


def store_memory(transcribe: str, memory_dir: str) -> dict[str, Any]:
    """Add the transcript's new lines to the memory; return the closest stored chunks."""
    path = Path(memory_dir) / "memory.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    title = transcribe.splitlines()[0].lstrip("# ")
    chunks = [ln for ln in transcribe.splitlines()[1:] if ln.strip()]
    with path.open("a+", encoding="utf-8") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # other runs of a batch store at the same time
        handle.seek(0)
        stored = [json.loads(line) for line in handle.read().splitlines()]
        known = {(r["source"], r["text"]) for r in stored}
        new = [{"source": title, "text": c, "vector": _vector(c)} for c in chunks]
        new = [r for r in new if (r["source"], r["text"]) not in known]
        handle.writelines(json.dumps(r) + "\n" for r in new)
    stored += new
    query = _vector(title)
    scored = sorted(
        stored, key=lambda r: -sum(a * b for a, b in zip(query, r["vector"], strict=True))
    )
    return {"stored": len(new), "total": len(stored), "closest": [r["text"] for r in scored[:3]]}


def store_graph(transcribe: str, extract_claims: list[str], memory_dir: str) -> dict[str, int]:
    """Add speaker-claim and episode-entity triples to the knowledge graph."""
    path = Path(memory_dir) / "graph.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    title = transcribe.splitlines()[0].lstrip("# ")
    triples = [[c.split(" said: ")[0], "said", c.split(" said: ")[1]] for c in extract_claims]
    entities = set(re.findall(r"\b[A-Z][a-z]{3,}\b", transcribe)) - {"Host", "Guest", "Today"}
    triples += [[title, "mentions", e] for e in sorted(entities)]
    with path.open("a+", encoding="utf-8") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        handle.seek(0)
        graph = json.loads(handle.read() or "[]")
        fresh = [t for t in triples if t not in graph]
        graph += fresh
        handle.seek(0)
        handle.truncate()
        json.dump(graph, handle, indent=1)
    return {"added": len(fresh), "total": len(graph)}
