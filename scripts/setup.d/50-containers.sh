#!/usr/bin/env bash
# Podman/buildah for the image build and the e2e pod tests, without a Docker engine.
# Installs only missing Debian packages, then writes caretaker's own containers.conf,
# storage.conf and registries.conf into a cache folder (see below). Nothing is exported or
# changed system-wide: scripts/base-image, scripts/build-image and tests/e2e point
# CONTAINERS_CONF / CONTAINERS_STORAGE_CONF / CONTAINERS_REGISTRIES_CONF at these files
# (scripts source "$dir/env"). Idempotent: a second run only checks and rewrites the files.
#
# Folder: ${XDG_CACHE_HOME:-<repo>/.cache}/caretaker-containers (images, volumes, config).
# Runtime state (mounts, sockets) lives under /run/caretaker-containers-<hash of that folder>:
# conmon's attach socket path must stay under the 108-byte unix socket limit.
set -euo pipefail
repo="$(cd "$(dirname "$0")/../.." && pwd)"

source "$(dirname "$0")/../lib/apt.sh"
apt_ensure podman buildah runc catatonit conmon skopeo umoci debootstrap tini busybox-static

dir="${XDG_CACHE_HOME:-$repo/.cache}/caretaker-containers"
run="/run/caretaker-containers-$(printf '%s' "$dir" | sha256sum | cut -c1-8)"
mkdir -p "$dir" "$run"

# runc, not crun: crun fails on this machine's hybrid cgroups. The default ulimits are
# refused here, hence explicit ones. Images, containers, volumes and podman's database live
# under graphroot (do not move static_dir: the cleanup process conmon starts would not find
# it, and every `podman run` then waits 20 s for an exit code).
cat >"$dir/containers.conf" <<EOF
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
tmp_dir = "$run/libpod"
EOF

cat >"$dir/storage.conf" <<EOF
[storage]
driver = "overlay"
graphroot = "$dir/storage"
runroot = "$run/storage"
EOF

# Base images cannot be pulled here (scripts/base-image makes a local stand-in): no search
# registries, and short names resolve against local images only.
cat >"$dir/registries.conf" <<EOF
unqualified-search-registries = []
short-name-mode = "permissive"
EOF

cat >"$dir/env" <<EOF
export CONTAINERS_CONF="$dir/containers.conf"
export CONTAINERS_STORAGE_CONF="$dir/storage.conf"
export CONTAINERS_REGISTRIES_CONF="$dir/registries.conf"
export BUILDAH_ISOLATION=chroot
EOF
