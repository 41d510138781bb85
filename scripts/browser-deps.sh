#!/usr/bin/env bash
# Install what the admin page's browser test needs from the operating system,
# if missing: Debian's chromium and chromium-driver (the test drives that
# Chromium with Selenium; no browser is downloaded from anywhere else).
# Where packages cannot be installed (no apt-get, not root and no sudo) it
# says so and exits 0: the browser test then skips, naming this script.
set -euo pipefail
source "$(dirname "$0")/apt-install.sh"

missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v chromedriver >/dev/null 2>&1 || missing+=(chromium-driver)
install_missing 0 "cannot install ${missing[*]} here (needs apt-get as root or with sudo):
the admin page's browser test will be skipped" "${missing[@]}"
