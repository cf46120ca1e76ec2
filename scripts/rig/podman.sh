# shellcheck shell=bash
# Podman for the test rig: a Docker-compatible API on a unix socket, and the runtime image.
#
# Sourced by scripts/services, which defines say, port_open, wait_port, apt_install, ROOT, RIG_DIR, PY.
#
#   podman_up           install podman + runc, start `podman system service` on $PODMAN_SOCK
#   runtime_image_up    build localhost/airflow-genius-runtime:dev (only when missing or the project changed)
#   podman_status       one status line
#   podman_docker_host  print the DOCKER_HOST tests use (unix://$RIG_DIR/podman.sock)
#
# The image is built offline (podman build --network none): the project wheel (pip wheel on the host)
# and the wheels of its extras $GENIUS_IMAGE_EXTRAS (pip download in a throwaway container of the base
# image, with the host's network and CA bundle) are put in the build context and installed with
# --no-index. The extras: `runtime` (the state and data backends) and `ml` (scikit-learn, for
# airflow_genius.examples.ml on Docker and Kubernetes).

PODMAN_SOCK=${GENIUS_PODMAN_SOCK:-$RIG_DIR/podman.sock}
GENIUS_BASE_IMAGE=${GENIUS_BASE_IMAGE:-localhost/genius-base:bookworm}
GENIUS_RUNTIME_IMAGE=${GENIUS_RUNTIME_IMAGE:-localhost/airflow-genius-runtime:dev}
GENIUS_IMAGE_EXTRAS=${GENIUS_IMAGE_EXTRAS:-runtime,ml}
export DOCKER_HOST="unix://$PODMAN_SOCK"

podman_docker_host() { echo "unix://$PODMAN_SOCK"; }

_podman_ping() { [ "$(curl -s --max-time 5 --unix-socket "$PODMAN_SOCK" http://d/_ping 2>/dev/null)" = OK ]; }

# apt_install, retried while another apt/dpkg (e.g. a parallel rig step) holds the lock.
_podman_apt_install() {
  local try
  for try in $(seq 1 60); do
    apt_install "$@" && return 0
    say "apt-get failed (lock held by another apt?), retrying in 5 s ($try/60)"
    sleep 5
  done
  return 1
}

podman_up() {
  local pkgs=(podman runc curl) pkg missing=0
  for pkg in "${pkgs[@]}"; do dpkg -s "$pkg" >/dev/null 2>&1 || missing=1; done
  [ "$missing" = 0 ] || _podman_apt_install "${pkgs[@]}"

  # crun fails in this kind of VM; runc works. Ulimits: podman's default nofile is too high for some hosts.
  local conf=/etc/containers/containers.conf want
  want='[containers]
default_ulimits = ["nofile=10000:10000", "nproc=4096:4096"]

[engine]
runtime = "runc"'
  if [ "$(cat "$conf" 2>/dev/null)" != "$want" ]; then
    say "writing $conf (runtime runc, default ulimits)"
    mkdir -p /etc/containers
    printf '%s\n' "$want" >"$conf"
  fi

  _podman_ping && return 0
  local pidfile=$RIG_DIR/podman.pid
  if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
    # started by an earlier call and still coming up: just wait below
    :
  else
    rm -f "$PODMAN_SOCK"
    say "starting podman system service on unix://$PODMAN_SOCK"
    setsid nohup podman system service --time=0 "unix://$PODMAN_SOCK" >"$RIG_DIR/podman.log" 2>&1 </dev/null &
    echo $! >"$pidfile"
  fi
  local _
  for _ in $(seq 1 300); do _podman_ping && return 0; sleep 0.1; done
  say "podman system service did not answer on $PODMAN_SOCK (log: $RIG_DIR/podman.log)"
  return 1
}

