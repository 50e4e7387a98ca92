#!/bin/bash
# Runs berth's libFuzzer targets (built by `make fuzz`) for SECONDS each and prints one line of
# figures per target: executions, coverage (libFuzzer's cov: edges, ft: features), corpus size,
# crashes. Each target keeps its corpus in fuzz/corpus/TARGET (grown from fuzz/seeds/TARGET);
# a crash's input is saved as fuzz/artifacts/TARGET/crash-* and the run fails.
# Usage: fuzz/run.sh SECONDS TARGET...
set -uo pipefail
cd "$(dirname "$0")"
secs=$1
shift
bin=target/x86_64-unknown-linux-gnu/release
failed=()
printf '%-16s %12s %8s %8s %7s %8s %s\n' target execs execs/s cov ft corpus crashes
for t in "$@"; do
  mkdir -p "corpus/$t" "artifacts/$t"
  log="artifacts/$t/last.log"
  touch "artifacts/$t/.start"
  # -rss_limit_mb: a target must not need more than 2 GiB whatever the input; -timeout: no input
  # may take 10 s (a hang is a finding too).
  "$bin/$t" -max_total_time="$secs" -print_final_stats=1 -rss_limit_mb=2048 -timeout=10 \
    -artifact_prefix="artifacts/$t/" "corpus/$t" "seeds/$t" >"$log" 2>&1
  rc=$?
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  last=$(grep -E '^#[0-9]+' "$log" | tail -1)
  cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
  ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
  corp=$(sed -n 's/.* corp: \([0-9]*\)\/.*/\1/p' <<<"$last")
  crashes=$(find "artifacts/$t" -newer "artifacts/$t/.start" \( -name 'crash-*' -o -name 'timeout-*' -o -name 'oom-*' \) | wc -l)
  printf '%-16s %12s %8s %8s %7s %8s %s\n' "$t" "${execs:-?}" "${rate:-?}" "${cov:-?}" "${ft:-?}" "${corp:-?}" "$crashes"
  if [ "$rc" -ne 0 ]; then
    failed+=("$t")
    echo "  $t: exit $rc, see fuzz/$log:" >&2
    grep -E 'panicked at|ERROR: libFuzzer|Test unit written' "$log" | head -5 | sed 's/^/    /' >&2
  fi
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz: crashes in: ${failed[*]}" >&2
  exit 1
fi
