#!/usr/bin/env bash
# The tools under mpirun (--backend mpi), one scenario per call; checks exit codes and output.
#   tests/mpi/tools/tool_test.sh MODE BIN_DIR [MPIRUN]
# MODE: bench-table | bench-world | bench-mismatch | bench-alone | attn-match | attn-alone
set -uo pipefail
mode=$1
bin=$2
mpirun=${3:-mpirun}
flags=()
if "$mpirun" --version 2>&1 | grep -qE "Open MPI|OpenRTE"; then
  flags=(--oversubscribe --allow-run-as-root)
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
tiny=(--backend mpi --seq-len 64 --head-size 16 --iters 1 --warmup 0 --threads 1)

fail() {
  echo "tool_test: FAILED ($mode): $*"
  exit 1
}
expect_text() {  # PATTERN FILE
  grep -qE -- "$1" "$2" || fail "output lacks /$1/"
}
# Runs mpirun ARGS..., output in $work/out, exit status in $rc; a hang fails the test.
run_mpi() {
  timeout 60 "$mpirun" "${flags[@]}" "$@" >"$work/out" 2>&1
  rc=$?
  cat "$work/out"
  [[ $rc -eq 124 ]] && fail "mpirun hung (killed after 60 s)"
  return 0
}
# Every rank's exit status: each rank runs through sh, which prints "rank-exit N".
rank_exits() {
  grep -c "^rank-exit $1\$" "$work/out"
}

case $mode in
  bench-table)
    run_mpi -np 8 "$bin/usp-bench" "${tiny[@]}" --check --fwd-only both
    [[ $rc -eq 0 ]] || fail "exit status $rc"
    "$bin/usp-bench" "${tiny[@]/mpi/local}" --check --fwd-only both >"$work/local" 2>&1 ||
      fail "the local run failed: $(cat "$work/local")"
    expect_text "^- backend: mpi \(8 processes under mpirun, one per rank" "$work/out"
    # Same table shape as the local backend: the same rows, configuration cells and check column.
    shape() { grep "^|" "$1" | awk -F'|' '{print NF, $2, $3, $4, $5, $6}'; }
    diff <(shape "$work/out") <(shape "$work/local") || fail "the tables differ in shape"
    [[ $(grep -c "^| zigzag | 64 | 2 | 4 |" "$work/out") -eq 4 ]] ||
      fail "expected 2 rows in the timing table and 2 in the memory table"
    # --check passed: the error column (the last; the memory table has fewer) equals the local
    # backend's (same shards, same kernel).
    errs() { grep "^| zigzag" "$1" | awk -F'|' 'NF > 11 {print $(NF - 1)}'; }
    [[ -n $(errs "$work/out") ]] || fail "no check column"
    diff <(errs "$work/out") <(errs "$work/local") || fail "check errors differ from local"
    [[ $(grep -c "usp-bench" "$work/out") -eq 1 ]] || fail "more than one rank printed"
    ;;
  bench-world)
    run_mpi -np 4 sh -c '"$0" "$@"; echo "rank-exit $?"' "$bin/usp-bench" "${tiny[@]}"
    [[ $(rank_exits 2) -eq 4 ]] || fail "not every rank exited 2"
    expect_text "usp-bench: error: --degrees: 2x4 needs 8 ranks but mpirun started 4 processes" \
      "$work/out"
    expect_text "ulysses_degree × ring_degree must equal the world size" "$work/out"
    [[ $(grep -c "usp-bench: error" "$work/out") -eq 1 ]] || fail "expected one error line"
    ;;
  bench-mismatch)
    run_mpi -np 7 sh -c '"$0" "$@"; echo "rank-exit $?"' "$bin/usp-bench" "${tiny[@]}" \
      : -np 1 sh -c '"$0" "$@"; echo "rank-exit $?"' "$bin/usp-bench" "${tiny[@]}" --seq-len 128
    [[ $(rank_exits 2) -eq 8 ]] || fail "not every rank exited 2"
    expect_text "the command line differs across ranks: rank 7 has seq_len=128; rank 0 has seq_len=64" \
      "$work/out"
    ;;
  bench-alone)
    timeout 60 "$bin/usp-bench" "${tiny[@]}" >"$work/out" 2>&1
    rc=$?
    cat "$work/out"
    [[ $rc -eq 2 ]] || fail "exit status $rc, expected 2"
    expect_text "^usp-bench: error: --backend mpi runs one process per rank: start it with \`mpirun -np 8 usp-bench --backend mpi" "$work/out"
    expect_text "\(this process is alone: world size 1\)" "$work/out"
    ;;
  attn-match)
    "$bin/npy_tool" gen "$work" 2 48 4 2 8 7 || fail "npy_tool gen"
    args=(--q "$work/q.npy" --k "$work/k.npy" --v "$work/v.npy" --dout "$work/dout.npy"
      --ulysses 2 --ring 4 --ring-type zigzag --causal --threads 1)
    "$bin/usp-attn" "${args[@]}" --out-dir "$work/local" || fail "usp-attn --backend local"
    run_mpi -np 8 "$bin/usp-attn" "${args[@]}" --backend mpi --out-dir "$work/mpi"
    [[ $rc -eq 0 ]] || fail "exit status $rc"
    [[ $(grep -c "^usp-attn: zigzag ulysses=2 ring=4" "$work/out") -eq 1 ]] ||
      fail "expected one summary line (rank 0)"
    "$bin/npy_tool" compare "$work/mpi" "$work/local" 1e-6 out lse dq dk dv ||
      fail "mpi results differ from local"
    ;;
  attn-alone)
    "$bin/npy_tool" gen "$work" 1 16 2 2 8 3 || fail "npy_tool gen"
    timeout 60 "$bin/usp-attn" --q "$work/q.npy" --k "$work/k.npy" --v "$work/v.npy" --ring 2 \
      --backend mpi --out-dir "$work/o" >"$work/out" 2>&1
    rc=$?
    cat "$work/out"
    [[ $rc -eq 2 ]] || fail "exit status $rc, expected 2"
    expect_text "^usp-attn: error: --backend mpi runs one process per rank: start it with \`mpirun -np 2 usp-attn" "$work/out"
    ;;
  *)
    fail "unknown mode"
    ;;
esac
echo "tool_test: $mode passed"
