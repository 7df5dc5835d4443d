"""What the API answers, as the OpenAPI document (``/docs``) shows it: the response models,
the multipart request body, the error statuses in words and an example prediction."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from moodscope.service.uploads import FORM_FIELD

MULTIPART_BODY = {
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": [FORM_FIELD],
                "properties": {FORM_FIELD: {"type": "string", "format": "binary"}},
            }
        }
    },
}


ERROR_TEXT = {
    400: "No `file` part in the request (whatever else was sent), or a malformed body.",
    401: "Missing or wrong bearer token.",
    408: "The upload stalled (nothing for `--upload-timeout` s) or trickled (under "
    "`--min-upload-rate` bytes/s over a window). (A request head that does not arrive within "
    "`--header-timeout` gets a 408 from the server itself, and the connection closes.)",
    413: "The upload is over the size limit (checked while it streams).",
    415: "Not an audio file (judged by its content, not its name).",
    421: "The Host header names another server (`--allowed-host`).",
    422: "Undecodable audio, too short for one window, too long, or NaN samples.",
    500: "A worker process died while reading the file, or a bug.",
    503: "The queue or the upload slots are full; retry after `Retry-After` seconds.",
    504: "The prediction ran longer than `--request-timeout`; its worker was stopped.",
    507: "The server's disk for uploads is full (or a quota or file-size limit); retry later.",
}


EXAMPLE = {
    "path": "song.mp3",
    "top_emotion": "calmness",
    "confidence": 0.41,
    "emotions": {
        "amazement": 0.04, "solemnity": 0.13, "tenderness": 0.14, "nostalgia": 0.16,
        "calmness": 0.22, "power": 0.07, "joyful_activation": 0.08, "tension": 0.08,
        "sadness": 0.08,
    },
    "top_factor": "sublimity",
    "factors": {"sublimity": 0.69, "vitality": 0.15, "unease": 0.16},
    "duration": 60.03,
    "silent": False,
    "truncated": False,
    "model": "default@fbe3183cdc45",
    "precision": "bfloat16",
    "timeline": [{"start": 0.0, "end": 3.0, "emotions": {"calmness": 0.21, "...": 0.0}}],
}  # fmt: skip


class ErrorOut(BaseModel):
    """Every error: one line, worded like the CLI's."""

    detail: str = Field(examples=["notes.mp3: is not an audio file (it holds text)"])


class EmotionsOut(BaseModel):
    """The nine GEMS shares, in GEMS order; they sum to 1."""

    model_config = ConfigDict(extra="forbid")

    amazement: float
    solemnity: float
    tenderness: float
    nostalgia: float
    calmness: float
    power: float
    joyful_activation: float
    tension: float
    sadness: float


class SegmentOut(BaseModel):
    start: float = Field(description="Seconds.")
    end: float = Field(description="Seconds.")
    emotions: EmotionsOut


class PredictionOut(BaseModel):
    """A file's prediction: what `moodscope predict --format json` writes for one file. The
    service sends `Prediction.to_dict()` as it is, so a field a newer moodscope adds arrives
    without a change here (`additionalProperties`)."""

    model_config = ConfigDict(extra="allow")

    path: str = Field(description="The uploaded file's name.")
    top_emotion: str | None = Field(description="The top emotion (null when not music).")
    emotions: EmotionsOut | dict[str, float] = Field(
        description="The nine shares (empty when the file is not music)."
    )
    duration: float | None = Field(description="Seconds of audio decoded.")
    silent: bool = Field(description="The track is (nearly) silent: the shares mean little.")
    model: str = Field(description="The model's name@version.")
    precision: str | None = Field(
        None, description="The network's number format: float32, or bfloat16 (a CPU's fast path)."
    )
    truncated: bool = Field(
        False, description="The container declares more audio than decodes (a cut file)."
    )
    confidence: float | None = Field(
        None, description="The chance that top_emotion is what most listeners report."
    )
    top_factor: str | None = Field(None, description="The top GEMS factor.")
    factors: dict[str, float] | None = Field(
        None, description="The three GEMS factors' shares (sublimity, vitality, unease)."
    )
    music: bool = Field(
        True, description="False: silence, a tone, noise, clicks or speech: no mood."
    )
    not_music: str | None = Field(
        None, description="Why it is not music, in words (e.g. digital silence, speech)."
    )
    arousal: float | None = Field(None, description="Calm (-1) to energetic (1).")
    valence: float | None = Field(None, description="Negative (-1) to positive (1).")
    timeline: list[SegmentOut] | None = Field(
        None, description="One entry per window, with `?timeline=true`."
    )


class HealthOut(BaseModel):
    """Counts that add up: `running` <= `workers`, `running + queued` <= `capacity`."""

    status: str
    ready: bool
    model_loaded: bool
    model: str
    workers: int
    running: int = Field(description="Workers running a prediction now.")
    queued: int = Field(description="Received uploads waiting for a worker.")
    receiving: int = Field(description="Uploads being received (they hold no worker).")
    capacity: int = Field(description="`workers` + `--queue`.")
    max_upload_mb: float
    max_duration: float


class ReadyOut(BaseModel):
    ready: bool
    detail: str


for _model in (ErrorOut, EmotionsOut, SegmentOut, PredictionOut, HealthOut, ReadyOut):
    _model.model_rebuild()  # resolved here: ``from __future__ import annotations`` defers them


def responses(*codes: int, ok: type[BaseModel] | None = None) -> dict:
    out: dict = {}
    if ok is not None:
        out[200] = {"model": ok}
        if ok is PredictionOut:
            out[200]["content"] = {"application/json": {"example": EXAMPLE}}
    out.update({c: {"description": ERROR_TEXT[c], "model": ErrorOut} for c in codes})
    return out


__all__ = [
    "ERROR_TEXT",
    "MULTIPART_BODY",
    "EmotionsOut",
    "ErrorOut",
    "HealthOut",
    "PredictionOut",
    "ReadyOut",
    "SegmentOut",
    "responses",
]
