"""Training: resumable, logged, bf16 on CPU.  Entry point: ``python -m udic.train``."""
