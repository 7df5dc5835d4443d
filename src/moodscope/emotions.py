"""The nine GEMS emotions, in Emotify's column order, their factors and their places on the
circumplex (arousal, valence); a dependency-free module: the inference path imports it
without pulling in the dataset code."""

from __future__ import annotations

import math
from collections.abc import Sequence

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


# --- Arousal and valence -------------------------------------------------------------------
# Declared before they were measured (docs in the model card, "Arousal and valence"): each
# GEMS category sits on Russell's circumplex at the octant of its GEMS-9 adjectives, or
# halfway between two; a distribution's arousal and valence are its shares' weighted mean
# position. Nothing here was fitted to data.

CIRCUMPLEX: dict[str, float] = {
    "amazement": 67.5,  # filled with wonder, dazzled, moved: excitement-arousal
    "solemnity": 292.5,  # solemn, fascinated, spiritual: relaxation-sleepiness
    "tenderness": 337.5,  # tender, affectionate, in love: pleasure-relaxation
    "nostalgia": 247.5,  # nostalgic, dreamy, melancholic: depression-sleepiness
    "calmness": 315.0,  # serene, calm, soothed: relaxation
    "power": 67.5,  # strong, triumphant, energetic: excitement-arousal
    "joyful_activation": 45.0,  # joyful, amused, bouncy: excitement
    "tension": 135.0,  # tense, agitated, nervous: distress
    "sadness": 225.0,  # sad, sorrowful: depression
}
"""Each GEMS category's angle on the circumplex, in degrees (0 pleasure, 45 excitement,
90 arousal, 135 distress, 180 displeasure, 225 depression, 270 sleepiness, 315 relaxation:
J. A. Russell, "A circumplex model of affect", J. Pers. Soc. Psychol. 39(6), 1980), placed
by the adjectives that define the category in the GEMS-9 (Zentner et al. 2008, above)."""

AGGRESSIVE_TAGS: tuple[str, ...] = ("metal", "punk", "hard rock", "heavy metal")
"""musicnn MSD tagger tags that name aggressive music."""
BRIGHT_TAGS: tuple[str, ...] = ("happy", "party", "catchy", "dance")
"""musicnn MSD tagger tags that name music of positive valence."""
DARK_TAGS: tuple[str, ...] = ("sad", *AGGRESSIVE_TAGS)
"""musicnn MSD tagger tags that name music of negative valence."""


def any_tag(tags: dict[str, float], names: Sequence[str]) -> float | None:
    """The chance that at least one of ``names`` applies, the tagger's probabilities taken
    as independent (a noisy OR); None when the tagger gave none of them."""
    present = [min(max(float(tags[n]), 0.0), 1.0) for n in names if n in tags]
    if not present:
        return None
    return 1.0 - math.prod(1.0 - p for p in present)


def aggression(tags: dict[str, float]) -> float | None:
    """How aggressive the tagger finds the music, in [0, 1]: the chance that any of
    :data:`AGGRESSIVE_TAGS` applies (:func:`any_tag`); None without them."""
    return any_tag(tags, AGGRESSIVE_TAGS)


def aggression_shift(emotions: dict[str, float], tags: dict[str, float]) -> dict[str, float]:
    """The aggression rule: the share ``aggression(tags)`` of joyful activation moves, half
    to power and half to tension (angry music is energetic and tense, not joyful). Emotions
    without those three, or tags without the aggressive ones, come back unchanged."""
    a = aggression(tags)
    moved = {"joyful_activation", "power", "tension"}
    if not a or not moved <= set(emotions):
        return dict(emotions)
    out = dict(emotions)
    shift = a * out["joyful_activation"]
    out["joyful_activation"] -= shift
    out["power"] += shift / 2
    out["tension"] += shift / 2
    return out


def circumplex(emotions: dict[str, float]) -> tuple[float, float] | None:
    """``(arousal, valence)`` of a distribution over the GEMS emotions: the share-weighted
    mean of their :data:`CIRCUMPLEX` positions on the unit circle, each in [-1, 1]. None
    when it holds no GEMS emotion."""
    total = sum(float(emotions.get(e, 0.0)) for e in CIRCUMPLEX)
    if total <= 0:
        return None
    arousal = sum(emotions.get(e, 0.0) * math.sin(math.radians(a)) for e, a in CIRCUMPLEX.items())
    valence = sum(emotions.get(e, 0.0) * math.cos(math.radians(a)) for e, a in CIRCUMPLEX.items())
    return arousal / total, valence / total


def tagger_valence(tags: dict[str, float]) -> float | None:
    """The tagger's reading of valence in [-1, 1]: the chance of any :data:`BRIGHT_TAGS`
    minus that of any :data:`DARK_TAGS`; None without them."""
    bright, dark = any_tag(tags, BRIGHT_TAGS), any_tag(tags, DARK_TAGS)
    if bright is None or dark is None:
        return None
    return bright - dark


def arousal_valence(
    emotions: dict[str, float], tags: dict[str, float] | None = None
) -> tuple[float | None, float | None]:
    """A track's arousal and valence, each in [-1, 1] (None, None without GEMS emotions).

    Arousal is the circumplex reading of the shares. Valence is the mean of the circumplex
    reading and :func:`tagger_valence` when the tagger's tags are known, the circumplex
    reading alone otherwise. ``emotions`` should already be through :func:`aggression_shift`.
    """
    position = circumplex(emotions)
    if position is None:
        return None, None
    arousal, valence = position
    tagged = tagger_valence(tags or {})
    if tagged is not None:
        valence = (valence + tagged) / 2
    return _unit(arousal), _unit(valence)


def _unit(x: float) -> float:
    return min(1.0, max(-1.0, float(x)))
