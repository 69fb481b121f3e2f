#!/bin/sh
# Build the eiows engine for the reference server (loadtest/reference/node_modules/eiows).
#
# eiows compiles a getter of TLS state against Node's own source, which its Makefile clones
# from GitHub; the benchmarks run over plain TCP on loopback, so eiows-no-tls.patch leaves
# that getter out (it answers null) and the addon builds against the installed Node headers.
# eiows 9.2.0 is the last release that supports Node 20.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
version=9.2.0
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
npm pack --silent "eiows@$version" >/dev/null
tar xzf "eiows-$version.tgz"
cd package
patch -p1 < "$here/eiows-no-tls.patch"
npx --yes node-gyp rebuild --loglevel=error > build.log 2>&1 || { cat build.log; exit 1; }
rm -rf build/Release/obj.target
mkdir -p "$here/node_modules"
rm -rf "$here/node_modules/eiows"
cp -r "$work/package" "$here/node_modules/eiows"
echo "eiows $version built into $here/node_modules/eiows"
