"""The project's exception family.

Every error a user can cause is a :class:`FakeVoiceError` subclass whose ``str()`` is a sentence
meant for a person. Pages show it with ``st.error``, the API returns it as a 4xx, the CLI prints it
and exits with code 2. Anything that is not a ``FakeVoiceError`` is a bug.
"""

from __future__ import annotations

from collections.abc import Iterator


def error_chain(error: BaseException) -> Iterator[BaseException]:
    """``error``, then the error it was raised from or while handling, and so on (each once):
    libraries wrap the error that tells what happened (fastai in "Exception occured in ...")."""
    seen: set[int] = set()
    link: BaseException | None = error
    while link is not None and id(link) not in seen:
        seen.add(id(link))
        yield link
        link = link.__cause__ or link.__context__


class FakeVoiceError(Exception):
    """Base class: the message is shown to the user as it is."""

    code = "error"


# --- audio -------------------------------------------------------------------------------------


class AudioError(FakeVoiceError):
    """The audio given could not be used."""

    code = "bad_audio"


class EmptyAudioError(AudioError):
    code = "empty_audio"


class NotAudioError(AudioError):
    code = "not_audio"


class TruncatedAudioError(AudioError):
    code = "truncated_audio"


class UnsupportedCodecError(AudioError):
    code = "unsupported_codec"


class InvalidSamplesError(AudioError):
    """NaN or infinite sample values."""

    code = "invalid_samples"


class SilentAudioError(AudioError):
    code = "silent_audio"


class AudioTooShortError(AudioError):
    code = "audio_too_short"


class AudioTooLongError(AudioError):
    code = "audio_too_long"


class FileTooLargeError(FakeVoiceError):
    code = "too_large"


# --- specs, datasets ---------------------------------------------------------------------------


class InvalidSpecError(FakeVoiceError):
    """A spec (features, training, dataset build) has a value outside what is allowed."""

    code = "invalid_spec"


class DatasetError(FakeVoiceError):
    code = "dataset_error"


class GeneratorUnavailableError(DatasetError):
    """A spoof generator cannot run on this machine (its package is not installed)."""

    code = "generator_unavailable"


# --- store, access -----------------------------------------------------------------------------


class NotFoundError(FakeVoiceError):
    code = "not_found"


class PermissionDeniedError(FakeVoiceError):
    code = "forbidden"


class ConflictError(FakeVoiceError):
    code = "conflict"


class LimitExceededError(FakeVoiceError):
    code = "limit_exceeded"


class ModelFileError(FakeVoiceError):
    """An uploaded or stored model file is not one the server will load."""

    code = "bad_model_file"


class EstimateUnavailableError(FakeVoiceError):
    """A figure that only informs (e.g. a run's memory estimate) cannot be computed here."""

    code = "estimate_unavailable"


class ServerConfigError(FakeVoiceError):
    """The server's own configuration is wrong (a setting, a secret file): the operator's to
    mend, not the request's. The CLI prints it; the API answers 503 and logs it, never showing
    paths or settings to a client."""

    code = "server_misconfigured"
