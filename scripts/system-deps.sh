#!/usr/bin/env bash
# Install what the local stack needs from the operating system, if missing:
# redis-server, a JDK (17+) and Maven. Skipped entirely when both
# SLUICE_KAFKA_BOOTSTRAP and SLUICE_REDIS_URL point at existing servers.
set -euo pipefail
source "$(dirname "$0")/apt-install.sh"

if [[ -n "${SLUICE_KAFKA_BOOTSTRAP:-}" && -n "${SLUICE_REDIS_URL:-}" ]]; then
  exit 0
fi

missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v java >/dev/null 2>&1 || missing+=(openjdk-17-jre-headless)
command -v mvn >/dev/null 2>&1 || missing+=(maven)
install_missing 1 "sluice needs: ${missing[*]}. Install them with your package manager,
or set SLUICE_KAFKA_BOOTSTRAP and SLUICE_REDIS_URL to existing servers." "${missing[@]}"
