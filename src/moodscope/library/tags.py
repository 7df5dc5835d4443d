"""Mood tags in audio files, written so that a file is never damaged.

The top emotion goes in the field players read, in the container's own tag system with the
names MusicBrainz Picard uses (ID3v2.4 ``TMOO``, ID3v2.3 ``TXXX:mood`` and
``TXXX:QuodLibet::mood``, Vorbis ``MOOD``, MP4 ``----:com.apple.iTunes:MOOD``, ASF ``WM/Mood``,
APEv2 ``Mood``), each share, the confidence and the model in ``MOODSCOPE_*`` user fields;
with a ``min_confidence`` the mood field is written only where the confidence reaches it (a
mood the user had stays, and ``untag`` puts it back in the very fields it was in). A file
is rewritten as a copy beside it that is tagged, flushed and renamed over the original,
so at any instant it is either the old file or the new one.

ID3 tags are rewritten frame for frame in the version the file has (frames that version does
not define, such as the sort frames iTunes writes into ID3v2.3, are kept); an ID3v2.2 tag,
which mutagen cannot write, becomes ID3v2.3, the version every reader of ID3v2.2 also reads.
"""

from __future__ import annotations

import os
import re
import shutil
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from moodscope.atomic import atomic_path, describe_os_error, file_digest, remove_stale_temporaries
from moodscope.errors import OutputError, TagError

MOOD_FIELD = "MOOD"
"""The players' mood field, by its Vorbis / user-field name (ID3v2.4 stores it in TMOO)."""
FIELD_PREFIX = "MOODSCOPE_"
"""Every other field moodscope writes starts with this."""
MODEL_FIELD = "MOODSCOPE_MODEL"
"""The model that predicted the tags, as ``name@version``."""
PREVIOUS_MOOD_FIELD = "MOODSCOPE_PREVIOUS_MOOD"
"""A mood the file had before moodscope replaced it; ``untag`` puts it back."""
CONFIDENCE_FIELD = "MOODSCOPE_CONFIDENCE"
"""The chance that the top emotion is the listeners' dominant one (absent: not calibrated)."""
AROUSAL_FIELD = "MOODSCOPE_AROUSAL"
VALENCE_FIELD = "MOODSCOPE_VALENCE"
"""Arousal and valence in [-1, 1], written when the prediction has them."""
PREVIOUS_MOOD_KEYS_FIELD = "MOODSCOPE_PREVIOUS_MOOD_KEYS"
"""Where the user's mood was, when it was not in the fields moodscope writes (an ID3v2.3
``TXXX:MOOD`` as Mp3tag writes it, with its text encoding: ``TXXX:MOOD|1``; an APEv2
``MOOD``), ``;`` between them: ``untag`` puts it back there."""
SHARE_DECIMALS = 3
"""Shares are written as ``0.412``."""

ID3V23_MOOD = ("mood", "QuodLibet::mood")
"""The TXXX descriptions the mood is written under in ID3v2.3, which has no TMOO: ``mood`` as
Picard writes it and reads it (exactly; beets' mediafile and TagLib read any case),
and Quod Libet's own ``QuodLibet::mood`` (it reads TMOO, or TXXX named ``QuodLibet::...``)."""

MP4_FREEFORM = "----:com.apple.iTunes:"
"""The freeform atom namespace iTunes, foobar2000 and Mp3tag use for user fields."""

ASF_MOOD = "WM/Mood"
"""The mood attribute of ASF (WMA) files, as Windows Media Player and Picard name it."""
APE_MOOD = "Mood"
"""The mood item of APEv2 tags (WavPack, Monkey's Audio, Musepack, TAK, OptimFROG); APEv2
keys are case-insensitive, Picard writes this case."""

_RESERVED = {
    MODEL_FIELD,
    PREVIOUS_MOOD_FIELD,
    PREVIOUS_MOOD_KEYS_FIELD,
    CONFIDENCE_FIELD,
    AROUSAL_FIELD,
    VALENCE_FIELD,
}

_UNTAGGABLE = {  # mutagen's class -> why moodscope writes no tags into it
    "AAC": "raw AAC (ADTS) streams carry no tags that players read (an .m4a does)",
    "AC3": "AC-3 and E-AC-3 streams carry no tags that players read",
    "DSDIFF": "DSDIFF (.dff) defines no tag chunk (DSF does)",
}


def share_field(label: str) -> str:
    """The user field holding one emotion's share: ``calmness`` -> ``MOODSCOPE_CALMNESS``."""
    name = FIELD_PREFIX + label.upper()
    if name in _RESERVED or not re.fullmatch(r"[A-Z0-9_]+", name):
        raise TagError(None, f"label {label!r} cannot name a tag field (letters, digits, _)")
    return name


