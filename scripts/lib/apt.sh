# Sourced by the setup scripts: install Debian packages that are missing, and only those.
# Usage: apt_ensure [--no-recommends] PACKAGE...
apt_ensure() {
  local options=() missing=() p
  if [[ "${1:-}" == "--no-recommends" ]]; then
    options+=(--no-install-recommends)
    shift
  fi
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if ((${#missing[@]})); then
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${options[@]}" "${missing[@]}" >/dev/null
  fi
}
