"""The nine GEMS emotions, in Emotify's column order (a dependency-free module: the
inference path imports it without pulling in the dataset code)."""

from __future__ import annotations

EMOTIONS: tuple[str, ...] = (
    "amazement",
    "solemnity",
    "tenderness",
    "nostalgia",
    "calmness",
    "power",
    "joyful_activation",
    "tension",
    "sadness",
)
"""The nine GEMS categories, in data.csv's column order (the tie-break order)."""