def mood_earned(prediction, min_confidence: float | None) -> bool:
    """Whether the mood field is written: always without a ``min_confidence``, else only
    where the prediction's confidence reaches it (no confidence: never)."""
    if min_confidence is None:
        return True
    return prediction.confidence is not None and prediction.confidence >= min_confidence


def tag_values(prediction, *, min_confidence: float | None = None) -> dict[str, tuple[str, ...]]:
    """The fields a :class:`~moodscope.inference.predictor.Prediction` is written as, by
    name; MOOD is left out where :func:`mood_earned` says no."""
    if not prediction.music:
        raise TagError(prediction.path, f"is not music ({prediction.not_music}); no mood to write")
    if prediction.error is not None or not prediction.emotions:
        raise TagError(prediction.path, f"has no prediction to write ({prediction.error})")
    values = {}
    if mood_earned(prediction, min_confidence):
        values[MOOD_FIELD] = (prediction.top_emotion,)
    for label, share in prediction.emotions.items():
        values[share_field(label)] = (f"{share:.{SHARE_DECIMALS}f}",)
    if prediction.confidence is not None:
        values[CONFIDENCE_FIELD] = (f"{prediction.confidence:.{SHARE_DECIMALS}f}",)
    for name, attribute in ((AROUSAL_FIELD, "arousal"), (VALENCE_FIELD, "valence")):
        value = getattr(prediction, attribute, None)
        if value is not None:
            values[name] = (f"{value:.{SHARE_DECIMALS}f}",)
    values[MODEL_FIELD] = (prediction.model or "unknown",)
    return values


@dataclass(frozen=True)
class FileState:
    """What tells whether a file changed: size, modification time (ns) and inode; ``sha1``
    (of the whole file, when known) is its content hash."""

    size: int
    mtime_ns: int
    inode: int = 0
    mode: int = field(default=0, compare=False)
    sha1: str | None = field(default=None, compare=False)

    @classmethod
    def of(cls, path: str | Path, *, sha1: str | None = None) -> FileState:
        st = os.stat(path)
        return cls(st.st_size, st.st_mtime_ns, st.st_ino, st.st_mode, sha1)

    def unchanged(self, other: FileState) -> bool:
        return (self.size, self.mtime_ns, self.inode) == (other.size, other.mtime_ns, other.inode)


@dataclass
class MoodTags:
    """What moodscope finds in a file's tags (labels as lower-case field names)."""

    mood: str | None
    emotions: dict[str, float]
    model: str | None
    previous_mood: list[str]
    confidence: float | None = None

    @property
    def tagged(self) -> bool:
        return self.model is not None


# -- one field view per tag family ---------------------------------------------------------


