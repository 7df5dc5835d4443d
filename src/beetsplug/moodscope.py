"""beets plugin: the emotion music induces (GEMS-9, by moodscope) on your beets items.

Enable it with ``plugins: moodscope`` (``pip install moodscope[beets]``). On ``beet import``
(``auto``, the default) and with ``beet moodscope [QUERY]`` each item gets the flexible
attributes ``mood`` (the top emotion), ``mood_<emotion>`` (its share, e.g. ``mood_calmness``)
and ``moodscope_model``; whenever beets writes tags they go into the file in the fields
``moodscope tag`` writes (MOOD / ID3 TMOO, MOODSCOPE_*). Query them as usual:
``beet ls mood:calmness``, ``beet ls mood_tension:0.3..``.

Configuration (the defaults)::

    moodscope:
        auto: yes      # predict the items of every import
        force: no      # also redo items that already have a mood from the same model
        workers: 1     # local worker processes for the predictions
        model: null    # a moodscope checkpoint; null: the model shipped with moodscope
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import beets
from beets.dbcore import types
from beets.plugins import BeetsPlugin
from beets.ui import Subcommand, should_write
from mediafile import (
    MediaField,
    MP3DescStorageStyle,
    MP3StorageStyle,
    MP4StorageStyle,
    StorageStyle,
)

from moodscope.emotions import EMOTIONS
from moodscope.library.tags import (
    MODEL_FIELD,
    MOOD_FIELD,
    MP4_FREEFORM,
    PREVIOUS_MOOD_FIELD,
    SHARE_DECIMALS,
    share_field,
)

if TYPE_CHECKING:
    from collections.abc import Iterable

    from beets.library import Item, Library

MOOD = "mood"
MODEL = "moodscope_model"
PREVIOUS = "moodscope_previous_mood"


def share_attribute(emotion: str) -> str:
    """The item attribute of one emotion's share: ``calmness`` -> ``mood_calmness``."""
    return f"mood_{emotion}"


def _text_field(name: str, *, id3v23: bool) -> MediaField:
    """A media field stored as ``moodscope.library.tags`` stores ``name`` (MOOD: ID3v2.4 TMOO)."""
    id3 = (
        MP3StorageStyle("TMOO") if name == MOOD_FIELD and not id3v23 else MP3DescStorageStyle(name)
    )
    return MediaField(id3, MP4StorageStyle(MP4_FREEFORM + name), StorageStyle(name))


def _share_field(name: str) -> MediaField:
    places = {"float_places": SHARE_DECIMALS}
    return MediaField(
        MP3DescStorageStyle(name, **places),
        MP4StorageStyle(MP4_FREEFORM + name, **places),
        StorageStyle(name, **places),
        out_type=float,
    )


class MoodscopePlugin(BeetsPlugin):
    item_types = {
        MOOD: types.STRING,
        MODEL: types.STRING,
        PREVIOUS: types.STRING,
        **{share_attribute(e): types.NullFloat(SHARE_DECIMALS) for e in EMOTIONS},
    }

    def __init__(self) -> None:
        super().__init__()
        self.config.add({"auto": True, "force": False, "workers": 1, "model": None})
        id3v23 = beets.config["id3v23"].get(bool)
        self.add_media_field(MOOD, _text_field(MOOD_FIELD, id3v23=id3v23))
        self.add_media_field(MODEL, _text_field(MODEL_FIELD, id3v23=id3v23))
        self.add_media_field(PREVIOUS, _text_field(PREVIOUS_MOOD_FIELD, id3v23=id3v23))
        for emotion in EMOTIONS:
            self.add_media_field(share_attribute(emotion), _share_field(share_field(emotion)))
        if self.config["auto"].get(bool):
            self.import_stages = [self.imported]
        self.register_listener("write", self.before_write)

    def before_write(self, item: Item, path: bytes, tags: dict) -> None:
        """An empty attribute removes its field from the file instead of writing ``""``
        (beets reads a missing field as an empty string)."""
        for key in self.item_types:
            if key in tags and tags[key] in ("", None):
                tags[key] = None

    def commands(self) -> list[Subcommand]:
        cmd = Subcommand("moodscope", help="predict the emotion music induces (GEMS-9)")
        cmd.parser.add_option(
            "-f", "--force", action="store_true", default=False,
            help="redo items that already have a mood from this model",
        )  # fmt: skip
        cmd.parser.add_option(
            "-w", "--workers", type="int", default=None, help="local worker processes"
        )
        cmd.func = self.command
        return [cmd]

    def command(self, lib: Library, opts, args: list[str]) -> None:
        self.predict_items(
            lib.items(args),
            write=should_write(),
            force=opts.force or self.config["force"].get(bool),
            workers=opts.workers,
        )

    def imported(self, session, task) -> None:
        # beets writes the tags itself afterwards when the import writes them.
        self.predict_items(task.imported_items(), write=False, force=self.config["force"].get(bool))

    def predict_items(
        self,
        items: Iterable[Item],
        *,
        write: bool,
        force: bool = False,
        workers: int | None = None,
    ) -> None:
        """Predict each item (moodscope's ``predict_iter``), store its attributes, and
        write its tags when ``write``. A file that cannot be read is logged and skipped."""
        from moodscope.inference.predictor import load_model, predict_iter

        trained = load_model(self.config["model"].get() or None)
        todo: dict[str, Item] = {}
        for item in items:
            if not force and item.get(MOOD) and item.get(MODEL) == trained.model_id:
                self._log.debug("already has a mood from {}: {}", trained.model_id, item)
                continue
            todo[str(item.filepath)] = item
        if not todo:
            return
        workers = workers or self.config["workers"].get(int)
        for prediction in predict_iter(list(todo), trained, workers=workers):
            item = todo[prediction.path]
            if not prediction.ok:
                self._log.error("{}", prediction.error)
                continue
            if item.get(MOOD) and not item.get(MODEL):  # the user's own mood: kept aside
                item[PREVIOUS] = item[MOOD]
            item[MOOD] = prediction.top_emotion
            item[MODEL] = prediction.model
            for emotion, share in prediction.emotions.items():
                item[share_attribute(emotion)] = round(share, SHARE_DECIMALS)
            self._log.info("{}: {}", item, prediction.top_emotion)
            if write:
                item.try_write()
            item.store()
