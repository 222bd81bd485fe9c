"""Which library versions made the records a table compares.

Every record carries the versions of the packages it ran with (`env.packages`). A new torch or transformers can move
numbers by itself (kernels, tokenizer fixes, changed defaults), so a leaderboard or report that ranks rows made with
different versions of the libraries that decide the numbers says so, naming the rows of each version. The lock in
requirements/lock.txt keeps a checkout's own runs on one set; records from older checkouts may differ.
"""

from __future__ import annotations

from collections.abc import Sequence

DECISIVE = ("torch", "transformers", "peft", "trl")


def record_versions(rec: dict) -> dict[str, str]:
    packages = (rec.get("env") or {}).get("packages") or {}
    return {lib: str(packages[lib]) for lib in DECISIVE if packages.get(lib)}


def version_spread(rows: Sequence[Sequence[dict]]) -> dict[str, dict[str, list[int]]]:
    """{library: {version: [row numbers, 1-based]}} for each decisive library seen at more than one version among
    the rows' records (a row of several seeds may itself span versions)."""
    seen: dict[str, dict[str, list[int]]] = {}
    for i, records in enumerate(rows, 1):
        for rec in records:
            for lib, version in record_versions(rec).items():
                at = seen.setdefault(lib, {}).setdefault(version, [])
                if i not in at:
                    at.append(i)
    return {lib: by_version for lib, by_version in seen.items() if len(by_version) > 1}


def spread_text(rows: Sequence[Sequence[dict]]) -> str | None:
    """One sentence for a table whose rows were made with different library versions, else None."""
    spread = version_spread(rows)
    if not spread:
        return None
    parts = []
    for lib, by_version in spread.items():
        shown = "; ".join(f"{v} (rows {', '.join(map(str, at))})" for v, at in sorted(by_version.items()))
        parts.append(f"{lib} {shown}")
    return ("Library versions differ between these rows: " + " — ".join(parts) + ". A version change alone can "
            "move a result; compare rows of one version where the difference matters.")
