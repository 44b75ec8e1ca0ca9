#!/usr/bin/env bash
# Test images for Kaji's end-to-end tests, built offline from Debian's busybox-static and pushed
# to a local registry (Debian's docker-registry on 127.0.0.1:5000) under the names the seed
# manifests use. THESE ARE TEST IMAGES, NOT THE REAL nginx/debian/redis/centos: "nginx" is
# `busybox httpd` serving a page that names its version, the others are a busybox shell.
# Writes /etc/kaji/test-registries.yaml (docker.io mirrored to the local registry) for
# `kaji agent --registries`. Idempotent; a second run only checks digests. Needs root.
set -euo pipefail

REGISTRY=127.0.0.1:5000
REG_DIR=/var/lib/kaji-test-registry
WORK=${KAJI_TEST_IMAGES_WORK:-$REG_DIR/build}
REGISTRIES_YAML=/etc/kaji/test-registries.yaml
BUSYBOX=/bin/busybox
[ -x "$BUSYBOX" ] || BUSYBOX=/usr/bin/busybox
case "$(uname -m)" in x86_64) ARCH=amd64 ;; aarch64) ARCH=arm64 ;; *) ARCH=$(uname -m) ;; esac

for tool in docker-registry skopeo sha256sum gzip tar; do
    command -v "$tool" >/dev/null || { echo "test-images: $tool missing (see .ci/install-deps)" >&2; exit 1; }
done
file -L "$BUSYBOX" 2>/dev/null | grep -q 'dynamically linked' \
    && { echo "test-images: $BUSYBOX is not static (install busybox-static)" >&2; exit 1; }

listening() { (exec 3<>"/dev/tcp/127.0.0.1/5000") 2>/dev/null; }

# 1. The registry, in the background, with its own config and storage. One run at a time.
mkdir -p "$REG_DIR/data" "$WORK"
exec 9>"$REG_DIR/lock"
flock 9
if ! listening; then
    cat > "$REG_DIR/config.yml" <<YAML
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $REG_DIR/data
  delete:
    enabled: true
http:
  addr: $REGISTRY
YAML
    # 9>&-: the registry outlives this script and must not hold its lock.
    setsid nohup docker-registry serve "$REG_DIR/config.yml" >>"$REG_DIR/registry.log" 2>&1 < /dev/null 9>&- &
    echo $! > "$REG_DIR/registry.pid"
    for _ in $(seq 100); do listening && break; sleep 0.1; done
    listening || { echo "test-images: docker-registry did not start; see $REG_DIR/registry.log" >&2; exit 1; }
fi

sha() { sha256sum "$1" | cut -d' ' -f1; }
STAMP="$(sha "$BUSYBOX") $(sha "$0")"

