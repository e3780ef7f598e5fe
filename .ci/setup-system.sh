#!/usr/bin/env bash
# System packages: the AMDGPU device bitcode and an ld.lld matching TVM's LLVM 22
# (ROCm code generation without a GPU), and graphviz (graph pictures). Skipped, with a
# note, where apt is unavailable: the rocm target then names the missing toolchain.
set -u
have() { dpkg -s "$1" >/dev/null 2>&1; }
if have rocm-device-libs && have lld-22 && have graphviz; then exit 0; fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
  echo "note: cannot apt-get install rocm-device-libs lld-22 graphviz here" >&2
  exit 0
fi
(apt-get update -q && apt-get install -y -q rocm-device-libs lld-22 graphviz) >/tmp/dscompile-apt.log 2>&1 \
  || echo "note: apt-get install rocm-device-libs lld-22 graphviz failed, see /tmp/dscompile-apt.log" >&2
exit 0
