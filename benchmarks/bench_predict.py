"""Prediction on the files people have (60-s 44.1 kHz stereo MP3s): seconds of audio per
second on one core beside the decode floor, for the fast path (the default where the CPU has
one), `exact=True` and the code before the batched path (a pinned commit), all in the same
bench; where the time goes, stage by stage (with the GEMMs alone: the bound a fused GEMM +
max kernel would give) and by function (cProfile); the cold start of `moodscope predict
one.mp3` beside `python -c "import torch"`; peak memory on an hour-long file."""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

from .common import child_peak_rss_mb, load_note, moodscope_cli, stereo_mp3s

NAME = "Prediction (`moodscope predict`, shipped default model)"

OLD_COMMIT = "1cebb14"
"""The last commit before the batched per-track path (issue 14): per-window log-mel with
librosa's filterbank rebuilt each time, features in a pool and the model in the parent."""

REPO = Path(__file__).resolve().parent.parent

# Every child script starts so: one core for torch and BLAS (the allocator comes through the
# environment, see _run_child).
_ONE_CORE = r"""
import json, statistics, sys, time
import numpy as np, torch
torch.set_num_threads(1)
from threadpoolctl import threadpool_limits
threadpool_limits(1)
"""

# Run in a fresh process, on one core, with whichever moodscope PYTHONPATH points at.
_CHILD = (
    _ONE_CORE
    + r"""
mode, files = sys.argv[1], sys.argv[2:]
if mode == "decode":
    from moodscope.audio.decode import stream_audio
    for block in stream_audio(files[0], sr=16000):
        pass
    start, cpu = time.perf_counter(), time.process_time()
    for f in files:
        for block in stream_audio(f, sr=16000):  # decode + downmix + resample, nothing else
            pass
    print(json.dumps({"wall": time.perf_counter() - start, "cpu": time.process_time() - cpu}))
else:
    try:
        from moodscope.inference.predictor import load_model, predict
    except ImportError:  # the pinned commit's layout, before the subpackages
        from moodscope.predict import load_model, predict
    kw = {"exact": True} if mode == "exact" else {}
    model = load_model()
    predict(files[:1], model, use_cache=False, **kw)  # warm: weights loaded, kernels compiled
    start, cpu = time.perf_counter(), time.process_time()
    results = predict(files, model, use_cache=False, **kw)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    print(json.dumps({"wall": wall, "cpu": cpu, "emotions": [r.emotions for r in results],
                      "errors": [r.error for r in results]}))
"""
)


# Where predict's time goes, after the warm-up: cProfile's table by own time, one core.
_PROFILE = (
    _ONE_CORE
    + r"""
import cProfile, pstats
from moodscope.inference.predictor import load_model, predict
files = sys.argv[1:]
model = load_model()
predict(files[:1], model, use_cache=False)
profile = cProfile.Profile()
start = time.perf_counter()
profile.runcall(predict, files, model, use_cache=False)
wall = time.perf_counter() - start
stats = pstats.Stats(profile).stats
rows = []
for (file, line, name), (cc, nc, tt, ct, callers) in stats.items():
    where = name if file == "~" else "/".join(file.split("/")[-2:]) + ":" + name
    rows.append((tt, nc, where))
rows.sort(reverse=True)
print(json.dumps({"wall": wall, "rows": rows[:14], "total": sum(r[0] for r in rows)}))
"""
)


