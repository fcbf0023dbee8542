#!/usr/bin/env bash
# Build the local Docker image betterpg/postgres:15 (also tagged :latest)
# FROM scratch: the Docker engine here has no registry, so nothing can be
# pulled. The root filesystem is assembled from the host's Debian PostgreSQL 15:
#   /usr/lib/postgresql/15 (bin + lib), /usr/share/postgresql/15, every shared
#   library those ELF files need (found with ldd) plus the dynamic loader,
#   /bin/sh (dash) and a few coreutils for the entrypoint, /etc/passwd and
#   /etc/group with `postgres` at the host's uid/gid (so bind-mounted data
#   dirs owned by the host's postgres user work), the C.UTF-8 locale,
#   /usr/share/zoneinfo, /tmp (1777), /run/postgresql (postgres, 2775).
# Left out: LLVM JIT (llvmjit.so + bitcode would add ~120 MB of libLLVM; the
# server runs without JIT), pgxs, man pages.
#
# Conventions follow the official postgres image where cheap:
#   PGDATA=/var/lib/postgresql/data, PATH has /usr/lib/postgresql/15/bin,
#   USER postgres, EXPOSE 5432, STOPSIGNAL SIGINT, CMD ["postgres"], LANG=C.UTF-8.
#   Entrypoint: if $PGDATA has no cluster, initdb with POSTGRES_PASSWORD
#   (required unless POSTGRES_HOST_AUTH_METHOD=trust), POSTGRES_USER
#   (default postgres), POSTGRES_DB (default $POSTGRES_USER),
#   POSTGRES_INITDB_ARGS; host auth scram-sha-256; listen_addresses='*'
#   (publish the port on 127.0.0.1 only). Then, or if a cluster is there,
#   exec postgres "$@". Differences: no VOLUME (no anonymous volumes pile
#   up), no /docker-entrypoint-initdb.d, the container cannot run as root.
#
# Usage: scripts/build-image.sh [--force] [--test] [--no-build]
#   --force     rebuild even if an image with the same content hash exists
#   --test      afterwards, smoke-test the image (TCP + password, bind-mounted
#               PGDATA owned by the host postgres user, restart on it)
#   --no-build  with --test: only test the existing image
# Idempotent: the image carries label betterpg.rootfs-hash (sha256 over the
# assembled root filesystem and the Dockerfile); a matching image is kept.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

IMAGE=betterpg/postgres
PG_MAJOR=15
PG_HOME=/usr/lib/postgresql/$PG_MAJOR
PG_SHARE=/usr/share/postgresql/$PG_MAJOR
HASH_LABEL=betterpg.rootfs-hash

FORCE=0 TEST=0 BUILD=1
for arg in "$@"; do
  case "$arg" in
    --force) FORCE=1 ;;
    --test) TEST=1 ;;
    --no-build) BUILD=0 ;;
    -h|--help) sed -n '2,/^set -euo/{/^#/s/^# \{0,1\}//p}' "$0"; exit 0 ;;
    *) die "unknown argument '$arg' (try --help)" ;;
  esac
done

need_root "the root filesystem is assembled with postgres-owned files"
need_cmd docker
need_cmd ldd
need_cmd sha256sum
timeout 20 docker info >/dev/null 2>&1 || die "docker engine not reachable ('docker info' fails)"
[[ -x "$PG_HOME/bin/postgres" ]] || die "$PG_HOME/bin/postgres not found (run scripts/setup.sh)"
[[ -d "$PG_SHARE" ]] || die "$PG_SHARE not found (run scripts/setup.sh)"
PG_UID=$(id -u postgres 2>/dev/null) || die "OS user postgres does not exist (run scripts/setup.sh)"
PG_GID=$(id -g postgres)
PG_VERSION=$(dpkg-query -W -f='${Version}' "postgresql-$PG_MAJOR" 2>/dev/null) || PG_VERSION=unknown

# Tools the entrypoint uses besides dash's builtins; initdb runs `locale -a`.
TOOLS=(mkdir chmod rm cat ls id locale)

