"""Does a file hold what its container says it holds? Read from the bytes before decoding.

A partial download or a cut copy keeps its header: an MP3's Xing/Info or VBRI frame still
counts every frame, a FLAC's STREAMINFO every sample, a WAV's data chunk every byte, an MP4's
boxes their full sizes, and an Ogg stream lacks the page that ends it. :func:`check_integrity`
compares those claims with the bytes present, so the decoder can flag the result as truncated
(and decode only what is there) instead of answering as if the file were whole.
"""

from __future__ import annotations

import dataclasses
import os
import stat
import struct
from dataclasses import dataclass
from pathlib import Path

TAIL_BYTES = 1 << 16
"""How much of a file's end is searched for its last FLAC frame or Ogg page (an Ogg page is at
most 65,307 bytes; a FLAC frame rarely more than a few kB)."""


@dataclass(frozen=True)
class Integrity:
    """What the bytes say about a file's completeness.

    ``truncated``: the container declares more than the file holds; ``missing`` then says
    what is missing in words (for messages); ``declared_seconds`` is the duration the header
    claims, when it says one; ``decodable`` is False when what is missing is the index the
    decoder needs (an MP4 cut before its ``moov`` box).
    """

    container: str | None = None
    truncated: bool = False
    declared_seconds: float | None = None
    missing: str | None = None
    decodable: bool = True
    audio_found: bool = True  # False: an MP3's ID3 tag with no MPEG frame after it
    declared_rate: int | None = None  # the sample rate a WAV's fmt chunk states


WHOLE = Integrity()


