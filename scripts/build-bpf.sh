#!/usr/bin/env bash
# Build the eBPF collector's kernel half: netatlas/agent/bpf/collector.bpf.c -> collector.bpf.o.
# CO-RE: the object is built once against this machine's BTF and relocated by libbpf at load time
# on any kernel with BTF, so the .o is shipped in the package and `pip install` needs no compiler.
# Needs clang, bpftool and libbpf-dev (scripts/test.sh installs them); run it after editing the .c.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
src="$here/netatlas/agent/bpf/collector.bpf.c"
out="${1:-$here/netatlas/agent/bpf/collector.bpf.o}"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
bpftool btf dump file /sys/kernel/btf/vmlinux format c > "$tmp/vmlinux.h"
clang -g -O2 -target bpf -D__TARGET_ARCH_x86 -I"$tmp" -c "$src" -o "$tmp/collector.bpf.o"
# keep BTF (CO-RE needs it), drop DWARF: a smaller object
llvm-strip -g "$tmp/collector.bpf.o" 2>/dev/null || true
mv "$tmp/collector.bpf.o" "$out"
if [[ $# -eq 0 ]]; then   # the shipped object: record which source it was built from (a test checks it)
    sha256sum "$src" | cut -d' ' -f1 > "$here/netatlas/agent/bpf/collector.bpf.c.sha256"
fi
echo "built $out ($(stat -c %s "$out") bytes)"
