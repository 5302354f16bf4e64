#!/bin/sh
# The image's build stage (deploy/Dockerfile runs it; tests/deploy/test_image.py runs it outside a
# container): the locked pip and build backend, the wheel built from SOURCE with them, then the wheel
# with its dependencies (licentia[all]) installed into VENV. Every install takes binary wheels only and
# checks each file against requirements.lock's hashes; VENV gets no pip and no build tools.
#
#   sh deploy/build-venv.sh SOURCE VENV WORK        (PYTHON: the interpreter, default python3)
set -eu
[ $# -eq 3 ] || { echo "usage: sh deploy/build-venv.sh SOURCE VENV WORK" >&2; exit 2; }
source=$1
venv=$2
work=$3
python=${PYTHON:-python3}
lock=$source/requirements.lock

# NAME==VERSION as requirements.lock pins it
pin() {
    version=$(sed -n "s/^$1==\([^ ]*\) .*/\1/p" "$lock")
    if [ -z "$version" ]; then
        echo "build-venv.sh: $1 is not pinned in $lock" >&2
        exit 1
    fi
    echo "$1==$version"
}

mkdir -p "$work/dist"
"$python" -m venv "$work/tools"
tools=$work/tools/bin/pip
# the locked pip, its lines of the lock as they stand (older pips take no hash from a constraints file)
sed -n "/^pip==/,/[^\\\\]\$/p" "$lock" > "$work/pip.txt"
"$tools" install --no-deps --require-hashes --only-binary :all: -r "$work/pip.txt"
# from here the lock is a constraints file: its pins choose the versions, its hashes turn hash-checking on
"$tools" install --only-binary :all: -c "$lock" "$(pin hatchling)"
"$tools" wheel --no-deps --no-build-isolation --wheel-dir "$work/dist" "$source"

wheel=$(ls "$work"/dist/licentia-*.whl)
digest=$(sha256sum "$wheel" | cut -d ' ' -f 1)
printf 'licentia[all] @ file://%s --hash=sha256:%s\n' "$wheel" "$digest" > "$work/licentia.txt"
"$python" -m venv --without-pip "$venv"
"$tools" --python "$venv/bin/python" install --only-binary :all: -c "$lock" -r "$work/licentia.txt"
