#!/usr/bin/env bash
# Post-copy over a real shaped link: two network namespaces joined by a veth pair with a tbf
# qdisc on each end (kernel.md, probe 4), one Ferry agent in each, `ferry migrate` in the
# source's namespace. Unlike the loopback benchmarks, the link itself limits the rate here (no
# --max-bandwidth), so page answers meet whatever the push left in the socket and qdisc queues.
# Needs root (ip netns, tc). Cleans up its namespaces and agents on any exit.
#
# usage: bench/netns/postcopy-shaped-link.sh [RATE (tbf, default 1gbit)] [extra ferry migrate options...]
set -euo pipefail
cd "$(dirname "$0")/../.."
rate="${1:-1gbit}"
shift || true
ferry="src/Ferry.Cli/bin/Release/net10.0/ferry.dll"
[ -f "$ferry" ] || dotnet build src/Ferry.Cli -c Release >/dev/null
tag=$$
net=$((tag % 200 + 20))
src="ferry-src-$tag"; dst="ferry-dst-$tag"
work="$(mktemp -d)"
pids=()
cleanup() {
  for p in "${pids[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]:-}"; do [ -n "$p" ] && wait "$p" 2>/dev/null || true; done
  ip netns del "$src" 2>/dev/null || true
  ip netns del "$dst" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

ip netns add "$src"; ip netns add "$dst"
ip link add "vs$tag" type veth peer name "vd$tag"
ip link set "vs$tag" netns "$src"; ip link set "vd$tag" netns "$dst"
ip -n "$src" addr add "198.18.$net.1/24" dev "vs$tag"; ip -n "$dst" addr add "198.18.$net.2/24" dev "vd$tag"
for ns in "$src" "$dst"; do ip -n "$ns" link set lo up; done
ip -n "$src" link set "vs$tag" up; ip -n "$dst" link set "vd$tag" up
tc -n "$src" qdisc add dev "vs$tag" root tbf rate "$rate" burst 256kb latency 50ms
tc -n "$dst" qdisc add dev "vd$tag" root tbf rate "$rate" burst 256kb latency 50ms

head -c 32 /dev/urandom | base64 > "$work/key"
ip netns exec "$dst" dotnet "$ferry" agent --listen "198.18.$net.2:7001" --migration-listen "198.18.$net.2:7002" --key-file "$work/key" > "$work/dst.log" 2>&1 &
pids+=($!)
ip netns exec "$src" dotnet "$ferry" agent --listen "198.18.$net.1:7001" --key-file "$work/key" > "$work/src.log" 2>&1 &
pids+=($!)
for i in $(seq 1 100); do
  if ip netns exec "$src" bash -c "exec 3<>/dev/tcp/198.18.$net.1/7001 && exec 3<>/dev/tcp/198.18.$net.2/7001" 2>/dev/null; then break; fi
  sleep 0.2
done
echo "# link: veth + tbf $rate each way" >&2
ip netns exec "$src" dotnet "$ferry" migrate --from "http://198.18.$net.1:7001" --to "http://198.18.$net.2:7001" --key-file "$work/key" --report "$work/report.json" "$@" || { cat "$work/src.log" "$work/dst.log" >&2; exit 1; }
cp "$work/report.json" "${FERRY_REPORT_OUT:-bench-results/shaped-link-report.json}" 2>/dev/null || { mkdir -p bench-results; cp "$work/report.json" bench-results/shaped-link-report.json; }
