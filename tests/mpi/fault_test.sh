#!/usr/bin/env bash
# Runs usp_mpi_fault MODE under mpirun with 4 ranks and checks the job's exit status, how long it
# took and what it printed.   tests/mpi/fault_test.sh MODE PROGRAM [MPIRUN]
set -uo pipefail
mode=$1
prog=$2
mpirun=${3:-mpirun}
flags=()
if "$mpirun" --version 2>&1 | grep -qE "Open MPI|OpenRTE"; then
  flags=(--oversubscribe --allow-run-as-root)
fi
out=$(mktemp)
trap 'rm -f "$out"' EXIT
start=$SECONDS
timeout 120 "$mpirun" -np 4 "${flags[@]}" "$prog" "$mode" >"$out" 2>&1
rc=$?
elapsed=$((SECONDS - start))
cat "$out"
echo "fault_test: mode=$mode rc=$rc elapsed=${elapsed}s"

fail() {
  echo "fault_test: FAILED: $*"
  exit 1
}
expect_text() {
  grep -qE -- "$1" "$out" || fail "output lacks /$1/"
}
[[ $rc -eq 124 ]] && fail "the job hung (killed after 120 s)"
case $mode in
  ok)
    [[ $rc -eq 0 ]] || fail "exit status $rc, expected 0"
    expect_text "usp_mpi_fault: ok finished"
    ;;
  kill)
    [[ $rc -ne 0 ]] || fail "exit status 0 after a rank was killed"
    ((elapsed < 30)) || fail "took ${elapsed}s (limit 30 s)"
    expect_text "rank 2.*(signal 9|Killed)"
    ;;
  stop)
    [[ $rc -ne 0 ]] || fail "exit status 0 with a stopped rank"
    ((elapsed < 30)) || fail "took ${elapsed}s (limit 30 s)"
    expect_text "usp: rank 3: timed out after 3.0 s waiting for recv from rank 2 \(tag 20\) on comm 'world'"
    ;;
  throw)
    [[ $rc -eq 1 ]] || fail "exit status $rc, expected 1"
    ((elapsed < 30)) || fail "took ${elapsed}s (limit 30 s)"
    expect_text "usp: rank 1: injected failure at step 20"
    ;;
  mismatch)
    [[ $rc -eq 2 ]] || fail "exit status $rc, expected 2"
    for r in 0 1 2 3; do
      expect_text "usp: rank $r: configuration differs across ranks: rank 3 has seq_len 1000, rank 0 has 1024"
    done
    grep -q "MPI_ABORT" "$out" && fail "the job was aborted instead of every rank exiting 2"
    ;;
  usp-ok)
    [[ $rc -eq 0 ]] || fail "exit status $rc, expected 0"
    expect_text "usp_mpi_fault: usp-ok finished"
    ;;
  usp-kill)
    [[ $rc -ne 0 ]] || fail "exit status 0 after a rank was killed"
    ((elapsed < 30)) || fail "took ${elapsed}s (limit 30 s)"
    expect_text "rank 2.*(signal 9|Killed)"
    ;;
  usp-mismatch)
    [[ $rc -eq 2 ]] || fail "exit status $rc, expected 2"
    for r in 0 1 2 3; do
      expect_text "usp: rank $r: configuration mismatch across ranks: rank 3 has causal"
    done
    grep -q "MPI_ABORT" "$out" && fail "the job was aborted instead of every rank exiting 2"
    ;;
  usp-badworld)
    [[ $rc -eq 2 ]] || fail "exit status $rc, expected 2"
    for r in 0 1 2 3; do
      expect_text "usp: rank $r: world size 4 != data 1 × ulysses 3 × ring 1 = 3"
    done
    grep -q "MPI_ABORT" "$out" && fail "the job was aborted instead of every rank exiting 2"
    ;;
  *)
    fail "unknown mode $mode"
    ;;
esac
echo "fault_test: $mode passed"
