#!/bin/sh
# deb_test.sh SOURCE_DIR WORK_DIR CC: build warmcal's .debs (warmcal and
# warmcal-dev) from a tree configured for /usr, check their control fields
# and contents, then install them with apt-get into a fresh Debian root
# (debootstrap, minbase): warmcal alone first, where the commands and the
# Python package must run, then warmcal-dev, which must bring what
# pkg-config needs for a C program built there.
# Opt-in: WARMCAL_DEB_TEST=1 (root, the Debian mirror apt uses, minutes).
# WORK_DIR keeps, between runs, the package build tree (pkg-build), the
# pristine root (cache/bookworm-minbase.tar) and apt's downloaded packages
# (cache/archives); each run installs into a new copy of the root, removed
# at the end. WARMCAL_DEB_MIRROR overrides the mirror, WARMCAL_DEB_KEEP=1
# keeps the run's root for a look.
set -eu
src=$1
work=$2
cc=${3:-cc}

skip() { echo "deb_test: SKIPPED: $*"; exit 77; }
fail() { echo "deb_test: FAIL: $*" >&2; exit 1; }
step() { echo "== $*"; }

[ "${WARMCAL_DEB_TEST:-0}" = 1 ] ||
    skip "opt-in (needs root, the Debian mirror and minutes): WARMCAL_DEB_TEST=1 ctest -L deb"
[ "$(id -u)" -eq 0 ] || skip "needs root (debootstrap, chroot, mount)"
for tool in debootstrap chroot unshare dpkg-deb cpack tar; do
    command -v $tool >/dev/null 2>&1 ||
        skip "$tool not found (apt-get install debootstrap; cpack comes with cmake)"
done
unshare --mount --propagation private true 2>/dev/null ||
    skip "cannot make a private mount namespace here (unshare --mount)"

