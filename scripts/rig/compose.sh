# shellcheck shell=bash
# The images docker/compose.yaml runs on in the test rig, built without a registry, and podman-compose.
#
# Sourced after scripts/rig/podman.sh (whose podman_up, _podman_base_image_up, podman_source_hash,
# podman_image_hash and podman_build_image it uses) by scripts/services, which defines say, apt_install,
# ROOT, RIG_DIR and PY.
#
#   compose_images_up   build $GENIUS_AIRFLOW_IMAGE (docker/Dockerfile.airflow), $GENIUS_POSTGRES_IMAGE
#                       (docker/rig/Dockerfile.postgres) and $GENIUS_REDIS_IMAGE (docker/rig/Dockerfile.redis)
#                       from the debootstrapped base, each only when missing or its sources changed
#   compose_status      one status line
#
# As for the runtime image (podman.sh): what needs the network is fetched in a throwaway container of
# the base image with the host's network (pip download of Airflow, its Celery/PostgreSQL providers and
# the project's extras; apt-get --download-only of postgresql and redis-server), then every image is
# built with `podman build --network none`. The image names are the variables docker/compose.yaml reads
# (their defaults there stay the official images); tests/stack/test_compose.py brings the stack up with
# podman-compose on these images.

GENIUS_AIRFLOW_IMAGE=${GENIUS_AIRFLOW_IMAGE:-localhost/airflow-genius:dev}
GENIUS_POSTGRES_IMAGE=${GENIUS_POSTGRES_IMAGE:-localhost/genius-postgres:dev}
GENIUS_REDIS_IMAGE=${GENIUS_REDIS_IMAGE:-localhost/genius-redis:dev}
GENIUS_AIRFLOW_VERSION=${GENIUS_AIRFLOW_VERSION:-3.3.2}
GENIUS_AIRFLOW_EXTRAS=${GENIUS_AIRFLOW_EXTRAS:-redis,postgres,yaml,docker,ssh}
export GENIUS_AIRFLOW_IMAGE GENIUS_POSTGRES_IMAGE GENIUS_REDIS_IMAGE

# The Airflow image: build context = the package sources + wheels/ (every dependency and hatchling, the
# build backend), as docker/Dockerfile.airflow expects for WHEELS_ONLY=1.
_compose_airflow_image_up() {
  local hash ctx=$RIG_DIR/airflow-context log=$RIG_DIR/compose-build.log
  hash=$(podman_source_hash "$GENIUS_AIRFLOW_VERSION" "$GENIUS_AIRFLOW_EXTRAS" -- \
    airflow_genius pyproject.toml README.md docker/Dockerfile.airflow docker/constraints-airflow.txt \
    scripts/rig/compose.sh)
  [ "$(podman_image_hash "$GENIUS_AIRFLOW_IMAGE")" = "$hash" ] && return 0
  say "building $GENIUS_AIRFLOW_IMAGE (sources $hash; log: $log)"
  rm -rf "$ctx"
  mkdir -p "$ctx/wheels" "$RIG_DIR/pip-cache"
  (cd "$ROOT" && git ls-files -z -co --exclude-standard -- airflow_genius pyproject.toml README.md \
    docker/constraints-airflow.txt |
    tar --null -T - -c | tar -C "$ctx" -x)
  # Resolved by the image's own python (markers), with the host's network and CA bundle (mounted for
  # the download only, never baked in).
  if ! podman run --rm --network host -v "$ctx:/ctx" -v "$RIG_DIR/pip-cache:/root/.cache/pip" \
    -v "${PIP_CERT:-/etc/ssl/certs/ca-certificates.crt}:/host-ca.crt:ro" -e PIP_CERT=/host-ca.crt \
    -e PIP_DISABLE_PIP_VERSION_CHECK=1 ${PIP_INDEX_URL:+-e PIP_INDEX_URL="$PIP_INDEX_URL"} \
    "$GENIUS_BASE_IMAGE" sh -euc 'python3 -m venv /tmp/dl && /tmp/dl/bin/pip download -q \
      --only-binary=:all: -d /ctx/wheels -c /ctx/docker/constraints-airflow.txt "apache-airflow[celery,postgres]==$1" "/ctx[$2]" "hatchling>=1.21"' \
    sh "$GENIUS_AIRFLOW_VERSION" "$GENIUS_AIRFLOW_EXTRAS" >>"$log" 2>&1; then
    say "could not download the Airflow image's wheels (log: $log)"
    return 1
  fi
  podman_build_image "$GENIUS_AIRFLOW_IMAGE" "$ROOT/docker/Dockerfile.airflow" "$ctx" "$hash" "$log" \
    --build-arg WHEELS_ONLY=1 --build-arg AIRFLOW_VERSION="$GENIUS_AIRFLOW_VERSION" \
    --build-arg EXTRAS="$GENIUS_AIRFLOW_EXTRAS"
}

# PostgreSQL or Redis from Debian packages: the .debs (with what the base image lacks) are fetched with
# apt-get --download-only in a throwaway container, then installed with dpkg in the offline build.
_compose_debian_image_up() { # name image packages...
  local name=$1 image=$2 hash ctx=$RIG_DIR/$1-context log=$RIG_DIR/compose-build.log
  shift 2
  hash=$(podman_source_hash "$@" -- "docker/rig/Dockerfile.$name" "docker/rig/$name-entrypoint.sh")
  [ "$(podman_image_hash "$image")" = "$hash" ] && return 0
  say "building $image (sources $hash; log: $log)"
  rm -rf "$ctx"
  mkdir -p "$ctx/debs"
  cp "$ROOT/docker/rig/$name-entrypoint.sh" "$ctx/"
  if ! podman run --rm --network host -v "$ctx/debs:/debs" "$GENIUS_BASE_IMAGE" sh -euc '
      apt-get update -qq
      DEBIAN_FRONTEND=noninteractive apt-get install -qq -y --no-install-recommends --download-only \
        -o Dir::Cache::archives=/debs "$@" >/dev/null
      rm -rf /debs/partial /debs/lock' sh "$@" >>"$log" 2>&1; then
    say "could not download the packages of $image (log: $log)"
    return 1
  fi
  podman_build_image "$image" "$ROOT/docker/rig/Dockerfile.$name" "$ctx" "$hash" "$log"
}

compose_images_up() {
  podman_up
  _podman_base_image_up
  : >"$RIG_DIR/compose-build.log"
  _compose_debian_image_up postgres "$GENIUS_POSTGRES_IMAGE" postgresql
  _compose_debian_image_up redis "$GENIUS_REDIS_IMAGE" redis-server
  _compose_airflow_image_up
}

compose_status() {
  local image missing=()
  for image in "$GENIUS_AIRFLOW_IMAGE" "$GENIUS_POSTGRES_IMAGE" "$GENIUS_REDIS_IMAGE"; do
    podman image exists "$image" 2>/dev/null || missing+=("$image")
  done
  if [ ${#missing[@]} -eq 0 ]; then
    echo "up    compose stack images ($GENIUS_AIRFLOW_IMAGE, $GENIUS_POSTGRES_IMAGE, $GENIUS_REDIS_IMAGE)"
  else
    echo "down  compose stack images (missing: ${missing[*]})"
  fi
}
