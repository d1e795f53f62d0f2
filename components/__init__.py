"""Streamlit widgets shared by pages; they render what fakevoice.services returns."""

AUDIO_HELP = "wav, flac, mp3, ogg, m4a or webm; the content is checked, not the file name."


MAX_ID = 2**63 - 1  # the largest id a database integer holds


def id_from_url(raw: str | None) -> int | None:
    """A record id as a URL gives it (``?run=12``), or None for anything else: only ASCII digits
    (``"²"`` passes ``isdigit``), from 1 to the largest id the database holds."""
    if raw is None or not (raw.isascii() and raw.isdigit()) or len(raw) > 19:
        return None
    value = int(raw)
    return value if 1 <= value <= MAX_ID else None


def upload_megabytes(n_bytes: int) -> int:
    """A size limit as Streamlit's uploaders take it (``max_upload_size``): whole MiB, rounded
    up."""
    return -(-n_bytes // (1024 * 1024))
