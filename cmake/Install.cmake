# What C programs link against in an installed warmcal: pkg-config files
# (warmcal-gate.pc, warmcal-trace.pc, warmcal-convention.pc, and
# warmcal-inject.pc when the CUPTI library is built) and the CMake
# package (find_package(warmcal) -> warmcal::gate, warmcal::trace,
# warmcal::convention, and warmcal::inject when built). Included from the
# top-level CMakeLists.txt after every library's folder; each library's own
# install(TARGETS ... EXPORT warmcalTargets) and headers are in its folder.
#
# Both are relocatable: paths are relative to the installed file itself
# (${pcfiledir}, CMake's computed prefix), so `cmake --install build
# --prefix P` and a tree moved after installation point at where they are.
# tests/install checks it, with the exported symbols against the headers.
include(CMakePackageConfigHelpers)

# --- pkg-config -------------------------------------------------------------
# The module a program needs for the gate's MPI: gate.h includes <mpi.h> and
# the library is linked against this MPI's ABI (Open MPI: ompi-c; MPICH: mpich).
if(NOT DEFINED WARMCAL_PC_MPI)
  set(_warmcal_pc_mpi mpi-c) # Debian's alternative for the default MPI
  find_file(_warmcal_mpi_h mpi.h HINTS ${MPI_C_HEADER_DIR} ${MPI_C_INCLUDE_DIRS} NO_CACHE)
  if(_warmcal_mpi_h)
    file(STRINGS ${_warmcal_mpi_h} _warmcal_mpi_kind REGEX "^#define (OPEN_MPI|MPICH_VERSION) ")
    if(_warmcal_mpi_kind MATCHES "OPEN_MPI")
      set(_warmcal_pc_mpi ompi-c)
    elseif(_warmcal_mpi_kind MATCHES "MPICH_VERSION")
      set(_warmcal_pc_mpi mpich)
    endif()
  endif()
  set(WARMCAL_PC_MPI ${_warmcal_pc_mpi} CACHE STRING
      "pkg-config module of the MPI warmcal-gate.pc requires (ompi-c, mpich, mpi-c)")
endif()
# The HDF5 the trace library links: Debian's serial HDF5 is hdf5-serial (hdf5
# is an alternative that may name the MPI build instead).
if(NOT DEFINED WARMCAL_PC_HDF5)
  pkg_check_modules(_warmcal_hdf5_serial QUIET hdf5-serial)
  if(_warmcal_hdf5_serial_FOUND AND NOT HDF5_IS_PARALLEL)
    set(_warmcal_pc_hdf5 hdf5-serial)
  else()
    set(_warmcal_pc_hdf5 hdf5)
  endif()
  set(WARMCAL_PC_HDF5 ${_warmcal_pc_hdf5} CACHE STRING
      "pkg-config module of the HDF5 warmcal-trace.pc requires privately")
endif()
set(WARMCAL_PC_DL "")
if(CMAKE_DL_LIBS)
  set(WARMCAL_PC_DL "-l${CMAKE_DL_LIBS}")
endif()

# PREFIX/LIBDIR/pkgconfig -> PREFIX, LIBDIR and INCLUDEDIR under it
set(_warmcal_pcdir ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
if(IS_ABSOLUTE "${CMAKE_INSTALL_LIBDIR}")
  set(WARMCAL_PC_PREFIX_REL "")
  set(WARMCAL_PC_LIBDIR "${CMAKE_INSTALL_LIBDIR}")
else()
  file(RELATIVE_PATH WARMCAL_PC_PREFIX_REL "/warmcal-prefix/${_warmcal_pcdir}" "/warmcal-prefix")
  string(REGEX REPLACE "/$" "" WARMCAL_PC_PREFIX_REL "${WARMCAL_PC_PREFIX_REL}")
  set(WARMCAL_PC_LIBDIR "\${prefix}/${CMAKE_INSTALL_LIBDIR}")
endif()
# The system prefix (the .deb) is named as it is: pkgconf drops the system
# folders from what it prints (-I/usr/include, -L/usr/lib/<multiarch>) only
# when they are written so, and a -L of the system's library folder ahead of
# MPI's own would let -lmpi pick whichever MPI the system's alternative names.
if(CMAKE_INSTALL_PREFIX STREQUAL "/usr")
  set(WARMCAL_PC_PREFIX "/usr")
  set(WARMCAL_PC_NOTE "the system's prefix, named as it is (a tree configured for /usr stays there)")
else()
  set(WARMCAL_PC_PREFIX "\${pcfiledir}/${WARMCAL_PC_PREFIX_REL}")
  set(WARMCAL_PC_NOTE "relocatable: every path is relative to this file's own folder")
endif()
if(IS_ABSOLUTE "${CMAKE_INSTALL_INCLUDEDIR}")
  set(WARMCAL_PC_INCLUDEDIR "${CMAKE_INSTALL_INCLUDEDIR}")
else()
  set(WARMCAL_PC_INCLUDEDIR "\${prefix}/${CMAKE_INSTALL_INCLUDEDIR}")
endif()
set(_warmcal_pcs gate/warmcal-gate profiler/warmcal-trace profiler/warmcal-convention)
if(TARGET warmcal-inject) # built with CUPTI: C programs link it for warmcal/profile.h
  list(APPEND _warmcal_pcs profiler/src/inject/warmcal-inject)
endif()
foreach(_warmcal_pc IN LISTS _warmcal_pcs)
  get_filename_component(_warmcal_pcname ${_warmcal_pc} NAME)
  configure_file(${PROJECT_SOURCE_DIR}/${_warmcal_pc}.pc.in
                 ${PROJECT_BINARY_DIR}/pkgconfig/${_warmcal_pcname}.pc @ONLY)
  install(FILES ${PROJECT_BINARY_DIR}/pkgconfig/${_warmcal_pcname}.pc DESTINATION ${_warmcal_pcdir}
          COMPONENT Development)
endforeach()

# --- the CMake package ------------------------------------------------------
set(_warmcal_cmakedir ${CMAKE_INSTALL_LIBDIR}/cmake/warmcal)
install(EXPORT warmcalTargets NAMESPACE warmcal:: FILE warmcalTargets.cmake
        DESTINATION ${_warmcal_cmakedir} COMPONENT Development)
configure_package_config_file(${PROJECT_SOURCE_DIR}/cmake/warmcalConfig.cmake.in
                              ${PROJECT_BINARY_DIR}/cmake/warmcalConfig.cmake
                              INSTALL_DESTINATION ${_warmcal_cmakedir})
# 0.x: a minor release may change the API, so only 0.MINOR.* is compatible
write_basic_package_version_file(${PROJECT_BINARY_DIR}/cmake/warmcalConfigVersion.cmake
                                 VERSION ${PROJECT_VERSION} COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/cmake/warmcalConfig.cmake
              ${PROJECT_BINARY_DIR}/cmake/warmcalConfigVersion.cmake
        DESTINATION ${_warmcal_cmakedir} COMPONENT Development)
