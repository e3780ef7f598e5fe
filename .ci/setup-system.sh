#!/usr/bin/env bash
# System packages for ROCm code generation without a GPU: the AMDGPU device bitcode
# and an ld.lld matching TVM's LLVM 22. Skipped (with a note) where apt is unavailable;
# the rocm target then reports the missing toolchain clearly.
set -u
have() { dpkg -s "$1" >/dev/null 2>&1; }
if have rocm-device-libs && have lld-22; then exit 0; fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
  echo "note: cannot apt-get install rocm-device-libs lld-22 here; rocm builds will be skipped" >&2
  exit 0
fi
(apt-get update -q && apt-get install -y -q rocm-device-libs lld-22) >/tmp/dscompile-apt.log 2>&1 \
  || echo "note: apt-get install rocm-device-libs lld-22 failed, see /tmp/dscompile-apt.log" >&2
exit 0
