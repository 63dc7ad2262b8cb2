#!/bin/sh
# install_test.sh SKIP BUILD_DIR CMAKE CC PKG_CONFIG LIBDIR rpath=EXE_RPATH MPIEXEC...
# EXE_RPATH: the installed commands' RUNPATH ("" when the library folder is
# the system's, as for a tree configured for /usr: they then run here with
# LD_LIBRARY_PATH).
# See CMakeLists.txt. Everything is written under one temporary folder,
# removed at the end.
set -u
skip=$1 build=$2 cmake=$3 cc=$4 pkgconfig=$5 libdir=$6 exe_rpath=${7#rpath=}
shift 7
here=$(cd "$(dirname "$0")" && pwd)
if [ "$skip" = 1 ]; then
    echo "install_test: SKIPPED: a sanitizer or fuzzing build installs instrumented libraries"
    exit 77
fi
src=$(sed -n 's/^warmcal_SOURCE_DIR:STATIC=//p' "$build/CMakeCache.txt")
version=$(sed -n 's/^CMAKE_PROJECT_VERSION:STATIC=//p' "$build/CMakeCache.txt")
[ -n "$src" ] && [ -n "$version" ] || { echo "FAIL: no source dir or version in $build/CMakeCache.txt"; exit 1; }
# the ABI in the SONAMEs and symbol versions: 0.MINOR while the major is 0
# (a minor release may change the API), the major alone from 1.0 on
major=${version%%.*} rest=${version#*.}
minor=${rest%%.*}
if [ "$major" = 0 ]; then sov=0.$minor; else sov=$major; fi
tmp=$(mktemp -d "${TMPDIR:-/tmp}/warmcal-install.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT INT TERM
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }

echo "== cmake --install $build --prefix $tmp/p"
"$cmake" --install "$build" --prefix "$tmp/p" > "$tmp/install.log" 2>&1 || {
    cat "$tmp/install.log"; echo "FAIL: cmake --install"; exit 1; }
p=$tmp/p

echo "== the install manifest lists every installed file (uninstalling by it leaves nothing)"
(cd "$p" && find . \( -type f -o -type l \) | sed "s|^\.|$p|" | sort) > "$tmp/files"
sort "$build/install_manifest.txt" > "$tmp/manifest"
missing=$(comm -23 "$tmp/files" "$tmp/manifest")
[ -z "$missing" ] || fail "installed, not in install_manifest.txt: $missing"

echo "== DESTDIR: a staged install for /opt/warmcal is the same tree, with the same _installed.py"
DESTDIR=$tmp/stage "$cmake" --install "$build" --prefix /opt/warmcal > "$tmp/stage.log" 2>&1 || {
    cat "$tmp/stage.log"; fail "DESTDIR=... cmake --install"; }
(cd "$p" && find . | sort) > "$tmp/tree-p"
(cd "$tmp/stage/opt/warmcal" && find . | sort) > "$tmp/tree-stage"
cmp -s "$tmp/tree-p" "$tmp/tree-stage" || { fail "the DESTDIR tree differs:"; diff "$tmp/tree-p" "$tmp/tree-stage"; }
cmp -s "$(find "$p" -name _installed.py)" "$(find "$tmp/stage" -name _installed.py)" ||
    fail "_installed.py differs between --prefix and DESTDIR installs"
rm -rf "$tmp/stage"

echo "== the installed files"
for f in bin/warmcal bin/warmcal-synth share/man/man1/warmcal.1 share/man/man1/warmcal-synth.1 \
         share/bash-completion/completions/warmcal share/warmcal/report/need.gp \
         share/warmcal/report/style.gp share/warmcal/models/deepseek-v3/config.json \
         share/warmcal/models/llama-3.1-8b/deploy-tp4.json \
         include/warmcal/gate.h include/warmcal/table.h include/warmcal/error.h \
         include/warmcal/trace.h include/warmcal/recorder.h include/warmcal/phase_message.h \
         include/warmcal/launcher.h \
         "$libdir/pkgconfig/warmcal-gate.pc" "$libdir/pkgconfig/warmcal-trace.pc" \
         "$libdir/pkgconfig/warmcal-convention.pc" "$libdir/cmake/warmcal/warmcalConfig.cmake" \
         "$libdir/cmake/warmcal/warmcalConfigVersion.cmake"; do
    [ -f "$p/$f" ] || fail "not installed: $f"
done
libs="gate trace convention"
[ -f "$build/profiler/src/inject/libwarmcal-inject.so" ] && libs="$libs inject"
if [ "${libs#*inject}" != "$libs" ]; then
    [ -f "$p/include/warmcal/profile.h" ] || fail "not installed: profile.h"
    [ -f "$p/$libdir/pkgconfig/warmcal-inject.pc" ] || fail "not installed: warmcal-inject.pc"
fi

echo "== no path of the build or source tree in the installed tree"
for d in "$build" "$src" "$(cd "$build" && pwd -P)" "$(cd "$src" && pwd -P)"; do
    hits=$(grep -rlF "$d" "$p" 2>/dev/null)
    [ -z "$hits" ] || fail "$d named in: $hits"
done

# the WARMCAL_API functions a set of installed headers declare (comments
# and preprocessor lines left out)
api() {
    for h in "$@"; do
        "$cc" -fpreprocessed -dD -E -P "$p/include/warmcal/$h" 2>/dev/null | grep -v '^[[:space:]]*#' |
            tr '\n' ' ' | grep -oE 'WARMCAL_API[^;{(]*\(' |
            sed -E 's/.*[^A-Za-z0-9_]([A-Za-z_][A-Za-z0-9_]*)[[:space:]]*\($/\1/'
    done | sort -u
}
echo "== exported symbols == the installed headers' API, SONAME and version"
all_api=$(api $(cd "$p/include/warmcal" && ls))
exported_all=""
for lib in $libs; do
    case $lib in
        gate) headers="gate.h table.h error.h" extra="" ;;
        trace) headers="trace.h recorder.h error.h" extra="" ;;
        convention) headers="phase_message.h launcher.h" extra="" ;;
        inject) headers="profile.h" extra="InitializeInjection InitializeInjectionNvtx2" ;;
    esac
    file=$p/$libdir/libwarmcal-$lib.so
    [ -f "$file.$version" ] || fail "no $file.$version"
    soname=$(readelf -d "$file" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
    [ "$soname" = "libwarmcal-$lib.so.$sov" ] || fail "libwarmcal-$lib.so: SONAME '$soname', not libwarmcal-$lib.so.$sov"
    [ -L "$p/$libdir/libwarmcal-$lib.so.$sov" ] || fail "no libwarmcal-$lib.so.$sov link"
    want=$( (api $headers; for s in $extra; do echo "$s"; done) | sort -u)
    # every exported function under the library's own version node (the
    # node itself is the one absolute symbol)
    node=WARMCAL_$(echo "$lib" | tr a-z A-Z)_$sov
    nm -D --defined-only "$file" > "$tmp/nm"
    [ "$(awk '$2 == "A" {print $3}' "$tmp/nm")" = "$node" ] ||
        fail "libwarmcal-$lib.so: version nodes '$(awk '$2 == "A" {print $3}' "$tmp/nm" | tr '\n' ' ')', not $node"
    other=$(awk -v n="$node" 'NF == 3 && $2 != "A" && $3 !~ ("@@" n "$") {print $3}' "$tmp/nm")
    [ -z "$other" ] || fail "libwarmcal-$lib.so: symbols not under $node: $other"
    got=$(awk 'NF == 3 && $2 != "A" {print $3}' "$tmp/nm" | sed 's/@.*//' | sort -u)
    exported_all="$exported_all $got"
    if [ "$want" != "$got" ]; then
        fail "libwarmcal-$lib.so exports other than the API of $headers $extra:"
        echo "$want" > "$tmp/want"; echo "$got" > "$tmp/got"
        diff "$tmp/want" "$tmp/got" | sed -n 's/^</  declared, not exported:/p; s/^>/  exported, not declared:/p'
    else
        echo "libwarmcal-$lib.so ($soname): $(echo "$got" | wc -l) symbols, the API of $headers $extra"
    fi
done
# every function an installed header declares is in some installed library
for f in $all_api; do
    case " $(echo $exported_all) " in *" $f "*) ;; *) fail "$f declared in an installed header, exported by no installed library" ;; esac
