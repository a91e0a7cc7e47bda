# caretaker: one image, two roles. As an init container (`args: ["restore"]`) it restores
# the data volume before the app starts; as a sidecar (the default command) it keeps it
# backed up. Build with scripts/build-image (see docs/image.md): it builds the wheels of
# caretaker and its dependencies on the host first, so this build needs no index access.

# --- builder: a virtualenv with caretaker and its dependencies, from pre-built wheels ---
# The dependencies are exactly those of requirements.lock (scripts/lock), each wheel checked
# against its sha256 there; caretaker itself comes without dependencies of its own choosing,
# and `pip check` proves the locked versions satisfy its declared ranges.
FROM python:3.11-slim-bookworm AS builder
# binutils only to strip the debug symbols of compiled wheels (zstandard: 23 MB -> 2 MB).
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install --yes --no-install-recommends binutils \
    && rm -rf /var/lib/apt/lists/*
# Folder (in the build context) holding caretaker's wheel and every dependency's wheel.
ARG WHEELS=.cache/image/wheels
COPY ${WHEELS}/ /wheels/
COPY requirements.lock /wheels/requirements.lock
# pip and setuptools are only needed to install: removed, so the final venv is just caretaker.
# Byte-code is compiled once here with hashes that ignore mtimes: the root filesystem is
# read-only at run time, and start-up (init containers!) should not recompile botocore.
RUN python -m venv /opt/caretaker \
    && /opt/caretaker/bin/pip install --no-index --no-cache-dir --no-compile \
        --require-hashes --only-binary=:all: --find-links=/wheels -r /wheels/requirements.lock \
    && /opt/caretaker/bin/pip install --no-index --no-cache-dir --no-compile --no-deps \
        /wheels/caretaker-*.whl \
    && /opt/caretaker/bin/pip check \
    && /opt/caretaker/bin/pip uninstall --yes --no-cache-dir pip setuptools \
    && find /opt/caretaker -name '*.so' -exec strip --strip-unneeded {} + \
    && /opt/caretaker/bin/python -m compileall -q -j 0 --invalidation-mode unchecked-hash \
        /opt/caretaker/lib

# --- the image ---
FROM python:3.11-slim-bookworm
# git + openssh-client for the git backend (libnss-wrapper: ssh as a uid the image does not
# know), tini as PID 1 (reaps hook processes, forwards SIGTERM). A fixed non-root user whose
# home is the /tmp emptyDir: ssh needs a passwd entry.
# Versions are not pinned: Debian stable only ships security fixes, which rebuilds should get.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install --yes --no-install-recommends git openssh-client tini libnss-wrapper \
    && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/cache/debconf/*-old \
        /var/log/apt /var/log/dpkg.log \
    && groupadd --gid 65532 caretaker \
    && useradd --uid 65532 --gid 65532 --no-create-home --home-dir /tmp \
        --shell /usr/sbin/nologin caretaker

COPY --from=builder /opt/caretaker /opt/caretaker

# Nothing writes outside the data volume and /tmp, so readOnlyRootFilesystem works.
# MALLOC_ARENA_MAX: glibc gives each thread its own heap arena; with the upload and
# decode threads that adds tens of MB of RSS for nothing.
ENV PATH=/opt/caretaker/bin:$PATH \
    HOME=/tmp \
    XDG_CACHE_HOME=/tmp/.cache \
    XDG_CONFIG_HOME=/tmp/.config \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    MALLOC_ARENA_MAX=2

# scripts/build-image sets these from pyproject.toml and git.
ARG VERSION=dev
ARG REVISION=""
ARG SOURCE_URL=""
LABEL org.opencontainers.image.title="caretaker" \
      org.opencontainers.image.description="Restores a pod's data volume before the app starts (init container) and keeps it backed up (sidecar)." \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.source="${SOURCE_URL}" \
      org.opencontainers.image.licenses="Apache-2.0"

USER 65532:65532
WORKDIR /tmp
EXPOSE 9090
ENTRYPOINT ["tini", "--", "caretaker"]
CMD ["sidecar"]
