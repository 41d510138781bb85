#!/usr/bin/env bash
# promtool, for the tests that check and unit-test the alert rules (tests/unit/test_alert_rules.py).
#
#   scripts/promtool.sh           build it once with Go into the cache (~/.cache/sluice/promtool/<version>/),
#                                 then print its path; a machine without Go gets a note and exit 0
#   scripts/promtool.sh --path    print the path of an installed promtool, or why there is none (exit 1)
#
# The build takes several minutes on a cold cache; later runs find the binary and return at once.
# Prometheus's go.mod has a replace directive, so `go install ...@version` refuses it: the module
# (Prometheus 3.x is tagged v0.3xx.y on the Go module proxy) is downloaded with `go mod download`
# and promtool built inside it as the main module (GOWORK=off: its go.work names folders that
# the module's zip does not hold).
set -euo pipefail

version="${SLUICE_PROMTOOL_VERSION:-v0.315.1}"
cache="${SLUICE_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/sluice}"
bin="$cache/promtool/$version/promtool"

if [[ -x "$bin" ]]; then
  echo "$bin"
  exit 0
fi
if [[ "${1:-}" == "--path" ]]; then
  echo "promtool $version is not installed in $cache/promtool: run scripts/promtool.sh (builds it with Go)" >&2
  exit 1
fi
if ! command -v go >/dev/null 2>&1; then
  echo "promtool: not installed (building promtool $version needs Go); the alert-rule tests will skip" >&2
  exit 0
fi

echo "building promtool $version with Go into $cache/promtool (once; several minutes)" >&2
tmp="$(mktemp -d "${TMPDIR:-/tmp}/sluice-promtool.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
module="github.com/prometheus/prometheus@$version"
if ! src="$(go mod download -json "$module" 2>"$tmp/build.log" \
            | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')" || [[ -z "$src" ]] \
   || ! (cd "$src" && GOWORK=off CGO_ENABLED=0 go build -o "$tmp/promtool" ./cmd/promtool) \
        >>"$tmp/build.log" 2>&1; then
  tail -n 20 "$tmp/build.log" >&2
  echo "promtool: the build failed (above); the alert-rule tests will skip" >&2
  exit 0
fi
mkdir -p "$(dirname "$bin")"
mv "$tmp/promtool" "$bin.partial.$$" && mv "$bin.partial.$$" "$bin"   # atomic for concurrent builds
echo "$bin"