done

echo "== the installed commands"
runpath=$(readelf -d "$p/bin/warmcal" | sed -n 's/.*(RUNPATH).*\[\(.*\)\]/\1/p')
[ "$runpath" = "$exe_rpath" ] || fail "bin/warmcal: RUNPATH '$runpath', not '$exe_rpath'"
case $exe_rpath in
    '$ORIGIN/'*) exe_env="-u LD_LIBRARY_PATH" ;; # relative to the command: nothing else
    *) exe_env="LD_LIBRARY_PATH=@PREFIX@/$libdir" ;;
esac
run_commands() {
    run="env -u PYTHONPATH -u WARMCAL_TRACE_LIB -u WARMCAL_CONVENTION_LIB $(echo "$exe_env" | sed "s|@PREFIX@|$1|")"
    $run "$1/bin/warmcal" --version > "$tmp/out" 2>&1 || fail "$1/bin/warmcal --version: $(cat "$tmp/out")"
    $run "$1/bin/warmcal-synth" --help > "$tmp/out" 2>&1 || fail "$1/bin/warmcal-synth --help: $(cat "$tmp/out")"
    # the installed Python package, found relative to the command (the
    # build tree's fallbacks are relative to the build tree's command)
    if [ -x /usr/bin/python3 ]; then
        $run "$1/bin/warmcal" import csv --help > "$tmp/out" 2>&1 || fail "$1/bin/warmcal import csv --help: $(cat "$tmp/out")"
        # the package alone, with no LD_LIBRARY_PATH: it loads the libraries
        # installed with it, and its dist-info gives the version
        pkg=$(cd "$1" && find . -name __init__.py -path '*/warmcal/__init__.py' ! -path '*/importers/*')
        env -u LD_LIBRARY_PATH -u WARMCAL_GATE_LIB -u WARMCAL_TRACE_LIB -u WARMCAL_CONVENTION_LIB \
            PYTHONPATH="$1/${pkg%/warmcal/__init__.py}" /usr/bin/python3 -c '
import sys, importlib.metadata as md
import warmcal
from warmcal import _capi, _trace, _convention, _libfind
trace = _libfind._file_of(_trace.load().warmcal_trace_writer_open, "?")
convention = _libfind._file_of(_convention.load().warmcal_phase_message_parse, "?")
print(_capi.library_path(), trace, convention, md.version("warmcal"), warmcal.__version__)' \
            > "$tmp/out" 2>&1 || fail "the installed Python package in $1: $(cat "$tmp/out")"
        l=$1/$libdir
        [ "$(cat "$tmp/out")" = "$l/libwarmcal-gate.so.$sov $l/libwarmcal-trace.so.$sov $l/libwarmcal-convention.so.$sov $version $version" ] ||
            fail "the installed Python package in $1: '$(cat "$tmp/out")', not the libraries of $l and version $version twice"
    fi
    # warmcal-synth finds the shipped models beside itself by name
    $run "$1/bin/warmcal-synth" --model no-such-model --out "$tmp/synth" > "$tmp/out" 2>&1
    grep -q "not a model shipped with warmcal (in $(cd "$1" && pwd -P)/share/warmcal/models: .*llama-3.1-8b" "$tmp/out" ||
        fail "$1/bin/warmcal-synth does not list the models in $1/share/warmcal/models: $(cat "$tmp/out")"
    rm -rf "$tmp/synth"
    $run "$1/bin/warmcal-synth" --model llama-3.1-8b --deployment deploy-tp1 --max-num-tokens 1024 \
        --out "$tmp/synth" > "$tmp/out" 2>&1 || fail "$1/bin/warmcal-synth --model llama-3.1-8b: $(cat "$tmp/out")"
    [ -f "$tmp/synth/rank-0.h5" ] || fail "$1/bin/warmcal-synth --model llama-3.1-8b wrote no trace"
    rm -rf "$tmp/synth"
}
run_commands "$p"

