#!/usr/bin/env bash
# Build the project's container image (Dockerfile) on a machine that can neither pull base
# images nor run containers, and check it without running one:
#   1. debootstrap and podman from the Debian packages, if missing
#   2. a Debian 12 (bookworm) base by debootstrap (minbase + python3, python3-venv, python3-pip;
#      Debian 12's python3 is 3.11), from the Debian mirror apt uses here
#   3. imported as localhost/debian12-py311 (podman import)
#   4. podman build --isolation=chroot --build-arg BASE_IMAGE=localhost/debian12-py311
#   5. a created, never started container's filesystem mounted (podman create + podman mount)
#      and its entry point run in a chroot of it, as the image's user with only the image's
#      environment: imports, main.py --help, serve.py --dry-run, a test subset, the tabular
#      chain into /state
#   6. the image size
# Needs root (debootstrap, chroot). Everything lives under $IMAGE_BUILD_DIR (a private podman
# storage included); the image stays there for a later `podman --root ... save`.
#   IMAGE_BUILD_DIR   work folder            (default /tmp/mlops-image-build)
#   IMAGE_TAG         the image's name       (default localhost/mlops-pipeline)
#   PODMAN_STORAGE_DRIVER  overlay | vfs     (default overlay; vfs where overlay mounts fail)
#   KEEP_IMAGE=0      remove the storage at the end (default 1: keep it)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WORK="${IMAGE_BUILD_DIR:-/tmp/mlops-image-build}"
TAG="${IMAGE_TAG:-localhost/mlops-pipeline}"
BASE_TAG="localhost/debian12-py311"
DRIVER="${PODMAN_STORAGE_DRIVER:-overlay}"
SUITE="bookworm"

fail() { echo "error: $*" >&2; exit 1; }
step() { echo ">> [$(date -u +%H:%M:%S)] $*" >&2; }
[ "$(id -u)" = 0 ] || fail "run as root: debootstrap and chroot need it (e.g. sudo $0)"
mkdir -p "$WORK"
# podman refuses a runroot (its transient state) longer than 50 characters: a short one per $WORK
RUNROOT="/tmp/mlops-podman-$(printf %s "$WORK" | sha256sum | cut -c1-12)"
podman_() { podman --root "$WORK/storage" --runroot "$RUNROOT" --storage-driver "$DRIVER" "$@"; }
declare -A took=()
# Unmount whatever is mounted below a folder (a failed debootstrap leaves proc/sys there), so
# that removing or packing it can never reach the host's /proc, /sys or /dev.
umount_under() {
  local target
  findmnt -rn -o TARGET | awk -v d="$1/" 'index($0, d) == 1' | sort -r |
    while read -r target; do umount -l "$target" 2>/dev/null || true; done
}
remove_tree() { [ -e "$1" ] || return 0; umount_under "$1"; rm -rf --one-file-system "$1"; }

