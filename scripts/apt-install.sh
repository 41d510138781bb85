# Sourced by the install scripts: apt_install PKG... installs Debian packages
# with apt-get, as root or through sudo. Returns 2 (and installs nothing) when
# this machine has neither apt-get nor the rights to use it; fails when apt-get
# runs and fails.

apt_install() {
  local run=()
  if ! command -v apt-get >/dev/null 2>&1; then
    return 2
  elif [[ $(id -u) -eq 0 ]]; then
    run=()
  elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    run=(sudo)
  else
    return 2
  fi
  echo "installing $* (${run[*]:+${run[*]} }apt-get)"
  "${run[@]}" apt-get update -qq >/dev/null
  "${run[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}