# build_and_run PREFIX NAME MPIEXEC...: both external programs against PREFIX, run on 4 ranks
build_and_run() {
    prefix=$1 name=$2
    shift 2
    echo "== pkg-config against $prefix"
    pc="env PKG_CONFIG_PATH=$prefix/$libdir/pkgconfig $pkgconfig"
    got_prefix=$($pc --variable=libdir warmcal-gate)
    [ "$(cd "$got_prefix" 2>/dev/null && pwd -P)" = "$(cd "$prefix/$libdir" && pwd -P)" ] ||
        fail "warmcal-gate.pc: libdir $got_prefix, not $prefix/$libdir"
    $pc --exists --print-errors warmcal-gate warmcal-trace warmcal-convention ||
        fail "pkg-config cannot resolve the installed modules"
    "$cc" $($pc --cflags warmcal-gate) "$here/external/gate_decide.c" -o "$tmp/pc-$name" \
        $($pc --libs warmcal-gate) > "$tmp/cc.log" 2>&1 || { cat "$tmp/cc.log"; fail "cc with pkg-config"; }
    if [ "${libs#*inject}" != "$libs" ]; then
        echo "== a program marking phases with warmcal/profile.h (pkg-config warmcal-inject), unprofiled"
        "$cc" -Wall -Werror $($pc --cflags warmcal-inject) "$here/external/phase_mark.c" \
            -o "$tmp/phase-$name" $($pc --libs warmcal-inject) > "$tmp/cc.log" 2>&1 ||
            { cat "$tmp/cc.log"; fail "cc with pkg-config warmcal-inject"; }
        LD_LIBRARY_PATH=$prefix/$libdir timeout 60 "$tmp/phase-$name" > "$tmp/run.log" 2>&1 ||
            { cat "$tmp/run.log"; fail "the phase-marking program"; }
        grep -q "^bad label -1, begin -6, end -6$" "$tmp/run.log" ||
            fail "the phase-marking program: $(cat "$tmp/run.log")"
    fi
    cxx=$(command -v g++ || command -v c++ || true)
    if [ -n "$cxx" ]; then
        echo "== C++ with pkg-config against $prefix"
        "$cxx" -Wall -Werror $($pc --cflags warmcal-gate) "$here/external/gate_cxx.cc" \
            -o "$tmp/cxx-$name" $($pc --libs warmcal-gate) > "$tmp/cxx.log" 2>&1 ||
            { cat "$tmp/cxx.log"; fail "C++ with pkg-config"; }
        LD_LIBRARY_PATH=$prefix/$libdir timeout 60 "$@" "$tmp/cxx-$name" > "$tmp/run.log" 2>&1 ||
            { cat "$tmp/run.log"; fail "the C++ program on 4 ranks"; }
        n=$(grep -c "C++ sees the gate" "$tmp/run.log")
        [ "$n" = 4 ] || fail "the C++ program: $n of 4 ranks ran"
        echo "== a C++-only CMake project: find_package(warmcal) against $prefix"
        "$cmake" -S "$here/external_cxx" -B "$tmp/extcxx-$name" -DCMAKE_CXX_COMPILER="$cxx" \
            -DCMAKE_PREFIX_PATH="$prefix" > "$tmp/ext.log" 2>&1 &&
            "$cmake" --build "$tmp/extcxx-$name" > "$tmp/ext.log" 2>&1 ||
            { cat "$tmp/ext.log"; fail "the C++-only find_package project"; }
        LD_LIBRARY_PATH=$prefix/$libdir timeout 60 "$@" "$tmp/extcxx-$name/gate_cxx" > "$tmp/run.log" 2>&1 ||
            { cat "$tmp/run.log"; fail "the C++-only project's program on 4 ranks"; }
        n=$(grep -c "C++ sees the gate" "$tmp/run.log")
        [ "$n" = 4 ] || fail "the C++-only project's program: $n of 4 ranks ran"
    else
        echo "== no C++ compiler: the C++ checks are left out"
    fi
    echo "== find_package(warmcal) against $prefix"
    "$cmake" -S "$here/external" -B "$tmp/ext-$name" -DCMAKE_C_COMPILER="$cc" \
        -DCMAKE_PREFIX_PATH="$prefix" > "$tmp/ext.log" 2>&1 &&
        "$cmake" --build "$tmp/ext-$name" > "$tmp/ext.log" 2>&1 ||
        { cat "$tmp/ext.log"; fail "the find_package project"; }
    dir=$(sed -n 's/^warmcal_DIR:PATH=//p' "$tmp/ext-$name/CMakeCache.txt")
    case $dir in "$prefix"/*) ;; *) fail "find_package found warmcal in '$dir', not under $prefix" ;; esac
    for prog in "$tmp/pc-$name" "$tmp/ext-$name/gate_decide"; do
        [ -x "$prog" ] || continue
        echo "== $prog on 4 ranks"
        rm -f "$tmp/table.json"
        LD_LIBRARY_PATH=$prefix/$libdir timeout 60 "$@" "$prog" "$tmp/table.json" > "$tmp/run.log" 2>&1
        rc=$?
        cat "$tmp/run.log"
        [ $rc = 0 ] || fail "$prog: exit $rc"
        n=$(grep -c "^rank [0-3]: 256 tokens run, 1024 tokens skip (blocking rank 2" "$tmp/run.log")
        [ "$n" = 4 ] || fail "$prog: $n of 4 ranks decided as expected"
        LD_LIBRARY_PATH=$prefix/$libdir ldd "$prog" | grep -q "$prefix/$libdir/libwarmcal-gate.so.$sov" || fail "$prog: not the gate of $prefix"
    done
}
build_and_run "$p" p "$@"

echo "== the prefix moved: $tmp/p -> $tmp/q"
mv "$tmp/p" "$tmp/q"
run_commands "$tmp/q"
build_and_run "$tmp/q" q "$@"

[ $fails = 0 ] && echo "install_test: OK" || echo "install_test: $fails failure(s)"
[ $fails = 0 ]