# Debian mirror of this machine, from the apt sources (deb822 URIs: lines, or one-line sources.list).
_podman_debian_mirror() {
  local uri
  uri=$(
    {
      grep -hsE '^[[:space:]]*URIs:' /etc/apt/sources.list.d/*.sources | awk '{print $2}'
      grep -hsE '^[[:space:]]*deb[[:space:]]' /etc/apt/sources.list /etc/apt/sources.list.d/*.list |
        sed -E 's/\[[^]]*\]//' | awk '{print $2}'
    } | grep -E '^https?://' | grep -vE 'security|updates|backports' | head -n 1
  ) || true
  [ -n "$uri" ] || { say "no Debian mirror found in /etc/apt/sources.list*"; return 1; }
  echo "$uri"
}

# localhost/genius-base:bookworm: a debootstrapped minimal Debian with python3 (no registry needed).
_podman_base_image_up() {
  podman image exists "$GENIUS_BASE_IMAGE" && return 0
  command -v debootstrap >/dev/null || _podman_apt_install debootstrap
  local mirror rootfs=$RIG_DIR/rootfs-bookworm
  mirror=$(_podman_debian_mirror)
  say "debootstrapping $GENIUS_BASE_IMAGE (about a minute; log: $RIG_DIR/debootstrap.log)"
  rm -rf "$rootfs"
  if ! debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
    bookworm "$rootfs" "$mirror" >"$RIG_DIR/debootstrap.log" 2>&1; then
    say "debootstrap failed (log: $RIG_DIR/debootstrap.log)"
    rm -rf "$rootfs"
    return 1
  fi
  # Trim what an image does not need: apt caches and lists, docs, man pages, translations.
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/lib/apt/lists/* \
    "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* "$rootfs"/var/log/*.log
  find "$rootfs/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name locale.alias -exec rm -rf {} +
  tar -C "$rootfs" -c . | podman import -q --change 'CMD ["/bin/bash"]' - "$GENIUS_BASE_IMAGE" >/dev/null
  rm -rf "$rootfs"
}

# Hash of the listed repository paths (working tree, tracked and untracked-but-not-ignored), the base
# image and any extra words: an image whose genius.source-hash label matches is up to date.
podman_source_hash() { # words... -- paths...
  local words=()
  while [ $# -gt 0 ] && [ "$1" != -- ]; do words+=("$1"); shift; done
  shift
  (
    cd "$ROOT"
    git ls-files -z -co --exclude-standard -- "$@" | sort -zu | xargs -0 sha256sum 2>/dev/null || true
    podman image inspect --format '{{.Id}}' "$GENIUS_BASE_IMAGE"
    echo "${words[*]}"
  ) | sha256sum | cut -c1-16
}

# The genius.source-hash label of an image ("" when it is missing).
podman_image_hash() { podman image inspect --format '{{index .Labels "genius.source-hash"}}' "$1" 2>/dev/null || true; }

# podman build --network none of one image on the base image, labelled with its hash; drops the image
# it replaces (left alone while a container still uses it).
podman_build_image() { # image dockerfile context hash log [build args...]
  local image=$1 dockerfile=$2 ctx=$3 hash=$4 log=$5 old
  shift 5
  old=$(podman image inspect --format '{{.Id}}' "$image" 2>/dev/null || true)
  if ! nice -n 10 podman build --pull=never --network none --layers=false \
    --build-arg BASE_IMAGE="$GENIUS_BASE_IMAGE" "$@" --label genius.source-hash="$hash" \
    -f "$dockerfile" -t "$image" "$ctx" >>"$log" 2>&1; then
    say "podman build of $image failed (log: $log)"
    return 1
  fi
  if [ -n "$old" ] && [ "$old" != "$(podman image inspect --format '{{.Id}}' "$image")" ]; then
    podman rmi "$old" >/dev/null 2>&1 || true
  fi
  say "built $image ($(podman image inspect --format '{{.Size}}' "$image") bytes)"
}

runtime_image_up() {
  podman_up
  _podman_base_image_up
  local hash log=$RIG_DIR/image-build.log
  hash=$(podman_source_hash "extras $GENIUS_IMAGE_EXTRAS" -- \
    airflow_genius pyproject.toml README.md docker/Dockerfile scripts/rig/podman.sh)
  [ "$(podman_image_hash "$GENIUS_RUNTIME_IMAGE")" = "$hash" ] && return 0

  say "building $GENIUS_RUNTIME_IMAGE (sources $hash; log: $log)"
  local ctx=$RIG_DIR/image-context wheel
  rm -rf "$ctx" # fresh wheels each build (the pip cache below keeps downloads cheap)
  mkdir -p "$ctx/wheels" "$RIG_DIR/pip-cache"
  "$PY" -m pip wheel -q --no-deps -w "$ctx/wheels" "$ROOT" >"$log" 2>&1 || {
    say "pip wheel failed (log: $log)"
    return 1
  }
  wheel=$(basename "$(ls "$ctx"/wheels/airflow_provider_genius-*.whl)")
  # The dependency wheels are resolved by the image's own python (markers such as
  # python_full_version < "3.11.3" must be evaluated there, not on the host), with the host's
  # network and CA bundle; the CA bundle is mounted for this download only, never baked in.
  if ! podman run --rm --network host -v "$ctx/wheels:/wheels" -v "$RIG_DIR/pip-cache:/root/.cache/pip" \
    -v "${PIP_CERT:-/etc/ssl/certs/ca-certificates.crt}:/host-ca.crt:ro" -e PIP_CERT=/host-ca.crt \
    -e PIP_DISABLE_PIP_VERSION_CHECK=1 ${PIP_INDEX_URL:+-e PIP_INDEX_URL="$PIP_INDEX_URL"} \
    "$GENIUS_BASE_IMAGE" sh -euc 'python3 -m venv /tmp/dl && /tmp/dl/bin/pip download -q \
      --only-binary=:all: -d /wheels "/wheels/$1[$2]"' sh "$wheel" "$GENIUS_IMAGE_EXTRAS" >>"$log" 2>&1; then
    say "could not download the runtime dependencies (log: $log)"
    return 1
  fi
  podman_build_image "$GENIUS_RUNTIME_IMAGE" "$ROOT/docker/Dockerfile" "$ctx" "$hash" "$log" \
    --build-arg WHEELS_ONLY=1 --build-arg EXTRAS="$GENIUS_IMAGE_EXTRAS"
}

podman_status() {
  if _podman_ping; then
    echo "up    podman Docker API (unix://$PODMAN_SOCK)"
  else
    echo "down  podman Docker API (unix://$PODMAN_SOCK)"
  fi
}
