# Run by `cmake --install` after the Python package is copied (python.cmake
# sets WARMCAL_PY_DIR, WARMCAL_PY_LIBDIR and WARMCAL_PY_VERSION before it):
# what pip would also leave in place, for an install pip did not make.
#  - warmcal/_installed.py: the C libraries' folder relative to the package,
#    so the package loads the libraries installed with it from any prefix,
#    moved or not, with no LD_LIBRARY_PATH (gate/python/warmcal/_libfind.py);
#  - warmcal-VERSION.dist-info (METADATA, INSTALLER, top_level.txt, RECORD):
#    importlib.metadata and pip see the package (pip list, pip uninstall).
foreach(_v WARMCAL_PY_DIR WARMCAL_PY_LIBDIR)
  if(NOT IS_ABSOLUTE "${${_v}}")
    set(${_v} "${CMAKE_INSTALL_PREFIX}/${${_v}}")
  endif()
endforeach()
set(_site "$ENV{DESTDIR}${WARMCAL_PY_DIR}")
set(_pkg "${_site}/warmcal")
if(NOT EXISTS "${_pkg}/__init__.py")
  message(FATAL_ERROR "install_metadata.cmake: no package in ${_pkg}")
endif()

# both paths as installed (DESTDIR left out): their relation is the same
file(RELATIVE_PATH _rel "${WARMCAL_PY_DIR}/warmcal" "${WARMCAL_PY_LIBDIR}")
string(REGEX REPLACE "(.)/$" "\\1" _rel "${_rel}")
if(_rel STREQUAL "")
  set(_rel ".")
endif()
file(WRITE "${_pkg}/_installed.py"
"\"\"\"Written by cmake --install: where the C libraries installed with this
package are, relative to it.\"\"\"
LIBDIR = \"${_rel}\"
")

set(_info_name "warmcal-${WARMCAL_PY_VERSION}.dist-info")
set(_info "${_site}/${_info_name}")
file(REMOVE_RECURSE "${_info}")
file(GLOB _old LIST_DIRECTORIES true "${_site}/warmcal-[0-9]*.dist-info")
if(_old)
  file(REMOVE_RECURSE ${_old}) # an earlier version's record, now wrong
endif()
file(WRITE "${_info}/METADATA" "Metadata-Version: 2.1
Name: warmcal
Version: ${WARMCAL_PY_VERSION}
Summary: Start-up gate for multi-rank LLM server warmup: measured GPU memory estimates decide which warmup shapes every rank runs
Requires-Python: >=3.11
Provides-Extra: mpi
Requires-Dist: mpi4py; extra == \"mpi\"
Provides-Extra: torch
Requires-Dist: torch; extra == \"torch\"
")
file(WRITE "${_info}/INSTALLER" "cmake\n")
file(WRITE "${_info}/top_level.txt" "warmcal\n")
# RECORD: every file, relative to the site folder, with its size; the hash
# field may be empty (the recording-installed-projects specification)
file(GLOB_RECURSE _files RELATIVE "${_site}" "${_pkg}/*" "${_info}/*")
list(SORT _files)
set(_record "")
foreach(_f IN LISTS _files)
  if(_f MATCHES "__pycache__/|\\.pyc$")
    continue()
  endif()
  file(SIZE "${_site}/${_f}" _size)
  string(APPEND _record "${_f},,${_size}\n")
endforeach()
string(APPEND _record "${_info_name}/RECORD,,\n")
file(WRITE "${_info}/RECORD" "${_record}")
