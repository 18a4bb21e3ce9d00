#!/usr/bin/env bash
# A real Kubernetes control plane for the project's tests: etcd + kube-apiserver +
# kube-controller-manager (Kubernetes v1.20.2), on loopback only, built from Debian
# bookworm's own packages (no kind/k3d/envtest downloads needed).
#
#   control-plane.sh build        ensure the binaries exist; last stdout line: their directory
#   control-plane.sh start DIR    start a control plane in DIR; last stdout line: DIR/kubeconfig
#   control-plane.sh stop DIR     stop exactly the processes listed in DIR/pids
#
# Everything except the final line goes to stderr, so `kc=$(control-plane.sh start DIR)` works.
# See README.md next to this file.
set -euo pipefail

K8S_VERSION=1.20.2
K8S_GIT_COMMIT=faecb196815e248d3ecfb03c680a4507229c2a56
K8S_BUILD_DATE=2021-01-13T13:20:00Z
CACHE_ROOT="${SOCKUDO_K8S_CACHE:-${HOME:-/root}/.cache/sockudo-k8s}"
CACHE_DIR="$CACHE_ROOT/v$K8S_VERSION"
READY_TIMEOUT="${SOCKUDO_K8S_READY_TIMEOUT:-60}"
STOP_GRACE="${SOCKUDO_K8S_STOP_GRACE:-5}"
SA_ISSUER="https://kubernetes.default.svc.cluster.local"
OPERATOR_USER="system:serviceaccount:sockudo-system:sockudo-operator"
OPERATOR_GROUPS="system:serviceaccounts,system:serviceaccounts:sockudo-system,system:authenticated"
KCM_CONTROLLERS='*,-nodeipam,-nodelifecycle,-cloud-node-lifecycle,-service,-route,-attachdetach,-persistentvolume-binder,-persistentvolume-expander,-csrsigning,-csrapproving,-csrcleaner,-bootstrapsigner,-tokencleaner,-ttl'

log() { printf '[control-plane %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }
usage() {
  sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"
  elif command -v sudo >/dev/null 2>&1; then sudo "$@"
  else die "root (or sudo) is needed for: $*"
  fi
}
apt_get() { as_root env DEBIAN_FRONTEND=noninteractive apt-get -q -o DPkg::Lock::Timeout=600 "$@"; }
pkg_installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }

# apt_install PKG...: installs the missing ones; on failure (stale or empty lists, a .deb gone
# from the mirror) runs apt-get update and tries once more.
apt_install() {
  local missing=() p
  for p in "$@"; do pkg_installed "$p" || missing+=("$p"); done
  [ "${#missing[@]}" -eq 0 ] && return 0
  log "apt-get install ${missing[*]}"
  if ! apt_get install -y --no-install-recommends "${missing[@]}" >&2; then
    log "apt-get install failed; running apt-get update and retrying once"
    apt_get update >&2 || true
    apt_get install -y --no-install-recommends "${missing[@]}" >&2
  fi
}

# ---------------------------------------------------------------------------------------------
# Locating binaries
# ---------------------------------------------------------------------------------------------

# Sets BIN_DIR, KUBE_APISERVER, KUBE_CM (empty when absent), ETCD_BIN (empty when not found).
# Returns 1 when no usable kube-apiserver is known yet.
resolve_bins() {
  local d
  BIN_DIR="" KUBE_APISERVER="" KUBE_CM="" ETCD_BIN=""
  for d in "${KUBEBUILDER_ASSETS:-}" "${SOCKUDO_KUBE_BIN_DIR:-}"; do
    if [ -z "$d" ] || [ ! -x "$d/kube-apiserver" ]; then continue; fi
    BIN_DIR="$(cd "$d" && pwd -P)"
    KUBE_APISERVER="$BIN_DIR/kube-apiserver"
    [ -x "$BIN_DIR/kube-controller-manager" ] && KUBE_CM="$BIN_DIR/kube-controller-manager"
    if [ -x "$BIN_DIR/etcd" ]; then ETCD_BIN="$BIN_DIR/etcd"
    else ETCD_BIN="$(command -v etcd || true)"
    fi
    return 0
  done
  if cache_complete; then
    BIN_DIR="$CACHE_DIR"
    KUBE_APISERVER="$CACHE_DIR/kube-apiserver"
    KUBE_CM="$CACHE_DIR/kube-controller-manager"
    ETCD_BIN="$(command -v etcd || true)"
    return 0
  fi
  return 1
}