mirror=${WARMCAL_DEB_MIRROR:-}
if [ -z "$mirror" ]; then
    # the first Debian URI apt is configured with (deb822 or one-line form)
    mirror=$(cat /etc/apt/sources.list.d/*.sources 2>/dev/null |
             awk '/^URIs:/ && $2 ~ /debian\/?$/ {print $2; exit}')
    [ -n "$mirror" ] || mirror=$(awk '$1 == "deb" && $2 ~ /debian\/?$/ {print $2; exit}' \
             /etc/apt/sources.list 2>/dev/null)
    [ -n "$mirror" ] || mirror=http://deb.debian.org/debian
fi
version=$(tr -d ' \n' < "$src/VERSION")
# the ABI in the SONAMEs: 0.MINOR while the major is 0 (cmake/Abi.cmake)
major=${version%%.*} rest=${version#*.}
minor=${rest%%.*}
if [ "$major" = 0 ]; then sov=0.$minor next=0.$((minor + 1))~; else sov=$major next=$((major + 1))~; fi
arch=$(dpkg --print-architecture)
mkdir -p "$work/cache/archives/partial"
run=$(mktemp -d "$work/run.XXXXXX")
root=$run/root
cleanup() {
    rc=$?
    if [ "${WARMCAL_DEB_KEEP:-0}" = 1 ]; then
        echo "deb_test: kept $run"
    elif [ -d "$run" ]; then
        # every mount was made in a private namespace that is gone by now;
        # never cross into another file system all the same
        if grep -q " $run/" /proc/self/mountinfo; then
            echo "deb_test: $run still has mounts, not removed" >&2
        else
            rm -rf --one-file-system "$run"
        fi
    fi
    exit $rc
}
trap cleanup EXIT
trap 'exit 1' INT TERM

# -- the package ------------------------------------------------------------
step "build a tree for /usr and cpack -G DEB ($work/pkg-build)"
cmake -S "$src" -B "$work/pkg-build" -DCMAKE_C_COMPILER="$cc" -DCMAKE_BUILD_TYPE=Release \
      -DCMAKE_INSTALL_PREFIX=/usr -DWARMCAL_PYTHON_INSTALL_DIR=lib/python3/dist-packages \
      -DWARMCAL_WERROR=ON >"$run/configure.log" 2>&1 ||
    { tail -30 "$run/configure.log"; fail "configuring the package tree"; }
cmake --build "$work/pkg-build" -j2 >"$run/build.log" 2>&1 ||
    { tail -30 "$run/build.log"; fail "building the package tree"; }
rm -f "$work/pkg-build"/warmcal_*.deb "$work/pkg-build"/warmcal-dev_*.deb
(cd "$work/pkg-build" && cpack -G DEB) >"$run/cpack.log" 2>&1 ||
    { tail -30 "$run/cpack.log"; fail "cpack -G DEB"; }
grep -i "warning" "$run/cpack.log" || true
set -- "$work/pkg-build"/warmcal_*.deb
if [ $# -ne 1 ] || [ ! -f "$1" ]; then fail "cpack made no single warmcal_*.deb: $*"; fi
deb=$1
set -- "$work/pkg-build"/warmcal-dev_*.deb
if [ $# -ne 1 ] || [ ! -f "$1" ]; then fail "cpack made no single warmcal-dev_*.deb: $*"; fi
devdeb=$1
echo "deb_test: $deb $devdeb"

step "control fields"
field() { dpkg-deb -f "$deb" "$1"; }
devfield() { dpkg-deb -f "$devdeb" "$1"; }
dpkg-deb -I "$deb"
dpkg-deb -I "$devdeb"
[ "$(field Package)" = warmcal ] || fail "Package: $(field Package)"
case $(field Version) in "$version"|"$version"-*) ;; *) fail "Version $(field Version), VERSION says $version" ;; esac
[ "$(field Architecture)" = "$arch" ] || fail "Architecture $(field Architecture), dpkg says $arch"
[ -n "$(field Maintainer)" ] || fail "no Maintainer"
[ -n "$(field Description)" ] || fail "no Description"
dpkg-deb -I "$deb" triggers | grep -q "^activate-noawait ldconfig" || fail "no ldconfig trigger"
# the shlibs file: what a package built against these libraries depends on,
# bounded above (the next minor release no longer holds this SONAME)
for lib in gate trace convention; do
    dpkg-deb -I "$deb" shlibs | grep -Fxq "libwarmcal-$lib $sov warmcal (>= $(field Version)), warmcal (<< $next)" ||
        fail "no shlibs line for libwarmcal-$lib $sov: $(dpkg-deb -I "$deb" shlibs 2>&1)"
done
# maintainer scripts: ldconfig by trigger only; the byte code compiled and cleaned
if dpkg-deb -I "$deb" postinst postrm 2>/dev/null | grep -v '^ *#' | grep -q ldconfig; then
    fail "a maintainer script calls ldconfig (the trigger does)"
fi
dpkg-deb -I "$deb" postinst | grep -q "py3compile -p warmcal" || fail "postinst does not compile the Python package"
dpkg-deb -I "$deb" prerm | grep -q "py3clean -p warmcal" || fail "prerm does not clean the Python package"
depends=$(field Depends)
for p in libc6 libopenmpi3 libhdf5-103-1 libjansson4 libnettle8 liblapacke python3; do
    echo ", $depends," | grep -Eq "[ ,]$p( \([^)]*\))?," || fail "Depends lacks $p: $depends"
done
recommends=$(field Recommends)
for p in gnuplot-nox python3-h5py python3-mpi4py openmpi-bin; do
    echo ", $recommends," | grep -Eq "[ ,]$p( \([^)]*\))?," || fail "Recommends lacks $p: $recommends"
done
[ "$(devfield Package)" = warmcal-dev ] || fail "Package: $(devfield Package)"
[ "$(devfield Version)" = "$(field Version)" ] || fail "warmcal-dev $(devfield Version), warmcal $(field Version)"
[ "$(devfield Section)" = libdevel ] || fail "warmcal-dev Section: $(devfield Section)"
for f in Breaks Replaces; do
    [ "$(devfield $f)" = "warmcal (<< 0.1.0-2)" ] ||
        fail "warmcal-dev $f: '$(devfield $f)' (the development files left warmcal in 0.1.0-2)"
done
devdepends=$(devfield Depends)
echo ", $devdepends," | grep -Fq ", warmcal (= $(field Version))," ||
    fail "warmcal-dev does not depend on warmcal (= $(field Version)): $devdepends"
# the -dev package of every module the .pc files require, privately too
for p in libopenmpi-dev libjansson-dev nettle-dev libhdf5-dev; do
    echo ", $devdepends," | grep -Eq "[ ,]$p( \([^)]*\))?," || fail "warmcal-dev Depends lacks $p: $devdepends"
done

step "contents"
listing() {
    dpkg-deb -c "$1" | awk '{ if ($1 ~ /^l/) print $6, $7, $8; else print $6 }' | sed 's|^\./|/|'
}
listing "$deb" > "$run/runtime"
listing "$devdeb" > "$run/dev"
echo "-- warmcal"; cat "$run/runtime"
echo "-- warmcal-dev"; cat "$run/dev"
cat "$run/runtime" "$run/dev" > "$run/contents"
has() { grep -Eq "^$1( |\$)" "$run/contents" || fail "the packages lack $1"; }
libdir=$(sed -n 's/^CMAKE_INSTALL_LIBDIR:[A-Z]*=//p' "$work/pkg-build/CMakeCache.txt")
libdir=/usr/${libdir:-lib}
has /usr/bin/warmcal
has /usr/bin/warmcal-synth
for lib in gate trace convention; do
    # the real file, its SONAME link and the development link
    has "$libdir/libwarmcal-$lib\.so\.[0-9]+\.[0-9]+\.[0-9]+"
    grep -Fxq "$libdir/libwarmcal-$lib.so.$sov -> libwarmcal-$lib.so.$version" "$run/runtime" ||
        fail "no SONAME link libwarmcal-$lib.so.$sov -> libwarmcal-$lib.so.$version in warmcal"
    grep -Eq "^$libdir/libwarmcal-$lib\.so -> " "$run/contents" ||
        fail "no development link libwarmcal-$lib.so"
done
for h in gate.h table.h error.h; do has "/usr/include/warmcal/$h"; done
has "$libdir/pkgconfig/warmcal-gate\.pc"
grep -Eq "^($libdir|/usr/share)/cmake/warmcal/warmcal[Cc]onfig\.cmake$" "$run/contents" ||
    fail "no CMake package config (lib/cmake/warmcal/warmcalConfig.cmake)"
grep -Eq "^($libdir|/usr/share)/cmake/warmcal/warmcal[Cc]onfig-?[Vv]ersion\.cmake$" "$run/contents" ||
    fail "no CMake package version file"
has /usr/share/man/man1/warmcal\.1\.gz
has /usr/share/man/man1/warmcal-synth\.1\.gz
has /usr/share/doc/warmcal/changelog\.Debian\.gz
has /usr/share/bash-completion/completions/warmcal
has /usr/lib/python3/dist-packages/warmcal/__init__\.py
has /usr/lib/python3/dist-packages/warmcal/py\.typed
has /usr/lib/python3/dist-packages/warmcal/importers/__main__\.py
has "/usr/lib/python3/dist-packages/warmcal-$version\.dist-info/METADATA"
grep -q "^/usr/lib/python3/dist-packages/warmcal-$version\.dist-info/RECORD" "$run/runtime" &&
    fail "the packed dist-info has a RECORD (pip would remove files dpkg owns)"
[ "$(dpkg-deb --fsys-tarfile "$deb" | tar -xOf - "./usr/lib/python3/dist-packages/warmcal-$version.dist-info/INSTALLER")" = debian ] ||
    fail "the packed dist-info's INSTALLER is not debian"
grep -q "^/usr/share/warmcal/report/" "$run/contents" || fail "no report templates in /usr/share/warmcal/report"
grep -q "^/usr/share/warmcal/.*models/" "$run/contents" || fail "no model configs under /usr/share/warmcal"
if grep -v "^/usr/" "$run/contents" | grep -v "^/ *$"; then fail "files outside /usr"; fi
# the split: headers, development links, .pc and CMake files in warmcal-dev,
# everything a run needs in warmcal
if grep -E "^/usr/include/.|^$libdir/libwarmcal-[a-z]+\.so |^$libdir/(pkgconfig|cmake)/." "$run/runtime"; then
    fail "development files in warmcal (they belong to warmcal-dev)"
fi
if grep -Ev "^/usr/include/|^$libdir/libwarmcal-[a-z]+\.so |^$libdir/(pkgconfig|cmake)/|^/usr/share/doc/warmcal-dev/|/$" "$run/dev"; then
    fail "files in warmcal-dev that are not development files"
fi
grep -q "^/usr/share/doc/warmcal-dev/changelog\.Debian\.gz" "$run/dev" || fail "warmcal-dev has no changelog.Debian.gz"
if grep -q "__pycache__\|\.pyc$" "$run/contents"; then fail "compiled Python files packed"; fi

if command -v lintian >/dev/null 2>&1; then
    step "lintian (listed, not failed on)"
    lintian --no-tag-display-limit "$deb" "$devdeb" || true
fi

# -- a fresh Debian root ------------------------------------------------------
tarball=$work/cache/bookworm-minbase.tar
if [ ! -f "$tarball" ]; then
    step "debootstrap --variant=minbase bookworm from $mirror (once, cached in $tarball)"
    rm -rf --one-file-system "$work/cache/root.new"
    debootstrap --variant=minbase bookworm "$work/cache/root.new" "$mirror" \
        >"$run/debootstrap.log" 2>&1 ||
        { tail -20 "$run/debootstrap.log"; rm -rf --one-file-system "$work/cache/root.new";
          skip "debootstrap could not make a bookworm root from $mirror (no mirror here?)"; }
    # the host's Debian sources (updates, security) when it has them in deb822
    # form: the package is built against those versions of the libraries
    if [ -f /etc/apt/sources.list.d/debian.sources ]; then
        cp /etc/apt/sources.list.d/debian.sources "$work/cache/root.new/etc/apt/sources.list.d/"
        rm -f "$work/cache/root.new/etc/apt/sources.list"
    fi
    tar -C "$work/cache/root.new" -cf "$tarball.partial" . && mv "$tarball.partial" "$tarball"
    rm -rf --one-file-system "$work/cache/root.new"
fi
step "a new copy of the root in $root"
mkdir "$root"
tar -C "$root" -xf "$tarball"
cp /etc/resolv.conf "$root/etc/resolv.conf" 2>/dev/null || true
mkdir -p "$root/tmp/deb"
cp "$deb" "$devdeb" "$root/tmp/deb/"
if chroot "$root" dpkg -s warmcal >/dev/null 2>&1; then fail "the fresh root has warmcal already"; fi
for cmd in warmcal gcc cc pkg-config mpirun; do
    [ ! -e "$root/usr/bin/$cmd" ] || fail "the fresh root has /usr/bin/$cmd before the install"
done

# a table any rank serves: 1 GiB + 1 MiB per token for 1..32768 tokens, TP 4
cat > "$root/tmp/table.json" <<'EOF'
{"format": "warmcal-table", "version": 1,
 "configuration": {"model": "smoke", "tp": 4, "gpu_name": "smoke GPU", "gpu_total_bytes": 85899345920},
 "tool_version": "0.1.0", "created": "2026-12-02T00:00:00Z",
 "policy": {"above_range": "refuse", "below_range": "clamp"}, "sources": [],
 "estimates": [{"rank": -1, "label": "context", "tokens_min": 1, "tokens_max": 32768,
   "model": {"form": "linear", "coefficients": [1073741824.0, 1048576.0]},
   "margin": {"relative": 0.0, "bytes": 0.0, "residual": 0.0, "loo": 0.0, "granularity": 0.0},
   "fit": {"points": 10, "rmse": 0.0, "max_residual": 0.0, "loo_rmse": 0.0},
   "failures": {"oom": 0, "oom_tokens_min": 0, "aborted": 0}}]}
EOF
cp "$src/tests/deb/gate_smoke.c" "$root/tmp/gate_smoke.c"
# the find_package(warmcal) project of tests/install, built there with cmake
mkdir "$root/tmp/external"
cp "$src/tests/install/external/CMakeLists.txt" "$src/tests/install/external/gate_decide.c" \
   "$root/tmp/external/"

# With 8 GiB free, 4096 tokens (5 GiB) run and 8192 tokens (9 GiB) do not.
cat > "$root/tmp/smoke.sh" <<EOF
set -eu
export DEBIAN_FRONTEND=noninteractive LC_ALL=C.UTF-8 HOME=/root
export OMPI_MCA_rmaps_base_oversubscribe=1 OMPI_MCA_btl=self,vader
export OMPI_MCA_btl_vader_single_copy_mechanism=none HDF5_USE_FILE_LOCKING=FALSE
mpirun="mpirun -np 4 --allow-run-as-root --oversubscribe"
apt="apt-get -q -o APT::Sandbox::User=root -o Dpkg::Use-Pty=0"
echo "== apt-get install ./warmcal_*.deb alone (dependencies from the mirror)"
\$apt update
\$apt install -y /tmp/deb/warmcal_*.deb
dpkg -s warmcal | sed -n '/^Package/p;/^Status/p;/^Version/p'
if dpkg -s warmcal-dev >/dev/null 2>&1; then echo "warmcal-dev came with warmcal"; exit 1; fi
ls -d /usr/lib/python3/dist-packages/warmcal/__pycache__ >/dev/null ||
    { echo "postinst compiled no byte code"; exit 1; }
echo "== the commands"
warmcal --version
warmcal --version | grep -q "$version"
warmcal-synth --help >/dev/null
man -w warmcal 2>/dev/null || ls /usr/share/man/man1/warmcal.1*
warmcal check /tmp/table.json
echo "== Python: the installed package finds the installed library by the loader"
cd /tmp
env -u WARMCAL_GATE_LIB python3 - <<'PY'
import warmcal, warmcal.profile, warmcal.importers
GiB = 1 << 30
assert warmcal.__version__ == "$version", warmcal.__version__
assert warmcal.__file__.startswith("/usr/lib/python3/dist-packages/"), warmcal.__file__
with warmcal.Gate("/tmp/table.json", rank=0, world_size=4, free_bytes=8 * GiB) as g:
    d = g.decide([(4096, 1, "context"), (8192, 1, "context")], allreduce_min=lambda v: v)
assert [x.run for x in d] == [True, False], d
print("python local gate:", d)
PY
python3 -m warmcal.importers --help >/dev/null
echo "== warmcal import runs the installed Python importers"
printf 'tokens,rank,batch,peak_bytes,label\\n512,0,1,2100000000,context\\n4096,0,1,2800000000,context\\n' \
    > /tmp/m.csv
env -u PYTHONPATH warmcal import csv /tmp/m.csv -o /tmp/traces
warmcal inspect /tmp/traces/rank-0.h5 | grep -q "world_size *1"
echo "== Python over MPI (mpi4py, openmpi-bin: Recommends), 4 ranks"
\$mpirun python3 -c '
from mpi4py import MPI
import warmcal
with warmcal.Gate("/tmp/table.json", comm=MPI.COMM_WORLD, free_bytes=8 << 30) as g:
    d = g.decide([(4096, 1, "context"), (8192, 1, "context")])
assert [x.run for x in d] == [True, False], d
if MPI.COMM_WORLD.rank == 0: print("python MPI gate:", d)
'
echo "== C: apt-get install ./warmcal-dev_*.deb brings what its pkg-config files name"
\$apt install -y --no-install-recommends gcc libc6-dev pkg-config /tmp/deb/warmcal-dev_*.deb
flags=\$(pkg-config --cflags --libs warmcal-gate)
echo "\$flags"
# the system's folders are left out, as for the system's own modules: a
# -L/usr/lib/<multiarch> ahead of MPI's own -L would let -lmpi pick the MPI
# the system's alternative names
case " \$flags " in
*pkgconfig/..*|*" -L/usr/lib/\$(gcc -print-multiarch) "*|*" -I/usr/include "*)
    echo "system folders in warmcal-gate's flags: \$flags"; exit 1 ;;
esac
pkg-config --cflags --libs warmcal-trace warmcal-convention
pkg-config --static --cflags --libs warmcal-gate warmcal-trace >/dev/null
gcc -Wall -Werror -o /tmp/gate_smoke /tmp/gate_smoke.c \$(pkg-config --cflags --libs warmcal-gate)
\$mpirun /tmp/gate_smoke /tmp/table.json
echo "== C: find_package(warmcal) of warmcal-dev (cmake from the mirror)"
\$apt install -y --no-install-recommends cmake make
cmake -S /tmp/external -B /tmp/external-build -DCMAKE_C_COMPILER=gcc >/tmp/external.log ||
    { cat /tmp/external.log; exit 1; }
cmake --build /tmp/external-build >>/tmp/external.log || { cat /tmp/external.log; exit 1; }
grep "^warmcal_DIR:PATH=/usr/lib/\$(gcc -print-multiarch)/cmake/warmcal\$" /tmp/external-build/CMakeCache.txt
\$mpirun /tmp/external-build/gate_decide /tmp/external-table.json > /tmp/external-run.log 2>&1 ||
    { cat /tmp/external-run.log; exit 1; }
cat /tmp/external-run.log
[ "\$(grep -c '^rank [0-3]: 256 tokens run, 1024 tokens skip (blocking rank 2' /tmp/external-run.log)" = 4 ] ||
    { echo "the find_package program did not decide as expected on 4 ranks"; exit 1; }
echo "== apt-get remove leaves nothing of either package (byte code included)"
cd /
\$apt remove -y warmcal warmcal-dev
for d in /usr/lib/python3/dist-packages/warmcal /usr/include/warmcal /usr/share/warmcal; do
    if [ -e "\$d" ]; then echo "left after removal: \$d"; find "\$d" | head; exit 1; fi
done
echo "== smoke test passed"
EOF

step "install and smoke test inside the root (chroot, private mounts)"
# shellcheck disable=SC2016 # $1 and $2 are the inner shell's arguments
unshare --mount --propagation private -- sh -c '
    set -e
    mount -t proc proc "$1/proc"
    mount -t sysfs sysfs "$1/sys"
    mount -t tmpfs tmpfs "$1/dev/shm"
    mount --bind "$2" "$1/var/cache/apt/archives"
    exec chroot "$1" /bin/sh /tmp/smoke.sh' sh "$root" "$work/cache/archives" ||
    fail "the smoke test in the fresh root"
echo "deb_test: passed"