def check_integrity(path: str | Path) -> Integrity:
    """Compare what ``path``'s container declares with the bytes it holds.

    Never raises for odd content: a file this cannot parse is reported as not truncated
    (the decoder then says what is wrong with it). Reads nothing but a regular file: a FIFO
    would block and a device never ends (the decoder's path check names those).
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except (OSError, ValueError):
        return WHOLE
    try:
        f = os.fdopen(fd, "rb")
    except OSError:
        os.close(fd)
        return WHOLE
    try:
        with f:
            info = os.fstat(f.fileno())
            if not stat.S_ISREG(info.st_mode):
                return WHOLE
            return _check(path, f, info.st_size)
    except Exception:  # noqa: BLE001 - odd bytes (an absurd float, a short field): no claim
        return WHOLE


def _check(path: str | Path, f, size: int) -> Integrity:
    head = f.read(TAIL_BYTES)
    f.seek(max(0, size - TAIL_BYTES))
    tail = f.read()
    tail_start = max(0, size - TAIL_BYTES)
    if len(head) > 1 and head[0] == 0xFF and head[1] & 0xF6 == 0xF0:
        return Integrity("AAC")  # raw ADTS: no total to compare with
    if head.startswith(b"ID3") or (len(head) > 1 and head[0] == 0xFF):
        return _mp3(f, head, size)
    if head.startswith(b"fLaC"):
        return _flac(head, tail, tail_start, size)
    if head.startswith(b"OggS"):
        return _ogg(tail, tail_start, size)
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        found, rate = _wav(head, size)
        return dataclasses.replace(found, declared_rate=rate)
    if head[:4] == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"):
        return _aiff(head, size)
    if head[4:8] == b"ftyp":
        return _mp4(path, size)
    if head.startswith(b"wvpk"):
        return _wavpack(f, head, size)
    if head.startswith(b"MAC "):
        return _ape(head, size)
    if head.startswith(b"DSD "):
        return _dsf(head, size)
    if head.startswith(b"FRM8") and head[12:16] == b"DSD ":
        return _dff(head, size)
    if head.startswith(_ASF_HEADER):
        return _asf(head, size)
    return WHOLE


# -- MP3 ---------------------------------------------------------------------------------

_MP3_BITRATES = {  # kbit/s by (MPEG-1?, layer) and index 1..14
    (True, 1): [32, 64, 96, 128, 160, 192, 224, 256, 288, 320, 352, 384, 416, 448],
    (True, 2): [32, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384],
    (True, 3): [32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320],
    (False, 1): [32, 48, 56, 64, 80, 96, 112, 128, 144, 160, 176, 192, 224, 256],
    (False, 2): [8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160],
    (False, 3): [8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160],
}
_MP3_RATES = {3: (44100, 48000, 32000), 2: (22050, 24000, 16000), 0: (11025, 12000, 8000)}


_NOT_MPEG_AFTER_ID3 = (b"fLaC", b"MAC ", b"wvpk", b"OggS", b"RIFF", b"TTA1", b"MPCK", b"tBaK")


@dataclass(frozen=True)
class MpegFrame:
    mpeg1: bool
    layer: int
    rate: int
    length: int  # bytes
    samples: int  # per channel
    mono: bool


def mpeg_frame(b: bytes) -> MpegFrame | None:
    """The MPEG audio frame whose 4-byte header is ``b``, or None if it is not one."""
    if len(b) < 4 or b[0] != 0xFF or b[1] & 0xE0 != 0xE0:
        return None
    version, layer_bits = (b[1] >> 3) & 3, (b[1] >> 1) & 3
    bitrate_index, rate_index, padding = b[2] >> 4, (b[2] >> 2) & 3, (b[2] >> 1) & 1
    if version == 1 or layer_bits == 0 or bitrate_index in (0, 15) or rate_index == 3:
        return None
    mpeg1, layer = version == 3, 4 - layer_bits
    bitrate = _MP3_BITRATES[(mpeg1, layer)][bitrate_index - 1] * 1000
    rate = _MP3_RATES[version][rate_index]
    if layer == 1:
        length, samples = (12 * bitrate // rate + padding) * 4, 384
    elif layer == 2 or mpeg1:
        length, samples = 144 * bitrate // rate + padding, 1152
    else:
        length, samples = 72 * bitrate // rate + padding, 576
    return MpegFrame(mpeg1, layer, rate, length, samples, (b[3] >> 6) == 3)


def _mp3(f, head: bytes, size: int) -> Integrity:
    start = 0
    if head.startswith(b"ID3") and len(head) >= 10:
        tag = (head[6] << 21) | (head[7] << 14) | (head[8] << 7) | head[9]
        start = 10 + tag + (10 if head[5] & 0x10 else 0)
    f.seek(start)
    window = f.read(TAIL_BYTES)
    if window[:4] in _NOT_MPEG_AFTER_ID3 or window.startswith(b"MP+"):
        return WHOLE  # an ID3 tag in front of another container: the decoder reads past it
    if len(window) > 1 and window[0] == 0xFF and window[1] & 0xF6 == 0xF0:
        return Integrity("AAC")  # ADTS behind an ID3 tag
    found = _first_mpeg_frame(window)
    if start == 0 and (found is None or found[0] != 0):
        return WHOLE  # a chance 0xFF first byte, no MPEG stream: nothing to say
    if found is None and start > 10:  # a tag whose size is wrong: look inside it too
        f.seek(10)
        window, start = f.read(TAIL_BYTES), 10
        found = _first_mpeg_frame(window)
    if found is None:
        return Integrity("MP3", audio_found=False)
    i, first = found
    offset, body = start + i, window[i:]
    side = (32 if not first.mono else 17) if first.mpeg1 else (17 if not first.mono else 9)
    frames = claimed_bytes = None
    if body[4 + side : 8 + side] in (b"Xing", b"Info"):
        flags = struct.unpack(">I", body[8 + side : 12 + side])[0]
        at = 12 + side
        if flags & 1:
            frames = struct.unpack(">I", body[at : at + 4])[0]
            at += 4
        if flags & 2:
            claimed_bytes = struct.unpack(">I", body[at : at + 4])[0]
    elif body[36:40] == b"VBRI":
        claimed_bytes, frames = struct.unpack(">II", body[46:54])
    if not frames:
        return Integrity("MP3")
    declared = frames * first.samples / first.rate
    held = size - offset
    f.seek(max(0, size - 128))
    if f.read(3) == b"TAG":  # ID3v1 at the end: not audio
        held -= 128
    if claimed_bytes and claimed_bytes - held <= max(1024, 0.01 * claimed_bytes):
        return Integrity("MP3", False, declared)  # the bytes are there: no need to count
    # Fewer bytes than declared (or no byte count): count the frames that are there, since
    # some encoders count their ID3 tag in the bytes too.
    counted = _count_mpeg_frames(f, offset)
    if frames - counted <= max(2, 0.01 * frames):
        return Integrity("MP3", False, declared)
    header = "VBRI" if body[36:40] == b"VBRI" else "Xing/Info"
    if claimed_bytes:
        missing = f"holds {held:,} of the {claimed_bytes:,} bytes of MPEG audio its {header} "
    else:
        missing = f"holds {counted:,} of the {frames:,} MPEG frames its {header} "
    return Integrity("MP3", True, declared, missing + f"header declares ({declared:.2f} s)")


def _first_mpeg_frame(window: bytes) -> tuple[int, MpegFrame] | None:
    """Where the first MPEG frame of ``window`` starts: a header whose successor follows
    where its length says (a lone sync word is one chance in 2,000 in any data)."""
    at = window.find(b"\xff")
    while 0 <= at <= len(window) - 4:
        frame = mpeg_frame(window[at : at + 4])
        if frame is not None:
            nxt = window[at + frame.length : at + frame.length + 4]
            if len(nxt) < 4 or mpeg_frame(nxt) is not None:
                return at, frame
        at = window.find(b"\xff", at + 1)
    return None


def _count_mpeg_frames(f, offset: int) -> int:
    """Whole MPEG frames from ``offset`` to the end; junk between frames is skipped to the
    next header that chains. Read through a memory map: nothing is copied."""
    import mmap

    try:
        data = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    except (ValueError, OSError):  # empty, or not mappable
        return 0
    try:
        count, at, end = 0, offset, len(data)
        while at + 4 <= end:
            frame = mpeg_frame(data[at : at + 4])
            if frame is None:
                at = data.find(b"\xff", at + 1)
                if at < 0:
                    break
                continue
            if at + frame.length > end:
                break
            count, at = count + 1, at + frame.length
        return count
    finally:
        data.close()


# -- FLAC --------------------------------------------------------------------------------


def _crc8(data: bytes) -> int:
    crc = 0
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = ((crc << 1) ^ 0x07) & 0xFF if crc & 0x80 else (crc << 1) & 0xFF
    return crc


def _flac_frame_start(b: bytes, fixed_blocksize: int) -> tuple[int, int] | None:
    """``(first sample, block size)`` of the FLAC frame whose header starts ``b``, or None
    when its CRC-8 does not match (a chance 0xFFF8 inside audio data)."""
    if len(b) < 6 or b[0] != 0xFF or b[1] & 0xFE != 0xF8:
        return None
    variable = b[1] & 1
    bs_code, rate_code = b[2] >> 4, b[2] & 0x0F
    if bs_code == 0 or rate_code == 15 or (b[3] >> 4) > 10 or b[3] & 1:
        return None
    # The frame or sample number, UTF-8-style coded.
    lead = b[4]
    n_extra = 0
    while n_extra < 7 and lead & (0x80 >> n_extra):
        n_extra += 1
    if n_extra == 1 or n_extra > 7:
        return None
    n_extra = max(0, n_extra - 1)
    value = lead & (0x7F >> (n_extra + 1 if n_extra else 0))
    at = 5
    for _ in range(n_extra):
        if at >= len(b) or b[at] & 0xC0 != 0x80:
            return None
        value, at = (value << 6) | (b[at] & 0x3F), at + 1
    if bs_code == 6:
        blocksize, at = b[at] + 1, at + 1
    elif bs_code == 7:
        blocksize, at = (b[at] << 8 | b[at + 1]) + 1, at + 2
    elif bs_code == 1:
        blocksize = 192
    elif bs_code <= 5:
        blocksize = 576 << (bs_code - 2)
    else:
        blocksize = 256 << (bs_code - 8)
    at += {12: 1, 13: 2, 14: 2}.get(rate_code, 0)
    if at >= len(b) or _crc8(b[:at]) != b[at]:
        return None
    return (value if variable else value * fixed_blocksize), blocksize


def _flac(head: bytes, tail: bytes, tail_start: int, size: int) -> Integrity:
    at, streaminfo = 4, None
    while at + 4 <= len(head):
        kind, length = head[at] & 0x7F, int.from_bytes(head[at + 1 : at + 4], "big")
        if kind == 0:
            streaminfo = head[at + 4 : at + 4 + length]
        last, at = head[at] & 0x80, at + 4 + length
        if last:
            break
    if streaminfo is None or len(streaminfo) < 18:
        return Integrity("FLAC")
    max_blocksize = int.from_bytes(streaminfo[2:4], "big")
    packed = int.from_bytes(streaminfo[10:18], "big")
    rate, total = packed >> 44, packed & ((1 << 36) - 1)
    if not total or not rate:
        return Integrity("FLAC")
    declared = total / rate
    audio_start = at
    ends = None
    for i in range(len(tail) - 6, -1, -1):
        if tail_start + i < audio_start:
            break
        if tail[i] == 0xFF and tail[i + 1] & 0xFE == 0xF8:
            found = _flac_frame_start(tail[i : i + 16], max_blocksize)
            if found is not None:
                ends = found[0] + found[1]
                break
    if ends is None:
        # No frame in the file's last 64 kB: if the whole file is smaller than that, it
        # holds no audio frame at all.
        if size <= TAIL_BYTES or audio_start >= size:
            return Integrity("FLAC", True, declared, f"holds no audio frame of the "
                             f"{declared:.2f} s its STREAMINFO declares")  # fmt: skip
        return Integrity("FLAC", False, declared)
    if ends < total:
        return Integrity(
            "FLAC", True, declared,
            f"ends at sample {ends:,} of the {total:,} its STREAMINFO declares "
            f"({ends / rate:.2f} s of {declared:.2f} s)",
        )  # fmt: skip
    return Integrity("FLAC", False, declared)


# -- Ogg ---------------------------------------------------------------------------------


def _ogg_crc_table() -> list[int]:
    table = []
    for i in range(256):
        r = i << 24
        for _ in range(8):
            r = ((r << 1) ^ 0x04C11DB7) & 0xFFFFFFFF if r & 0x80000000 else (r << 1) & 0xFFFFFFFF
        table.append(r)
    return table


_OGG_CRC = _ogg_crc_table()


def _ogg_crc(page: bytes) -> int:
    crc = 0
    for byte in page[:22] + b"\0\0\0\0" + page[26:]:
        crc = ((crc << 8) & 0xFFFFFFFF) ^ _OGG_CRC[((crc >> 24) & 0xFF) ^ byte]
    return crc


def _ogg(tail: bytes, tail_start: int, size: int) -> Integrity:
    """The last whole page (capture pattern, lengths and CRC all right) must end the stream
    (its end-of-stream flag) and the file."""
    at = len(tail)
    while True:
        at = tail.rfind(b"OggS", 0, at)
        if at < 0:
            return Integrity("Ogg")  # no whole page in the last 64 kB: cannot say
        page = tail[at:]
        if len(page) >= 27 and page[4] == 0:
            n = page[26]
            length = 27 + n + sum(page[27 : 27 + n])
            if len(page) >= 27 + n and length <= len(page):
                page = page[:length]
                if struct.unpack("<I", page[22:26])[0] == _ogg_crc(page):
                    break
    eos = bool(page[5] & 0x04)
    after = tail[at + len(page) :]
    if eos and not after.startswith(b"OggS"):  # whole; maybe a tagger's ID3v1 after it
        return Integrity("Ogg")
    return Integrity(
        "Ogg", True, None,
        "ends without its end-of-stream page" if not eos else
        f"has {len(after):,} bytes of a cut page after its last whole page",
    )  # fmt: skip


# -- WAV ---------------------------------------------------------------------------------


def _wav(head: bytes, size: int) -> tuple[Integrity, int | None]:
    """What the data chunk says, and the rate the fmt chunk states."""
    at, block_align, rate = 12, None, None
    while at + 8 <= len(head):
        kind, length = head[at : at + 4], struct.unpack("<I", head[at + 4 : at + 8])[0]
        if kind == b"fmt ":
            rate = struct.unpack("<I", head[at + 12 : at + 16])[0]
            block_align = struct.unpack("<H", head[at + 20 : at + 22])[0]
        elif kind == b"data":
            if length == 0:
                return Integrity("WAV", declared_seconds=0.0), rate
            if length >= 0x7FFF0000 or not block_align or not rate:
                return Integrity("WAV"), rate  # a streaming writer's placeholder: no claim
            declared = length / block_align / rate
            held = size - at - 8
            if held < length - block_align:
                return Integrity(
                    "WAV", True, declared,
                    f"holds {max(held, 0):,} of the {length:,} bytes its data chunk declares "
                    f"({held / block_align / rate:.2f} s of {declared:.2f} s)",
                ), rate  # fmt: skip
            return Integrity("WAV", False, declared), rate
        at += 8 + length + (length & 1)
    return Integrity("WAV"), rate


def _aiff(head: bytes, size: int) -> Integrity:
    at, frames, rate = 12, None, None
    while at + 8 <= len(head):
        kind, length = head[at : at + 4], struct.unpack(">I", head[at + 4 : at + 8])[0]
        if kind == b"COMM":
            frames = struct.unpack(">I", head[at + 10 : at + 14])[0]
            exponent, mantissa = struct.unpack(">HQ", head[at + 16 : at + 26])
            rate = mantissa * 2.0 ** ((exponent & 0x7FFF) - 16383 - 63)
        elif kind == b"SSND":
            declared = frames / rate if frames and rate else None
            held = size - at - 8
            if held < length - 8:  # its offset and block-size fields: 8 bytes
                return Integrity(
                    "AIFF", True, declared,
                    f"holds {max(held, 0):,} of the {length:,} bytes its sound data chunk "
                    "declares",
                )  # fmt: skip
            return Integrity("AIFF", False, declared)
        at += 8 + length + (length & 1)
    return Integrity("AIFF")


# -- MP4 ---------------------------------------------------------------------------------


_MP4_CONTAINERS = (b"moov", b"trak", b"mdia", b"minf", b"stbl")
MAX_INDEX_BYTES = 64 << 20
"""Largest ``moov`` box read to check its sample table (hours of audio need a few MB)."""


def _mp4(path: str | Path, size: int) -> Integrity:
    """Top-level boxes whose declared sizes run past the end of the file, then chunk
    offsets in the sample tables (``stco``/``co64``) that point past it."""
    at, seen, moov = 0, set(), None
    with open(path, "rb") as f:
        while at + 8 <= size:
            f.seek(at)
            header = f.read(16)
            length, kind = struct.unpack(">I", header[:4])[0], header[4:8]
            if length == 1 and len(header) >= 16:
                length = struct.unpack(">Q", header[8:16])[0]
            elif length == 0:
                length = size - at
            if length < 8:
                return Integrity("MP4")  # not a box chain this can follow
            name = kind.decode("latin-1")
            if at + length > size:
                if kind == b"moov" or b"moov" not in seen:
                    return Integrity(
                        "MP4",
                        True,
                        None,
                        f"is cut inside its '{name}' box and lacks its index (the 'moov' box)"
                        if kind != b"moov"
                        else "is cut inside its index (the 'moov' box)",
                        decodable=False,
                    )
                return Integrity(
                    "MP4",
                    True,
                    None,
                    f"holds {size - at:,} of the {length:,} bytes its '{name}' box declares",
                )
            seen.add(kind)
            if kind == b"moov":
                moov = (at, length)
            at += length
        if moov is None or moov[1] > MAX_INDEX_BYTES:
            return Integrity("MP4")
        f.seek(moov[0])
        end = max(_sample_data_ends(f.read(moov[1])), default=0)
    if end > size:
        return Integrity(
            "MP4", True, None,
            f"holds {size:,} bytes; its sample table places audio up to byte {end:,}",
        )  # fmt: skip
    return Integrity("MP4")


def _children(box: bytes) -> dict[bytes, list[bytes]]:
    """The boxes directly inside ``box`` (its 8-byte header skipped), by type."""
    out: dict[bytes, list[bytes]] = {}
    at = 8
    while at + 8 <= len(box):
        length = struct.unpack(">I", box[at : at + 4])[0]
        if length < 8 or at + length > len(box):
            break
        out.setdefault(box[at + 4 : at + 8], []).append(box[at : at + length])
        at += length
    return out


def _sample_data_ends(box: bytes) -> list[int]:
    """For every sample table inside ``box`` (a ``moov``), the byte just past its last
    sample: chunk offsets (``stco``/``co64``), samples per chunk (``stsc``), sample sizes
    (``stsz``)."""
    kids = _children(box)
    ends = []
    for kind in _MP4_CONTAINERS[1:]:
        for child in kids.get(kind, []):
            ends += _sample_data_ends(child)
    if b"stsz" not in kids or not (b"stco" in kids or b"co64" in kids) or b"stsc" not in kids:
        return ends
    stco = kids.get(b"stco", kids.get(b"co64"))[0]
    width = 4 if stco[4:8] == b"stco" else 8
    n = struct.unpack(">I", stco[12:16])[0]
    offsets = struct.unpack(f">{n}{'I' if width == 4 else 'Q'}", stco[16 : 16 + n * width])
    stsc = kids[b"stsc"][0]
    runs = [
        struct.unpack(">III", stsc[16 + 12 * i : 28 + 12 * i])[:2]
        for i in range(struct.unpack(">I", stsc[12:16])[0])
    ]
    stsz = kids[b"stsz"][0]
    uniform, count = struct.unpack(">II", stsz[12:20])
    sizes = None if uniform else struct.unpack(f">{count}I", stsz[20 : 20 + 4 * count])
    sample, end = 0, 0
    for k, offset in enumerate(offsets, start=1):
        per_chunk = next((spc for first, spc in reversed(runs) if first <= k), 0)
        per_chunk = max(0, min(per_chunk, count - sample))
        held = uniform * per_chunk if sizes is None else sum(sizes[sample : sample + per_chunk])
        end = max(end, offset + held)
        sample += per_chunk
    return [*ends, end]


# -- WavPack, APE, DSD, ASF ----------------------------------------------------------------

WAVPACK_TAIL_BYTES = 2 << 20
"""How much of a WavPack file's end is searched for its last block (a block is at most 1 MB)."""

