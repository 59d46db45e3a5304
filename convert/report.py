"""What a conversion counts and tells: per-unit counts by reason (`UnitStats`), the root's
conversion_report.json built from them, and the summary printed last on the console."""

from __future__ import annotations

import dataclasses
from collections import Counter
from typing import Optional

REPORT = "conversion_report.json"
_EXAMPLES_PER_REASON = 5  # rejected keys kept per reason, so a report says which records to look at


@dataclasses.dataclass
class UnitStats:
    """One unit's counts, filled by its reader: rejects, dropped images and input errors by reason, with the
    first few rejected keys per reason."""

    records_read: int = 0
    written: int = 0
    images_written: int = 0
    rejected: Counter = dataclasses.field(default_factory=Counter)
    images_dropped: Counter = dataclasses.field(default_factory=Counter)
    input_errors: Counter = dataclasses.field(default_factory=Counter)

    examples: dict = dataclasses.field(default_factory=dict)

    def reject(self, reason: str, key: str = "", detail: str = "") -> None:
        self.rejected[reason] += 1
        kept = self.examples.setdefault(reason, [])
        if len(kept) < _EXAMPLES_PER_REASON:
            kept.append({"key": key, "detail": detail[:200]})

    def drop_image(self, reason: str) -> None:
        self.images_dropped[reason] += 1


def build_report(converter: str, columns: dict, output: str, urls: list[str], included: list[dict], *,
                 workers: int, shard_size: int, max_samples: Optional[int], options: dict, elapsed: float,
                 reused: int) -> dict:
    """The report of a conversion whose units' markers, in input order, are `included`."""
    def total(field: str) -> dict:
        c: Counter = Counter()
        for m in included:
            c.update(m[field])
        return dict(sorted(c.items()))

    written = sum(m["written"] for m in included)
    examples: dict = {}
    for m in included:
        for reason, kept in m["reject_examples"].items():
            room = _EXAMPLES_PER_REASON - len(examples.setdefault(reason, []))
            examples[reason] += [{"input": m["input"], **e} for e in kept[:room]]
    return {
        "converter": converter,
        "output": output,
        "columns": columns,
        "inputs": urls,
        "inputs_read": len(included),
        "units_reused": reused,
        "inputs_with_errors": sum(1 for m in included if m["input_errors"]),
        "records_read": sum(m["records_read"] for m in included),
        "samples_written": written,
        "images_written": sum(m.get("images_written", 0) for m in included),
        "rejected": total("rejected"),
        "rejected_total": sum(sum(m["rejected"].values()) for m in included),
        "reject_examples": dict(sorted(examples.items())),
        "images_dropped": total("images_dropped"),
        "input_errors": total("input_errors"),
        "bytes_written": sum(m["bytes"] for m in included),
        "shards": sum(len(m["index"]["shards"]) for m in included),
        "elapsed_s": round(elapsed, 3),
        "samples_per_s": round(written / elapsed, 1) if elapsed > 0 else None,
        "workers": workers,
        "shard_size": shard_size,
        "max_samples": max_samples,
        "options": options,
    }


def summary(r: dict) -> str:
    """The console's last lines: what was read, written and rejected, by reason."""
    def by_reason(counts: dict) -> str:
        return ", ".join(f"{k}={v}" for k, v in counts.items()) or "none"

    return "\n".join([
        f"convert {r['converter']} -> {r['output']}",
        f"  inputs:  {len(r['inputs'])} named, {r['inputs_read']} converted ({r['units_reused']} reused from an "
        f"earlier run), {r['inputs_with_errors']} with unreadable parts ({by_reason(r['input_errors'])})",
        f"  records: {r['records_read']} read, {r['samples_written']} written, {r['rejected_total']} rejected "
        f"({by_reason(r['rejected'])})",
        f"  images:  {r['images_written']} written, {sum(r['images_dropped'].values())} dropped from kept records "
        f"({by_reason(r['images_dropped'])})",
        f"  {r['bytes_written'] / 1e6:.1f} MB in {r['shards']} shards, {r['elapsed_s']:.1f}s, "
        f"{r['samples_per_s']} samples/s",
    ])
