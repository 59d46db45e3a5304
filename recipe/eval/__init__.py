"""Evaluation of trained models on the reference's benchmarks (captioning, VQA, classification)."""
