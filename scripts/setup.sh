#!/usr/bin/env bash
# Installs the Debian packages exwatch needs to build and test:
#   libpcap-dev  capture library the `pcap` crate links to
#   tshark       independent flow counts the tests cross-check against
#   pkg-config   lets the `pcap` crate find libpcap
#   iproute2     network namespaces and veth pairs of the live-capture tests (ip, ss)
#   netcat-openbsd, curl, swaks, bind9-dnsutils, python3
#                real clients and servers the live-capture tests make traffic with
#                (nc, curl for /metrics, swaks for SMTP, dig for DNS, a Python responder)
#   tcpreplay    replays captures into a veth pair for benches/live-replay.sh
#   netsniff-ng  trafgen, live-replay.sh's second generator, for rates tcpreplay cannot reach
#   time         /usr/bin/time: CPU-seconds and peak RSS of each run in benches/peers.sh
#   iptables, tcpdump
#                a real router between two capture points for the compare test
#   prometheus   for promtool, which checks the /metrics page in the live-capture tests
#                and runs the shipped alerting rules' tests (packaging/prometheus)
#   socat        a real unix-socket listener that reads back the unix_stream EVE output
#   systemd      for systemd-analyze, which checks the shipped unit (packaging/)
#   logrotate    rotates a running exwatch with the shipped snippet in a live test
#   chromium     the headless browser the report's tests render the HTML report in
#   python3-jsonschema
#                validates EVE output against Suricata's schema (scripts/validate-eve.py)
#   redis-server the broker the --redis and `exwatch collect` tests start on loopback
# Needs a Rust toolchain (cargo >= 1.85, https://rustup.rs); it does not install one.
set -euo pipefail

packages=(libpcap-dev tshark pkg-config iproute2 netcat-openbsd curl swaks bind9-dnsutils python3 tcpreplay
  netsniff-ng time iptables tcpdump prometheus systemd logrotate chromium python3-jsonschema redis-server socat)
missing=()
for p in "${packages[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done

if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  echo "setup: installing ${missing[*]}" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null; then
  echo "setup: cargo not found: install Rust 1.85 or later from https://rustup.rs" >&2
  exit 1
fi
