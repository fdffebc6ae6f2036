#!/usr/bin/env bash
# Runs an MPI program across two "hosts" made on this machine: two network namespaces joined by
# a veth pair, addresses only inside them, Open MPI's mpirun with a hostfile, its daemons
# started in the namespaces (the launch agent below plays ssh), and all MPI traffic over TCP.
#
#   tests/mpi/netns_run.sh [-n RANKS_PER_HOST] [-t SECONDS] -- PROGRAM [ARGS...]
#
# Exits 77 with "skipped: <reason>" when the machine cannot do this (not root, no `ip`, no
# namespaces, no Open MPI); otherwise with mpirun's exit status. Cleans up after itself.
set -euo pipefail

per_host=2
limit=240
while getopts "n:t:" opt; do
  case $opt in
    n) per_host=$OPTARG ;;
    t) limit=$OPTARG ;;
    *) echo "usage: $0 [-n RANKS_PER_HOST] [-t SECONDS] -- PROGRAM [ARGS...]" >&2; exit 2 ;;
  esac
done
shift $((OPTIND - 1))
[[ ${1:-} == -- ]] && shift
if [[ $# -lt 1 ]]; then
  echo "usage: $0 [-n RANKS_PER_HOST] [-t SECONDS] -- PROGRAM [ARGS...]" >&2
  exit 2
fi

skip() {
  echo "skipped: $*"
  exit 77
}
[[ $EUID -eq 0 ]] || skip "network namespaces need root"
command -v ip >/dev/null || skip "the 'ip' tool (iproute2) is not installed"
command -v mpirun >/dev/null || skip "mpirun is not on PATH"
mpirun --version 2>&1 | grep -qE "Open MPI|OpenRTE" || skip "this test drives Open MPI's mpirun (found: $(mpirun --version 2>&1 | head -1))"

# Namespaces left by an earlier run that was killed before it could clean up (its pid is in the
# name and no longer runs).
for stale in $(ip netns list 2>/dev/null | awk '{print $1}' | grep -E '^usp[0-9]+[ab]$' || true); do
  pid=${stale:3:-1}
  kill -0 "$pid" 2>/dev/null || ip netns del "$stale" 2>/dev/null || true
done

# Names unique to this run (interface names must stay under 16 characters).
id=$$
ns_a=usp${id}a
ns_b=usp${id}b
subnet_octet=$(( ($$ % 200) + 20 ))
net=10.${subnet_octet}.77
ip_a=$net.1
ip_b=$net.2
tmp=$(mktemp -d "${TMPDIR:-/tmp}/usp-netns.XXXXXX")

cleanup() {
  ip netns del "$ns_a" 2>/dev/null || true
  ip netns del "$ns_b" 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT

ip netns add "$ns_a" 2>"$tmp/err" || skip "cannot create a network namespace: $(cat "$tmp/err")"
ip netns add "$ns_b"
ip link add "uspv${id}a" type veth peer name "uspv${id}b" 2>"$tmp/err" ||
  skip "cannot create a veth pair: $(cat "$tmp/err")"
ip link set "uspv${id}a" netns "$ns_a"
ip link set "uspv${id}b" netns "$ns_b"
ip -n "$ns_a" addr add "$ip_a/24" dev "uspv${id}a"
ip -n "$ns_b" addr add "$ip_b/24" dev "uspv${id}b"
for ns in "$ns_a" "$ns_b"; do
  ip -n "$ns" link set lo up
done
ip -n "$ns_a" link set "uspv${id}a" up
ip -n "$ns_b" link set "uspv${id}b" up

# The launch agent: called like ssh ("agent [opts] HOST COMMAND..."), runs COMMAND in the
# namespace that owns HOST's address.
cat >"$tmp/agent" <<AGENT
#!/bin/sh
while [ \$# -gt 0 ]; do case "\$1" in -*) shift ;; *) break ;; esac; done
host=\$1; shift
case "\$host" in
  $ip_a) ns=$ns_a ;;
  $ip_b) ns=$ns_b ;;
  *) echo "netns agent: unknown host \$host" >&2; exit 1 ;;
esac
exec ip netns exec "\$ns" /bin/sh -c "\$*"
AGENT
chmod +x "$tmp/agent"
printf '%s slots=%s\n%s slots=%s\n' "$ip_a" "$per_host" "$ip_b" "$per_host" >"$tmp/hosts"

echo "netns_run: hosts $ip_a ($ns_a) and $ip_b ($ns_b), $per_host ranks each, TCP only"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export USP_EXPECT_NET_NAMESPACES=2
set +e
timeout "$limit" ip netns exec "$ns_a" mpirun --allow-run-as-root \
  -np $((2 * per_host)) --hostfile "$tmp/hosts" \
  -x USP_EXPECT_NET_NAMESPACES \
  --mca plm_rsh_agent "$tmp/agent" \
  --mca mpi_yield_when_idle 1 --mca btl self,tcp --mca btl_tcp_if_include "$net.0/24" --mca oob_tcp_if_include "$net.0/24" \
  "$@"
rc=$?
set -e
[[ $rc -eq 124 ]] && echo "netns_run: mpirun ran past ${limit}s" >&2
exit $rc
