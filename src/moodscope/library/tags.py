"""Mood tags in audio files, written so that a file is never damaged.

The top emotion goes in the field players read (ID3v2.4 ``TMOO``, ID3v2.3 ``TXXX:mood`` and
``TXXX:QuodLibet::mood``, Vorbis ``MOOD``, MP4 ``----:com.apple.iTunes:MOOD``), each share,
the confidence and the model in ``MOODSCOPE_*`` user fields; with a ``min_confidence`` the
mood field is written only where the confidence reaches it (a mood the user had stays). A
file is rewritten as a copy beside it that is tagged, flushed and renamed over the original,
so at any instant it is either the old file or the new one.
"""

from __future__ import annotations

import os
import re
import shutil
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
SHARE_DECIMALS = 3
"""Shares are written as ``0.412``."""

ID3V23_MOOD = ("mood", "QuodLibet::mood")
"""The TXXX descriptions the mood is written under in ID3v2.3, which has no TMOO: ``mood`` as
Picard writes it and reads it (exactly; beets' mediafile and TagLib read any case),
and Quod Libet's own ``QuodLibet::mood`` (it reads TMOO, or TXXX named ``QuodLibet::...``)."""

MP4_FREEFORM = "----:com.apple.iTunes:"
"""The freeform atom namespace iTunes, foobar2000 and Mp3tag use for user fields."""

_RESERVED = {MODEL_FIELD, PREVIOUS_MOOD_FIELD, CONFIDENCE_FIELD}


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
    if prediction.error is not None or not prediction.emotions:
        raise TagError(prediction.path, f"has no prediction to write ({prediction.error})")
    values = {}
    if mood_earned(prediction, min_confidence):
        values[MOOD_FIELD] = (prediction.top_emotion,)
    for label, share in prediction.emotions.items():
        values[share_field(label)] = (f"{share:.{SHARE_DECIMALS}f}",)
    if prediction.confidence is not None:
        values[CONFIDENCE_FIELD] = (f"{prediction.confidence:.{SHARE_DECIMALS}f}",)
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
    """ID3v2 (MP3, WAV and AIFF ID3 chunks): TMOO in v2.4, the :data:`ID3V23_MOOD` TXXX frames
    in v2.3 (read: any TXXX named ``mood`` in any case, or ``QuodLibet::mood``), TXXX user
    fields. The file's own version is kept."""

    def __init__(self, tags):
        self.tags = tags
        self.v23 = tuple(tags.version[:2]) == (2, 3)

    def _key(self, name: str) -> str:
        return "TMOO" if name == MOOD_FIELD and not self.v23 else f"TXXX:{name}"

    def _v23_mood_frames(self) -> list:
        """The TXXX frames that hold the mood in a v2.3 tag, ``mood`` (any case) first."""
        frames = self.tags.getall("TXXX")
        return [f for f in frames if f.desc.lower() == "mood"] + [
            f for f in frames if f.desc.lower() == ID3V23_MOOD[1].lower()
        ]

    def names(self) -> list[str]:
        moods = {d.lower() for d in ID3V23_MOOD} if self.v23 else set()
        names = [
            MOOD_FIELD if frame.desc.lower() in moods else frame.desc
            for frame in self.tags.getall("TXXX")
        ]
        if not self.v23 and self.tags.getall("TMOO"):
            names.append(MOOD_FIELD)
        return list(dict.fromkeys(names))

    def get(self, name: str) -> tuple[str, ...]:
        if name == MOOD_FIELD and self.v23:
            frames = self._v23_mood_frames()
            return tuple(str(t) for t in frames[0].text) if frames else ()
        return tuple(str(t) for frame in self.tags.getall(self._key(name)) for t in frame.text)

    def stale(self, name: str, values: tuple[str, ...]) -> bool:
        """Whether ``name`` holds ``values`` but not in the frames :meth:`set` writes (a v2.3
        mood under ``TXXX:MOOD`` only, as moodscope wrote it before Picard's convention)."""
        if name != MOOD_FIELD or not self.v23:
            return False
        found = sorted((f.desc, tuple(map(str, f.text))) for f in self._v23_mood_frames())
        return found != sorted((desc, values) for desc in ID3V23_MOOD)

    def set(self, name: str, values: tuple[str, ...]) -> None:
        from mutagen.id3 import TMOO, TXXX, Encoding

        self.delete(name)
        encoding = Encoding.UTF16 if self.v23 else Encoding.UTF8
        if self._key(name) == "TMOO":
            self.tags.add(TMOO(encoding=encoding, text=list(values)))
        elif name == MOOD_FIELD:
            for desc in ID3V23_MOOD:
                self.tags.add(TXXX(encoding=encoding, desc=desc, text=list(values)))
        else:
            self.tags.add(TXXX(encoding=encoding, desc=name, text=list(values)))

    def delete(self, name: str) -> None:
        if name == MOOD_FIELD and self.v23:
            for frame in self._v23_mood_frames():
                del self.tags[frame.HashKey]
        else:
            self.tags.delall(self._key(name))

    def save(self, audio) -> None:
        if self.v23:
            self.tags.update_to_v23()  # frames were read as v2.4; write them back as v2.3
        audio.save(v2_version=3 if self.v23 else 4)


