"""Atomic files for the data cache (see ``harness/fileio.py``): a reader (another Ray worker, a
resumed run) sees either no file or a whole one, never a half-written one; two writers racing on
the same deterministic content are harmless."""

from __future__ import annotations

from harness.fileio import atomic_write, atomic_write_json, sha256_file

__all__ = ["atomic_write", "atomic_write_json", "sha256_file"]
