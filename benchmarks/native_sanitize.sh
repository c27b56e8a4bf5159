#!/usr/bin/env bash
# The native runtime's tests under AddressSanitizer and UndefinedBehaviorSanitizer.
#
# Builds lmzip/native/_native into a scratch directory with -fsanitize=address,undefined (and
# -fno-sanitize-recover, so any finding fails the run), then runs tests/test_native.py against it
# with the sanitizer runtime preloaded into Python, and the codec-level tests on the native runtime
# (round trips, damaged files, the decoder's guesses). Usage: benchmarks/native_sanitize.sh [pytest args]
set -euo pipefail
cd "$(dirname "$0")/.."
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
inc="-I$(python3 -c 'import pybind11; print(pybind11.get_include())') -I$(python3 -c 'import sysconfig; print(sysconfig.get_paths()["include"])')"
ext="$(python3 -c 'import sysconfig; print(sysconfig.get_config_var("EXT_SUFFIX"))')"
flags="-O1 -g -std=c++17 -fPIC -ffp-contract=off -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=all"
mkdir -p "$out/lmzip/native"
objs=()
pids=()
for f in lmzip/native/csrc/*.cpp; do
    o="$out/$(basename "$f" .cpp).o"
    g++ $flags $inc -c "$f" -o "$o" &
    pids+=($!)
    objs+=("$o")
done
for p in "${pids[@]}"; do wait "$p"; done  # any failed compile fails the script here
g++ -shared $flags "${objs[@]}" -o "$out/_native$ext"
# A copy of the package whose extension is the sanitized build.
cp -r lmzip "$out/pkg_lmzip"
rm -f "$out"/pkg_lmzip/native/_native*.so
cp "$out/_native$ext" "$out/pkg_lmzip/native/"
mkdir -p "$out/site" && mv "$out/pkg_lmzip" "$out/site/lmzip"
cp -r models corpora "$out/site/" 2>/dev/null || true
asan="$(g++ -print-file-name=libasan.so)"
ubsan="$(g++ -print-file-name=libubsan.so)"
# Python's own allocations are not instrumented: leaks are not checked, errors are.
export ASAN_OPTIONS="detect_leaks=0:allocator_may_return_null=1:halt_on_error=1"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
# python -S skips site's .pth files, so an editable install of lmzip cannot shadow the copy here;
# the site-packages directory itself stays on the path for numpy, torch, pytest and the rest.
site="$(python3 -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
export PYTHONPATH="$out/site:$site"
repo="$PWD"
cd "$out"  # not the checkout: its lmzip/ (with the normal build) would come first on the path
run() { LD_PRELOAD="$asan:$ubsan" python3 -S "$@"; }
run -c "import lmzip.native as n; assert n.available(), n.unavailable_reason(); assert n._native.__file__.startswith('$out'), n._native.__file__; print('sanitized runtime:', n.describe())"
set +e
tests=("$repo/tests/test_native.py" "$repo/tests/test_roundtrip.py" "$repo/tests/test_adapt.py" "$repo/tests/test_draft.py")
run -m pytest -q -s -p no:cacheprovider -p no:warnings --rootdir "$repo" "${tests[@]}" -k "not reference" "$@"
rc=$?
echo "pytest exit status: $rc"
exit $rc