class _ID3Fields:
    """ID3v2 (MP3, MP2, TTA, WAV, AIFF and DSF): TMOO in v2.4, the :data:`ID3V23_MOOD` TXXX
    frames in v2.3 and v2.2 (read: any TXXX named ``mood`` in any case, or
    ``QuodLibet::mood``), TXXX user fields. The tag is read untranslated and written back in
    its own version, so every frame moodscope does not write stays as it was."""

    def __init__(self, tags):
        self.tags = tags
        self.version = tuple(tags.version[:2])
        self.v23 = self.version < (2, 4)

    def _key(self, name: str) -> str:
        return "TMOO" if name == MOOD_FIELD and not self.v23 else f"TXXX:{name}"

    def _v23_mood_frames(self) -> list:
        """The frames that hold the mood in a v2.3 (or v2.2) tag: TXXX ``mood`` (any case)
        first, then ``QuodLibet::mood``; without these, a TMOO put there off the standard
        (beside them it is left alone, as any other frame)."""
        frames = self.tags.getall("TXXX")
        frames = [f for f in frames if f.desc.lower() == "mood"] + [
            f for f in frames if f.desc.lower() == ID3V23_MOOD[1].lower()
        ]
        return frames or self.tags.getall("TMOO")

    def names(self) -> list[str]:
        moods = {d.lower() for d in ID3V23_MOOD} if self.v23 else set()
        names = [
            MOOD_FIELD if frame.desc.lower() in moods else frame.desc
            for frame in self.tags.getall("TXXX")
        ]
        if self.tags.getall("TMOO"):
            names.append(MOOD_FIELD)
        return list(dict.fromkeys(names))

    def get(self, name: str) -> tuple[str, ...]:
        if name == MOOD_FIELD and self.v23:
            frames = self._v23_mood_frames()
            return tuple(str(t) for t in frames[0].text) if frames else ()
        return tuple(str(t) for frame in self.tags.getall(self._key(name)) for t in frame.text)

    def mood_keys(self) -> tuple[str, ...]:
        """The frames holding the mood now, as hash key and text encoding
        (``TXXX:MOOD|0``: ISO-8859-1), so that the user's come back as they were."""
        frames = self._v23_mood_frames() if self.v23 else self.tags.getall("TMOO")
        return tuple(f"{f.HashKey}|{int(f.encoding)}" for f in frames)

    def own_mood_keys(self) -> tuple[str, ...]:
        """The frames :meth:`set` writes the mood in (see :meth:`mood_keys`)."""
        keys = [f"TXXX:{d}" for d in ID3V23_MOOD] if self.v23 else ["TMOO"]
        return tuple(f"{key}|{int(self._encoding())}" for key in keys)

    def _encoding(self):
        from mutagen.id3 import Encoding

        return Encoding.UTF16 if self.v23 else Encoding.UTF8

    def stale(self, name: str, values: tuple[str, ...], keys=None) -> bool:
        """Whether ``name`` holds ``values`` but not in the frames it belongs in: the user's
        mood back in its own frames (``keys``), else the frames :meth:`set` writes (a v2.3
        mood under ``TXXX:MOOD`` only, as moodscope wrote it before Picard's convention)."""
        if name != MOOD_FIELD:
            return False
        found = sorted((key, self.get(MOOD_FIELD)) for key in self.mood_keys())
        return found != sorted((key, values) for key in (keys or self.own_mood_keys()))

    def set(self, name: str, values: tuple[str, ...], keys=None) -> None:
        from mutagen.id3 import TMOO, TXXX, Encoding

        self.delete(name)
        if name != MOOD_FIELD:
            self.tags.add(TXXX(encoding=self._encoding(), desc=name, text=list(values)))
            return
        for key in keys or self.own_mood_keys():
            key, _, encoding = key.rpartition("|")
            encoding = Encoding(int(encoding)) if encoding.isdigit() else self._encoding()
            if key == "TMOO":
                self.tags.add(TMOO(encoding=encoding, text=list(values)))
            elif key.startswith("TXXX:"):
                self.tags.add(TXXX(encoding=encoding, desc=key[5:], text=list(values)))

    def delete(self, name: str) -> None:
        if name == MOOD_FIELD and self.v23:
            for frame in self._v23_mood_frames():
                del self.tags[frame.HashKey]
        elif name == MOOD_FIELD:
            self.tags.delall("TMOO")
        else:
            self.tags.delall(self._key(name))

    def save(self, audio) -> None:
        if self.version < (2, 3):  # mutagen writes v2.3 and v2.4 only; v2.3 is read by all
            for picture in self.tags.getall("APIC"):  # ID3v2.2 PIC: "PNG", not a MIME type
                mime = {"PNG": "image/png", "JPG": "image/jpeg"}.get(picture.mime.upper())
                picture.mime = mime or picture.mime
        audio.save(v2_version=3 if self.v23 else 4)


class _VorbisFields:
    """Vorbis comments (FLAC, Ogg Vorbis, Opus, Ogg FLAC, Speex): case-insensitive names."""

    def __init__(self, tags):
        self.tags = tags

    def names(self) -> list[str]:
        return list(dict.fromkeys(k.upper() for k in self.tags.keys()))

    def get(self, name: str) -> tuple[str, ...]:
        return tuple(self.tags[name]) if name in self.tags else ()

    def set(self, name: str, values: tuple[str, ...], keys=None) -> None:
        self.tags[name] = list(values)

    def delete(self, name: str) -> None:
        if name in self.tags:
            del self.tags[name]

    def save(self, audio) -> None:
        audio.save()


class _APEv2Fields:
    """APEv2 items (WavPack, Monkey's Audio, Musepack, TAK, OptimFROG): case-insensitive
    keys, the mood under :data:`APE_MOOD`; binary items (cover art) are never touched."""

    def __init__(self, tags):
        self.tags = tags

    def _key(self, name: str) -> str:
        return APE_MOOD if name == MOOD_FIELD else name

    def names(self) -> list[str]:
        return list(dict.fromkeys(k.upper() for k in self.tags.keys()))

    def get(self, name: str) -> tuple[str, ...]:
        from mutagen.apev2 import TEXT

        value = self.tags.get(self._key(name))
        return tuple(value) if value is not None and value.kind == TEXT else ()

    def mood_keys(self) -> tuple[str, ...]:
        return tuple(k for k in self.tags.keys() if k.lower() == APE_MOOD.lower())

    def own_mood_keys(self) -> tuple[str, ...]:
        return (APE_MOOD,)

    def stale(self, name: str, values: tuple[str, ...], keys=None) -> bool:
        return name == MOOD_FIELD and self.mood_keys() != tuple(keys or self.own_mood_keys())

    def set(self, name: str, values: tuple[str, ...], keys=None) -> None:
        self.delete(name)
        key = keys[0] if name == MOOD_FIELD and keys else self._key(name)
        self.tags[key] = list(values)

    def delete(self, name: str) -> None:
        if self._key(name) in self.tags:
            del self.tags[self._key(name)]

    def save(self, audio) -> None:
        audio.save()


