#!/usr/bin/env bash
# Installs what the root lab and the interop tests need: Debian's real peers (coturn, miniupnpd, wireguard-go,
# iptables/nftables tools, chromium, gcc for the native UDP addon) and the Go Tailscale binaries (installed as Go packages, never vendored).
set -euo pipefail
TS_VERSION=v1.102.3
if [ "$(id -u)" != 0 ]; then echo "install-lab-deps: needs root (apt-get)" >&2; exit 1; fi
need_apt=0
for b in turnserver turnutils_stunclient miniupnpd upnpc natpmpc wireguard-go wg iptables iptables-legacy ip6tables nft conntrack socat iperf3 chromium ping ss openssl gcc; do
  command -v "$b" >/dev/null 2>&1 || need_apt=1
done
if [ "$need_apt" = 1 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    coturn miniupnpd-nftables miniupnpc natpmpc iperf3 iputils-ping socat netcat-openbsd tcpdump stun-client \
    wireguard-go wireguard-tools iptables nftables conntrack iproute2 chromium openssl gcc libc6-dev >/dev/null
fi
GOBIN_DIR="$(go env GOPATH)/bin"
for cmd in derper derpprobe stunc tailscale tailscaled; do
  if [ ! -x "$GOBIN_DIR/$cmd" ]; then
    GOTOOLCHAIN=auto GOFLAGS=-mod=mod go install "tailscale.com/cmd/$cmd@$TS_VERSION"
  fi
done
# A real ACME server for the letsencrypt-mode lab test.
for cmd in pebble pebble-challtestsrv; do
  [ -x "$GOBIN_DIR/$cmd" ] || GOTOOLCHAIN=auto go install "github.com/letsencrypt/pebble/v2/cmd/$cmd@v2.10.1"
done
echo "install-lab-deps: ok (Go binaries in $GOBIN_DIR)"
