#!/usr/bin/env bash
# Every property test at 10 times the case count of a plain `cargo test` (issue 19): more
# schedules, crash and kill patterns, payload splits (about 50-70 s on a 2-core machine
# once the tests are built). Not a `.ci/run` step (CI time); run it after touching
# rings, queues, pools, supervisors or the manager.
#
#   scripts/proptest-10x.sh            # 10x
#   PROCACTOR_PROPTEST_SCALE=30 scripts/proptest-10x.sh
#
# Each test prints its case count and seed ("proptest: N cases, seed S (replay: ...)");
# libtest shows it for a failing test. Replay a failure with the printed
# `PROPTEST_RNG_SEED=S PROPTEST_CASES=N` and the test's name; proptest also saves the
# failing case in `tests/<suite>.proptest-regressions` (commit it: it is replayed first
# on every later run). The Redis one needs a server (see the README) and skips without.
set -euo pipefail
cd "$(dirname "$0")/.."
export PROCACTOR_PROPTEST_SCALE="${PROCACTOR_PROPTEST_SCALE:-10}"
unset PROPTEST_CASES # it would replace every default: no scale applies then

run() {
  printf '\n=== %s (%ss since start)\n' "$*" "$SECONDS"
  timeout 3600 cargo test "$@"
}

# in-process ring schedules (threads), unit tests of procactor-transports
run -p procactor-transports --lib -- --test-threads=2 \
  ring::tests::any_schedule_delivers_everything_once_intact_in_order \
  ring::tests::an_unbounded_ring_behaves_as_a_fifo \
  ring::tests::any_schedule_on_an_unbounded_ring_delivers_everything_once_in_order
# cross-process ones: one test binary at a time (each uses both cores)
run --test pipe -- --test-threads=2 arbitrary_payloads_and_split_points_round_trip \
  typed_values_round_trip arbitrary_garbage_never_panics
run --test shared -- array_indexing_matches_a_vec
run --test sync -- semaphore_schedules_match_a_counter
run --test queue -- --exact any_schedule_of_processes_delivers_everything_once_intact_in_order
run --test pool -- --exact workers_killed_at_random_moments_never_lose_or_repeat_a_task
run --test supervisor -- --exact random_crash_schedules_lose_nothing_queued_and_count_restarts
run --test manager -- --exact operations_from_several_processes_match_a_local_model
run --test redis_queue -- no_loss_no_duplicate_fifo
printf '\n=== done in %ss\n' "$SECONDS"