# Where a fast-path prediction's time goes, stage by stage, in one process on one core: the
# decode floor, the log-mel, the network (its front-end GEMMs alone, on inputs built once, and
# the functions around them), and what is left (classifier, bookkeeping). The GEMMs-alone
# figure is what the front end would cost with a kernel that fused the max over frequency and
# read its input in place: the bound the issue asks for ("the ratio with it"). int8: the same
# GEMM shapes through torch._int_mm (VNNI / AMX-int8 where oneDNN takes them).
_STAGES = (
    _ONE_CORE
    + r"""
import torch.nn.functional as F
from moodscope.audio.decode import stream_audio
from moodscope.features.segments import equal_segments
from moodscope.features.musicnn_sets import _segment_mels
from moodscope.inference.predictor import load_model, predict
from moodscope.musicnn import amx, fast
from moodscope.musicnn.model import load_musicnn, patches
files = sys.argv[1:]
model = load_model()
n_seg = model.feature_config.segments
precision = fast.fast_precision()
net = load_musicnn("MSD_musicnn")
def decode(f):
    return np.concatenate(list(stream_audio(f, sr=16000)))
def mel(y):
    mels = _segment_mels(y, equal_segments(len(y), 16000, n_seg))
    return torch.from_numpy(np.concatenate([patches(m) for m in mels]))
predict(files[:1], model, use_cache=False)
ys = [decode(f) for f in files]
xs = [mel(y) for y in ys]
with torch.inference_mode():
    net.features(xs[0], precision=precision)
def timed(fn, items):
    start = time.perf_counter()
    for item in items:
        fn(item)
    return time.perf_counter() - start
stages = ("predict", "decode", "mel", "network", "front", "gemm", "int8", "mel_f32", "mel_bf16")
rounds = {k: [] for k in stages}
with torch.inference_mode():
    bf16 = precision == "bfloat16"
    if bf16:
        layers = net._prepared_bf16[1]
        def front(x):
            xb = (x * 1.0).to(torch.bfloat16)
            for bank in layers.timbral:
                amx.timbral_max(F.pad(xb, (0, 0, 3, 3)), bank)
            amx.temporal_max(xb, layers.temporal)
        # the same GEMMs on inputs built once, outputs written to one buffer, nothing after
        shapes = []
        t_frames, n_freq = xs[0].shape[1], xs[0].shape[2]
        for bank in layers.timbral:
            rows = t_frames * -(-bank.n_valid // bank.block)
            shapes.append((rows, bank.weight))
        n_out = -(-t_frames // layers.temporal.block)
        for (lo, hi), w in zip(layers.temporal.columns, layers.temporal.weights):
            shapes.append((n_out * n_freq, w))
        ops = [(torch.randn(m, w.shape[0]).bfloat16(), w,
                torch.empty(m, w.shape[1], dtype=torch.bfloat16)) for m, w in shapes]
        iops = [(torch.randint(-9, 9, (m, w.shape[0]), dtype=torch.int8),
                 torch.randint(-9, 9, tuple(w.shape), dtype=torch.int8)) for m, w in shapes]
        def gemms(x):
            for _ in range(len(x)):
                for a, w, out in ops:
                    torch.mm(a, w, out=out)
        def int8(x):
            for _ in range(len(x)):
                for a, w in iops:
                    torch._int_mm(a, w)
        # the log-mel in bfloat16 too: the STFT as one GEMM against the windowed DFT matrix
        import math
        from moodscope.musicnn.inputs import _stft_constants, log_mel_batch
        window, basis = (torch.from_numpy(a) for a in _stft_constants())
        k, t = torch.arange(257.0, dtype=torch.float64), torch.arange(512.0, dtype=torch.float64)
        angle = 2 * math.pi * torch.outer(t, k) / 512
        dft = (torch.cat([torch.cos(angle), -torch.sin(angle)], 1) * window.double()[:, None])
        dft, basis16 = dft.bfloat16(), basis.bfloat16()
        def clips(y):  # the segments cut to one length, as one batch
            segs = equal_segments(len(y), 16000, n_seg)
            n = min(s.end_sample - s.start_sample for s in segs)
            return np.stack([s.slice(y)[:n] for s in segs])
        def mel_bf16(y):
            x = torch.from_numpy(clips(y))
            frames = F.pad(x[:, None], (256, 256), mode="reflect")[:, 0].unfold(1, 512, 256)
            spec = (frames.bfloat16() @ dft).float()
            power = spec[..., :257].square() + spec[..., 257:].square()
            mel = (power.bfloat16() @ basis16).float()
            return mel.mul_(10000.0).add_(1.0).log10_()
        def mel_f32(y):  # the same clips through the shipped float32 path
            return log_mel_batch(clips(y))
        mel_error = max(float((mel_bf16(y) - torch.from_numpy(mel_f32(y))).abs().max()) for y in ys)
    for _ in range(3):
        rounds["predict"].append(timed(lambda fs: predict(fs, model, use_cache=False), [files]))
        rounds["decode"].append(timed(decode, files))
        rounds["mel"].append(timed(mel, ys))
        rounds["network"].append(timed(lambda x: net.features(x, precision=precision), xs))
        if bf16:
            rounds["front"].append(timed(front, xs))
            rounds["gemm"].append(timed(gemms, xs))
            rounds["int8"].append(timed(int8, xs))
            rounds["mel_f32"].append(timed(mel_f32, ys))
            rounds["mel_bf16"].append(timed(mel_bf16, ys))
out = {k: statistics.median(v) / len(files) for k, v in rounds.items() if v}
out["precision"] = precision
out["patches"] = len(xs[0])
if bf16:
    out["mel_error"] = mel_error
print(json.dumps(out))
"""
)


