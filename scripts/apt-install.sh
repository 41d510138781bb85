# Sourced by the install scripts.
#
#   install_missing CODE HINT PKG...
#
# installs the Debian packages PKG... with apt-get, as root or through sudo,
# and exits: 0 when installed, apt-get's status when it failed. Where apt-get
# cannot be used (no apt-get; not root and no password-less sudo) it prints
# HINT on stderr and exits CODE. Nothing to install (no PKG): exits 0.

install_missing() {
  local code=$1 hint=$2 run=()
  shift 2
  [[ $# -eq 0 ]] && exit 0
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "$hint" >&2
    exit "$code"
  elif [[ $(id -u) -ne 0 ]]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
      run=(sudo)
    else
      echo "$hint" >&2
      exit "$code"
    fi
  fi
  echo "installing $* (${run[*]:+${run[*]} }apt-get)"
  "${run[@]}" apt-get update -qq >/dev/null
  "${run[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
  exit 0
}
