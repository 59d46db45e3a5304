"""The evaluation datasets' own file formats, read from local folders into plain examples, one module per task
family (captioning, VQA, classification); `loading` holds what they share (skip counts, file errors)."""