class _ASFFields:
    """ASF (WMA) attributes: the mood in :data:`ASF_MOOD`, the others by their name."""

    def __init__(self, tags):
        self.tags = tags

    def _key(self, name: str) -> str:
        return ASF_MOOD if name == MOOD_FIELD else name

    def names(self) -> list[str]:
        return [MOOD_FIELD if k == ASF_MOOD else k for k in dict.fromkeys(self.tags.keys())]

    def get(self, name: str) -> tuple[str, ...]:
        from mutagen.asf import ASFUnicodeAttribute

        key = self._key(name)
        values = self.tags[key] if key in self.tags else []
        return tuple(v.value for v in values if isinstance(v, ASFUnicodeAttribute))

    def set(self, name: str, values: tuple[str, ...], keys=None) -> None:
        self.tags[self._key(name)] = list(values)

    def delete(self, name: str) -> None:
        if self._key(name) in self.tags:
            del self.tags[self._key(name)]

    def save(self, audio) -> None:
        audio.save()


class _MP4Fields:
    """MP4/M4A freeform atoms ``----:com.apple.iTunes:NAME`` holding UTF-8 text."""

    def __init__(self, tags):
        self.tags = tags

    def names(self) -> list[str]:
        return [k[len(MP4_FREEFORM) :] for k in self.tags.keys() if k.startswith(MP4_FREEFORM)]

    def get(self, name: str) -> tuple[str, ...]:
        values = self.tags.get(MP4_FREEFORM + name, [])
        return tuple(bytes(v).decode("utf-8", "replace") for v in values)

    def set(self, name: str, values: tuple[str, ...], keys=None) -> None:
        from mutagen.mp4 import AtomDataType, MP4FreeForm

        self.tags[MP4_FREEFORM + name] = [
            MP4FreeForm(v.encode("utf-8"), dataformat=AtomDataType.UTF8) for v in values
        ]

    def delete(self, name: str) -> None:
        self.tags.pop(MP4_FREEFORM + name, None)

    def save(self, audio) -> None:
        audio.save()


def _container(path: str) -> str:
    from moodscope.audio.decode import sniff

    try:
        kind = sniff(Path(path))
        with open(path, "rb") as f:
            if f.read(4) == b"RF64":  # sniff calls it WAV, which moodscope does tag
                kind = "RF64"
    except Exception:  # noqa: BLE001 - only used to name the container in a message
        kind = None
    return kind or (Path(path).suffix.lstrip(".").upper() or "these")


def _open(path: str, kind=None, *, unknown_ok: bool = False):
    """The mutagen file object of ``path`` (as ``kind`` when given: the type detected on
    the original, since a temporary copy's name says nothing). An ID3 tag is read as it is
    stored, not translated to ID3v2.4, so that saving it keeps every frame. A container
    mutagen does not know is an error, or None with ``unknown_ok``."""
    import mutagen

    try:
        audio = None
        if kind is None:
            audio = mutagen.File(path)
            if audio is None and _container(path) == "MP3":  # MPEG audio named .mp1, .mpa
                from mutagen.mp3 import MP3

                audio = MP3(path)
            kind = type(audio) if audio is not None else None
        if kind is not None and _keeps_id3(kind):
            audio = kind(path, translate=False)  # (again: mutagen.File translates)
        elif kind is not None and audio is None:
            audio = kind(path)
    except FileNotFoundError:
        raise TagError(path, "vanished before its tags could be read") from None
    except PermissionError:
        raise TagError(path, "cannot be read (permission denied)") from None
    except Exception as exc:  # noqa: BLE001 - mutagen raises many types for odd files
        if _container(path) == "RF64":  # read as WAV for its name, then refused
            audio = None
        else:
            raise TagError(
                path, f"cannot be tagged: mutagen cannot read its container ({_one_line(exc)})"
            ) from exc
    if audio is None and not unknown_ok:
        raise TagError(
            path, f"cannot be tagged: moodscope writes no tags into {_container(path)} files"
        )
    return audio


