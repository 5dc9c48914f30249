#!/usr/bin/env bash
# Removes what a killed test run may have left behind: lab network namespaces (prefix "wl"),
# their processes, processes in the host's namespace that work in a lab folder (a coordinator a lab
# started on the host side), and their WireGuard UAPI sockets. Tests clean up after themselves; this is the
# safety net for a run that was killed. Usage: source scripts/lab-cleanup.sh; remove_lab_leftovers

remove_lab_leftovers() {
  command -v ip >/dev/null 2>&1 || return 0
  [ "$(id -u)" -eq 0 ] || return 0
  local ns
  for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep '^wl' || true); do
    ip netns pids "$ns" 2>/dev/null | xargs -r kill -9 2>/dev/null || true
    ip netns delete "$ns" 2>/dev/null || true
  done
  pkill -9 -f -- "${TMPDIR:-/tmp}/weft-lab-wl" 2>/dev/null || true
  rm -f /var/run/wireguard/wl*.sock 2>/dev/null || true
}