cache_complete() { [ -x "$CACHE_DIR/kube-apiserver" ] && [ -x "$CACHE_DIR/kube-controller-manager" ]; }

ensure_etcd() {
  if [ -z "$ETCD_BIN" ]; then
    apt_install etcd-server
    ETCD_BIN="$(command -v etcd || true)"
    [ -n "$ETCD_BIN" ] || die "etcd not found even after installing etcd-server"
  fi
}

ensure_bins() {
  if ! resolve_bins; then
    build_from_source
    resolve_bins || die "build finished but $CACHE_DIR is incomplete"
  fi
  ensure_etcd
}

# ---------------------------------------------------------------------------------------------
# Building kube-apiserver and kube-controller-manager from Debian's `kubernetes` source package
# ---------------------------------------------------------------------------------------------

BUILD_WORK=""
cleanup_build() {
  if [ -n "$BUILD_WORK" ] && [ -d "$BUILD_WORK" ]; then
    rm -rf "$BUILD_WORK" 2>/dev/null || { chmod -R u+w "$BUILD_WORK" 2>/dev/null; rm -rf "$BUILD_WORK"; }
  fi
  rm -rf "$CACHE_ROOT/.v$K8S_VERSION.tmp.$$"
}

# deb-src lines mirroring the system's Debian bookworm / bookworm-security `deb` entries
# (deb822 .sources files and one-line .list files). Written to a private list: the system's
# apt configuration is not touched.
debsrc_lines() {
  local f
  local defkey=/usr/share/keyrings/debian-archive-keyring.gpg
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    awk -v defkey="$defkey" '
      function flush(  n, m, i, j, U, S) {
        if (types ~ /(^|[ \t])deb([ \t]|$)/ && enabled != "no") {
          n = split(uris, U, /[ \t]+/); m = split(suites, S, /[ \t]+/)
          for (i = 1; i <= n; i++) for (j = 1; j <= m; j++)
            if (S[j] == "bookworm" || S[j] == "bookworm-security")
              printf "deb-src [signed-by=%s] %s %s main\n", key, U[i], S[j]
        }
        types = uris = suites = enabled = ""; key = defkey
      }
      BEGIN { key = defkey }
      /^[ \t]*#/ { next }
      /^[ \t]*$/ { flush(); next }
      /^[A-Za-z-]+:/ {
        field = tolower(substr($0, 1, index($0, ":") - 1))
        val = substr($0, index($0, ":") + 1); gsub(/^[ \t]+|[ \t]+$/, "", val)
        if (field == "types") types = val
        else if (field == "uris") uris = val
        else if (field == "suites") suites = val
        else if (field == "enabled") enabled = tolower(val)
        else if (field == "signed-by" && val ~ /^\//) key = val
      }
      END { flush() }' "$f"
  done
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -f "$f" ] || continue
    awk -v defkey="$defkey" '
      $1 == "deb" {
        i = 2
        if ($2 ~ /^\[/) { while (i <= NF && $i !~ /\]$/) i++; i++ }
        if ($(i + 1) == "bookworm" || $(i + 1) == "bookworm-security")
          printf "deb-src [signed-by=%s] %s %s main\n", defkey, $i, $(i + 1)
      }' "$f"
  done
}

