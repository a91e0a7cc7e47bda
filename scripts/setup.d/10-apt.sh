#!/usr/bin/env bash
# Debian packages the tests use: a real sshd and git for git remotes (nss_wrapper for ssh as
# a uid without a passwd entry), zstd for the benchmark baselines, tini (PID 1 in the image;
# the back-up-now test runs under it). Installs only what is missing.
set -euo pipefail
source "$(dirname "$0")/../lib/apt.sh"
apt_ensure git openssh-server openssh-client zstd time libnss-wrapper tini
