#!/usr/bin/env bash
# Debian packages the tests use: a real sshd and git for git remotes, zstd for the
# benchmark baselines. Installs only what is missing.
set -euo pipefail
packages=(git openssh-server openssh-client zstd time)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}" >/dev/null
fi
