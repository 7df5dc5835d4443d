"""Rebuild the model that ships inside moodscope, and its model card, from the data.

    python tools/build_default_model.py --data $MOODSCOPE_EMOTIFY_DIR [--model NAME]

1. 5-fold track-disjoint cross-validation of the recipe (the numbers in the card);
2. the same recipe trained on every track (the shipped checkpoint);
3. src/moodscope/models/default/{default.ckpt, MODEL_CARD.md, crossval.json}.
`make model` runs this with the project's chosen recipe.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import time
from pathlib import Path

from moodscope.datasets import EmotifyDataset
from moodscope.features import FeatureConfig, extract_features
from moodscope.features.aggregate import aggregate_columns
from moodscope.features.sets import EMOTIFY_LOUDNESS
from moodscope.inference.calibration import METHODS, SCORES
from moodscope.inference.checkpoint import save_checkpoint
from moodscope.models import model_entry
from moodscope.models.training import TrainConfig
from moodscope.research.domain_shift import (
    BEFORE,
    NOW,
    calibration_inputs,
    crossfit_in_domain,
    fit_map,
    rule_effect,
    shift_study,
    track_tags,
    with_aggression_rule,
)
from moodscope.research.evaluation import crossval, training_reference
from moodscope.research.evaluation_report import (
    circumplex_sections,
    domain_shift_sections,
    held_out_sections,
)
from moodscope.research.experiment import train_and_test
from moodscope.research.invariance import invariance_markdown, invariance_table, pick_tracks
from moodscope.research.nonmusic import (
    demo_flags,
    dev_flags,
    folder_flags,
    nonmusic_markdown,
    nonmusic_table,
    write_nonmusic,
)
from moodscope.research.report import Report, write_json, write_text_atomic
from moodscope.research.yardstick import circumplex_summary, held_out_report, worth_words

DEFAULT_DIR = Path(__file__).resolve().parents[1] / "src" / "moodscope" / "models" / "default"


def _stat(summary: dict, key: str) -> str:
    v = summary.get(key)
    return "n/a" if v is None else f"{v['mean']:.3f} ± {v['std']:.3f}"


def held_out_markdown(held: dict, out_dir: Path, shift: dict, circumplex: dict) -> str:
    """The card's sections on confidence, factors and listeners, confidence under a genre
    held out, and arousal/valence; figures beside the card."""
    report = Report("held out")
    held_out_sections(report, held)
    domain_shift_sections(report, shift)
    circumplex_sections(report, circumplex)
    for name, png in report.figures.items():
        (out_dir / "figures").mkdir(parents=True, exist_ok=True)
        (out_dir / "figures" / f"{name}.png").write_bytes(png)
    return report.markdown().split("\n", 2)[2]


def level_and_content(args, dataset, config: FeatureConfig, ckpt: Path) -> dict:
    """The shipped model on files at other levels and formats, and on sounds that are not
    music (the generated set, the demo pieces and every dev track)."""
    import tempfile

    models = {"shipped": ckpt}
    if args.baseline is not None:
        models = {"before": args.baseline, **models}
    paths = pick_tracks(dataset.tracks, args.invariance_tracks or None)
    invariance = invariance_table(paths, models, workers=args.workers)
    with tempfile.TemporaryDirectory(prefix="moodscope-nonmusic-") as tmp:
        nonmusic = nonmusic_table(write_nonmusic(Path(tmp) / "set"), ckpt)
        demo = demo_flags(Path(tmp) / "demo", ckpt)
    return {
        "invariance": {
            "tracks": [str(Path(p).relative_to(dataset.root)) for p in paths],
            "seconds": 30.0,
            "table": invariance,
        },  # fmt: skip
        "nonmusic": nonmusic,
        "demo": demo,
        "dev": dev_flags(dataset, config),
        "other": None
        if args.other_music is None
        else {**folder_flags(args.other_music, config), "what": args.other_music_what},
    }


def _shown(arg: str) -> str:
    """A command-line argument as the card shows it: the data folder by its variable."""
    import os

    data = os.environ.get("MOODSCOPE_EMOTIFY_DIR")
    if data and Path(arg).exists() and Path(arg).resolve() == Path(data).resolve():
        return "$MOODSCOPE_EMOTIFY_DIR"
    return f"'{arg}'" if any(c in arg for c in ' {}"') else arg


def other_music_markdown(other: dict | None) -> str:
    """The card's line on music from outside Emotify (``--other-music``), if any was given."""
    if not other:
        return ""
    flagged = ", ".join(f"{p} ({r})" for p, r in other["flagged"].items()) or "none"
    errors = list(other.get("errors", {}).items())
    skipped = (
        f" ({len(errors)} more could not be judged, e.g. {errors[0][0]}: {errors[0][1]})"
        if errors
        else ""
    )
    return (
        f" Music from outside Emotify ({other['tracks']} audio files under "
        f"`{other['root']}`: {other['what']}), flagged: {flagged}{skipped}."
    )


