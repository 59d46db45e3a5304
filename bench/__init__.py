"""Benchmarks, run from the repository root as modules: `python -m bench.<name>` (imports bench.* and recipe.*
as they are, with no sys.path edits)."""