_WAVPACK_RATES = (6000, 8000, 9600, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000,
                  64000, 88200, 96000, 192000)  # fmt: skip


def _wavpack_block(b: bytes) -> tuple[int, int, int, int, int] | None:
    """``(block size, total samples or -1, first sample, samples, rate or 0)`` of the
    WavPack block whose 32-byte header is ``b``."""
    if len(b) < 32 or not b.startswith(b"wvpk"):
        return None
    size, version, index_u8, total_u8, total, index, samples, flags = struct.unpack(
        "<IHBBIIII", b[4:28]
    )
    if not 0x402 <= version <= 0x410 or size < 24:
        return None
    total = -1 if total == 0xFFFFFFFF else total + (total_u8 << 32) - total_u8
    rate_index = (flags >> 23) & 0xF
    rate = _WAVPACK_RATES[rate_index] if rate_index < len(_WAVPACK_RATES) else 0
    return size + 8, total, index + (index_u8 << 32), samples, rate


def _wavpack(f, head: bytes, size: int) -> Integrity:
    """The first block's header counts every sample; the last block present must end there
    (a block cut short decodes nothing)."""
    first = _wavpack_block(head[:32])
    if first is None or first[1] <= 0:
        return Integrity("WavPack")  # unknown length: a stream written to a pipe
    total, rate = first[1], first[4]
    declared = total / rate if rate else None
    tail_start = max(0, size - WAVPACK_TAIL_BYTES)
    f.seek(tail_start)
    tail = f.read()
    at = len(tail)
    while True:
        at = tail.rfind(b"wvpk", 0, at)
        if at < 0:
            return Integrity("WavPack", False, declared)
        block = _wavpack_block(tail[at : at + 32])
        if block is not None:
            break
    length, _total, index, samples, _rate = block
    ends = index + samples if tail_start + at + length <= size else index
    if ends >= total:
        return Integrity("WavPack", False, declared)
    seconds = f" ({ends / rate:.2f} s of {declared:.2f} s)" if rate else ""
    return Integrity(
        "WavPack", True, declared,
        f"ends at sample {ends:,} of the {total:,} its header declares{seconds}",
    )  # fmt: skip


