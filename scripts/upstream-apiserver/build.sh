#!/bin/bash
# Builds upstream kube-apiserver v1.20.2 from Debian's `kubernetes` source package (upstream
# 1.20.2 with its vendor tree) into $PREFIX/kube-apiserver (default /opt/kas), offline, with
# Debian's Go (1.19): the reference for `KAJI_BENCH_COMPARE` (crates/kaji/benches/api.rs).
# About 11 minutes on 2 cores (one compile job, nice 19).
#
# What it takes beyond upstream's own build:
# - upstream 1.20 builds in GOPATH mode (hack/lib/init.sh: GO111MODULE=off) with vendor/;
# - pkg/generated/openapi/zz_generated.openapi.go is not in the tarball: generated here with
#   the vendored openapi-gen, as upstream's Makefile.generated_files does;
# - the vendored github.com/modern-go/reflect2 1.0.1 crashes under Go >= 1.18 on every map
#   encoded to JSON: it is replaced by reflect2 1.0.2 (the same API, the fix) from Debian's
#   golang-github-modern-go-reflect2-dev.
set -euo pipefail
PREFIX=${PREFIX:-/opt/kas}
mkdir -p "$PREFIX/src"
sed -i 's/^Types: deb$/Types: deb deb-src/' /etc/apt/sources.list.d/debian.sources
apt-get update -q
apt-get install -y -q golang-go dpkg-dev golang-github-modern-go-reflect2-dev
cd "$PREFIX/src"
ls kubernetes_*.dsc >/dev/null 2>&1 || apt-get source --download-only kubernetes
unpacked() { find "$PREFIX/src" -mindepth 1 -maxdepth 1 -type d -name 'kubernetes-*' | head -1; }
SRC=$(unpacked)
if [ -z "$SRC" ]; then
  dpkg-source -x kubernetes_*.dsc
  SRC=$(unpacked)
fi

R=/usr/share/gocode/src/github.com/modern-go/reflect2
V=$SRC/vendor/github.com/modern-go/reflect2
rm -f "$V"/*.go "$V"/*.s
cp "$R"/*.go "$R"/*.s "$V"/

export GOPATH=$PREFIX/gopath GO111MODULE=off GOFLAGS= GOPROXY=off GOMAXPROCS=1 CGO_ENABLED=0
mkdir -p "$GOPATH/src/k8s.io" "$PREFIX/gen"
[ -L "$GOPATH/src/k8s.io/kubernetes" ] || ln -s "$SRC" "$GOPATH/src/k8s.io/kubernetes"
cd "$GOPATH/src/k8s.io/kubernetes"

if [ ! -f pkg/generated/openapi/zz_generated.openapi.go ]; then
  dirs=$(find -H . \( -not \( \( -path './_*' -o -path './.*' -o -path ./vendor \) -prune \) \) -type f -name '*.go' \
    | sed 's|^./staging/src|vendor|; s|/[^/]*$||; s|^./||' | LC_ALL=C sort -u)
  # shellcheck disable=SC2086
  tagfiles=$(find $dirs -maxdepth 1 -type f -name '*.go' | xargs grep --color=never -l '^// *+k8s:' \
    | grep -v -e '^vendor/k8s.io/code-generator/' -e '^vendor/k8s.io/sample-apiserver/')
  # shellcheck disable=SC2086
  apidirs=$(grep --color=never -l '+k8s:openapi-gen=' $tagfiles | xargs -n1 dirname | LC_ALL=C sort -u)
  nice -n 19 go build -p 1 -o "$GOPATH/bin/openapi-gen" ./vendor/k8s.io/kube-openapi/cmd/openapi-gen
  inputs=$(echo "$apidirs" | sed 's|^|k8s.io/kubernetes/|' | paste -sd, -)
  nice -n 19 "$GOPATH/bin/openapi-gen" --logtostderr \
    -i "$inputs" -p k8s.io/kubernetes/pkg/generated/openapi -O zz_generated.openapi \
    -h vendor/k8s.io/code-generator/hack/boilerplate.go.txt \
    -r "$PREFIX/gen/KUBE_violations.report"
fi

P=k8s.io/kubernetes/vendor
LDF="-s -w -buildid="
for pkg in $P/k8s.io/component-base/version $P/k8s.io/client-go/pkg/version; do
  LDF+=" -X $pkg.gitVersion=v1.20.2 -X $pkg.gitMajor=1 -X $pkg.gitMinor=20 -X $pkg.gitCommit=faecb196815e248d3ecfb03c680a4507229c2a56 -X $pkg.gitTreeState=clean"
done
nice -n 19 go build -p 1 -tags selinux,notest -trimpath -ldflags "$LDF" -o "$PREFIX/kube-apiserver" k8s.io/kubernetes/cmd/kube-apiserver
"$PREFIX/kube-apiserver" --version
