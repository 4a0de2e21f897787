#!/bin/sh
# Entrypoint of the ratesync containers (docker-compose.yml mounts it read-only): for every
# variable NAME_FILE (the path of a compose secret under /run/secrets), export NAME with that
# file's content and drop NAME_FILE, then exec the command. An empty file leaves NAME unset (a
# provider that is not configured). The values never appear in the compose file, in
# `docker inspect` or in `docker compose config`; only the process that needs them has them.
set -eu
for name in $(env | sed -n 's/^\([A-Za-z_][A-Za-z0-9_]*\)_FILE=.*$/\1/p'); do
    eval "file=\${${name}_FILE}"
    if [ ! -r "$file" ]; then
        echo "secrets-env: cannot read ${name}_FILE ($file): check the compose secret and that the file is readable (README, Deploy)" >&2
        exit 78
    fi
    value=$(cat "$file")
    unset "${name}_FILE"
    if [ -n "$value" ]; then
        export "$name=$value"
    fi
done
exec "$@"
