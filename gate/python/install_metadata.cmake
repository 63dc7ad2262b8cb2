# Run by `cmake --install` after the Python package is copied (python.cmake
# sets WARMCAL_PY_DIR, WARMCAL_PY_LIBDIR, WARMCAL_PY_VERSION and
# WARMCAL_PY_STAGE before it): what pip would also leave in place, for an
# install pip did not make.
#  - warmcal/_installed.py: the C libraries' folder relative to the package,
#    so the package loads the libraries installed with it from any prefix,
#    moved or not, with no LD_LIBRARY_PATH (gate/python/warmcal/_libfind.py);
#    an absolute path when either folder was configured absolute (then the
#    two do not move together);
#  - warmcal-VERSION.dist-info (METADATA, INSTALLER, top_level.txt, RECORD):
#    importlib.metadata and pip see the package (pip list, pip uninstall).
# Both are written into a staging folder of the build tree, then installed
# with file(INSTALL): they honour DESTDIR and are in install_manifest.txt,
# so removing what the manifest lists removes them too.
set(_relocatable TRUE)
foreach(_v WARMCAL_PY_DIR WARMCAL_PY_LIBDIR)
  if(IS_ABSOLUTE "${${_v}}")
    set(_relocatable FALSE)
  else()
    set(${_v} "${CMAKE_INSTALL_PREFIX}/${${_v}}")
  endif()
endforeach()
set(_site "$ENV{DESTDIR}${WARMCAL_PY_DIR}")
if(NOT EXISTS "${_site}/warmcal/__init__.py")
  message(FATAL_ERROR "install_metadata.cmake: no package in ${_site}/warmcal")
endif()

if(_relocatable)
  # both paths as installed (DESTDIR left out): their relation is the same
  file(RELATIVE_PATH _libdir "${WARMCAL_PY_DIR}/warmcal" "${WARMCAL_PY_LIBDIR}")
  string(REGEX REPLACE "(.)/$" "\\1" _libdir "${_libdir}")
  if(_libdir STREQUAL "")
    set(_libdir ".")
  endif()
else()
  set(_libdir "${WARMCAL_PY_LIBDIR}")
endif()
file(REMOVE_RECURSE "${WARMCAL_PY_STAGE}")
file(WRITE "${WARMCAL_PY_STAGE}/warmcal/_installed.py"
"\"\"\"Written by cmake --install: where the C libraries installed with this
package are (relative to it, unless an absolute folder was configured).\"\"\"
LIBDIR = \"${_libdir}\"
")
file(INSTALL "${WARMCAL_PY_STAGE}/warmcal/_installed.py" DESTINATION "${WARMCAL_PY_DIR}/warmcal")

set(_info_name "warmcal-${WARMCAL_PY_VERSION}.dist-info")
# an earlier version's metadata names files that are gone or changed
file(GLOB _old LIST_DIRECTORIES true "${_site}/warmcal-[0-9]*.dist-info")
if(_old)
  file(REMOVE_RECURSE ${_old})
endif()
set(_info "${WARMCAL_PY_STAGE}/${_info_name}")
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
file(GLOB_RECURSE _pkg_files RELATIVE "${_site}" "${_site}/warmcal/*")
file(GLOB_RECURSE _info_files RELATIVE "${WARMCAL_PY_STAGE}" "${_info}/*")
set(_record "")
foreach(_f IN LISTS _pkg_files)
  if(NOT _f MATCHES "__pycache__/|\\.pyc$")
    file(SIZE "${_site}/${_f}" _size)
    string(APPEND _record "${_f},,${_size}\n")
  endif()
endforeach()
foreach(_f IN LISTS _info_files)
  file(SIZE "${WARMCAL_PY_STAGE}/${_f}" _size)
  string(APPEND _record "${_f},,${_size}\n")
endforeach()
string(APPEND _record "${_info_name}/RECORD,,\n")
file(WRITE "${_info}/RECORD" "${_record}")
file(INSTALL "${_info}" DESTINATION "${WARMCAL_PY_DIR}")
