#!/bin/sh
# As the official redis image: run redis-server as the redis user in /data, reachable from the other
# containers (the official build turns protected mode off; Debian's does not).
set -eu
if [ "${1:-}" = redis-server ]; then
  shift
  chown -R redis:redis /data
  exec setpriv --reuid=redis --regid=redis --init-groups redis-server --protected-mode no "$@"
fi
exec "$@"
