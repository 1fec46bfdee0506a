#!/bin/sh
# SPDX-License-Identifier: MIT
# strop tests — runs "$@" under a time limit of $1 seconds and passes when it fails by itself
# (a non-zero exit other than the limit's): a job with a dead rank must end, not hang.
limit=$1
shift
start=$(date +%s)
timeout -k 5 "$limit" "$@" > /dev/null 2>&1
rc=$?
took=$(( $(date +%s) - start ))
if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
  echo "expect_abort: still running after ${limit}s: the job hangs" >&2
  exit 1
fi
if [ "$rc" -eq 0 ]; then
  echo "expect_abort: the job succeeded although a rank died" >&2
  exit 1
fi
echo "expect_abort: the job ended with status $rc after ${took}s"
