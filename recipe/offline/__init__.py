"""What the tests, the demo and the benchmarks build instead of downloading, one kind per module:

- assets.py     a BPE tokenizer, tiny causal LMs (and a text-only lesson for one), tiny open_clip ViTs
- shapes.py     captioned coloured shapes (images that their captions need), written as upstream files
- upstream.py   upstream-format writers convert/ reads: img2dataset tars, MMC4 shards, ChatGPT sequences
- mds.py        MDS shards in the docs/DESIGN.md schemas, written directly (no convert/)
- eval_sets.py  COCO Karpathy and VQAv2 files in their real formats
"""
