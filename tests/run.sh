#!/bin/sh
# Runs cmocka test binaries one after another and sums their verdicts into a
# single closing line, "N passed, N failed, N skipped", so a reader (or CI) sees one
# number for the whole suite. Exits non-zero if any binary failed.
set -u
kind=$1
shift
passed=0
failed=0
skipped=0
bad=""
for t in "$@"; do
    out=$(mktemp)
    "$t" >"$out" 2>&1
    rc=$?
    cat "$out"
    p=$(sed -n 's/^\[  PASSED  \] \([0-9]*\) test.*/\1/p' "$out" | tail -n 1)
    f=$(sed -n 's/^\[  FAILED  \] \([0-9]*\) test.*/\1/p' "$out" | tail -n 1)
    s=$(sed -n 's/^\[  SKIPPED \] \([0-9]*\) test.*/\1/p' "$out" | tail -n 1)
    rm -f "$out"
    passed=$((passed + ${p:-0}))
    failed=$((failed + ${f:-0}))
    skipped=$((skipped + ${s:-0}))
    if [ "$rc" -ne 0 ]; then
        bad="$bad $(basename "$t")"
        # a crash prints no FAILED line: count the binary as one failure
        [ -z "$f" ] && failed=$((failed + 1))
    fi
done
[ -n "$bad" ] && echo "$kind: failing:$bad"
echo "$kind: $passed passed, $failed failed, $skipped skipped"
[ -z "$bad" ]