def _keeps_id3(kind) -> bool:
    """Whether ``kind`` (a mutagen file type) holds an ID3 tag and takes ``translate``."""
    from mutagen.aiff import AIFF
    from mutagen.dsf import DSF
    from mutagen.id3 import ID3FileType
    from mutagen.wave import WAVE

    return kind is not None and issubclass(kind, (ID3FileType, AIFF, DSF, WAVE))


def _fields(audio, path: str, *, create: bool):
    from mutagen._vorbis import VComment
    from mutagen.apev2 import APEv2
    from mutagen.asf import ASFTags
    from mutagen.id3 import ID3
    from mutagen.mp4 import MP4Tags

    why = _UNTAGGABLE.get(type(audio).__name__)
    if why is not None:
        raise TagError(path, f"cannot be tagged: {why}")
    if audio.tags is None:
        if not create:
            return None
        try:
            audio.add_tags()
        except Exception as exc:  # noqa: BLE001 - mutagen's "doesn't support tags"
            raise TagError(
                path, f"cannot be tagged: {type(audio).__name__} files take no tags"
            ) from exc
    if isinstance(audio.tags, ID3):
        return _ID3Fields(audio.tags)
    if isinstance(audio.tags, VComment):
        return _VorbisFields(audio.tags)
    if isinstance(audio.tags, MP4Tags):
        return _MP4Fields(audio.tags)
    if isinstance(audio.tags, APEv2):
        return _APEv2Fields(audio.tags)
    if isinstance(audio.tags, ASFTags):
        return _ASFFields(audio.tags)
    raise TagError(
        path,
        f"cannot be tagged: moodscope writes ID3, Vorbis comments, MP4 atoms, APEv2 and ASF, "
        f"not {type(audio.tags).__name__} ({type(audio).__name__} file)",
    )


def _ours(fields) -> dict[str, tuple[str, ...]]:
    """The fields moodscope owns or may replace: MOOD and every MOODSCOPE_* field."""
    state = {}
    for name in fields.names():
        upper = name.upper()
        if upper == MOOD_FIELD or upper.startswith(FIELD_PREFIX):
            values = fields.get(upper)
            if values:
                state[upper] = values
    return state


def _shares(state: Mapping[str, tuple[str, ...]]) -> dict[str, float]:
    shares = {}
    for name, values in state.items():
        if name.startswith(FIELD_PREFIX) and name not in _RESERVED and values:
            try:
                shares[name[len(FIELD_PREFIX) :].lower()] = float(values[0])
            except ValueError:
                continue
    return shares


def _mood_is_ours(state: Mapping[str, tuple[str, ...]]) -> bool:
    """Whether MOOD holds what moodscope wrote: a model field is there and MOOD is (one of)
    the emotions with the largest share. Anything else is the user's own mood."""
    mood = state.get(MOOD_FIELD, ())
    shares = _shares(state)
    if MODEL_FIELD not in state or len(mood) != 1 or not shares:
        return False
    top = max(shares.values())
    return mood[0].lower() in {label for label, share in shares.items() if share == top}


def _user_mood_keys(fields) -> tuple[str, ...]:
    """Where the file's mood is, when that is not where moodscope writes it (else empty)."""
    keys = getattr(fields, "mood_keys", lambda: ())()
    own = getattr(fields, "own_mood_keys", lambda: ())()
    return keys if keys and sorted(keys) != sorted(own) else ()


def _stored_keys(state) -> tuple[str, ...]:
    """The keys of :data:`PREVIOUS_MOOD_KEYS_FIELD`, stored as one value, ``;`` between."""
    return tuple(k for v in state.get(PREVIOUS_MOOD_KEYS_FIELD, ()) for k in v.split(";") if k)


def _target_after_tagging(state, values, user_keys) -> tuple[dict, tuple[str, ...]]:
    """The fields after tagging, and the keys a mood of the user's is written under."""
    target = dict(values)
    if _mood_is_ours(state):
        previous = state.get(PREVIOUS_MOOD_FIELD, ())
        user_keys = _stored_keys(state)
    else:
        previous = state.get(MOOD_FIELD, ())  # the user's mood: kept for untag
    if previous:
        target[PREVIOUS_MOOD_FIELD] = previous
        if user_keys:
            target[PREVIOUS_MOOD_KEYS_FIELD] = (";".join(user_keys),)
        if MOOD_FIELD not in values:  # mood withheld (not confident): the user's stays
            target[MOOD_FIELD] = previous
            return target, tuple(user_keys)
    return target, ()


