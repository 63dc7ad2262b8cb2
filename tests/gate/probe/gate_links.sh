#!/bin/sh
# The gate runs inside production servers: it must never link HDF5 or CUPTI,
# must not link the CUDA driver (dlopen'd at run time, so it loads where there
# is no GPU), and does link MPI. Checks the library's direct NEEDED entries
# and, where ldd can resolve them, everything it pulls in.
# Usage: gate_links.sh LIBWARMCAL-GATE.so
set -eu
lib=$1
if command -v readelf >/dev/null 2>&1; then
    needed=$(readelf -d "$lib" | sed -n 's/.*(NEEDED).*\[\(.*\)\].*/\1/p')
else
    needed=$(objdump -p "$lib" | awk '$1 == "NEEDED" { print $2 }')
fi
[ -n "$needed" ] || { echo "FAIL: no NEEDED entries read from $lib" >&2; exit 1; }
echo "NEEDED by $(basename "$lib"):" $needed
status=0
for n in $needed; do
    case $n in
    *hdf5* | *cupti* | libcuda.so*) echo "FAIL: $lib needs $n" >&2; status=1 ;;
    esac
done
echo "$needed" | grep -q '^libmpi\.so' || { echo "FAIL: $lib does not need libmpi" >&2; status=1; }
if command -v ldd >/dev/null 2>&1; then
    bad=$(ldd "$lib" | awk '{ print $1 }' | grep -E 'hdf5|cupti|^libcuda\.so' || true)
    [ -z "$bad" ] || { echo "FAIL: $lib pulls in" $bad >&2; status=1; }
fi
[ $status -eq 0 ] && echo "ok: no HDF5, CUPTI or libcuda; libmpi linked"
exit $status
