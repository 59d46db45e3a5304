"""Compare a run against a reference run, step by step, from `bench/throughput.py --json` files: the global
sample indices of every step (data order) and the training loss. Several files after `--run` are one run
in pieces (e.g. before and after a resume).

    python -m bench.compare_runs one-gpu.json --run resume-a.json resume-b.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys


def compare(reference: dict, pieces: list[dict]) -> dict:
    losses = [x for p in pieces for x in p["losses"]]
    steps = len(losses)
    if steps > len(reference["losses"]):
        raise SystemExit(f"the run has {steps} steps, the reference only {len(reference['losses'])}")
    out = {"steps": steps}
    for source, ref_ids in reference["sample_ids"].items():
        ids = [s for p in pieces for s in p["sample_ids"][source]]
        out[f"{source}_same_samples"] = sum(a == b for a, b in zip(ref_ids[:steps], ids))
    diffs = [b - a for a, b in zip(reference["losses"][:steps], losses)]
    out["loss_max_abs_diff"] = max(abs(d) for d in diffs)
    out["loss_mean_abs_diff"] = statistics.mean(abs(d) for d in diffs)
    out["reference_loss_step_to_step_std"] = statistics.pstdev(reference["losses"][:steps])
    return out


def main(argv: list[str]) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("reference")
    p.add_argument("--run", nargs="+", required=True)
    args = p.parse_args(argv)
    load = lambda path: json.load(open(path))  # noqa: E731
    result = compare(load(args.reference), [load(path) for path in args.run])
    print(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
