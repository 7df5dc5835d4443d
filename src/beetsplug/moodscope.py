"""beets plugin: the emotion music induces (GEMS-9, by moodscope) on your beets items.

Enable it with ``plugins: moodscope`` (``pip install '.[beets]'``). On ``beet import``
(``auto``, the default) and with ``beet moodscope [QUERY]`` each item gets the flexible
attributes ``mood`` (the top emotion), ``mood_<emotion>`` (its share, e.g. ``mood_calmness``)
``moodscope_confidence`` (the chance that the top emotion is the listeners' dominant one)
and ``moodscope_model``. They are media fields like beets' own: ``beet write`` (and
``modify``, an import that writes) puts them in the file whenever they differ from the
file's, in the fields ``moodscope tag`` writes (MOOD / ID3 TMOO / ASF WM/Mood, MOODSCOPE_*), in
every format beets imports (MP3, MP4/M4A/ALAC, FLAC, Ogg, Opus, WAV, AIFF, DSF, WMA, WavPack,
Monkey's Audio, Musepack). Query them as
usual: ``beet ls mood:calmness``, ``beet ls mood_tension:0.3..``.

``beet moodscope [-f] [-p] [-q] [-w|-W] [-j N] [QUERY]``: ``-f/--force`` redoes items that
already have a mood from this model, ``-p/--pretend`` predicts and shows without storing or
writing, ``-q/--quiet`` drops the line per item, ``-w/--write`` and ``-W/--nowrite`` override
``import.write``, ``-j/--jobs`` is the number of worker processes, ``--min-confidence C``
sets ``mood`` only where the confidence reaches C (the shares and the confidence always; a
mood the user had stays; ``-f`` re-applies another C to items already done).

Configuration (the defaults)::

    moodscope:
        auto: yes      # predict the items of every import
        force: no      # also redo items that already have a mood from the same model
        jobs: 1        # local worker processes for the predictions
        quiet: no      # no line per predicted item
        allow_damaged: no  # also tag files flagged truncated (cut short, partial downloads)
        model: null    # a moodscope checkpoint; null: the model shipped with moodscope
        min_confidence: null  # e.g. 0.5: a mood only where the model is fairly sure
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from typing import TYPE_CHECKING

import beets
from beets import library
from beets.dbcore import types
from beets.plugins import BeetsPlugin
from beets.ui import Subcommand, UserError, should_write
from mediafile import (
    ASFStorageStyle,
    MediaField,
    MP3DescStorageStyle,
    MP3StorageStyle,
    MP4StorageStyle,
    StorageStyle,
)

from moodscope.emotions import EMOTIONS
from moodscope.errors import MoodscopeError
from moodscope.library.tags import (
    ASF_MOOD,
    CONFIDENCE_FIELD,
    ID3V23_MOOD,
    MODEL_FIELD,
    MOOD_FIELD,
    MP4_FREEFORM,
    PREVIOUS_MOOD_FIELD,
    SHARE_DECIMALS,
    mood_earned,
    share_field,
)

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

    from beets.library import Item, Library

MOOD = "mood"
MODEL = "moodscope_model"
PREVIOUS = "moodscope_previous_mood"
CONFIDENCE = "moodscope_confidence"


def share_attribute(emotion: str) -> str:
    """The item attribute of one emotion's share: ``calmness`` -> ``mood_calmness``."""
    return f"mood_{emotion}"


class _ExactDescStorageStyle(MP3DescStorageStyle):
    """A TXXX frame written under exactly this description: mediafile's own style finds a
    frame in any case and keeps its case, but Picard reads ``TXXX:mood`` only."""

    def store(self, mutagen_file, value):
        self.delete(mutagen_file)
        super().store(mutagen_file, value)

    def delete(self, mutagen_file):
        for frame in mutagen_file.tags.getall(self.key):
            if frame.desc.lower() == self.description.lower():
                del mutagen_file[frame.HashKey]


class _OtherVersionDescStyle(_ExactDescStorageStyle):
    """The mood frame of the other ID3 version: read when the file has nothing else, and
    removed when the mood is written in this version's frame, so no reader sees two."""

    def store(self, mutagen_file, value):
        self.delete(mutagen_file)


class _OtherVersionFrameStyle(MP3StorageStyle):
    """TMOO read from a file while writing ID3v2.3 (whose writer drops TMOO on save)."""

    def store(self, mutagen_file, value):
        mutagen_file.tags.delall(self.key)


def _text_field(name: str, *, id3v23: bool) -> MediaField:
    """A media field stored as ``moodscope.library.tags`` stores ``name`` (MOOD: ID3v2.4 TMOO, the
    ``ID3V23_MOOD`` frames in ID3v2.3, either read from a file of the other version; ASF
    ``WM/Mood``; Vorbis and APEv2 ``MOOD``)."""
    if name != MOOD_FIELD:
        id3 = [MP3DescStorageStyle(name)]
    elif id3v23:
        id3 = [_ExactDescStorageStyle(d) for d in ID3V23_MOOD] + [_OtherVersionFrameStyle("TMOO")]
    else:
        id3 = [MP3StorageStyle("TMOO")] + [_OtherVersionDescStyle(d) for d in ID3V23_MOOD]
    asf = ASFStorageStyle(ASF_MOOD if name == MOOD_FIELD else name)
    return MediaField(*id3, MP4StorageStyle(MP4_FREEFORM + name), StorageStyle(name), asf)


