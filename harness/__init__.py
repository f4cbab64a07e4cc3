"""ckd-harness: a distributed benchmark harness for knowledge distillation from model checkpoints.

The stages (``teachers``, ``scoring``, ``sweep``/``distill``, ``report``) import and run without
Ray or W&B; ``harness.cluster`` wraps them for Ray; ``harness.pipeline`` orchestrates either way.
See README.md and DESIGN.md.
"""
