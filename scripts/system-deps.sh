#!/usr/bin/env bash
# Install what the local stack needs from the operating system, if missing:
# redis-server, a JDK (17+) and Maven. Skipped entirely when both
# SLUICE_KAFKA_BOOTSTRAP and SLUICE_REDIS_URL point at existing servers.
set -euo pipefail

if [[ -n "${SLUICE_KAFKA_BOOTSTRAP:-}" && -n "${SLUICE_REDIS_URL:-}" ]]; then
  exit 0
fi

missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v java >/dev/null 2>&1 || missing+=(openjdk-17-jre-headless)
command -v mvn >/dev/null 2>&1 || missing+=(maven)
[[ ${#missing[@]} -eq 0 ]] && exit 0

if command -v apt-get >/dev/null 2>&1 && [[ $(id -u) -eq 0 ]]; then
  echo "installing ${missing[*]} (apt-get)"
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
elif command -v apt-get >/dev/null 2>&1 && command -v sudo >/dev/null 2>&1; then
  echo "installing ${missing[*]} (sudo apt-get)"
  sudo apt-get update -qq >/dev/null
  sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
else
  echo "sluice needs: ${missing[*]}. Install them with your package manager," >&2
  echo "or set SLUICE_KAFKA_BOOTSTRAP and SLUICE_REDIS_URL to existing servers." >&2
  exit 1
fi
