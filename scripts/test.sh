#!/usr/bin/env bash
# Install what the tests need, then run the whole test suite.
#   bash scripts/test.sh [extra pytest arguments]
# Used as is by the README and by .ci/run. Runs as root on Debian 12 with Python 3.11; installs into
# a virtual environment (scripts/venv.sh), never into the system Python.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# Debian packages the tests need, as "command:package" (the command tells whether the package
# is already there; "-" when it has none: then dpkg does). Installed with apt-get only when missing.
APT_NEEDS=(
    "ip:iproute2"               # network namespaces for the agent tests
    "-:libbpf1"                 # the eBPF collector loads its object with libbpf
    "clang:clang"               # the eBPF tests rebuild the object from its source...
    "llvm-strip:llvm"
    "bpftool:bpftool"           # ...against this kernel's BTF
    "-:libbpf-dev"              # (bpf_helpers.h)
    "rpmbuild:rpm"              # package versions from an RPM database
    "dnsmasq:dnsmasq-base"      # the DNS server of the agent's DNS-names namespace test (no service)
    "curl:curl"                 # README's shell example of sending data (tests/test_send_data.py)...
    "openssl:openssl"           # ...signs with openssl
    "chromium:chromium"         # the web UI's browser tests (tests/test_ui_browser.py, through Playwright)
    "openssl:openssl"           # self-signed certificates for the https tests
    "nft:nftables"              # the README's firewall line, run by the second-host namespace test
    "curl:curl"                 # ...and its check line
)

missing=()
for need in "${APT_NEEDS[@]+"${APT_NEEDS[@]}"}"; do
    cmd="${need%%:*}" pkg="${need#*:}"
    if ! { [[ $cmd != - ]] && command -v "$cmd" >/dev/null 2>&1; } && ! dpkg -s "$pkg" >/dev/null 2>&1; then
        missing+=("$pkg")
    fi
done
if ((${#missing[@]})); then
    echo "installing Debian packages: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
fi

source scripts/venv.sh      # the active virtual environment, else ./.venv (Debian's pip refuses system installs)
python -m pip install --quiet --disable-pip-version-check -e '.[test]'

# Every test gets at most 300 s; pytest's exit code 5 (no test ran) is a failure too.
rc=0
python -m pytest -q -rs --timeout=300 tests "$@" || rc=$?
if ((rc == 5)); then
    echo "scripts/test.sh: pytest ran no test" >&2
    exit 1
fi
exit "$rc"
