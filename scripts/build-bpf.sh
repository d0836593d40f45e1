#!/usr/bin/env bash
# Build the eBPF kernel halves: netatlas/agent/bpf/NAME.bpf.c -> NAME.bpf.o, for NAME in collector
# (TCP, ebpf.py) and udp (UDP flows, udp.py).
# CO-RE: the object is built once against this machine's BTF and relocated by libbpf at load time
# on any kernel with BTF, so the .o is shipped in the package and `pip install` needs no compiler.
# Needs clang, bpftool and libbpf-dev (scripts/test.sh installs them); run it after editing a .c.
#   scripts/build-bpf.sh                 both shipped objects (and the .sha256 of their sources)
#   scripts/build-bpf.sh OUT [NAME]      NAME (default collector) into OUT only (tests)
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
bpftool btf dump file /sys/kernel/btf/vmlinux format c > "$tmp/vmlinux.h"
build() {   # NAME OUT SHIPPED
    local src="$here/netatlas/agent/bpf/$1.bpf.c"
    clang -g -O2 -target bpf -D__TARGET_ARCH_x86 -I"$tmp" -c "$src" -o "$tmp/$1.bpf.o"
    # keep BTF (CO-RE needs it), drop DWARF: a smaller object
    llvm-strip -g "$tmp/$1.bpf.o" 2>/dev/null || true
    mv "$tmp/$1.bpf.o" "$2"
    if [[ $3 == yes ]]; then   # the shipped object: record which source it was built from (a test checks it)
        sha256sum "$src" | cut -d' ' -f1 > "$src.sha256"
    fi
    echo "built $2 ($(stat -c %s "$2") bytes)"
}
if [[ $# -eq 0 ]]; then
    for name in collector udp; do
        build "$name" "$here/netatlas/agent/bpf/$name.bpf.o" yes
    done
else
    build "${2:-collector}" "$1" no
fi
