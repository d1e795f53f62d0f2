"""Streamlit widgets shared by pages; they render what fakevoice.services returns."""

AUDIO_HELP = "wav, flac, mp3, ogg, m4a or webm; the content is checked, not the file name."


def upload_megabytes(n_bytes: int) -> int:
    """A size limit as Streamlit's uploaders take it (``max_upload_size``): whole MiB, rounded
    up."""
    return -(-n_bytes // (1024 * 1024))