# copy_file SRC: copy SRC into $ROOTFS at its canonical directory, dereferencing
# symlinks (so a library lands at the soname path the loader looks for).
copy_file() {
  local src=$1 dir
  dir=$(readlink -f -- "$(dirname -- "$src")")
  mkdir -p -- "$ROOTFS$dir"
  [[ -e "$ROOTFS$dir/$(basename -- "$src")" ]] || cp -L --preserve=mode,timestamps -- "$src" "$ROOTFS$dir/"
}

write_entrypoint() {
  cat >"$1" <<'SH'
#!/bin/sh
# betterpg/postgres entrypoint (scripts/build-image.sh): a minimal take on the
# official postgres image's docker-entrypoint.sh.
set -eu
: "${PGDATA:=/var/lib/postgresql/data}"
export PGDATA

# `docker run IMAGE -c key=value` means `postgres -c key=value`.
case "${1:-}" in -*) set -- postgres "$@" ;; esac

init_cluster() {
  # POSTGRES_INITDB_ARGS is word-split on purpose, like the official image.
  # shellcheck disable=SC2086
  initdb --username="$user" --auth-local=trust --auth-host="$auth" "$@" ${POSTGRES_INITDB_ARGS:-}
}

if [ "${1:-}" = postgres ] && [ ! -s "$PGDATA/PG_VERSION" ]; then
  user="${POSTGRES_USER:-postgres}"
  db="${POSTGRES_DB:-$user}"
  auth="${POSTGRES_HOST_AUTH_METHOD:-scram-sha-256}"
  if [ -z "${POSTGRES_PASSWORD:-}" ] && [ "$auth" != trust ]; then
    echo "error: database is uninitialized and POSTGRES_PASSWORD is not set" \
         "(set it, or POSTGRES_HOST_AUTH_METHOD=trust)" >&2
    exit 1
  fi
  mkdir -p "$PGDATA"
  chmod 0700 "$PGDATA" 2>/dev/null || true
  if [ -n "${POSTGRES_PASSWORD:-}" ]; then
    pwfile="/tmp/.pwfile.$$"
    (umask 077; printf '%s\n' "$POSTGRES_PASSWORD" >"$pwfile")
    init_cluster --pwfile="$pwfile" || { rm -f "$pwfile"; exit 1; }
    rm -f "$pwfile"
  else
    init_cluster
  fi
  printf "\nlisten_addresses = '*'\n" >>"$PGDATA/postgresql.conf"
  printf '\nhost all all all %s\n' "$auth" >>"$PGDATA/pg_hba.conf"
  if [ "$db" != postgres ]; then
    echo "CREATE DATABASE \"$db\";" | postgres --single -D "$PGDATA" postgres >/dev/null
  fi
  echo "PostgreSQL init process complete; ready for start up."
fi

exec "$@"
SH
  chmod 0755 "$1"
}

