#!/usr/bin/env bash
# helm, for the test that renders the chart (tests/unit/test_deploy_manifests.py).
#
#   scripts/helm.sh           build it once with Go into the cache (~/.cache/sluice/helm/<version>/),
#                             then print its path; a machine without Go gets a note and exit 0
#   scripts/helm.sh --path    print the path of an installed helm, or why there is none (exit 1)
#
# The build (`go install helm.sh/helm/v3/cmd/helm@<version>` through the Go module proxy)
# takes about three minutes on a cold cache; later runs find the binary and return at once.
set -euo pipefail

version="${SLUICE_HELM_VERSION:-v3.19.5}"
cache="${SLUICE_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/sluice}"
bin="$cache/helm/$version/helm"

if [[ -x "$bin" ]]; then
  echo "$bin"
  exit 0
fi
if [[ "${1:-}" == "--path" ]]; then
  echo "helm $version is not installed in $cache/helm: run scripts/helm.sh (builds it with Go)" >&2
  exit 1
fi
if ! command -v go >/dev/null 2>&1; then
  echo "helm: not installed (building helm $version needs Go); the chart-rendering test will skip" >&2
  exit 0
fi

echo "building helm $version with Go into $cache/helm (once; a few minutes)" >&2
tmp="$(mktemp -d "${TMPDIR:-/tmp}/sluice-helm.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
if ! GOBIN="$tmp" CGO_ENABLED=0 go install "helm.sh/helm/v3/cmd/helm@$version" >"$tmp/build.log" 2>&1; then
  tail -n 20 "$tmp/build.log" >&2
  echo "helm: the build failed (above); the chart-rendering test will skip" >&2
  exit 0
fi
mkdir -p "$(dirname "$bin")"
mv "$tmp/helm" "$bin.partial.$$" && mv "$bin.partial.$$" "$bin"   # atomic for concurrent builds
echo "$bin"
