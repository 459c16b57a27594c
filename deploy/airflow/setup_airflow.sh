#!/usr/bin/env bash
# Build Airflow's own virtual environment (.venv-airflow) from deploy/airflow/requirements.txt:
# Airflow's pins (protobuf, SQLAlchemy, pydantic, ...) clash with the project's, so it never
# shares .venv. Idempotent: a stamp keyed on the requirements and this script makes a second call
# return at once. Prints nothing when there is nothing to do.
#   deploy/airflow/setup_airflow.sh                     # then: .venv-airflow/bin/airflow ...
#   AIRFLOW_VENV=/opt/airflow-venv PYTHON=python3.11 deploy/airflow/setup_airflow.sh
set -euo pipefail

cd "$(dirname "$0")/../.."
VENV="${AIRFLOW_VENV:-.venv-airflow}"
PYTHON="${PYTHON:-python3.11}"
REQUIREMENTS=deploy/airflow/requirements.txt
say() { printf '[setup-airflow] %s\n' "$*"; }
die() { printf '[setup-airflow] ERROR: %s\n' "$*" >&2; exit 1; }

# two calls at once (the tests start one per pytest process) take turns: the second finds the stamp
exec 9>"$VENV.lock"
flock 9
stamp_key=$(cat "$REQUIREMENTS" deploy/airflow/setup_airflow.sh | sha256sum | cut -c1-16)
STAMP="$VENV/.setup-$stamp_key"
if [ -f "$STAMP" ] && [ -x "$VENV/bin/airflow" ]; then
  exit 0
fi

command -v "$PYTHON" >/dev/null 2>&1 \
  || die "$PYTHON was not found; the pinned Airflow set is for Python 3.11 (set PYTHON=/path/to/python3.11)"
if [ -x "$VENV/bin/python" ] \
   && ! "$VENV/bin/python" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
  say "$VENV is not Python 3.11: recreating it"
  rm -rf "$VENV"
fi
if [ ! -x "$VENV/bin/python" ]; then
  say "creating $VENV with $("$PYTHON" --version)"
  "$PYTHON" -m venv "$VENV"
fi

say "installing the pinned Airflow set from $REQUIREMENTS (first time: about half a minute)"
# every package is pinned in the file, so --no-deps installs exactly that set and nothing else;
# pip check below proves the set is complete and consistent
"$VENV/bin/python" -m pip --disable-pip-version-check -q install --no-deps -r "$REQUIREMENTS"
"$VENV/bin/python" -m pip --disable-pip-version-check -q check \
  || die "the packages in $REQUIREMENTS are incomplete or inconsistent (see above)"
version=$("$VENV/bin/python" -c 'import airflow; print(airflow.__version__)')

rm -f "$VENV"/.setup-*
touch "$STAMP"
say "ready: $VENV (Airflow $version)"