# 2. One OCI layout per image: a busybox rootfs, a reproducible layer, config, manifest, index.
#    build NAME PAGE CMD_JSON -> prints the manifest digest; the layout is $WORK/NAME.
build() {
    local name=$1 page=$2 cmd=$3
    local root="$WORK/$name.rootfs" out="$WORK/$name"
    # Same busybox, same script, same arguments: the layout from the last run is this image.
    local key; key=$(printf '%s\n' "$STAMP" "$page" "$cmd" | sha256sum | cut -d' ' -f1)
    if [ -f "$out/.key" ] && [ "$(cat "$out/.key")" = "$key" ]; then
        cat "$out/.digest"
        return
    fi
    rm -rf "$root" "$out"
    mkdir -p "$root"/{bin,tmp,www,etc,root,var/run} "$out/blobs/sha256"
    chmod 1777 "$root/tmp"
    cp "$BUSYBOX" "$root/bin/busybox"
    for app in sh ash cat echo env hostname httpd ip kill ls mkdir nc nslookup ping ps rm sleep tar \
               tail test top true false uname wget whoami id date head grep sed vi; do
        ln -s busybox "$root/bin/$app"
    done
    printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' > "$root/etc/passwd"
    printf 'root:x:0:\nnogroup:x:65534:\n' > "$root/etc/group"
    printf '%s\n' "$page" > "$root/www/index.html"
    find "$root" -exec touch -h -d @0 {} +
    tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C "$root" -cf "$WORK/$name.tar" .
    local diff_id; diff_id=$(sha "$WORK/$name.tar")
    gzip -n -9 -c "$WORK/$name.tar" > "$WORK/$name.tar.gz"
    local layer; layer=$(sha "$WORK/$name.tar.gz")
    local layer_size; layer_size=$(stat -c %s "$WORK/$name.tar.gz")
    mv "$WORK/$name.tar.gz" "$out/blobs/sha256/$layer"
    rm -rf "$root" "$WORK/$name.tar"
    printf '{"architecture":"%s","os":"linux","config":{"Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],"Cmd":%s,"WorkingDir":"/"},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]}}' \
        "$ARCH" "$cmd" "$diff_id" > "$WORK/config.json"
    local config; config=$(sha "$WORK/config.json")
    local config_size; config_size=$(stat -c %s "$WORK/config.json")
    mv "$WORK/config.json" "$out/blobs/sha256/$config"
    printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:%s","size":%s}]}' \
        "$config" "$config_size" "$layer" "$layer_size" > "$WORK/manifest.json"
    local manifest; manifest=$(sha "$WORK/manifest.json")
    local manifest_size; manifest_size=$(stat -c %s "$WORK/manifest.json")
    mv "$WORK/manifest.json" "$out/blobs/sha256/$manifest"
    printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"annotations":{"org.opencontainers.image.ref.name":"latest"}}]}' \
        "$manifest" "$manifest_size" > "$out/index.json"
    printf '{"imageLayoutVersion":"1.0.0"}' > "$out/oci-layout"
    echo "sha256:$manifest" > "$out/.digest"
    echo "$key" > "$out/.key"
    echo "sha256:$manifest"
}

# push LAYOUT DIGEST REPO:TAG: skips when the registry already has that exact manifest.
push() {
    local layout=$1 digest=$2 ref=$3 have
    have=$(skopeo inspect --raw --tls-verify=false "docker://$REGISTRY/$ref" 2>/dev/null | sha256sum | cut -d' ' -f1 || true)
    if [ "sha256:$have" = "$digest" ]; then
        return 0
    fi
    skopeo copy --quiet --dest-tls-verify=false "oci:$WORK/$layout:latest" "docker://$REGISTRY/$ref"
    echo "test-images: pushed $REGISTRY/$ref ($digest)"
}

SHELL_CMD='["sh"]'
for v in 1.12 1.15 1.16 1.17 1.18.0-alpine latest; do
    d=$(build "nginx-$v" "nginx $v (kaji test image)" '["httpd","-f","-v","-p","80","-h","/www"]')
    push "nginx-$v" "$d" "library/nginx:$v"
done
# redis keeps running and listens on its port, as the real one would (it does not speak RESP).
d=$(build redis "redis 5.0.5 (kaji test image)" '["httpd","-f","-p","6379","-h","/www"]')
push redis "$d" "library/redis:5.0.5"
d=$(build shell "shell (kaji test image)" "$SHELL_CMD")
for ref in library/debian:stretch library/busybox:latest library/centos:7 library/centos:latest; do
    push shell "$d" "$ref"
done

# 3. The registries.yaml that makes docker.io resolve to the local registry.
mkdir -p "$(dirname "$REGISTRIES_YAML")"
cat > "$REGISTRIES_YAML.tmp" <<YAML
# Written by scripts/test-images.sh: docker.io comes from the local test registry, which holds
# busybox-based stand-ins (test images, not the real nginx, debian, redis or centos).
mirrors:
  docker.io:
    endpoint:
      - "http://$REGISTRY"
YAML
mv "$REGISTRIES_YAML.tmp" "$REGISTRIES_YAML"
echo "test-images: ready on $REGISTRY (registries file $REGISTRIES_YAML)"
