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

FACTORS: dict[str, tuple[str, ...]] = {
    "sublimity": ("amazement", "solemnity", "tenderness", "nostalgia", "calmness"),
    "vitality": ("power", "joyful_activation"),
    "unease": ("tension", "sadness"),
}
"""GEMS's three second-order factors and their emotions (Zentner, Grandjean & Scherer,
"Emotions evoked by the sound of music", Emotion 8(4), 2008)."""


def factor_shares(emotions: dict[str, float]) -> dict[str, float]:
    """The three factors' shares of a distribution over the nine emotions: each factor's
    emotions summed, then normalised to sum to 1 (labels outside GEMS are left out).
    Empty when ``emotions`` holds none of them."""
    sums = {f: sum(float(emotions.get(e, 0.0)) for e in members) for f, members in FACTORS.items()}
    total = sum(sums.values())
    if not any(e in emotions for members in FACTORS.values() for e in members) or total <= 0:
        return {}
    return {f: v / total for f, v in sums.items()}


def top_factor(factors: dict[str, float]) -> str | None:
    """The factor with the largest share (ties: sublimity, vitality, unease)."""
    return max(factors, key=lambda f: (factors[f], -list(FACTORS).index(f))) if factors else None