def level_and_content_markdown(args, found: dict) -> str:
    """The card's sections on level independence and on what is not music."""
    inv = found["invariance"]
    dev = found["dev"]
    before = (
        ""
        if args.baseline is None
        else f" `before` is `{args.baseline.name}`, the model this one replaced, measured the "
        "same way on the same files."
    )
    flagged_dev = ", ".join(f"{p} ({r})" for p, r in dev["flagged"].items()) or "none"
    flagged_demo = ", ".join(f"{p} ({r})" for p, r in found["demo"].items() if r) or "none"
    return f"""## Level, channels and codecs do not decide the mood
Before the network, every track is brought to {args.loudness:.1f} LUFS (integrated loudness,
ITU-R BS.1770-4: K-weighted, gated; measured on the 16 kHz mono signal the network reads),
the median of the dev tracks (`python -m moodscope.research.invariance --loudness`); the gain
multiplies the waveform, so the network and its weights are unchanged. Long files are decoded
twice (once to measure, once for the features), so memory stays one block.

{len(inv["tracks"])} dev tracks ({", ".join(inv["tracks"])}; their first {inv["seconds"]:.0f} s
as a 44.1 kHz WAV are the reference), each variant made by ffmpeg and predicted like any file
(`python -m moodscope.research.invariance --data $MOODSCOPE_EMOTIFY_DIR --tracks
{len(inv["tracks"])}`).{before}

{invariance_markdown(inv["table"])}

## Not music, no mood
A track that is silence (digital, a DC offset, below -60 LUFS), a steady tone or a sweep,
noise, isolated clicks between pauses, or speech gets `music: false`, a one-line `not_music`
reason, and no emotions, confidence or tag (`moodscope.audio.content`: signal measures
with thresholds set far from every dev track; no model is fitted). Speech is read in 10-s
windows: a window is speech-like when its level dips deeply and often, moves at the rate of
syllables (3-7 Hz), no beat repeats in it and its sounds swell and fade alike (struck or
plucked notes start at once and die away); a track is speech when 60 % of its sounding
windows are. Music with a beat (rap included), held notes under a voice, or sparse plucked
notes is not speech (tests/test_nonmusic.py builds each). The speech here is synthetic (the
text-to-speech voices installed where the model was built); speech over music and very
reverberant rooms are not judged speech, a capella rap may be, and recorded human speech was
not available to check.

| kind | flagged | reasons |
|---|---|---|
{nonmusic_markdown(found["nonmusic"])}

The generated set: `python -m moodscope.research.nonmusic --out DIR`. Of the
{dev["tracks"]} dev tracks (all music), flagged: {flagged_dev}. moodscope's demo pieces
flagged: {flagged_demo}.{other_music_markdown(found.get("other"))}
"""


