#!/usr/bin/env bash
# The one command that passes every test, on a fresh machine: installs what the tests need,
# starts a throwaway PostgreSQL, restores, builds and runs every test project. Nothing is skipped:
# WEFT_REQUIRE_ALL_TESTS=1 turns a missing prerequisite into a failure.
set -euo pipefail
cd "$(dirname "$0")"

scripts/ensure-packages.sh postgresql python3 wireguard-go wireguard-tools iperf3 iproute2 nftables iputils-ping bind9-dnsutils util-linux stun-client coturn curl dpkg-dev fakeroot chromium nodejs
# npm comes with some nodejs builds (NodeSource's provides it); only a nodejs without it needs Debian's npm package.
command -v npm >/dev/null || scripts/ensure-packages.sh npm

source scripts/postgres-test-server.sh
source scripts/lab-cleanup.sh
remove_lab_leftovers
trap 'stop_test_postgres; remove_lab_leftovers' EXIT
start_test_postgres

export WEFT_REQUIRE_ALL_TESTS=1
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1

dotnet restore Cluster.sln
dotnet build Cluster.sln -c Release --no-restore
# One test project at a time: the failover tests run three coordinator processes whose failure
# detectors must not be starved by the network lab's iperf3 runs on this 2-core machine.
# Inside the coordinator's tests, four collections run at once (tests/Cluster.Tests/xunit.runner.json):
# most of their time is spent waiting on timers and sockets, and two at a time kept only 0.8 of the
# two cores busy (312 s for the parallel collections, against 179 s four at a time; six took 197 s).
# The collections that start coordinator processes, and the process-telemetry ones, still run alone;
# the browser tests run one at a time, beside the others.
# Each project also writes a TRX report; when anything fails, the failures are repeated at the very
# end, so that the last lines of a CI log name the failed tests and their messages.
test_results=$(mktemp -d)
if ! dotnet test Cluster.sln -c Release --no-build -m:1 --logger "console;verbosity=normal" \
    --logger trx --results-directory "$test_results" "$@"; then
  python3 scripts/summarize-test-failures.py "$test_results"
  rm -rf "$test_results"
  exit 1
fi
rm -rf "$test_results"
# A short fuzz pass over every parser, with a fixed seed so that CI is repeatable; it replays every
# saved crash input (tests/Fuzz/regressions) first. bench/fuzz/run does the long, random-seed runs.
fuzz_findings=$(mktemp -d)
dotnet tests/Fuzz/bin/Release/net10.0/weft-fuzz.dll instrument
dotnet tests/Fuzz/bin/Release/net10.0/weft-fuzz.dll --execs-per-harness 20000 --seed 20261201 --out "$fuzz_findings"
rm -rf "$fuzz_findings"