build_from_source() {
  mkdir -p "$CACHE_ROOT"
  exec 9>"$CACHE_ROOT/.build.lock"
  if ! flock -n 9; then
    log "another build holds $CACHE_ROOT/.build.lock; waiting for it"
    flock 9
  fi
  if cache_complete; then
    log "binaries appeared in $CACHE_DIR while waiting"
    exec 9>&-
    return 0
  fi
  # Leftovers of an interrupted build (we hold the lock, so nobody else is writing them).
  rm -rf "$CACHE_ROOT"/.v"$K8S_VERSION".tmp.* "$CACHE_DIR"

  local t0 t1 logf
  t0=$(date +%s)
  logf="$CACHE_ROOT/build.log"
  : >"$logf"
  log "building kube-apiserver + kube-controller-manager v$K8S_VERSION from Debian sources (about 5 minutes on 2 cores); log: $logf"

  apt_install golang-go make rsync dpkg-dev etcd-server openssl curl ca-certificates debian-archive-keyring

  BUILD_WORK="$(mktemp -d "${TMPDIR:-/tmp}/sockudo-k8s-build.XXXXXX")"
  trap cleanup_build EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  local w="$BUILD_WORK"
  mkdir -p "$w/apt/lists/partial" "$w/apt/cache/archives/partial" "$w/src" "$w/debs" "$w/out" "$w/gopath/src/k8s.io"

  # 1. The kubernetes source package, through a private deb-src list.
  debsrc_lines | sort -u >"$w/apt/deb-src.list"
  [ -s "$w/apt/deb-src.list" ] || die "no Debian bookworm entry found in /etc/apt/sources.list{,.d/} to derive deb-src lines from"
  local aptsrc=(-o "Dir::Etc::SourceList=$w/apt/deb-src.list" -o Dir::Etc::SourceParts=/dev/null
                -o "Dir::State::Lists=$w/apt/lists" -o "Dir::Cache=$w/apt/cache" -o APT::Sandbox::User=root)
  log "fetching the kubernetes source package"
  apt_get "${aptsrc[@]}" update >>"$logf" 2>&1 || log "warning: apt-get update (deb-src) reported errors; trying anyway"
  if ! (cd "$w/src" && apt_get "${aptsrc[@]}" source --download-only kubernetes) >>"$logf" 2>&1; then
    tail -n 20 "$logf" >&2; die "apt-get source kubernetes failed"
  fi
  local origs orig
  origs=("$w"/src/kubernetes_*.orig.tar.*)
  orig="${origs[0]}"
  [ -f "$orig" ] || die "no kubernetes orig tarball downloaded"
  tar -xf "$orig" -C "$w"
  local tree="$w/kubernetes-$K8S_VERSION"
  [ -d "$tree/vendor" ] || die "expected $tree (upstream v$K8S_VERSION with vendor/) in $orig"

  # 2. Replace the vendored reflect2 / json-iterator (broken under Go >= 1.18: `fatal error:
  #    fault` in runtime.mapiterinit on the first custom resource) with Debian's newer trees.
  log "replacing vendored modern-go/reflect2 and json-iterator/go with Debian's"
  local pkgs=(golang-github-modern-go-reflect2-dev golang-github-json-iterator-go-dev)
  if ! (cd "$w/debs" && apt_get -o APT::Sandbox::User=root download "${pkgs[@]}") >>"$logf" 2>&1; then
    apt_get update >>"$logf" 2>&1 || true
    (cd "$w/debs" && apt_get -o APT::Sandbox::User=root download "${pkgs[@]}") >>"$logf" 2>&1 \
      || { tail -n 20 "$logf" >&2; die "apt-get download ${pkgs[*]} failed"; }
  fi
  local deb reflect2_ver jsoniter_ver
  for deb in "$w"/debs/*.deb; do dpkg -x "$deb" "$w/debs/root"; done
  reflect2_ver="$(dpkg-deb -f "$w"/debs/golang-github-modern-go-reflect2-dev_*.deb Version | sed 's/^[0-9]*://; s/-[^-]*$//')"
  jsoniter_ver="$(dpkg-deb -f "$w"/debs/golang-github-json-iterator-go-dev_*.deb Version | sed 's/^[0-9]*://; s/-[^-]*$//')"
  local gocode="$w/debs/root/usr/share/gocode/src/github.com"
  if [ ! -d "$gocode/modern-go/reflect2" ] || [ ! -d "$gocode/json-iterator/go" ]; then
    die "unexpected layout of the Debian Go source packages"
  fi
  rm -rf "$tree/vendor/github.com/modern-go/reflect2" "$tree/vendor/github.com/json-iterator/go"
  cp -rL "$gocode/modern-go/reflect2" "$tree/vendor/github.com/modern-go/reflect2"
  cp -rL "$gocode/json-iterator/go" "$tree/vendor/github.com/json-iterator/go"
  sed -i -e "/github\.com\/modern-go\/reflect2/s/v1\.0\.1/v$reflect2_ver/g" \
         -e "/github\.com\/json-iterator\/go/s/v1\.1\.10/v$jsoniter_ver/g" "$tree/vendor/modules.txt"
  log "vendored reflect2 v$reflect2_ver, json-iterator v$jsoniter_ver"

  # 3. Go environment: GOPATH mode, no network, no cgo; caches inside the build dir.
  export GO111MODULE=off GOPROXY=off GOFLAGS="" CGO_ENABLED=0 GOCACHE="$w/gocache" GOPATH="$w/gopath"
  unset GOROOT GOBIN || true
  log "$(go version)"
  ln -s "$tree" "$w/gopath/src/k8s.io/kubernetes"

  # 4. pkg/generated/openapi/zz_generated.openapi.go is not in the tarball: generate it.
  cat >"$w/version.env" <<EOF
KUBE_GIT_COMMIT='$K8S_GIT_COMMIT'
KUBE_GIT_TREE_STATE='clean'
KUBE_GIT_VERSION='v$K8S_VERSION'
KUBE_GIT_MAJOR='${K8S_VERSION%%.*}'
KUBE_GIT_MINOR='$(echo "$K8S_VERSION" | cut -d. -f2)'
EOF
  log "make gen_openapi"
  if ! (cd "$tree" && make gen_openapi KUBE_GIT_VERSION_FILE="$w/version.env") >>"$logf" 2>&1; then
    tail -n 30 "$logf" >&2; die "make gen_openapi failed"
  fi
  [ -f "$tree/pkg/generated/openapi/zz_generated.openapi.go" ] || die "make gen_openapi did not produce zz_generated.openapi.go"

  # 5. The two binaries.
  local ldflags="-s -w" pkg
  for pkg in k8s.io/kubernetes/vendor/k8s.io/component-base/version k8s.io/kubernetes/vendor/k8s.io/client-go/pkg/version; do
    ldflags+=" -X $pkg.gitVersion=v$K8S_VERSION -X $pkg.gitMajor=${K8S_VERSION%%.*}"
    ldflags+=" -X $pkg.gitMinor=$(echo "$K8S_VERSION" | cut -d. -f2) -X $pkg.gitCommit=$K8S_GIT_COMMIT"
    ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=$K8S_BUILD_DATE"
  done
  local bin b0
  for bin in kube-apiserver kube-controller-manager; do
    b0=$(date +%s)
    log "go build ./cmd/$bin"
    if ! (cd "$w/gopath/src/k8s.io/kubernetes" && go build -trimpath -ldflags "$ldflags" -o "$w/out/$bin" "./cmd/$bin") >>"$logf" 2>&1; then
      tail -n 30 "$logf" >&2; die "go build ./cmd/$bin failed"
    fi
    log "built $bin in $(( $(date +%s) - b0 )) s"
  done
  "$w/out/kube-apiserver" --version >&2

  # 6. Install atomically: stage next to the cache dir (same filesystem), then rename.
  local stage="$CACHE_ROOT/.v$K8S_VERSION.tmp.$$"
  mkdir -p "$stage"
  cp "$w/out/kube-apiserver" "$w/out/kube-controller-manager" "$stage/"
  {
    echo "kubernetes v$K8S_VERSION ($K8S_GIT_COMMIT), built $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "source: $(basename "$orig"); reflect2 v$reflect2_ver; json-iterator v$jsoniter_ver; $(go version)"
    (cd "$stage" && sha256sum kube-apiserver kube-controller-manager)
  } >"$stage/BUILD-INFO"
  mv -T "$stage" "$CACHE_DIR"
  t1=$(date +%s)
  log "installed into $CACHE_DIR (build took $(( t1 - t0 )) s)"

  cleanup_build
  BUILD_WORK=""
  trap - EXIT INT TERM
  exec 9>&-
}

cmd_build() {
  ensure_bins
  if [ -z "$KUBE_CM" ]; then
    log "note: no kube-controller-manager in $BIN_DIR (garbage collection, namespace deletion and Deployment->ReplicaSet will be unavailable)"
  fi
  log "kube-apiserver: $KUBE_APISERVER"
  log "etcd: $ETCD_BIN"
  echo "$BIN_DIR"
}

# ---------------------------------------------------------------------------------------------
# start / stop
# ---------------------------------------------------------------------------------------------

abs_dir() { mkdir -p "$1" && (cd "$1" && pwd -P); }

# free_ports N: N distinct free loopback TCP ports.
free_ports() {
  if command -v python3 >/dev/null 2>&1; then
    python3 - "$1" <<'EOF'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
  else
    # No python3: random ports below the kernel's ephemeral range that nothing uses now.
    local used=" " out=() p _sl local_addr _rest
    for p in /proc/net/tcp /proc/net/tcp6; do
      [ -r "$p" ] || continue
      while read -r _sl local_addr _rest; do
        [[ "$local_addr" == *:* ]] || continue
        used+="$(( 16#${local_addr##*:} )) "
      done < <(tail -n +2 "$p")
    done
    while [ "${#out[@]}" -lt "$1" ]; do
      p=$(( 20000 + (RANDOM * 32768 + RANDOM) % 12000 ))
      case "$used ${out[*]} " in *" $p "*) continue ;; esac
      out+=("$p")
    done
    echo "${out[*]}"
  fi
}

pid_alive() {
  local state
  [ -d "/proc/$1" ] || return 1
  state="$(awk '{ print $3 }' "/proc/$1/stat" 2>/dev/null || true)"
  [ -n "$state" ] && [ "$state" != Z ] && [ "$state" != X ]
}

# Only ever signal processes that are one of ours (guards against a stale pids file whose
# numbers were reused by something else).
pid_is_ours() {
  local exe
  exe="$(readlink "/proc/$1/exe" 2>/dev/null || true)"
  exe="${exe% (deleted)}"
  case "$(basename "${exe:-none}")" in
    etcd|kube-apiserver|kube-controller-manager) return 0 ;;
    *) return 1 ;;
  esac
}

live_pids() {  # live_pids DIR: the PIDs from DIR/pids that still run one of our binaries
  local p
  [ -f "$1/pids" ] || return 0
  while read -r p; do
    [[ "$p" =~ ^[0-9]+$ ]] || continue
    if pid_alive "$p" && pid_is_ours "$p"; then echo "$p"; fi
  done <"$1/pids"
}

gen_certs() {
  local c="$1"
  cat >"$c/openssl.cnf" <<'EOF'
[req]
distinguished_name = dn
prompt = no
[dn]
CN = sockudo-test
[v3_ca]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign,digitalSignature
subjectKeyIdentifier = hash
[v3_server]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1,DNS:localhost,IP:10.0.0.1,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local
[v3_client]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = clientAuth
EOF
  local o=(-config "$c/openssl.cnf")
  openssl req "${o[@]}" -x509 -newkey rsa:2048 -nodes -sha256 -days 3650 -extensions v3_ca \
    -subj "/CN=sockudo-test-ca" -keyout "$c/ca.key" -out "$c/ca.crt" 2>/dev/null
  # sign NAME SUBJECT EXTENSIONS
  sign() {
    openssl req "${o[@]}" -new -newkey rsa:2048 -nodes -subj "$2" -keyout "$c/$1.key" -out "$c/$1.csr" 2>/dev/null
    openssl x509 -req -sha256 -days 3650 -in "$c/$1.csr" -CA "$c/ca.crt" -CAkey "$c/ca.key" \
      -set_serial "0x$(openssl rand -hex 8)" -extfile "$c/openssl.cnf" -extensions "$3" -out "$c/$1.crt" 2>/dev/null
    rm -f "$c/$1.csr"
  }
  sign apiserver "/CN=kube-apiserver" v3_server
  sign controller-manager "/O=system:masters/CN=system:kube-controller-manager" v3_client
  openssl genrsa -out "$c/sa.key" 2048 2>/dev/null
  openssl rsa -in "$c/sa.key" -pubout -out "$c/sa.pub" 2>/dev/null
}

# write_kubeconfig FILE SERVER CA_FILE USER_NAME NAMESPACE (then either TOKEN, or CERT KEY)
write_kubeconfig() {
  local f="$1" server="$2" ca="$3" user="$4" ns="$5"
  {
    cat <<EOF
apiVersion: v1
kind: Config
clusters:
- name: sockudo-test
  cluster:
    server: $server
    certificate-authority-data: $(base64 -w0 "$ca")
contexts:
- name: sockudo-test
  context:
    cluster: sockudo-test
    user: $user
    namespace: $ns
current-context: sockudo-test
users:
- name: $user
  user:
EOF
    if [ "$#" -eq 6 ]; then
      echo "    token: $6"
    else
      echo "    client-certificate: $6"
      echo "    client-key: $7"
    fi
  } >"$f"
}

wait_for() {  # wait_for DESCRIPTION TIMEOUT PID LOGFILE CMD...
  local what="$1" timeout="$2" pid="$3" logf="$4"; shift 4
  local deadline=$(( $(date +%s) + timeout ))
  while ! "$@" >/dev/null 2>&1; do
    if ! pid_alive "$pid"; then
      log "$what: process $pid exited; last lines of $logf:"
      tail -n 40 "$logf" >&2 || true
      return 1
    fi
    if [ "$(date +%s)" -ge "$deadline" ]; then
      log "$what: not ready after ${timeout}s; last lines of $logf:"
      tail -n 40 "$logf" >&2 || true
      return 1
    fi
    sleep 0.2
  done
}

# After a port collision: stop what this attempt started and empty the etcd data dir.
reset_for_retry() {
  stop_dir "$1" >/dev/null 2>&1 || true
  rm -rf "$2"
  mkdir -p "$2"
  echo "$2" >"$1/etcd-data-dir"
  : >"$1/pids"
}

START_DIR="" START_OK=0
start_cleanup() {
  local rc=$?
  [ "$START_OK" = 1 ] && return 0
  if [ -n "$START_DIR" ] && [ -f "$START_DIR/pids" ]; then
    log "start failed; stopping what was started"
    stop_dir "$START_DIR" || true
  fi
  return "$rc"
}

minor_version() {  # minor_version BINARY: "20" for "Kubernetes v1.20.2"
  "$1" --version 2>/dev/null | sed -n 's/.*v1\.\([0-9][0-9]*\).*/\1/p' | head -n 1
}

