"""A data frame's rows as plain records for the report builders."""

from __future__ import annotations

from typing import Any

import pandas as pd


def records(frame: pd.DataFrame) -> list[Any]:
    """The rows as named tuples (attribute per column); typed loosely, as the cells are."""
    return list(frame.itertuples(index=False))