# 1. tools -------------------------------------------------------------------------------------
t0=$SECONDS
missing=()
command -v debootstrap >/dev/null 2>&1 || missing+=(debootstrap)
command -v podman >/dev/null 2>&1 || missing+=(podman)
if [ ${#missing[@]} -gt 0 ]; then
  step "installing ${missing[*]} (apt-get)"
  { apt-get install -y -qq "${missing[@]}" >/dev/null 2>&1 ||
    { apt-get update -qq && apt-get install -y -qq "${missing[@]}" >/dev/null; }; } ||
    fail "could not install ${missing[*]} with apt-get; install them and rerun"
fi
took[tools]=$((SECONDS - t0))

# 2.+3. the base image -------------------------------------------------------------------------
# The mirror apt already uses (deb822 .sources or one-line sources.list); deb.debian.org if none.
debian_mirror() {
  local uri
  uri="$(grep -hs -E '^URIs:' /etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null |
         awk '{print $2}' | grep -E '/debian/?$' | head -1)"
  [ -n "$uri" ] || uri="$(grep -hs -E '^deb[[:space:]]' /etc/apt/sources.list /etc/apt/sources.list.d/*.list \
                          2>/dev/null | awk '{print $2}' | grep -E '/debian/?$' | head -1)"
  echo "${uri:-http://deb.debian.org/debian}"
}
t0=$SECONDS
if podman_ image exists "$BASE_TAG" && [ "${REBUILD_BASE:-0}" != 1 ]; then
  step "base image $BASE_TAG already in $WORK/storage (REBUILD_BASE=1 to rebuild it)"
else
  mirror="$(debian_mirror)"
  rootfs="$WORK/rootfs"
  remove_tree "$rootfs"
  step "debootstrap $SUITE (minbase + python3, python3-venv, python3-pip) from $mirror"
  debootstrap --variant=minbase --include=python3,python3-venv,python3-pip \
    "$SUITE" "$rootfs" "$mirror" >"$WORK/debootstrap.log" 2>&1 ||
    { umount_under "$rootfs"; fail "debootstrap failed from $mirror (log: $WORK/debootstrap.log)"; }
  umount_under "$rootfs"
  # apt inside the image uses the same mirror; no package caches in the layer
  echo "deb $mirror $SUITE main" >"$rootfs/etc/apt/sources.list"
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* "$rootfs"/tmp/*
  step "podman import -> $BASE_TAG"
  tar -C "$rootfs" -c . | podman_ import --change 'CMD ["/usr/bin/python3"]' - "$BASE_TAG" >/dev/null ||
    { remove_tree "$rootfs"; fail "podman import failed (storage $WORK/storage)"; }
  remove_tree "$rootfs"
fi
took[base]=$((SECONDS - t0))

# 4. the project's image -----------------------------------------------------------------------
# pip inside the build sees this machine's package mirrors (find-links / file:// indexes),
# mounted read-only, through a pip.conf of their own; without any it uses PyPI.
pip_config="$(python3 -m pip config list 2>/dev/null || true)"
pip_value() {   # the value pip resolves for a key: environment first, then its config files
  grep -E "^(:env:|global)\.$1=" <<<"$pip_config" | head -1 |
    sed -E "s/^[^=]*='?//; s/'$//"
}
mounts=()
conf="$WORK/pip/pip.conf"
mkdir -p "$WORK/pip"
printf '[global]\n' >"$conf"
for key in find-links extra-index-url; do
  kept=()
  for value in $(pip_value "$key"); do
    path="${value#file://}"
    [ "$path" != "$value" ] || [ "${value:0:1}" = / ] || continue   # local sources only
    [ -e "$path" ] || continue
    dir="$path"; [ "$(basename "$dir")" = simple ] && dir="$(dirname "$dir")"   # files are ../files
    mounts+=(--volume "$dir:$dir:ro")
    kept+=("$value")
  done
  [ ${#kept[@]} -eq 0 ] || printf '%s = %s\n' "$key" "${kept[*]}" >>"$conf"
done
# a machine behind a TLS-inspecting proxy trusts its CA through pip's `cert`: the build does too
cert="$(pip_value cert)"
if [ -n "$cert" ] && [ -f "$cert" ]; then
  cp "$cert" "$WORK/pip/ca.crt"
  printf 'cert = /etc/mlops-pip/ca.crt\n' >>"$conf"
fi
build_args=(--build-arg "BASE_IMAGE=$BASE_TAG")
torch_pin="$(python3 -c 'import sys, tomllib
extras = tomllib.load(open(sys.argv[1], "rb"))["project"]["optional-dependencies"]["nlu"]
print(next(r for r in extras if r.startswith("torch==")).split("==")[1])' "$ROOT/pyproject.toml")"
local_wheel=""
for links in $(pip_value find-links); do
  local_wheel="$(ls "${links#file://}"/torch-"$torch_pin"+cpu-cp311-*.whl 2>/dev/null | head -1)"
  [ -z "$local_wheel" ] || break
done
if [ "$(wc -l <"$conf")" -gt 1 ]; then
  mounts+=(--volume "$WORK/pip:/etc/mlops-pip:ro")
  build_args+=(--build-arg "PIP_CONFIG_FILE=/etc/mlops-pip/pip.conf")
fi
if [ -n "$local_wheel" ]; then
  # torch's pin then resolves to the local CPU wheel (2.x+cpu sorts above PyPI's CUDA 2.x),
  # as run_pipeline.sh does on this machine; PyTorch's CPU index is not reachable from here
  build_args+=(--build-arg "TORCH_INDEX_URL=https://pypi.org/simple")
  step "torch $torch_pin: the local CPU wheel $local_wheel"
fi
t0=$SECONDS
step "podman build --isolation=chroot -t $TAG (storage driver $DRIVER; log: $WORK/build.log)"
BUILDAH_ISOLATION=chroot podman_ build --isolation=chroot --network=host \
  "${build_args[@]}" "${mounts[@]}" -t "$TAG" -f "$ROOT/Dockerfile" "$ROOT" >"$WORK/build.log" 2>&1 ||
  { tail -20 "$WORK/build.log" >&2; fail "podman build failed (log: $WORK/build.log)"; }
took[build]=$((SECONDS - t0))

# 5. check: the entry point in a chroot of the image's filesystem -------------------------------
# A created (never started) container: its filesystem is writable like a running one's.
t0=$SECONDS
ctr="mlops-image-check-$$"
podman_ create --name "$ctr" "$TAG" >/dev/null
mnt="$(podman_ mount "$ctr")"
inner=()
cleanup() {
  for ((i = ${#inner[@]} - 1; i >= 0; i--)); do umount -l "${inner[$i]}" 2>/dev/null || true; done
  podman_ umount "$ctr" >/dev/null 2>&1 || true
  podman_ rm --force "$ctr" >/dev/null 2>&1 || true
}
trap cleanup EXIT
mount -t proc proc "$mnt/proc" && inner+=("$mnt/proc")
mount --rbind /dev "$mnt/dev" && inner+=("$mnt/dev")
mount --make-rslave "$mnt/dev"
user="$(podman_ image inspect --format '{{.Config.User}}' "$TAG")"
uid="$(awk -F: -v u="$user" '$1 == u {print $3 ":" $4}' "$mnt/etc/passwd")"
[ -n "$uid" ] || fail "the image's user '$user' is not in its /etc/passwd"
mapfile -t image_env < <(podman_ image inspect --format '{{range .Config.Env}}{{println .}}{{end}}' "$TAG" | sed '/^$/d')
entry="$(podman_ image inspect --format '{{index .Config.Entrypoint 0}}' "$TAG")"
workdir="$(podman_ image inspect --format '{{.Config.WorkingDir}}' "$TAG")"
home="$(awk -F: -v u="$user" '$1 == u {print $6}' "$mnt/etc/passwd")"
in_image() {   # as the image's user, with only the image's environment, in its working dir
  chroot --userspec="$uid" "$mnt" /usr/bin/env -i "${image_env[@]}" HOME="$home" \
    /bin/sh -c 'cd "$0" && exec "$@"' "$workdir" "$@"
}
step "check: python, imports, torch CPU build"
in_image /opt/venv/bin/python -c '
import sys, torch, transformers, mlflow, sklearn, lightgbm, mlforecast, flask, gunicorn, gevent, hydra
assert sys.version_info[:2] == (3, 11), sys.version
assert torch.version.cuda is None and torch.__version__.endswith("+cpu"), torch.__version__
print("python", sys.version.split()[0], "torch", torch.__version__, "mlflow", mlflow.__version__)'
step "check: main.py --help, serve.py --dry-run (state dir /state, API on 0.0.0.0)"
in_image "$entry" chain --help >/dev/null
dry_run="$(in_image "$entry" serve --dry-run)"
case "$dry_run" in *"--bind 0.0.0.0:8000 "*) ;; *) fail "serve --dry-run does not bind 0.0.0.0:8000: $dry_run" ;; esac
step "check: test subset (${IMAGE_TESTS:=tests/api/test_serve.py tests/tabular/test_schema.py})"
# shellcheck disable=SC2086
in_image "$entry" test -q -x $IMAGE_TESTS
if [ "${IMAGE_CHAIN:-1}" = 1 ]; then
  step "check: the tabular chain into /state"
  in_image "$entry" chain >"$WORK/chain.log" 2>&1 ||
    { tail -20 "$WORK/chain.log" >&2; fail "the chain failed in the image (log: $WORK/chain.log)"; }
  [ -e "$mnt/state/models/attrition_model/production" ] ||
    fail "the chain left no production model in /state (log: $WORK/chain.log)"
  grep -E '^(pipeline finished|production model)' "$WORK/chain.log" || true
fi
took[check]=$((SECONDS - t0))
cleanup
trap - EXIT

# 6. size ---------------------------------------------------------------------------------------
size="$(podman_ image inspect --format '{{.Size}}' "$TAG")"
echo "image $TAG: size $size bytes ($((size / 1000000)) MB); seconds: tools ${took[tools]}," \
     "base ${took[base]}, build ${took[build]}, check ${took[check]} (storage $WORK/storage, driver $DRIVER)"
if [ "${KEEP_IMAGE:-1}" = 0 ]; then
  podman_ system reset --force >/dev/null 2>&1 || true
  remove_tree "$WORK"; remove_tree "$RUNROOT"
fi
