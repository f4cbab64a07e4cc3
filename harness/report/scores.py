"""The scores files as the report reads them: plain JSON, no scorer code needed."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)


def read_all_scores(store: Any) -> dict[str, dict]:
    """``{trajectory: scores}`` for every readable scores file in the store ({} without any);
    read as plain JSON (the keys the report uses: ``selected``, ``checkpoints``, ``selectors``,
    ``timings``), so the report needs no scorer code."""
    folder = Path(store.scores_dir)
    out: dict[str, dict] = {}
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            scores = json.loads(path.read_text())
        except (OSError, ValueError) as e:  # a half-written file: evaluate the rest
            logger.info("[report] scores of %s left out: %s", path.stem, e)
            continue
        if isinstance(scores, dict):
            out[path.stem] = scores
    return out


# ---------------------------------------------------------------------------------------------
# ground truth
