#!/bin/sh
# Entrypoint of docker/rig/Dockerfile.redis: like the official redis image, a redis-server started
# without a config file answers on every interface of its (private) container network.
set -eu
# (Appended, so that a config file or --version stays the first argument.)
if [ "${1:-}" = redis-server ]; then
  set -- "$@" --protected-mode no
fi
exec "$@"
