# Sourced by scripts/up.sh and scripts/test.sh: make sure a virtual environment is active.
#
# Debian's own pip refuses to install into the system Python (PEP 668, "externally-managed-
# environment"), so netatlas lives in a virtual environment: the one already active ($VIRTUAL_ENV),
# else ./.venv, created here with python3 (and Debian's python3-venv installed first when python3
# cannot make one: a bare Debian 12 has python3 but not its venv module's pip).
# Afterwards `python` and `pip` are the environment's, and so is `netatlas` once installed.

venv_python() { [[ -x "$1/bin/python" ]] && "$1/bin/python" -c 'import sys; sys.exit(sys.prefix == sys.base_prefix)' 2>/dev/null; }

if [[ -n "${VIRTUAL_ENV:-}" ]] && venv_python "$VIRTUAL_ENV"; then
    venv="$VIRTUAL_ENV"
else
    venv="$PWD/.venv"
    if ! venv_python "$venv"; then
        rm -rf "$venv"
        if ! python3 -m venv "$venv" >/dev/null 2>&1; then
            rm -rf "$venv"
            echo "installing Debian's python3-venv (python3 cannot create a virtual environment without it)"
            apt-get update -qq
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv
            python3 -m venv "$venv"
        fi
        echo "created the virtual environment $venv"
    fi
fi
export VIRTUAL_ENV="$venv" PATH="$venv/bin:$PATH"
unset PYTHONHOME