def _against_claim(
    kind: str, declared: float | None, held: int, claimed: int, claimant: str
) -> Integrity:
    """``kind``'s integrity when a header claims ``claimed`` bytes (0: no claim) of which
    the file holds ``held``: truncated, in words, where it holds fewer."""
    if claimed and held < claimed:
        return Integrity(
            kind, True, declared, f"holds {max(0, held):,} of the {claimed:,} bytes {claimant}"
        )
    return Integrity(kind, False, declared)


def _ape(head: bytes, size: int) -> Integrity:
    """Monkey's Audio 3.98 and later: the descriptor gives every part's length in bytes."""
    version = struct.unpack("<H", head[4:6])[0]
    if version < 3980:
        return Integrity("APE")
    descriptor, header, seektable, header_data, frames, frames_high, ending = struct.unpack(
        "<7I", head[8:36]
    )
    at = descriptor
    blocks_per_frame, final_blocks, total_frames = struct.unpack("<3I", head[at + 4 : at + 16])
    rate = struct.unpack("<I", head[at + 20 : at + 24])[0]
    samples = max(0, total_frames - 1) * blocks_per_frame + final_blocks
    declared = samples / rate if rate and total_frames else None
    claimed = descriptor + header + seektable + header_data + frames + (frames_high << 32)
    return _against_claim("APE", declared, size, claimed, "its descriptor declares")