def _share_field(name: str) -> MediaField:
    places = {"float_places": SHARE_DECIMALS}
    return MediaField(
        MP3DescStorageStyle(name, **places),
        MP4StorageStyle(MP4_FREEFORM + name, **places),
        StorageStyle(name, **places),
        ASFStorageStyle(name, **places),
        out_type=float,
    )


class MoodscopePlugin(BeetsPlugin):
    item_types = {
        MOOD: types.STRING,
        MODEL: types.STRING,
        PREVIOUS: types.STRING,
        **{share_attribute(e): types.NullFloat(SHARE_DECIMALS) for e in EMOTIONS},
        CONFIDENCE: types.NullFloat(SHARE_DECIMALS),
    }

    def __init__(self) -> None:
        super().__init__()
        self.config.add(
            {
                "auto": True,
                "force": False,
                "jobs": 1,
                "quiet": False,
                "model": None,
                "allow_damaged": False,
            }
        )
        self.config.add({"min_confidence": None})
        id3v23 = beets.config["id3v23"].get(bool)
        self.add_media_field(MOOD, _text_field(MOOD_FIELD, id3v23=id3v23))
        self.add_media_field(MODEL, _text_field(MODEL_FIELD, id3v23=id3v23))
        self.add_media_field(PREVIOUS, _text_field(PREVIOUS_MOOD_FIELD, id3v23=id3v23))
        for emotion in EMOTIONS:
            self.add_media_field(share_attribute(emotion), _share_field(share_field(emotion)))
        self.add_media_field(CONFIDENCE, _share_field(CONFIDENCE_FIELD))
        # `beet write` (and `modify`, `update`'s write-back) compare an item with its file on
        # `Item._media_tag_fields` only, which beets fills from MediaFile's fields once at
        # import time; `add_media_field` does not extend it, so without this `beet write`
        # would never see that a mood differs from the file's.
        library.Item._media_tag_fields.update(self.item_types)
        if self.config["auto"].get(bool):
            self.import_stages = [self.imported]
            self.register_listener("import_begin", self.check_model)
        self._import_failed: str | None = None
        self.register_listener("write", self.before_write)

    def before_write(self, item: Item, path: bytes, tags: dict) -> None:
        """An empty attribute removes its field from the file instead of writing ``""``
        (beets reads a missing field as an empty string)."""
        for key in self.item_types:
            if key in tags and tags[key] in ("", None):
                tags[key] = None

    def commands(self) -> list[Subcommand]:
        cmd = Subcommand("moodscope", help="predict the emotion music induces (GEMS-9)")
        add = cmd.parser.add_option
        # fmt: off
        add("-f", "--force", action="store_true", default=None,
            help="redo items that already have a mood from this model")
        add("-p", "--pretend", action="store_true", default=False,
            help="predict and show the moods, but store and write nothing")
        add("-q", "--quiet", action="store_true", default=None,
            help="no line per item (errors are still shown)")
        add("-w", "--write", action="store_true", default=None,
            help="write the moods into the files (default: import.write)")
        add("-W", "--nowrite", action="store_false", dest="write",
            help="do not write the moods into the files")
        add("-j", "--jobs", type="int", default=None, metavar="N",
            help="worker processes for the predictions (default: moodscope.jobs)")
        add("--min-confidence", type="float", default=None, metavar="C",
            help="set the mood only where the confidence reaches C (0-1)")
        # fmt: on
        cmd.func = self.command
        return [cmd]

    def command(self, lib: Library, opts, args: list[str]) -> None:
        if opts.jobs is not None and opts.jobs < 1:
            raise UserError(f"moodscope: --jobs must be at least 1, got {opts.jobs}")
        self.predict_items(
            lib.items(args),
            write=should_write(opts.write),
            force=self.config["force"].get(bool) if opts.force is None else opts.force,
            jobs=opts.jobs,
            pretend=opts.pretend,
            quiet=self.config["quiet"].get(bool) if opts.quiet is None else opts.quiet,
            min_confidence=opts.min_confidence,
        )

    def check_model(self, session=None) -> None:
        """Before an import adds anything: a configured model that is not there stops it
        with one error line (the model is loaded only when an item needs it)."""
        self._import_failed = None
        if self.config["model"].get():
            self._model_id(self.config["model"].as_filename())

    def imported(self, session, task) -> None:
        # beets writes the tags itself afterwards when the import writes them. beets runs
        # import stages at WARNING; the line per item is an info line all the same.
        if self._import_failed:
            return
        with self._log_level(logging.INFO):
            try:
                self.predict_items(
                    task.imported_items(),
                    write=False,
                    force=self.config["force"].get(bool),
                    quiet=self.config["quiet"].get(bool),
                )
            except UserError as exc:  # a model that does not load: the import goes on
                self._import_failed = str(exc).removeprefix("moodscope: ")
                self._log.error("{}; importing without moods", self._import_failed)

    @contextmanager
    def _log_level(self, level: int) -> Iterator[None]:
        before = self._log.level
        verbosity = beets.config["verbose"].get(int)
        self._log.setLevel(max(logging.DEBUG, level - 10 * verbosity))
        try:
            yield
        finally:
            self._log.setLevel(before)

    def predict_items(
        self,
        items: Iterable[Item],
        *,
        write: bool,
        force: bool = False,
        jobs: int | None = None,
        pretend: bool = False,
        quiet: bool = False,
        min_confidence: float | None = None,
    ) -> None:
        """Predict each item (moodscope's ``predict_iter``), store its attributes, and
        write its tags when ``write``. A file that cannot be read is logged and skipped;
        a model that cannot be loaded is a ``UserError``. The model is loaded only when
        some item is to be predicted.
        """
        model = self.config["model"].as_filename() if self.config["model"].get() else None
        if min_confidence is None and self.config["min_confidence"].get() is not None:
            min_confidence = self.config["min_confidence"].as_number()
        if min_confidence is not None and not 0 <= min_confidence <= 1:
            raise UserError(f"moodscope: --min-confidence is between 0 and 1, got {min_confidence}")
        todo: dict[str, Item] = {}
        wanted = None
        for item in items:
            if not force and (item.get(MOOD) or item.get(MODEL)):
                wanted = wanted or self._model_id(model)
                if item.get(MODEL) == wanted:
                    self._log.debug("already has a mood from {}: {}", wanted, item)
                    continue
            todo[str(item.filepath)] = item
        if not todo:
            return

        from moodscope.inference.predictor import load_model, predict_iter

        try:
            trained = load_model(model)
        except MoodscopeError as exc:
            raise UserError(f"moodscope: {_one_line(exc)}") from exc
        jobs = jobs or self.config["jobs"].get(int)
        for prediction in predict_iter(list(todo), trained, workers=jobs):
            item = todo[prediction.path]
            if not prediction.ok:
                self._log.error("{}", prediction.error)
                continue
            if not prediction.music:  # no mood for what is not music
                if not quiet:
                    self._log.info("{}: skipped: not music ({})", item, prediction.not_music)
                continue
            if prediction.truncated and not self.config["allow_damaged"].get(bool):
                from moodscope.library.index import damaged_message

                self._log.error(
                    "{}", damaged_message(prediction.path, "moodscope: allow_damaged: yes")
                )
                continue
            before = item.get(MOOD) or None
            earned = mood_earned(prediction, min_confidence)
            if not quiet:
                withheld = "" if earned else f"; no mood: confidence under {min_confidence}"
                line = item_line(item, prediction, before=before, pretend=pretend)
                self._log.info("{}{}", line, withheld)
            if pretend:
                continue
            if before and not item.get(MODEL):  # the user's own mood: kept aside
                item[PREVIOUS] = before
            if earned:
                item[MOOD] = prediction.top_emotion
            elif before and item.get(MODEL):  # ours, not earned now: the user's comes back
                item[MOOD] = item.get(PREVIOUS) or ""
            c = prediction.confidence
            item[CONFIDENCE] = None if c is None else round(c, SHARE_DECIMALS)
            item[MODEL] = prediction.model
            for emotion, share in prediction.emotions.items():
                item[share_attribute(emotion)] = round(share, SHARE_DECIMALS)
            if write:
                item.try_write()
            item.store()

    def _model_id(self, model: str | None) -> str:
        """The configured model's ``name@version``, read without loading it."""
        from moodscope.library.index import model_id

        try:
            return model_id(model)
        except MoodscopeError as exc:
            raise UserError(f"moodscope: {_one_line(exc)}") from exc


def item_line(item: Item, prediction, *, before: str | None = None, pretend: bool = False) -> str:
    """One item's line, named as beets names it (``Artist - Album - Title``; an item without
    a title by its path), its mood leading with the confidence as every moodscope front end
    does: ``Artist - Album - Title: calmness (sure, 0.74)``, ``would set ...`` with
    ``pretend``, ``Happy -> calmness`` where it replaces another mood."""
    from beets.util import displayable_path

    from moodscope.inference.calibration import confidence_words

    name = str(item) if item.get("title") else displayable_path(item.path)
    change = f"{before} -> " if before and before != prediction.top_emotion else ""
    c = prediction.confidence
    sure = confidence_words(c) + ("" if c is None else f", {c:.2f}")
    return f"{'would set ' if pretend else ''}{name}: {change}{prediction.top_emotion} ({sure})"


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__