cmd_start() {
  [ "$#" -eq 1 ] || usage
  local dir
  dir="$(abs_dir "$1")"
  if [ -n "$(live_pids "$dir")" ]; then
    die "a control plane is already running from $dir (pids: $(live_pids "$dir" | tr '\n' ' ')); run: $0 stop $dir"
  fi
  ensure_bins
  command -v openssl >/dev/null 2>&1 || apt_install openssl
  command -v curl >/dev/null 2>&1 || apt_install curl
  [ -z "$KUBE_CM" ] && log "warning: no kube-controller-manager in $BIN_DIR: garbage collection (ownerReferences), namespace deletion and Deployment->ReplicaSet are unavailable in this control plane"

  # A fresh state: remove what a previous run left (its etcd data in /dev/shm too).
  stop_dir "$dir" >/dev/null 2>&1 || true
  rm -rf "$dir/certs" "$dir/logs" "$dir/etcd" "$dir/kubeconfig" "$dir/kubeconfig-operator" \
         "$dir/kubeconfig-controller-manager" "$dir/env" "$dir/pids" "$dir/tokens.csv" "$dir/etcd-data-dir"
  umask 077
  mkdir -p "$dir/certs" "$dir/logs"
  START_DIR="$dir"
  trap start_cleanup EXIT
  : >"$dir/pids"

  local t0 attempt
  t0=$(date +%s)
  local etcd_data
  if [ "${SOCKUDO_ETCD_IN_DIR:-0}" != 1 ] && [ -d /dev/shm ] && [ -w /dev/shm ]; then
    etcd_data="$(mktemp -d /dev/shm/sockudo-etcd.XXXXXX)"
  else
    etcd_data="$dir/etcd"
    mkdir -p "$etcd_data"
  fi
  echo "$etcd_data" >"$dir/etcd-data-dir"

  gen_certs "$dir/certs"
  local c="$dir/certs"
  local admin_token operator_token
  admin_token="$(openssl rand -hex 24)"
  operator_token="$(openssl rand -hex 24)"
  {
    echo "$admin_token,admin,admin,\"system:masters\""
    echo "$operator_token,$OPERATOR_USER,sockudo-operator,\"$OPERATOR_GROUPS\""
  } >"$dir/tokens.csv"

  local api_minor kcm_minor
  api_minor="$(minor_version "$KUBE_APISERVER")"
  [ -n "$api_minor" ] || die "cannot read the version of $KUBE_APISERVER"

  # Ports are picked free, then bound a moment later: retry on the rare collision.
  local etcd_port etcd_peer_port api_port etcd_pid api_pid kcm_pid="" server
  for attempt in 1 2 3; do
    read -r etcd_port etcd_peer_port api_port <<<"$(free_ports 3)"
    server="https://127.0.0.1:$api_port"

    # etcd
    (
      [ "$(uname -m)" = aarch64 ] && export ETCD_UNSUPPORTED_ARCH=arm64
      exec "$ETCD_BIN" --name sockudo-test --data-dir "$etcd_data" --logger zap --log-outputs stderr \
        --listen-client-urls "http://127.0.0.1:$etcd_port" --advertise-client-urls "http://127.0.0.1:$etcd_port" \
        --listen-peer-urls "http://127.0.0.1:$etcd_peer_port" --initial-advertise-peer-urls "http://127.0.0.1:$etcd_peer_port" \
        --initial-cluster "sockudo-test=http://127.0.0.1:$etcd_peer_port" --initial-cluster-state new
    ) </dev/null >"$dir/logs/etcd.log" 2>&1 &
    etcd_pid=$!
    echo "$etcd_pid" >>"$dir/pids"
    if ! wait_for etcd 30 "$etcd_pid" "$dir/logs/etcd.log" \
         curl -fsS --noproxy '*' "http://127.0.0.1:$etcd_port/health"; then
      if grep -q 'address already in use' "$dir/logs/etcd.log" && [ "$attempt" -lt 3 ]; then
        log "port collision; retrying with other ports"
        reset_for_retry "$dir" "$etcd_data"; continue
      fi
      die "etcd did not become healthy"
    fi

    # kube-apiserver
    local api_args=(
      --etcd-servers "http://127.0.0.1:$etcd_port"
      --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$api_port"
      --cert-dir "$c" --tls-cert-file "$c/apiserver.crt" --tls-private-key-file "$c/apiserver.key"
      --client-ca-file "$c/ca.crt"
      --token-auth-file "$dir/tokens.csv"
      --authorization-mode RBAC
      --service-account-issuer "$SA_ISSUER" --api-audiences "$SA_ISSUER"
      --service-account-key-file "$c/sa.pub" --service-account-signing-key-file "$c/sa.key"
      --service-cluster-ip-range 10.0.0.0/24 --endpoint-reconciler-type none
      --disable-admission-plugins ServiceAccount
      --allow-privileged=true
    )
    [ "$api_minor" -lt 24 ] && api_args+=(--insecure-port 0)
    "$KUBE_APISERVER" "${api_args[@]}" </dev/null >"$dir/logs/kube-apiserver.log" 2>&1 &
    api_pid=$!
    echo "$api_pid" >>"$dir/pids"
    if ! wait_for kube-apiserver "$READY_TIMEOUT" "$api_pid" "$dir/logs/kube-apiserver.log" \
         curl -fsS --noproxy '*' --cacert "$c/ca.crt" -H "Authorization: Bearer $admin_token" "$server/readyz"; then
      if grep -q 'address already in use' "$dir/logs/kube-apiserver.log" && [ "$attempt" -lt 3 ]; then
        log "port collision; retrying with other ports"
        reset_for_retry "$dir" "$etcd_data"; continue
      fi
      die "kube-apiserver did not become ready"
    fi
    break
  done
  log "kube-apiserver ready at $server after $(( $(date +%s) - t0 )) s"

  write_kubeconfig "$dir/kubeconfig" "$server" "$c/ca.crt" admin default "$admin_token"
  write_kubeconfig "$dir/kubeconfig-operator" "$server" "$c/ca.crt" sockudo-operator sockudo-system "$operator_token"

  # kube-controller-manager (garbage collector, namespace deletion, Deployment -> ReplicaSet...)
  local kcm_ok=0
  if [ -n "$KUBE_CM" ]; then
    write_kubeconfig "$dir/kubeconfig-controller-manager" "$server" "$c/ca.crt" controller-manager default \
      "$c/controller-manager.crt" "$c/controller-manager.key"
    kcm_minor="$(minor_version "$KUBE_CM")"
    local kcm_args=(
      --kubeconfig "$dir/kubeconfig-controller-manager"
      --bind-address 127.0.0.1 --secure-port 0
      --leader-elect=false --use-service-account-credentials=false
      --controllers "$KCM_CONTROLLERS"
      --service-account-private-key-file "$c/sa.key" --root-ca-file "$c/ca.crt"
      --cluster-name sockudo-test
    )
    [ "${kcm_minor:-99}" -lt 24 ] && kcm_args+=(--port 0)
    "$KUBE_CM" "${kcm_args[@]}" </dev/null >"$dir/logs/kube-controller-manager.log" 2>&1 &
    kcm_pid=$!
    echo "$kcm_pid" >>"$dir/pids"
    # Its serviceaccount controller creates default/default: proof it is connected and running.
    wait_for kube-controller-manager 60 "$kcm_pid" "$dir/logs/kube-controller-manager.log" \
      curl -fsS --noproxy '*' --cacert "$c/ca.crt" -H "Authorization: Bearer $admin_token" \
      "$server/api/v1/namespaces/default/serviceaccounts/default" \
      || die "kube-controller-manager did not start working"
    kcm_ok=1
    log "kube-controller-manager running after $(( $(date +%s) - t0 )) s"
  fi

  {
    printf 'KUBECONFIG=%q\n' "$dir/kubeconfig"
    printf 'KUBECONFIG_OPERATOR=%q\n' "$dir/kubeconfig-operator"
    printf 'APISERVER_URL=%q\n' "$server"
    printf 'APISERVER_CA=%q\n' "$c/ca.crt"
    printf 'ADMIN_TOKEN=%q\n' "$admin_token"
    printf 'OPERATOR_TOKEN=%q\n' "$operator_token"
    printf 'OPERATOR_USER=%q\n' "$OPERATOR_USER"
    printf 'ETCD_PORT=%q\n' "$etcd_port"
    printf 'ETCD_URL=%q\n' "http://127.0.0.1:$etcd_port"
    printf 'KUBE_CONTROLLER_MANAGER=%q\n' "$kcm_ok"
    printf 'KUBE_VERSION=%q\n' "$("$KUBE_APISERVER" --version 2>/dev/null | awk '{ print $2 }')"
    printf 'CONTROL_PLANE_DIR=%q\n' "$dir"
  } >"$dir/env"

  START_OK=1
  trap - EXIT
  log "control plane up in $(( $(date +%s) - t0 )) s (pids: $(tr '\n' ' ' <"$dir/pids")); stop with: $0 stop $dir"
  echo "$dir/kubeconfig"
}