def model_card(
    args,
    dataset,
    cv: dict,
    ckpt: Path,
    seconds: float,
    model_kwargs: dict,
    held: str = "",
    level: str = "",
) -> str:
    s = cv["summary"]
    logistic = args.calibration == "logistic"
    confidence_inputs = (
        f"the {args.confidence_score} of the distribution and the track's novelty (the mean "
        "distance of its musicnn embedding to its 5 nearest training tracks, over the "
        "training tracks' own median of that distance)"
        if logistic
        else f"the {args.confidence_score} of the distribution"
    )
    confidence_data = (
        "the out-of-fold predictions of this cross-validation together with those of a "
        "leave-one-genre-out cross-validation (each genre predicted by a model trained on "
        "the other three), so that it has seen tracks unlike its training tracks; the "
        "novelty's weight is held at or below zero (farther is never more confident)"
        if logistic
        else "the out-of-fold predictions of this cross-validation"
    )
    genres = "\n".join(
        f"| {g} | {_stat(v, 'track_accuracy')} | {_stat(v, 'track_macro_f1')} |"
        for g, v in s["per_genre"].items()
    )
    per_class = "\n".join(
        f"| {label} | {_stat(c, 'precision')} | {_stat(c, 'recall')} | {_stat(c, 'f1')} | "
        f"{c['support']} |"
        for label, c in s["per_class"].items()
    )
    correlation = (
        "\n".join(
            f"| {k} | {_stat(s['emotion_correlation'], k)} |" for k in s["emotion_correlation"]
        )
        if s.get("emotion_correlation")
        else "| n/a | n/a |"
    )
    shown = [_shown(a) for a in sys.argv[1:]]
    command = " ".join(["python tools/build_default_model.py", *shown])
    fitted = "SMOTE and the scaler" if cv["smote"] else "the scaler"
    fitting = (
        f"{fitted} fitted on the training tracks only; validation tracks for early stopping "
        "carved from the training folds"
        if model_entry(args.model).early_stopping
        else f"{fitted} fitted on the training tracks only, all of which train the model"
    )
    track_level = args.aggregate == "track"
    embeddings = (
        "- Features: musicnn's pretrained network (Pons & Serra, \"musicnn: pre-trained "
        'convolutional neural networks for music audio tagging", ISMIR LBD 2019; ISC licence, '
        "(c) MTG-UPF), converted to PyTorch and shipped in `moodscope/musicnn/`.\n"
        if "musicnn" in args.features
        else ""
    )
    reads = (
        "it reads one row per track, the mean and standard deviation of each feature over "
        "the track's segments"
        if track_level
        else "it reads one segment at a time"
    )
    target = (
        "the share of listeners who felt each emotion (soft labels)"
        if args.soft
        else "each track's dominant emotion (hard labels)"
    )
    predicts = (
        "the model reads their summary; the timeline entry of a window is the prediction "
        "for the summary of the 5 windows around it"
        if track_level
        else "the track's distribution is the mean of the windows'"
    )
    return f"""# Model card: moodscope's default model

The model `moodscope.predict()` and `moodscope predict` use when no `--model` is given
(`src/moodscope/models/default/default.ckpt`, {ckpt.stat().st_size / 2**20:.1f} MB).
A linear head is stored twice: as plain arrays, which prediction reads with numpy alone,
and as the fitted scikit-learn estimator (skops), for anything that needs the estimator.

## What it is
- Model: `{args.model}`{" " + json.dumps(model_kwargs) if model_kwargs else ""} from
  moodscope's registry, on the `{args.features}` feature set, {args.segments} segments per 60-s
  training excerpt (~{60 / args.segments:.0f} s each); {reads}. Trained on {target}.
- At prediction time any track is cut into {60 / args.segments:.0f}-s windows; {predicts}.
- Output: a probability for each of the nine GEMS emotions (amazement, solemnity,
  tenderness, nostalgia, calmness, power, joyful activation, tension, sadness): the
  emotion the model expects listeners to report most often as *induced* (felt), not
  expressed.

## Training data and licence
{embeddings}- Emotify (Aljanaki, Wiering & Veltkamp, "Studying emotion induced by music through a
  crowdsourcing game", *Information Processing & Management* 52(1), 2016): the project's
  {len(dataset)}-track dev copy of the 400 one-minute excerpts (classical, rock,
  electronic, pop), each labelled with its dominant emotion among the participants who
  listened (11-59 per track).
- The music is from Magnatune under Creative Commons BY-NC-SA; cite the paper above when
  using the data. The weights are derived from that data: treat them as non-commercial.

## How it was evaluated
5-fold stratified cross-validation **by track** (no track's segments on both sides;
{fitting}); a track's prediction is the mean of its segments'
probabilities. Mean ± std over folds, measured {datetime.date.today().isoformat()}:

| metric | value |
|---|---|
| track accuracy | {_stat(s, "track_accuracy")} |
| track macro-F1 | {_stat(s, "track_macro_f1")} |
| track balanced accuracy | {_stat(s, "track_balanced_accuracy")} |
| mean Pearson r, predicted probability vs listener share | {_stat(s, "emotion_correlation_mean")} |
| segment accuracy | {_stat(s, "segment_accuracy")} |

For scale: always answering the majority class (calmness) scores ~25 % track accuracy;
resampled listener panels agree with a track's own dominant emotion only ~69 % of the
time, which caps any model near there.

Per genre:

| genre | track accuracy | track macro-F1 |
|---|---|---|
{genres}

Per class:

| class | precision | recall | F1 | tracks |
|---|---|---|---|---|
{per_class}

Predicted probability vs share of listeners who felt each emotion (Pearson r):

| emotion | r |
|---|---|
{correlation}

## How sure it is, the factors, and the model in listeners
Every prediction carries a `confidence`: the chance that its top emotion is the listeners'
dominant one, from {confidence_inputs} through a {args.calibration} map (stored in the
checkpoint) fitted on {confidence_data}. The numbers below are on held-out tracks with the
confidence itself cross-fitted: each fold's tracks go through a map fitted on the other
folds only. The map was fitted on the fold models' predictions, while the shipped model
trains on every track. The page and the CLI say it in words: sure (0.7 and up), fairly sure
(0.5), unsure (0.35), guessing (below). Where this holds: on Emotify-like tracks (in
domain) and, as far as this data can show it, on a genre the model never heard (the
leave-one-genre-out section below); music far from all four genres is beyond what was
measured here, and there the novelty input lowers the confidence rather than vouching for
it.

{held}

{level}
## What it is not good for
- Not a reliable single-label classifier: most tracks' top emotion will be wrong; read the
  distribution, the timeline and the confidence, not only the top label.
- Trained on 60-s instrumental-leaning excerpts of four genres rated by a small,
  mostly Dutch- and English-speaking crowd; other genres, cultures, speech, sound effects
  or lyrics-driven songs are outside what it has seen.
- Rare emotions (amazement: 2 training tracks) are barely learnt.
- Not for decisions about people (mood, health, therapy) without a study of its own.

## Rebuild
`make model` (or `{command}`), {seconds:.0f} s on the machine that built it.
"""


