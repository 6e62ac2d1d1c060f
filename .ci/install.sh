#!/bin/sh
# Install the Debian packages extpack's test suite needs (Debian 12 / bookworm).
# Idempotent and non-interactive: does nothing (no apt-get update) when everything is
# already installed. Python dependencies are installed elsewhere.
#
#   docker.io        dockerd + /usr/bin/docker 20.10 (BuildKit built in); pulls in
#                    containerd, runc, tini (tests/dockerd.py runs dockerd under tini)
#   busybox-static   static /bin/busybox: the base image the build tests import
#   docker-registry  a local registry on 127.0.0.1 for push tests
#   skopeo, umoci    read and check OCI layouts offline
#   unzip            reference unpacker the tests compare against
#   make, git        Makefile targets; git for the working tree
#
# Not Debian's golang-go: it is Go 1.19 and would shadow the machine's own Go toolchain
# (/usr/local/go/bin), which the tests use to build the seed's Go function.
#
# Usage: .ci/install.sh            (as root, or with sudo available)
#        EXTPACK_APT_EXTRA="pkg ..." .ci/install.sh   to add packages
set -eu

PACKAGES="docker.io skopeo umoci busybox-static docker-registry unzip make git ca-certificates"
PACKAGES="$PACKAGES ${EXTPACK_APT_EXTRA:-}"

export DEBIAN_FRONTEND=noninteractive

if [ "$(id -u)" -eq 0 ]; then
    SUDO=""
elif command -v sudo >/dev/null 2>&1; then
    SUDO="sudo -n"
else
    echo "install.sh: need root (or sudo) to install: $PACKAGES" >&2
    exit 1
fi

installed() {
    # "ii" = installed and configured; anything else (absent, half-installed, rc) = missing
    dpkg-query -W -f='${db:Status-Abbrev}' "$1" 2>/dev/null | grep -q '^ii'
}

missing=""
for pkg in $PACKAGES; do
    case "$pkg" in
    docker.io)
        # Docker's own packages provide dockerd + /usr/bin/docker too and conflict
        # with docker.io; accept them rather than fight (the tests need a 20.10+
        # daemon and a client with BuildKit at /usr/bin/docker).
        if installed docker.io || installed docker-ce || installed moby-engine; then
            continue
        fi
        ;;
    busybox-static)
        # The (dynamic) "busybox" package also owns /bin/busybox but cannot run in a
        # libc-less image; installing busybox-static replaces it.
        ;;
    esac
    installed "$pkg" || missing="$missing $pkg"
done

if [ -z "$missing" ]; then
    echo "install.sh: all packages present:$(printf ' %s' $PACKAGES)"
else
    echo "install.sh: installing:$missing"
    # Wait for an apt/dpkg lock held by e.g. unattended-upgrades on a fresh machine
    # instead of failing at once.
    APT_OPTS="-o DPkg::Lock::Timeout=600 -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold"
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get $APT_OPTS update -q
    # shellcheck disable=SC2086
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get $APT_OPTS install -y -q \
        --no-install-recommends $missing
fi

# Sanity checks the tests rely on; fail here with a clear message rather than skip later.
fail=0
check() {
    if ! "$@" >/dev/null 2>&1; then
        echo "install.sh: check failed: $*" >&2
        fail=1
    fi
}
check test -x /usr/bin/docker
check sh -c 'command -v dockerd || test -x /usr/sbin/dockerd'
check test -x /usr/bin/docker-registry
check skopeo --version
check umoci --version
check unzip -v
# /bin/busybox must be the static one: it runs in an image without libc.
check installed busybox-static
check test -x /bin/busybox
check sh -c '/bin/busybox --list | grep -qx stat'
[ "$fail" -eq 0 ] || exit 1

# AWS's Runtime Interface Emulator, built from the Go module proxy with the machine's Go:
# the tests run images under it. RIE_VERSION is the pseudo-version the proxy serves.
RIE_VERSION=v0.0.0-20261030222936-bef5c4ba774d
RIE_DIR=${EXTPACK_TEST_BIN:-/usr/local/libexec/extpack-test}
GO=$(command -v go || echo /usr/local/go/bin/go)
if [ ! -x "$RIE_DIR/aws-lambda-rie" ] || [ "$(cat "$RIE_DIR/aws-lambda-rie.version" 2>/dev/null)" != "$RIE_VERSION" ]; then
    if [ ! -x "$GO" ]; then
        echo "install.sh: no Go toolchain (go on PATH or /usr/local/go/bin/go): needed to build aws-lambda-rie" >&2
        exit 1
    fi
    echo "install.sh: building aws-lambda-rie $RIE_VERSION with $("$GO" version)"
    $SUDO mkdir -p "$RIE_DIR"
    $SUDO env CGO_ENABLED=0 GOBIN="$RIE_DIR" GOFLAGS=-trimpath "$GO" install \
        "github.com/aws/aws-lambda-runtime-interface-emulator/cmd/aws-lambda-rie@$RIE_VERSION"
    echo "$RIE_VERSION" | $SUDO tee "$RIE_DIR/aws-lambda-rie.version" >/dev/null
fi
check test -x "$RIE_DIR/aws-lambda-rie"
[ "$fail" -eq 0 ] || exit 1

echo "install.sh: ok (docker $(/usr/bin/docker --version 2>/dev/null | sed 's/^Docker version //'))"