# stop_dir DIR: TERM the live PIDs of DIR/pids (newest first), KILL them after STOP_GRACE s,
# then drop the pids file and the etcd data dir this script made in /dev/shm.
stop_dir() {
  local dir="$1" p pids=() left=() deadline
  if [ -f "$dir/pids" ]; then
    mapfile -t pids < <(live_pids "$dir" | tac)
    for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    deadline=$(( $(date +%s) + STOP_GRACE ))
    while :; do
      left=()
      for p in "${pids[@]}"; do pid_alive "$p" && left+=("$p"); done
      [ "${#left[@]}" -eq 0 ] && break
      if [ "$(date +%s)" -ge "$deadline" ]; then
        log "still running after ${STOP_GRACE}s, sending KILL: ${left[*]}"
        for p in "${left[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
        sleep 0.5
        break
      fi
      sleep 0.1
    done
    [ "${#pids[@]}" -gt 0 ] && log "stopped: ${pids[*]}"
    rm -f "$dir/pids"
  fi
  if [ -f "$dir/etcd-data-dir" ]; then
    local d
    d="$(cat "$dir/etcd-data-dir")"
    case "$d" in /dev/shm/sockudo-etcd.*) rm -rf "$d" ;; esac
    rm -f "$dir/etcd-data-dir"
  fi
}

cmd_stop() {
  [ "$#" -eq 1 ] || usage
  [ -d "$1" ] || { log "no such directory: $1 (nothing to stop)"; return 0; }
  stop_dir "$(cd "$1" && pwd -P)"
}

main() {
  [ "$#" -ge 1 ] || usage
  local cmd="$1"; shift
  case "$cmd" in
    build) [ "$#" -eq 0 ] || usage; cmd_build ;;
    start) cmd_start "$@" ;;
    stop) cmd_stop "$@" ;;
    -h|--help|help) usage ;;
    *) usage ;;
  esac
}

main "$@"