def _oof_circumplex(ruled, tags, tracks, dataset) -> dict | None:
    """Arousal and valence of the out-of-fold predictions, read as prediction reads them."""
    import numpy as np

    from moodscope.emotions import arousal_valence

    position = np.array(
        [
            arousal_valence(dict(row), None if tags is None else tags.loc[str(t)].to_dict())
            for t, row in zip(ruled.index, ruled.to_dict("records"))
        ],
        dtype=np.float64,
    )
    return circumplex_summary(
        position, ruled.index, tracks, dataset.share_table(list(ruled.columns))
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", required=True, type=Path)
    parser.add_argument("--model", default="logistic_regression")
    parser.add_argument("--features", default="paper")
    parser.add_argument("--segments", type=int, default=20)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--model-kwargs", default="{}", help="JSON")
    parser.add_argument("--aggregate", default="segment", choices=["segment", "track"])
    parser.add_argument("--soft", action="store_true", help="train on the listener shares")
    parser.add_argument("--out-dir", type=Path, default=DEFAULT_DIR)
    parser.add_argument("--confidence-score", default="margin", choices=SCORES)
    parser.add_argument("--calibration", default="logistic", choices=METHODS)
    parser.add_argument("--loudness", type=float, default=EMOTIFY_LOUDNESS,
                        help="LUFS every track is brought to before its features")  # fmt: skip
    parser.add_argument(
        "--other-music",
        type=Path,
        default=None,
        help="a folder of music from outside Emotify: none of it should be "
        "judged not music (the card says what was flagged)",
    )
    parser.add_argument(
        "--other-music-what",
        default="music from outside Emotify",
        help="what --other-music holds, in words, for the card",
    )
    parser.add_argument("--invariance-tracks", type=int, default=8,
                        help="dev tracks the invariance table measures (0: all)")  # fmt: skip
    parser.add_argument("--baseline", type=Path, default=None,
                        help="a checkpoint measured beside the new one "
                        "(the one it replaces)")  # fmt: skip
    args = parser.parse_args(argv)
    started = time.perf_counter()
    model_kwargs = json.loads(args.model_kwargs)
    dataset = EmotifyDataset(args.data)
    config = FeatureConfig(
        feature_set=args.features, segments=args.segments, loudness=args.loudness
    )
    table, failures = extract_features(dataset, config, workers=args.workers)
    if failures:
        print(f"{len(failures)} tracks failed: {failures[:3]}", file=sys.stderr)
    tracks, labels = dataset.by_track(), list(dataset.labels)
    train_config = TrainConfig(seed=args.seed)
    crossval_args = dict(
        model=args.model,
        feature_config=config,
        labels=labels,
        folds=args.folds,
        train_config=train_config,
        model_kwargs=model_kwargs,
        shares=tracks[labels],
        aggregate=args.aggregate,
        soft=args.soft,
    )
    cv = crossval(table, tracks, **crossval_args)
    tags = track_tags(table, config)
    inputs = calibration_inputs(table, tracks, tags, cv=cv, **crossval_args)
    spec = NOW if args.calibration == "logistic" else {**BEFORE, "method": args.calibration}
    shift = shift_study(table, tracks, score=args.confidence_score, inputs=inputs, **crossval_args)
    shift["aggression_rule"] = rule_effect(
        cv["out_of_fold"], with_aggression_rule(cv["out_of_fold"], tags), tracks, tags
    )
    ruled = inputs["in_domain"][list(cv["out_of_fold"].columns)]
    held = held_out_report(
        ruled.to_numpy(),
        ruled.index,
        list(ruled.columns),
        tracks,
        confidence=crossfit_in_domain(inputs, spec, args.confidence_score),
        score=args.confidence_score,
        shares=dataset.share_table(list(ruled.columns)),
        annotations=getattr(dataset, "annotations", None),
    )
    held["calibration_method"] = {
        "score": args.confidence_score,
        **spec,
        "crossfit": True,
    }
    circumplex = _oof_circumplex(ruled, tags, tracks, dataset)
    calibration = fit_map(inputs, spec, args.confidence_score)
    final = train_and_test(
        table,
        model=args.model,
        protocol="all",
        feature_config=config,
        train_config=train_config,
        model_kwargs=model_kwargs,
        labels=labels,
        aggregate=args.aggregate,
        shares=tracks[labels] if args.soft else None,
    )
    final.model.info.update(
        crossval={
            k: cv["summary"][k]
            for k in (
                "track_accuracy",
                "track_macro_f1",
                "track_balanced_accuracy",
                "emotion_correlation_mean",
            )
        },
        trained_on=f"{dataset.name} ({len(dataset)} tracks)",
        held_out={
            "risk_coverage": held["risk_coverage"]["table"],
            "ece": held["calibration"]["ece"],
            "factors": {k: held["factors"][k] for k in ("accuracy", "balanced_accuracy")},
            "listeners": {k: v for k, v in held["listeners"].items()},
            "listeners_words": worth_words(held["listeners"]),
        },
        domain_shift={
            "in_domain": {k: shift["in_domain"][k] for k in ("before", "now", "novelty_median")},
            "genres": shift["genres"],
        },
    )
    if calibration.method == "logistic":  # new tracks are measured against every track
        columns = list(config.columns)
        columns = aggregate_columns(columns) if args.aggregate == "track" else columns
        calibration.novelty = training_reference(final.split, columns)
    final.model.calibration = calibration
    ckpt = save_checkpoint(final.model, args.out_dir / "default.ckpt")
    found = level_and_content(args, dataset, config, ckpt)
    write_json(
        args.out_dir / "crossval.json",
        {
            **{k: v for k, v in cv.items() if k not in ("out_of_fold", "novelty")},
            "held_out": held,
            "domain_shift": shift,
            "circumplex": circumplex,
            **found,
        },
    )
    level = level_and_content_markdown(args, found)
    print(level)
    seconds = time.perf_counter() - started
    write_text_atomic(
        args.out_dir / "MODEL_CARD.md",
        model_card(
            args,
            dataset,
            cv,
            ckpt,
            seconds,
            model_kwargs,
            held_out_markdown(held, args.out_dir, shift, circumplex),
            level,
        ),
    )
    s = cv["summary"]
    print(
        f"{args.model}: track accuracy {_stat(s, 'track_accuracy')}, macro-F1 "
        f"{_stat(s, 'track_macro_f1')}, mean r {_stat(s, 'emotion_correlation_mean')}; "
        f"held-out ECE {held['calibration']['ece']:.3f}; "
        f"wrote {ckpt} ({ckpt.stat().st_size / 2**20:.1f} MB) in {seconds:.0f} s"
    )
    printed = Report("Confidence under a genre held out; arousal and valence")
    domain_shift_sections(printed, shift)
    circumplex_sections(printed, circumplex)
    print(printed.markdown())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