def _run_child(script: str, args: list, src: Path = REPO / "src") -> dict:
    """``script`` in a fresh process with ``src``'s moodscope: the JSON of its last line."""
    env = {**os.environ, "PYTHONPATH": str(src), "OMP_NUM_THREADS": "1"}
    # glibc's allocator as the CLI and its workers set it (backends.reuse_freed_memory), for
    # every child alike, the pinned commit's too (which predates that function)
    env.update(MALLOC_MMAP_THRESHOLD_=str(32 << 20), MALLOC_TRIM_THRESHOLD_=str(128 << 20))
    out = subprocess.run(
        [sys.executable, "-c", script, *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def _stages(files: list[Path]) -> list[str]:
    st = _run_child(_STAGES, files)
    ms = {k: 1000 * v for k, v in st.items() if isinstance(v, float) and k != "mel_error"}
    rest = ms["predict"] - ms["decode"] - ms["mel"] - ms["network"]
    lines = [
        f"Stage by stage, in one process on one core, the same {len(files)} files, each stage "
        f"timed on its own (median of 3 rounds; {load_note()}), ms per 60-s track "
        f"({st['patches']} patches of 3 s through the network, {st['precision']}):",
        "",
        "| stage | ms per track | share of predict |",
        "|---|---|---|",
        f"| `predict(files, use_cache=False)`, the whole of it | {ms['predict']:.1f} | 100 % |",
        f"| decode + downmix + resample to 16 kHz (the floor) | {ms['decode']:.1f} | "
        f"{100 * ms['decode'] / ms['predict']:.0f} % |",
        f"| log-mel of the segments, cut into patches (float32) | {ms['mel']:.1f} | "
        f"{100 * ms['mel'] / ms['predict']:.0f} % |",
        f"| the network (`Musicnn.features`) | {ms['network']:.1f} | "
        f"{100 * ms['network'] / ms['predict']:.0f} % |",
    ]
    if "gemm" in ms:
        lines += [
            f"| of which the front end's GEMMs + max over frequency + im2col "
            f"(`timbral_max`, `temporal_max`) | {ms['front']:.1f} | "
            f"{100 * ms['front'] / ms['predict']:.0f} % |",
            f"| of which the same GEMMs alone (inputs built once, nothing read back) | "
            f"{ms['gemm']:.1f} | {100 * ms['gemm'] / ms['predict']:.0f} % |",
        ]
    lines += [
        f"| the rest: what the stages cost more one after another on each file than each "
        f"stage over all files (caches), the segments, classifier, result | {rest:.1f} | "
        f"{100 * rest / ms['predict']:.0f} % |",
        "",
    ]
    if "gemm" in ms:
        fused = ms["predict"] - (ms["front"] - ms["gemm"])
        lines += [
            f"Predict / decode in this process: **{ms['predict'] / ms['decode']:.2f}x**. The "
            "kernel that would close most of the gap does not exist in the software this runs "
            "on: a bfloat16 AMX GEMM whose epilogue takes the max over groups of output rows "
            "(here: over the 96 mel bands) and whose A operand is read in place from the "
            "Toeplitz windows. oneDNN 3.x matmul post-ops are element-wise, binary, sum and "
            "PReLU only, so the max must read every GEMM output back from memory after the "
            "GEMM wrote it, and PyTorch's strided matmul needs the im2col copy. With such a "
            "kernel the front end costs at least its GEMMs: predict / decode would be at best "
            f"**{fused / ms['decode']:.2f}x** (this run's figures, the max and the copies "
            f"free). int8: the same GEMM shapes through `torch._int_mm` took "
            f"{ms['int8']:.1f} ms per track against {ms['gemm']:.1f} ms in bfloat16 "
            f"({'faster' if ms['int8'] < ms['gemm'] else 'slower'}). A bfloat16 log-mel (the "
            "STFT as one GEMM against the windowed DFT matrix, then the filterbank): "
            f"{ms['mel_bf16']:.1f} ms per track against {ms['mel_f32']:.1f} ms for the "
            "float32 STFT on the same clips "
            f"({'faster' if ms['mel_bf16'] < ms['mel_f32'] else 'slower'}), its log-mel "
            f"values up to {st['mel_error']:.3f} away from float32's; predict keeps the "
            "float32 log-mel.",
            "",
        ]
    return lines


def _profile(files: list[Path]) -> list[str]:
    prof = _run_child(_PROFILE, files)
    lines = [
        f"Where the time goes: `cProfile` of `predict(files, use_cache=False)` on the same "
        f"{len(files)} files, one core, warm ({prof['wall']:.2f} s under the profiler; "
        f"{load_note()}). Own time per function, largest first:",
        "",
        "| function | calls | own s | share |",
        "|---|---|---|---|",
    ]
    for tt, calls, where in prof["rows"]:
        lines.append(f"| `{where}` | {calls} | {tt:.3f} | {100 * tt / prof['total']:.1f} % |")
    return lines + [""]


def _child(src: Path, mode: str, files: list[Path]) -> dict:
    return _run_child(_CHILD, [mode, *files], src)


def _old_source(tmp: Path) -> Path | None:
    """The pinned commit's ``src/`` unpacked under ``tmp``, or None without git history."""
    try:
        archive = subprocess.run(
            ["git", "-C", str(REPO), "archive", OLD_COMMIT, "src"],
            capture_output=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    tmp.mkdir(parents=True, exist_ok=True)
    subprocess.run(["tar", "-x", "-C", str(tmp)], input=archive, check=True)
    return tmp / "src"


def _hour_file(path: Path, minutes: int) -> Path:
    rng = np.random.default_rng(0)
    sr = 44100
    t = np.arange(sr * 60) / sr
    with sf.SoundFile(path, "w", sr, 2, format="FLAC") as f:
        for m in range(minutes):
            tone = 0.3 * np.sin(2 * np.pi * (220 + 20 * (m % 7)) * t)
            block = (tone + 0.02 * rng.standard_normal(len(t))).astype(np.float32)
            f.write(np.stack([block, block * 0.8], axis=1))
    return path


def _throughput(tmp: Path, files: list[Path], what: str, repeats: int) -> list[str]:
    audio = sum(sf.info(str(f)).duration for f in files)
    new_src = REPO / "src"
    old_src = _old_source(tmp / "old")
    walls: dict[str, list[float]] = {"decode": [], "new": [], "exact": [], "old": []}
    cpus: dict[str, list[float]] = {"decode": [], "new": [], "exact": []}
    loads = []
    new = old = None
    for _ in range(repeats):  # interleaved, so a busy moment hits every column alike
        loads.append(os.getloadavg()[0])
        for key, mode in (("decode", "decode"), ("new", "predict"), ("exact", "exact")):
            out = _child(new_src, mode, files)
            walls[key].append(out["wall"])
            cpus[key].append(out["cpu"])
            new = out if key == "new" else new
        if old_src is not None:
            old = _child(old_src, "predict", files)
            walls["old"].append(old["wall"])
    decode, fast = statistics.median(walls["decode"]), statistics.median(walls["new"])
    exact = statistics.median(walls["exact"])
    cpu = {k: min(v) for k, v in cpus.items()}
    per_run = ", ".join(f"{p / d:.2f}x" for p, d in zip(walls["new"], walls["decode"], strict=True))
    from moodscope.musicnn.fast import fast_precision

    lines = [
        f"Throughput on one core (`torch.set_num_threads(1)`, `threadpool_limits(1)`), "
        f"{what} ({audio / 60:.0f} min of audio), no feature cache, model loaded and warm, "
        f"median of {repeats} interleaved runs, each in a fresh process; {load_note()} "
        f"(1-min load at the start of each round: {', '.join(f'{x:.1f}' for x in loads)}):",
        "",
        "| path | wall s | seconds of audio per second | per 60-s track |",
        "|---|---|---|---|",
        f"| decode floor: decode + downmix + resample to 16 kHz, nothing else | {decode:.2f} | "
        f"{audio / decode:.0f} | {decode / len(files):.3f} s |",
        f"| `predict(files, workers=1, use_cache=False)` (this tree, {fast_precision()}) "
        f"| {fast:.2f} | {audio / fast:.0f} | {fast / len(files):.3f} s |",
        f"| the same with `exact=True` (float32) | {exact:.2f} | {audio / exact:.0f} | "
        f"{exact / len(files):.3f} s |",
        "",
        f"**predict / decode floor: {fast / decode:.2f}x** (target <= 1.5x; per round: "
        f"{per_run}); exact / decode floor: {exact / decode:.2f}x; exact / fast: "
        f"{exact / fast:.2f}x. In CPU seconds of each process (less sensitive to the "
        f"machine's load than wall clocks, the best of the rounds): predict / decode "
        f"**{cpu['new'] / cpu['decode']:.2f}x**, exact / decode "
        f"{cpu['exact'] / cpu['decode']:.2f}x, exact / fast {cpu['exact'] / cpu['new']:.2f}x.",
    ]
    if fast / decode > 1.5:
        kernels = (
            "the bench machine has every CPU kernel the issue names (AMX bfloat16 ran, next "
            "section)"
            if fast_precision() == "bfloat16"
            else "this CPU has no AMX tiles, so the network runs float32 (onnxruntime), the "
            "slowest of the paths"
        )
        lines += [
            "",
            f"The 1.5x target is not met here; {kernels}. Where the rest of the time goes: "
            "the stage table below.",
        ]
    if old is not None:
        slow = statistics.median(walls["old"])
        same = max(abs(a[k] - b[k]) for a, b in zip(new["emotions"], old["emotions"]) for k in a)
        lines += [
            "",
            f"At commit `{OLD_COMMIT}` (before the batched path), in the same rounds: "
            f"{slow:.2f} s, {audio / slow:.0f} s of audio per second; new / old throughput "
            f"**{slow / fast:.2f}x**. Largest difference between the two paths' shares: "
            f"{same:.1e} (the fast path's bfloat16 rounding, or float32 rounding where it "
            f"runs float32).",
        ]
    else:
        lines += ["", f"(No git history: the commit `{OLD_COMMIT}` was not measured.)"]
    return lines + [""]


def _cold_start(tmp: Path, one: Path, repeats: int) -> list[str]:
    colds, torch_only = [], []
    for i in range(repeats):  # each predict gets a new, empty feature cache
        env = {**os.environ, "MOODSCOPE_CACHE_DIR": str(tmp / f"cache{i}")}
        colds.append(
            child_peak_rss_mb([moodscope_cli(), "predict", str(one), "--workers", "1"], env)[0]
        )
        torch_only.append(child_peak_rss_mb([sys.executable, "-c", "import torch"])[0])
        shutil.rmtree(tmp / f"cache{i}", ignore_errors=True)
    cold, floor = statistics.median(colds), statistics.median(torch_only)
    return [
        f"Cold start of `moodscope predict one.mp3` (a 60-s 44.1 kHz stereo MP3; a new "
        f'process and an empty feature cache every run), beside `python -c "import torch"`, '
        f"interleaved, median of {repeats}:",
        "",
        "| command | wall s |",
        "|---|---|",
        f"| `moodscope predict one.mp3` | {cold:.2f} |",
        f'| `python -c "import torch"` | {floor:.2f} |',
        "",
        f"**Cold start / import torch: {cold / floor:.2f}x** (target <= 1.5x). The inference "
        "path imports numpy, soundfile, soxr, onnxruntime, typer and rich (torch only where "
        "the bfloat16 fast path runs: a CPU with AMX and the research extra): no "
        "scikit-learn, skops, librosa, scipy, pandas or matplotlib (`tests/test_predict.py` "
        "checks it).",
        "",
    ]


def _memory(tmp: Path, minutes: int) -> list[str]:
    long = _hour_file(tmp / "long.flac", minutes)
    env = {**os.environ, "MOODSCOPE_CACHE_DIR": str(tmp / "cache-long")}
    wall, rss = child_peak_rss_mb(
        [moodscope_cli(), "predict", str(long), "--workers", "1", "--format", "json"], env
    )
    ref_code = (
        "import librosa, sys; y, sr = librosa.load(sys.argv[1], sr=22050, mono=True); print(len(y))"
    )
    ref_wall, ref_rss = child_peak_rss_mb([sys.executable, "-c", ref_code, str(long)])
    return [
        f"A {minutes}-minute 44.1 kHz stereo FLAC:",
        "",
        "| run | wall s | peak RSS |",
        "|---|---|---|",
        f"| `moodscope predict` (block-wise decoding) | {wall:.1f} | {rss:.0f} MB "
        "(target < 1024 MB) |",
        f"| reference: `librosa.load` of the whole file, nothing else | {ref_wall:.1f} | "
        f"{ref_rss:.0f} MB |",
        "",
        f"Peak memory ratio, predict / whole-file load: {rss / ref_rss:.2f}.",
        "",
    ]


def run(quick: bool = False) -> str:
    lines = [f"## {NAME}", ""]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        files, what = stereo_mp3s(tmp / "mp3", 6 if quick else 20)
        lines += _throughput(tmp, files, what, 1 if quick else 3)
        lines += _stages(files)
        lines += _profile(files)
        lines += _cold_start(tmp, files[0], 3 if quick else 7)
        lines += _memory(tmp, 10 if quick else 60)
    return "\n".join(lines)


if __name__ == "__main__":
    print(run(quick="--quick" in sys.argv))