def _target_after_untagging(state, user_keys) -> tuple[dict, tuple[str, ...]]:
    if _mood_is_ours(state):
        previous = state.get(PREVIOUS_MOOD_FIELD, ())
        keys = _stored_keys(state)
        return ({MOOD_FIELD: previous} if previous else {}), keys
    mood = state.get(MOOD_FIELD, ())
    return ({MOOD_FIELD: mood} if mood else {}), user_keys


def _stale(fields, target, mood_keys) -> bool:
    """Whether a field of ``target`` that the file already holds is not where it belongs."""
    stale = getattr(fields, "stale", None)
    return stale is not None and any(
        stale(name, values, mood_keys) for name, values in target.items()
    )


def _apply(fields, state, target, mood_keys) -> None:
    for name in state:
        if name not in target:
            fields.delete(name)
    for name, values in target.items():
        if state.get(name) != values or _stale(fields, {name: values}, mood_keys):
            fields.set(name, values, mood_keys if name == MOOD_FIELD else None)


# -- reading -------------------------------------------------------------------------------


def read_tags(path: str | Path) -> MoodTags:
    """The mood fields found in ``path`` (empty when it has none).

    Raises
    ------
    TagError
        The file is missing, unreadable, or a container moodscope cannot tag.
    """
    path = str(path)
    audio = _open(path)
    fields = _fields(audio, path, create=False)
    state = _ours(fields) if fields is not None else {}
    mood = state.get(MOOD_FIELD, ())
    model = state.get(MODEL_FIELD, ())
    confidence = state.get(CONFIDENCE_FIELD, ())
    try:
        confidence = float(confidence[0]) if confidence else None
    except ValueError:
        confidence = None
    return MoodTags(
        mood=mood[0] if mood else None,
        emotions=_shares(state),
        model=model[0] if model else None,
        previous_mood=list(state.get(PREVIOUS_MOOD_FIELD, ())),
        confidence=confidence,
    )


# -- writing -------------------------------------------------------------------------------


def write_tags(
    path: str | Path,
    prediction,
    *,
    expect: FileState | None = None,
    min_confidence: float | None = None,
) -> FileState:
    """Write ``prediction`` into ``path``'s tags, safely.

    The file is copied beside itself, the copy tagged, flushed and renamed over the original
    (permissions, owner and extended attributes kept; a symlink's target is rewritten). Only
    MOOD and the MOODSCOPE_* fields change; a MOOD the user had is kept in
    MOODSCOPE_PREVIOUS_MOOD. A file whose tags already hold these values is not rewritten.

    Parameters
    ----------
    prediction : Prediction
        A successful prediction (``prediction.ok``).
    expect : FileState, optional
        The file as it was when it was read for the prediction: if its size, mtime or inode
        differ now, or change while the copy is written, nothing is written.
    min_confidence : float, optional
        Write MOOD only where ``prediction.confidence`` reaches this; the shares and the
        confidence are written either way, and a mood moodscope wrote earlier gives way to
        the user's own (or none).

    Returns
    -------
    FileState
        The file as it is now, with the SHA-1 of its content.

    Raises
    ------
    TagError
        One line naming the file: a container moodscope cannot tag, read-only, vanished,
        changed, a full disk. The file is then exactly as it was.
    """
    values = tag_values(prediction, min_confidence=min_confidence)
    return _rewrite(
        str(path), lambda state, keys: _target_after_tagging(state, values, keys), expect=expect
    )


def remove_tags(path: str | Path, *, expect: FileState | None = None) -> FileState | None:
    """Remove exactly what moodscope wrote: the MOODSCOPE_* fields, and MOOD when it still
    holds moodscope's value (a MOOD the file had before comes back). Written as safely as
    :func:`write_tags`.

    Returns
    -------
    FileState or None
        The rewritten file's state, or None when it held no moodscope tags (not rewritten),
        a format moodscope does not tag included.
    """
    path = str(path)
    misplaced = _misplaced_tag_chunks(os.path.realpath(path))
    if misplaced is not None:
        return _cut_at(path, misplaced, expect=expect)
    audio = _open(path, unknown_ok=True)
    if audio is None or type(audio).__name__ in _UNTAGGABLE:
        return None  # moodscope never wrote into it
    fields = _fields(audio, path, create=False)
    if fields is None or not any(k.startswith(FIELD_PREFIX) for k in _ours(fields)):
        return None
    return _rewrite(path, _target_after_untagging, expect=expect)


def _writable(path: str, expect: FileState | None, done: str) -> tuple[str, FileState]:
    """``path``'s real path and state, once it is known to be the file read (``expect``)
    and writable; else a TagError saying it was not ``done`` ("tagged", "untagged")."""
    real = os.path.realpath(path)
    before = _state(real, path)
    if expect is not None and not before.unchanged(expect):
        raise TagError(path, f"changed since moodscope read it; not {done} (run again)")
    if not before.mode & 0o222 or not os.access(real, os.W_OK):
        raise TagError(path, f"is read-only; not {done}")
    return real, before


