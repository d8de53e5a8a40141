"""Briefings: condense a set of source texts into a short digest."""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

from celery.exceptions import Reject

from worker.celery_app import app

WORD = re.compile(r"[a-zA-Z]{4,}")
TOP_TERMS = 10


@app.task(name="briefing_compile")
def briefing_compile(topic: str, sources: list[str]) -> dict[str, Any]:
    """The most frequent terms across ``sources`` and their total size."""
    if not isinstance(sources, list) or not all(isinstance(s, str) for s in sources):
        raise Reject("bad_arguments: sources must be a list of strings", requeue=False)
    counts = Counter(word.lower() for text in sources for word in WORD.findall(text))
    return {
        "topic": topic,
        "sources": len(sources),
        "characters": sum(len(s) for s in sources),
        "terms": [term for term, _ in counts.most_common(TOP_TERMS)],
    }