def _dsf(head: bytes, size: int) -> Integrity:
    """DSF: the ``fmt`` chunk counts the samples, the ``data`` chunk its bytes."""
    if head[28:32] != b"fmt ":
        return Integrity("DSF")
    fmt_size = struct.unpack("<Q", head[32:40])[0]
    rate = struct.unpack("<I", head[56:60])[0]
    samples = struct.unpack("<Q", head[64:72])[0]
    declared = samples / rate if rate else None
    at = 28 + fmt_size
    if head[at : at + 4] != b"data":
        return Integrity("DSF", False, declared)
    claimed = struct.unpack("<Q", head[at + 4 : at + 12])[0]
    return _against_claim("DSF", declared, size - at, claimed, "its data chunk declares")


def _dff(head: bytes, size: int) -> Integrity:
    """DSDIFF: the FRM8 chunk's size covers the file; the sound data chunk's, the audio."""
    claimed = 12 + struct.unpack(">Q", head[4:12])[0]
    rate = channels = data = None
    at = 16
    while at + 12 <= len(head):
        kind, length = head[at : at + 4], struct.unpack(">Q", head[at + 4 : at + 12])[0]
        if kind == b"PROP" and head[at + 12 : at + 16] == b"SND ":
            sub, end = at + 16, min(at + 12 + length, len(head))
            while sub + 12 <= end:
                name, n = head[sub : sub + 4], struct.unpack(">Q", head[sub + 4 : sub + 12])[0]
                if name == b"FS  ":
                    rate = struct.unpack(">I", head[sub + 12 : sub + 16])[0]
                elif name == b"CHNL":
                    channels = struct.unpack(">H", head[sub + 12 : sub + 14])[0]
                sub += 12 + n + (n & 1)
        elif kind in (b"DSD ", b"DST "):
            data = length
            break
        at += 12 + length + (length & 1)
    declared = data * 8 / channels / rate if data and rate and channels else None
    return _against_claim("DFF", declared, size, claimed, "its FRM8 chunk declares")


_ASF_HEADER = bytes.fromhex("3026b2758e66cf11a6d900aa0062ce6c")
_ASF_FILE_PROPERTIES = bytes.fromhex("a1dcab8c47a9cf118ee400c00c205365")


def _asf(head: bytes, size: int) -> Integrity:
    """ASF (WMA): the file properties object gives the file's size and its play time
    (except in a broadcast stream, whose flag says they are not known)."""
    at = head.find(_ASF_FILE_PROPERTIES, 30)
    if at < 0 or at + 92 > len(head):
        return Integrity("ASF")
    claimed = struct.unpack("<Q", head[at + 40 : at + 48])[0]
    play, _send, preroll = struct.unpack("<3Q", head[at + 64 : at + 88])
    flags = struct.unpack("<I", head[at + 88 : at + 92])[0]
    if flags & 1:  # broadcast: sizes and times are not filled in
        return Integrity("ASF")
    declared = max(0.0, play / 1e7 - preroll / 1000) or None
    return _against_claim("ASF", declared, size, claimed, "its file properties declare")