assemble_rootfs() {
  log "assembling root filesystem from $PG_HOME ($PG_VERSION)"
  mkdir -p -- "$ROOTFS"
  local d
  # Debian 12 has merged /usr: /bin, /lib, ... are symlinks into /usr.
  for d in bin sbin lib lib64; do
    if [[ -L "/$d" ]]; then
      mkdir -p -- "$ROOTFS/$(readlink -f "/$d")"
      ln -s -- "$(readlink "/$d")" "$ROOTFS/$d"
    else
      mkdir -p -- "$ROOTFS/$d"
    fi
  done

  # PostgreSQL itself, without JIT, pgxs and man pages.
  tar -C / -cf - \
      --exclude="${PG_HOME#/}/lib/llvmjit.so" \
      --exclude="${PG_HOME#/}/lib/llvmjit_types.bc" \
      --exclude="${PG_HOME#/}/lib/bitcode" \
      --exclude="${PG_HOME#/}/lib/pgxs" \
      --exclude="${PG_SHARE#/}/man" \
      "${PG_HOME#/}" "${PG_SHARE#/}" \
    | tar -C "$ROOTFS" -xf - --no-same-owner

  # Shell and tools for the entrypoint.
  local sh t
  sh=$(readlink -f /bin/sh)
  copy_file "$sh"
  [[ "$(basename "$sh")" == sh ]] || ln -s -- "$(basename "$sh")" "$ROOTFS$(dirname "$sh")/sh"
  for t in "${TOOLS[@]}"; do
    copy_file "$(readlink -f "$(command -v "$t")")"
  done

  # Every shared library any ELF file needs, and the dynamic loader.
  local f
  local -a elves libs
  mapfile -t elves < <(find "$ROOTFS" -type f -perm -u+x -o -type f -name '*.so*')
  mapfile -t libs < <(
    for f in "${elves[@]}"; do
      [[ "$(head -c 4 -- "$f" | od -An -c | tr -d ' ')" == '177ELF' ]] || continue
      # ldd the host's original (identical) file, so $ORIGIN paths resolve on the host.
      ldd -- "${f#"$ROOTFS"}" 2>/dev/null || true
    done | awk '
      /not found/ { print "MISSING " $1; next }
      $2 == "=>" && $3 ~ /^\// { print $3; next }
      $1 ~ /^\// { print $1 }' | sort -u)
  local missing=()
  for f in "${libs[@]}"; do
    if [[ "$f" == MISSING* ]]; then missing+=("${f#MISSING }"); continue; fi
    copy_file "$f"
  done
  # Libraries that only reference each other inside $PG_HOME/lib resolve there.
  if (( ${#missing[@]} )); then
    for f in "${missing[@]}"; do
      [[ -e "$ROOTFS$PG_HOME/lib/$f" ]] || die "a binary needs $f, which ldd cannot find on the host"
    done
  fi

  # Locale for LANG=C.UTF-8 and the time zone database (Debian's PostgreSQL
  # is built --with-system-tzdata).
  if [[ -d /usr/lib/locale/C.utf8 ]]; then
    mkdir -p -- "$ROOTFS/usr/lib/locale"
    cp -a -- /usr/lib/locale/C.utf8 "$ROOTFS/usr/lib/locale/"
  else
    die "/usr/lib/locale/C.utf8 missing on the host (package libc-bin)"
  fi
  [[ -d /usr/share/zoneinfo ]] || die "/usr/share/zoneinfo missing on the host (package tzdata)"
  mkdir -p -- "$ROOTFS/usr/share"
  cp -a -- /usr/share/zoneinfo "$ROOTFS/usr/share/"

  # Users, groups, name service.
  mkdir -p -- "$ROOTFS/etc"
  printf 'root:x:0:0:root:/root:/bin/sh\npostgres:x:%s:%s:PostgreSQL administrator:/var/lib/postgresql:/bin/sh\n' \
    "$PG_UID" "$PG_GID" >"$ROOTFS/etc/passwd"
  printf 'root:x:0:\npostgres:x:%s:\n' "$PG_GID" >"$ROOTFS/etc/group"
  printf 'passwd: files\ngroup: files\nshadow: files\nhosts: files dns\n' >"$ROOTFS/etc/nsswitch.conf"
  chmod 0644 "$ROOTFS"/etc/{passwd,group,nsswitch.conf}

  # Directories.
  install -d -m 1777 "$ROOTFS/tmp"
  install -d -m 0700 "$ROOTFS/root"
  install -d -m 0755 "$ROOTFS/run" "$ROOTFS/var/lib" "$ROOTFS/usr/local/bin"
  ln -s ../run "$ROOTFS/var/run"
  install -d -m 2775 -o "$PG_UID" -g "$PG_GID" "$ROOTFS/run/postgresql"
  install -d -m 0755 -o "$PG_UID" -g "$PG_GID" "$ROOTFS/var/lib/postgresql"
  install -d -m 0700 -o "$PG_UID" -g "$PG_GID" "$ROOTFS/var/lib/postgresql/data"

  write_entrypoint "$ROOTFS/usr/local/bin/docker-entrypoint.sh"
}

write_dockerfile() {
  cat >"$1" <<EOF
FROM scratch
ADD rootfs.tar /
ENV PATH=$PG_HOME/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \\
    PGDATA=/var/lib/postgresql/data \\
    LANG=C.UTF-8 \\
    PG_MAJOR=$PG_MAJOR \\
    PG_VERSION=$PG_VERSION
USER postgres
WORKDIR /var/lib/postgresql
EXPOSE 5432
STOPSIGNAL SIGINT
ENTRYPOINT ["docker-entrypoint.sh"]
CMD ["postgres"]
EOF
}

# content hash: every path with type, mode, owner, size, link target, plus
# every file's sha256, plus the Dockerfile.
content_hash() {
  local root=$1 dockerfile=$2
  {
    (cd "$root" && find . -printf '%p %y %m %U:%G %s %l\n' | LC_ALL=C sort)
    (cd "$root" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum)
    cat "$dockerfile"
  } | sha256sum | cut -d' ' -f1
}

image_label() {
  docker image inspect --format "{{ index .Config.Labels \"$HASH_LABEL\" }}" "$1" 2>/dev/null || true
}

build() {
  local stage
  stage=$(mktemp -d /tmp/bpg-image.XXXXXX)
  bpg_cleanup_add "$stage"
  ROOTFS="$stage/rootfs"
  mkdir -p "$stage/ctx"
  assemble_rootfs
  write_dockerfile "$stage/ctx/Dockerfile"
  local hash
  hash=$(content_hash "$ROOTFS" "$stage/ctx/Dockerfile")

  if (( ! FORCE )) && [[ "$(image_label "$IMAGE:$PG_MAJOR")" == "$hash" ]]; then
    if [[ "$(image_label "$IMAGE:latest")" != "$hash" ]]; then
      docker tag "$IMAGE:$PG_MAJOR" "$IMAGE:latest"
    fi
    log "image $IMAGE:$PG_MAJOR is up to date ($HASH_LABEL=${hash:0:12}); nothing to build"
    return 0
  fi

  local old_id
  old_id=$(docker image inspect --format '{{.Id}}' "$IMAGE:$PG_MAJOR" 2>/dev/null || true)
  printf 'LABEL %s=%s \\\n      org.opencontainers.image.title=%s \\\n      org.opencontainers.image.version=%s\n' \
    "$HASH_LABEL" "$hash" "$IMAGE" "$PG_VERSION" >>"$stage/ctx/Dockerfile"
  tar -C "$ROOTFS" --numeric-owner -cf "$stage/ctx/rootfs.tar" .
  log "building $IMAGE:$PG_MAJOR ($(du -sh "$stage/ctx/rootfs.tar" | cut -f1) root filesystem, $HASH_LABEL=${hash:0:12})"
  # The legacy builder: no buildx here, and FROM scratch + ADD needs no registry.
  DOCKER_BUILDKIT=0 docker build -q -t "$IMAGE:$PG_MAJOR" -t "$IMAGE:latest" "$stage/ctx" \
    >"$stage/build.log" 2>&1 || die "docker build failed: $(tail -n 3 "$stage/build.log" | tr '\n' ' ')"
  local new_id
  new_id=$(docker image inspect --format '{{.Id}}' "$IMAGE:$PG_MAJOR")
  if [[ -n "$old_id" && "$old_id" != "$new_id" ]]; then
    # The previous build is now untagged; drop it unless a container uses it.
    docker image rm "$old_id" >/dev/null 2>&1 || true
  fi
  ok "built $IMAGE:$PG_MAJOR and $IMAGE:latest (${new_id:7:12})"
}

# ---------------------------------------------------------------- smoke test

PSQL=$PG_HOME/bin/psql

# start_container [docker run args...]: sets CID, registers its removal on exit.
CID=
start_container() {
  CID=$(docker run -d -p 127.0.0.1::5432 "$@") || die "docker run $* failed"
  bpg_cleanup_cmd "docker rm -f $CID"
}

container_port() {
  docker port "$1" 5432/tcp | head -n1 | sed 's/.*://'
}

# sql_when_ready CID PASSWORD SQL: retries up to 60 s; sets SQL_OUT.
SQL_OUT=
sql_when_ready() {
  local cid=$1 pw=$2 sql=$3 port i
  port=$(container_port "$cid")
  [[ -n "$port" ]] || die "container ${cid:0:12} publishes no port"
  for (( i = 0; i < 120; i++ )); do
    if SQL_OUT=$(PGPASSWORD="$pw" PGCONNECT_TIMEOUT=3 "$PSQL" -X -A -t -v ON_ERROR_STOP=1 \
        "host=127.0.0.1 port=$port user=postgres dbname=postgres sslmode=disable" -c "$sql" 2>&1); then
      return 0
    fi
    if [[ "$(docker inspect -f '{{.State.Running}}' "$cid" 2>/dev/null)" != true ]]; then
      die "container ${cid:0:12} exited: $(docker logs "$cid" 2>&1 | tail -n 3 | tr '\n' ' ')"
    fi
    sleep 0.5
  done
  die "no answer from container ${cid:0:12} on 127.0.0.1:$port within 60 s: $SQL_OUT"
}

stop_container() {
  docker stop -t 30 "$1" >/dev/null
  docker rm -f "$1" >/dev/null
}

smoke_test() {
  [[ -x "$PSQL" ]] || die "$PSQL not found"
  local pw out data name
  pw="pw-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"

  log "test 1: fresh PGDATA inside the container, TCP + scram password"
  start_container -e POSTGRES_PASSWORD="$pw" "$IMAGE:$PG_MAJOR"
  sql_when_ready "$CID" "$pw" 'SELECT version()'
  [[ "$SQL_OUT" == "PostgreSQL $PG_MAJOR."* ]] || die "unexpected version(): $SQL_OUT"
  if PGPASSWORD=wrong "$PSQL" -X -A -t -c 'SELECT 1' \
      "host=127.0.0.1 port=$(container_port "$CID") user=postgres dbname=postgres sslmode=disable" \
      >/dev/null 2>&1; then
    die "a wrong password was accepted"
  fi
  stop_container "$CID"
  ok "test 1: ${SQL_OUT%% on *}; wrong password refused"

  log "test 2: bind-mounted PGDATA owned by the host postgres user"
  data=$(mktemp -d /tmp/bpg-image-pgdata.XXXXXX)
  bpg_cleanup_add "$data"
  chown postgres: "$data"
  chmod 0700 "$data"
  start_container -e POSTGRES_PASSWORD="$pw" -e POSTGRES_DB=bpgtest \
    -v "$data:/var/lib/postgresql/data" "$IMAGE:$PG_MAJOR"
  sql_when_ready "$CID" "$pw" 'CREATE TABLE t (x int); INSERT INTO t VALUES (42)'
  sql_when_ready "$CID" "$pw" "SELECT count(*) FROM pg_database WHERE datname = 'bpgtest'"
  [[ "$SQL_OUT" == 1 ]] || die "POSTGRES_DB=bpgtest was not created"
  stop_container "$CID"
  [[ -s "$data/PG_VERSION" ]] || die "no cluster in the bind-mounted dir"
  [[ "$(stat -c %U "$data/PG_VERSION")" == postgres ]] || die "cluster files are not owned by host postgres"
  ok "test 2: cluster initialized in $data, owned by postgres; POSTGRES_DB created"

  log "test 3: restart on the existing cluster (no POSTGRES_PASSWORD needed)"
  start_container -v "$data:/var/lib/postgresql/data" "$IMAGE:$PG_MAJOR"
  sql_when_ready "$CID" "$pw" 'SELECT x FROM t'
  [[ "$SQL_OUT" == 42 ]] || die "data did not survive the restart: $SQL_OUT"
  stop_container "$CID"
  ok "test 3: existing cluster reused, data intact"

  log "test 4: uninitialized PGDATA without POSTGRES_PASSWORD is refused"
  name="bpg-image-test-$$"
  bpg_cleanup_cmd "docker rm -f $name"
  if out=$(timeout 60 docker run --rm --name "$name" "$IMAGE:$PG_MAJOR" 2>&1); then
    die "container started without POSTGRES_PASSWORD"
  fi
  [[ "$out" == *POSTGRES_PASSWORD* ]] || die "unexpected refusal message: $out"
  ok "test 4: refused with: $out"
}

if (( BUILD )); then build; fi
if (( TEST )); then smoke_test; fi
printf '%s\n' "$IMAGE:$PG_MAJOR"