def _rewrite(
    path: str,
    target_of: Callable[[dict, tuple[str, ...]], tuple[dict, tuple[str, ...]]],
    *,
    expect: FileState | None,
) -> FileState:
    real, before = _writable(path, expect, "tagged")

    audio = _open(real)
    kind = type(audio)
    fields = _fields(audio, path, create=True)
    _check_last_chunk_padded(real, kind, path)
    state = _ours(fields)
    target, mood_keys = target_of(state, _user_mood_keys(fields))
    if target == state and not _stale(fields, target, mood_keys):  # already as wanted
        return FileState.of(real, sha1=_sha1(real))

    # The copy's data is fsynced before the rename (atomic_path), so after a crash or a
    # power cut the name holds the old file or the new one, whole. The folder is not
    # fsynced: were the rename lost, the old file is back, and the index (size, mtime) sees
    # it as not done.
    def still_the_file_read() -> None:  # after the copy is fsynced, just before the rename
        if not _state(real, path).unchanged(before):
            raise TagError(path, "changed while moodscope was tagging it; not tagged (run again)")

    try:
        with atomic_path(real, before_rename=still_the_file_read) as tmp:
            with open(real, "rb") as src, open(tmp, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
            _copy_attributes(real, tmp, before, path)
            copy = _open(tmp, kind)
            copy_fields = _fields(copy, path, create=True)
            _apply(copy_fields, _ours(copy_fields), target, mood_keys)
            try:
                copy_fields.save(copy)
            except OSError:
                raise  # a full disk, a vanished folder: reported below
            except Exception as exc:  # noqa: BLE001 - mutagen's errors for a file it misreads
                raise TagError(path, f"its tags cannot be written ({_one_line(exc)})") from exc
            sha1 = _sha1(tmp)
    except FileNotFoundError:
        raise TagError(path, "vanished while moodscope was tagging it") from None
    except OutputError as exc:  # creating, fsyncing or renaming the copy
        raise TagError(path, f"not tagged: {_os_problem(exc.__cause__)}") from exc
    except OSError as exc:
        raise TagError(path, f"not tagged: {_os_problem(exc)}") from exc
    return FileState.of(real, sha1=sha1)


def _check_last_chunk_padded(real: str, kind, path: str) -> None:
    """A WAV or AIFF chunk of odd size is followed by a pad byte. Where it is not (at the
    end of the file, or before the next chunk, as a tag chunk appended by an earlier
    moodscope sits), a tag chunk written after it is one byte off, where no reader finds it."""
    from mutagen.aiff import AIFF
    from mutagen.wave import WAVE

    if kind not in (WAVE, AIFF):
        return
    order = "<" if kind is WAVE else ">"
    with open(real, "rb") as f:
        end = f.seek(0, os.SEEK_END)
        offset = 12
        while offset + 8 <= end:
            f.seek(offset)
            name, size = struct.unpack(order + "4sI", f.read(8))
            after = offset + 8 + size
            if size % 2 and after < end:
                f.seek(after)
                unpadded = _chunk_id(f.read(4))  # a chunk begins where the pad should be
            else:
                unpadded = size % 2 == 1 and after == end
            if unpadded:
                chunk = name.decode("latin-1").strip()
                raise TagError(
                    path,
                    f"cannot be tagged: its {chunk!r} chunk has an odd size and no pad byte "
                    "after it, so a tag chunk written after it would not be found by readers",
                )
            offset = after + size % 2


def _misplaced_tag_chunks(real: str) -> int | None:
    """Where the ID3 chunks begin that an earlier moodscope appended to a WAV or AIFF file
    one byte off (after an odd-sized chunk that lacks its pad byte), when everything from
    there to the end is such chunks holding only moodscope's frames; else None."""
    try:
        with open(real, "rb") as f:
            head = f.read(12)
            order = {b"RIFF": "<", b"FORM": ">"}.get(head[:4])
            if order is None or head[8:12] not in (b"WAVE", b"AIFF", b"AIFC"):
                return None
            end = f.seek(0, os.SEEK_END)
            offset = start = 12
            while offset + 8 <= end:
                f.seek(offset)
                name, size = struct.unpack(order + "4sI", f.read(8))
                after = offset + 8 + size
                f.seek(after)
                if size % 2 and after < end and _chunk_id(f.read(4)):
                    start = after
                    break
                offset = after + size % 2
            else:
                return None
            offset = start
            while offset + 8 <= end:
                f.seek(offset)
                name, size = struct.unpack(order + "4sI", f.read(8))
                if name.lower() != b"id3 " or not _only_moodscope_frames(f.read(size)):
                    return None
                offset += 8 + size + size % 2
            return start if offset >= end else None
    except OSError:
        return None


def _only_moodscope_frames(data: bytes) -> bool:
    """Whether ``data`` is an ID3 tag moodscope wrote: its model field, and nothing but the
    mood and ``MOODSCOPE_*`` frames."""
    import io

    from mutagen.id3 import ID3

    try:
        keys = set(ID3(io.BytesIO(data), translate=False).keys())
    except Exception:  # noqa: BLE001 - anything mutagen cannot read is not ours
        return False
    moods = {"TMOO"} | {f"TXXX:{d}" for d in (*ID3V23_MOOD, MOOD_FIELD)}
    return f"TXXX:{MODEL_FIELD}" in keys and all(
        key in moods or key.startswith(f"TXXX:{FIELD_PREFIX}") for key in keys
    )


def _cut_at(path: str, size: int, *, expect: FileState | None) -> FileState:
    """``path`` cut to its first ``size`` bytes, its RIFF/FORM size field set to match,
    written as safely as a tag."""
    real, before = _writable(path, expect, "untagged")

    def still_the_file_read() -> None:
        if not _state(real, path).unchanged(before):
            raise TagError(path, "changed while moodscope was untagging it; not untagged")

    try:
        with atomic_path(real, before_rename=still_the_file_read) as tmp:
            with open(real, "rb") as src, open(tmp, "wb") as dst:
                head = src.read(12)
                order = "<" if head[:4] == b"RIFF" else ">"
                dst.write(head[:4] + struct.pack(order + "I", size - 8) + head[8:])
                remaining = size - len(head)
                while remaining > 0:
                    block = src.read(min(remaining, 1 << 20))
                    if not block:
                        break
                    dst.write(block)
                    remaining -= len(block)
            _copy_attributes(real, tmp, before, path)
            sha1 = _sha1(tmp)
    except FileNotFoundError:
        raise TagError(path, "vanished while moodscope was untagging it") from None
    except OutputError as exc:
        raise TagError(path, f"not untagged: {_os_problem(exc.__cause__)}") from exc
    except OSError as exc:
        raise TagError(path, f"not untagged: {_os_problem(exc)}") from exc
    return FileState.of(real, sha1=sha1)


def _chunk_id(data: bytes) -> bool:
    """Whether ``data`` reads as a RIFF/IFF chunk id: four printable ASCII characters."""
    return len(data) == 4 and all(0x20 <= c < 0x7F for c in data) and data[:1] != b" "


def _state(real: str, path: str) -> FileState:
    try:
        return FileState.of(real)
    except FileNotFoundError:
        raise TagError(path, "vanished before its tags were written") from None
    except OSError as exc:
        raise TagError(path, f"cannot be read ({_os_problem(exc)})") from exc


def _copy_attributes(real: str, tmp: str, before: FileState, path: str) -> None:
    """The copy gets the original's mode, owner and extended attributes."""
    shutil.copystat(real, tmp)  # mode, times (the tag write updates mtime), xattrs
    st = os.stat(real)
    if (st.st_uid, st.st_gid) != (os.stat(tmp).st_uid, os.stat(tmp).st_gid):
        try:
            os.chown(tmp, st.st_uid, st.st_gid)
        except PermissionError:
            raise TagError(
                path,
                f"belongs to another user or group (uid {st.st_uid}, gid {st.st_gid}); "
                "rewriting it would change its owner, so it is not tagged",
            ) from None


def _sha1(path: str) -> str:
    return file_digest(path)


def _os_problem(exc: OSError) -> str:
    return describe_os_error(exc)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:300] or type(exc).__name__


remove_stale_copies = remove_stale_temporaries
"""Temporary copies left by a killed tagging process (see :mod:`moodscope.atomic`)."""


__all__ = [
    "APE_MOOD",
    "AROUSAL_FIELD",
    "ASF_MOOD",
    "CONFIDENCE_FIELD",
    "FIELD_PREFIX",
    "ID3V23_MOOD",
    "MODEL_FIELD",
    "MOOD_FIELD",
    "PREVIOUS_MOOD_FIELD",
    "PREVIOUS_MOOD_KEYS_FIELD",
    "SHARE_DECIMALS",
    "VALENCE_FIELD",
    "FileState",
    "MoodTags",
    "mood_earned",
    "read_tags",
    "remove_stale_copies",
    "remove_tags",
    "share_field",
    "tag_values",
    "write_tags",
]