class _VorbisFields:
    """Vorbis comments (FLAC, Ogg Vorbis, Opus, Ogg FLAC, Speex): case-insensitive names."""

    def __init__(self, tags):
        self.tags = tags

    def names(self) -> list[str]:
        return list(dict.fromkeys(k.upper() for k in self.tags.keys()))

    def get(self, name: str) -> tuple[str, ...]:
        return tuple(self.tags[name]) if name in self.tags else ()

    def set(self, name: str, values: tuple[str, ...]) -> None:
        self.tags[name] = list(values)

    def delete(self, name: str) -> None:
        if name in self.tags:
            del self.tags[name]

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

    def set(self, name: str, values: tuple[str, ...]) -> None:
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
    except Exception:  # noqa: BLE001 - only used to name the container in a message
        kind = None
    return kind or (Path(path).suffix.lstrip(".").upper() or "these")


def _open(path: str, kind=None):
    """The mutagen file object of ``path`` (as ``kind`` when given: the type detected on
    the original, since a temporary copy's name says nothing)."""
    import mutagen

    try:
        audio = kind(path) if kind is not None else mutagen.File(path)
    except FileNotFoundError:
        raise TagError(path, "vanished before its tags could be read") from None
    except PermissionError:
        raise TagError(path, "cannot be read (permission denied)") from None
    except Exception as exc:  # noqa: BLE001 - mutagen raises many types for odd files
        raise TagError(
            path, f"cannot be tagged: mutagen cannot read its container ({_one_line(exc)})"
        ) from exc
    if audio is None:
        raise TagError(
            path, f"cannot be tagged: mutagen does not know its container ({_container(path)})"
        )
    return audio


def _fields(audio, path: str, *, create: bool):
    from mutagen._vorbis import VComment
    from mutagen.id3 import ID3
    from mutagen.mp4 import MP4Tags

    if audio.tags is None:
        if not create:
            return None
        try:
            audio.add_tags()
        except Exception as exc:  # noqa: BLE001 - e.g. raw AAC: "doesn't support tags"
            raise TagError(
                path, f"cannot be tagged: {type(audio).__name__} files take no tags"
            ) from exc
    if isinstance(audio.tags, ID3):
        return _ID3Fields(audio.tags)
    if isinstance(audio.tags, VComment):
        return _VorbisFields(audio.tags)
    if isinstance(audio.tags, MP4Tags):
        return _MP4Fields(audio.tags)
    raise TagError(
        path,
        f"cannot be tagged: moodscope writes ID3, Vorbis comments and MP4 atoms, not "
        f"{type(audio.tags).__name__} ({type(audio).__name__} file)",
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


def _target_after_tagging(state, values) -> dict[str, tuple[str, ...]]:
    target = dict(values)
    if _mood_is_ours(state):
        previous = state.get(PREVIOUS_MOOD_FIELD, ())
    else:
        previous = state.get(MOOD_FIELD, ())  # the user's mood: kept for untag
    if previous:
        target[PREVIOUS_MOOD_FIELD] = previous
        if MOOD_FIELD not in values:  # mood withheld (not confident): the user's stays
            target[MOOD_FIELD] = previous
    return target


def _target_after_untagging(state) -> dict[str, tuple[str, ...]]:
    if _mood_is_ours(state):
        previous = state.get(PREVIOUS_MOOD_FIELD, ())
        return {MOOD_FIELD: previous} if previous else {}
    mood = state.get(MOOD_FIELD, ())
    return {MOOD_FIELD: mood} if mood else {}


def _stale(fields, target) -> bool:
    """Whether a field of ``target`` that the file already holds is in an old form."""
    stale = getattr(fields, "stale", None)
    return stale is not None and any(stale(name, values) for name, values in target.items())


def _apply(fields, state, target) -> None:
    for name in state:
        if name not in target:
            fields.delete(name)
    for name, values in target.items():
        if state.get(name) != values or _stale(fields, {name: values}):
            fields.set(name, values)


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
    return _rewrite(str(path), lambda state: _target_after_tagging(state, values), expect=expect)


def remove_tags(path: str | Path, *, expect: FileState | None = None) -> FileState | None:
    """Remove exactly what moodscope wrote: the MOODSCOPE_* fields, and MOOD when it still
    holds moodscope's value (a MOOD the file had before comes back). Written as safely as
    :func:`write_tags`.

    Returns
    -------
    FileState or None
        The rewritten file's state, or None when it held no moodscope tags (not rewritten).
    """
    path = str(path)
    audio = _open(path)
    fields = _fields(audio, path, create=False)
    if fields is None or not any(k.startswith(FIELD_PREFIX) for k in _ours(fields)):
        return None
    return _rewrite(path, _target_after_untagging, expect=expect)


def _rewrite(
    path: str,
    target_of: Callable[[dict], dict],
    *,
    expect: FileState | None,
) -> FileState:
    real = os.path.realpath(path)
    before = _state(real, path)
    if expect is not None and not before.unchanged(expect):
        raise TagError(path, "changed since moodscope read it; not tagged (run again)")
    if not before.mode & 0o222 or not os.access(real, os.W_OK):
        raise TagError(path, "is read-only; not tagged")

    audio = _open(real)
    kind = type(audio)
    fields = _fields(audio, path, create=True)
    state = _ours(fields)
    target = target_of(state)
    if target == state and not _stale(fields, target):  # already as wanted: leave it
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
            _apply(copy_fields, _ours(copy_fields), target)
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
    "CONFIDENCE_FIELD",
    "FIELD_PREFIX",
    "ID3V23_MOOD",
    "MODEL_FIELD",
    "MOOD_FIELD",
    "PREVIOUS_MOOD_FIELD",
    "SHARE_DECIMALS",
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
