# Debian packages of an installed warmcal: `cpack -G DEB` in a build tree
# packs what `cmake --install` puts in place, under /usr, as two packages,
# the way Debian splits a library:
#   warmcal      the commands, the shared libraries (SONAME files), the data
#                files, the man page and the Python package: the install
#                components Runtime and python;
#   warmcal-dev  headers, development links, pkg-config files and the CMake
#                package (component Development), depending on warmcal of
#                the same version and on the -dev packages those files name
#                (pkg-config wants every module a .pc requires, privately too).
# Included once, at the end of the top-level CMakeLists.txt, after every
# install() rule.
#
# Build the packages from a tree configured for /usr: the commands find their
# libraries and data relative to themselves through GNUInstallDirs' folders,
# which are lib/<multiarch> under /usr and lib elsewhere; the Python package
# goes to WARMCAL_PYTHON_INSTALL_DIR (gate/python/python.cmake), whose
# default lib/python3/dist-packages is Debian's python3 path under /usr:
#   cmake -S . -B build-pkg -DCMAKE_INSTALL_PREFIX=/usr
#   cmake --build build-pkg -j && (cd build-pkg && cpack -G DEB)
# tests/deb builds them that way and installs them into a fresh Debian root.

set(CPACK_PACKAGE_NAME warmcal)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_VENDOR "warmcal")
# Each package's description: its own summary line, then the long text.
# (CPACK_PACKAGE_DESCRIPTION_SUMMARY stays unset: CPack would put that one
# line before every package's description, the -dev package's too.)
set(_warmcal_deb_about
"warmcal measures the GPU memory a multi-rank LLM server needs while it
warms up (a profiler that wraps the server's command), fits per-shape
estimates from those traces, and gives the server one synchronized start-up
decision per warmup shape: every rank runs it, or every rank skips it.")
set(CPACK_DEBIAN_RUNTIME_DESCRIPTION "measured GPU memory estimates for safe multi-rank LLM warmup
${_warmcal_deb_about}
.
This package holds the commands warmcal and warmcal-synth, the gate, trace,
convention and injection libraries, the shipped model configs and report
templates, and the Python package warmcal.")
set(CPACK_DEBIAN_DEVELOPMENT_DESCRIPTION "development files for warmcal's gate and trace libraries
${_warmcal_deb_about}
.
This package holds the C headers, the pkg-config files (warmcal-gate,
warmcal-trace, warmcal-convention, warmcal-inject) and the CMake package
(find_package(warmcal)) to build programs against warmcal's libraries.")
set(CPACK_PACKAGE_CONTACT "warmcal developers <warmcal@localhost>")
set(WARMCAL_DEB_MAINTAINER "${CPACK_PACKAGE_CONTACT}" CACHE STRING
    "Maintainer field of the Debian package (Name <address>)")

include(GNUInstallDirs)
set(CPACK_GENERATOR DEB)
set(CPACK_STRIP_FILES ON)
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
if(NOT CMAKE_INSTALL_PREFIX STREQUAL "/usr")
  message(STATUS "Packaging: this tree installs into ${CMAKE_INSTALL_PREFIX}; the .deb installs "
                 "into /usr: configure with -DCMAKE_INSTALL_PREFIX=/usr before `cpack -G DEB` "
                 "so the paths compiled into the commands match the package")
endif()

# one package per group: warmcal (Runtime, python), warmcal-dev (Development)
set(CPACK_DEB_COMPONENT_INSTALL ON)
set(CPACK_COMPONENTS_ALL Runtime python Development)
set(CPACK_COMPONENT_RUNTIME_GROUP runtime)
set(CPACK_COMPONENT_PYTHON_GROUP runtime)
set(CPACK_COMPONENT_DEVELOPMENT_GROUP development)
set(CPACK_DEBIAN_RUNTIME_PACKAGE_NAME warmcal)
set(CPACK_DEBIAN_DEVELOPMENT_PACKAGE_NAME warmcal-dev)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)          # <package>_<version>-<release>_<arch>.deb
# 2: the libraries' SONAME became 0.MINOR and the development files moved
# to warmcal-dev (see its Breaks/Replaces below)
set(CPACK_DEBIAN_PACKAGE_RELEASE 2)
set(CPACK_DEBIAN_PACKAGE_MAINTAINER "${WARMCAL_DEB_MAINTAINER}")
set(CPACK_DEBIAN_RUNTIME_PACKAGE_SECTION science)
set(CPACK_DEBIAN_DEVELOPMENT_PACKAGE_SECTION libdevel)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
if(PROJECT_HOMEPAGE_URL)
  set(CPACK_DEBIAN_PACKAGE_HOMEPAGE "${PROJECT_HOMEPAGE_URL}")
endif()
find_program(WARMCAL_DPKG dpkg)
if(WARMCAL_DPKG)
  execute_process(COMMAND ${WARMCAL_DPKG} --print-architecture
                  OUTPUT_VARIABLE CPACK_DEBIAN_PACKAGE_ARCHITECTURE
                  OUTPUT_STRIP_TRAILING_WHITESPACE)
endif()

# Depends: the shared libraries the installed binaries link (libopenmpi3,
# libhdf5-103-1, libjansson4, libnettle8, liblapacke, libc6) come from
# dpkg-shlibdeps, with the versions the build's libraries ask for; the
# package's own libraries resolve inside the package. Without dpkg-shlibdeps
# (not a Debian build host) the same list is written by hand for bookworm.
# The Python package needs only python3 (no numpy); mpi4py, h5py, torch and
# gnuplot are optional, as are openmpi-bin's mpirun/orted (an MPI program
# started without mpirun needs orted for singleton MPI_Init).
find_program(WARMCAL_DPKG_SHLIBDEPS dpkg-shlibdeps)
set(warmcal_deb_depends "python3 (>= 3.11)")
if(WARMCAL_DPKG_SHLIBDEPS)
  set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
  # relative to the staging root that cpack fills: usr/lib/<multiarch>/...
  set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS_PRIVATE_DIRS
      "usr/${CMAKE_INSTALL_LIBDIR}" "usr/lib")
else()
  string(PREPEND warmcal_deb_depends
         "libc6, libopenmpi3, libhdf5-103-1, libjansson4, libnettle8, liblapacke, ")
endif()
set(CPACK_DEBIAN_RUNTIME_PACKAGE_DEPENDS "${warmcal_deb_depends}")
set(CPACK_DEBIAN_RUNTIME_PACKAGE_RECOMMENDS "gnuplot-nox, python3-h5py, python3-mpi4py, openmpi-bin")
set(CPACK_DEBIAN_RUNTIME_PACKAGE_SUGGESTS "python3-torch, warmcal-dev")
# warmcal-dev: the same warmcal, and the -dev package of every module the
# .pc files require (cmake/Install.cmake: WARMCAL_PC_MPI, jansson, nettle,
# WARMCAL_PC_HDF5); the CMake package finds MPI through the same one
if(WARMCAL_PC_MPI STREQUAL "mpich")
  set(_warmcal_mpi_dev libmpich-dev)
elseif(WARMCAL_PC_MPI STREQUAL "ompi-c")
  set(_warmcal_mpi_dev libopenmpi-dev)
else()
  set(_warmcal_mpi_dev mpi-default-dev)
endif()
set(CPACK_DEBIAN_DEVELOPMENT_PACKAGE_DEPENDS
    "warmcal (= ${PROJECT_VERSION}-${CPACK_DEBIAN_PACKAGE_RELEASE}), ${_warmcal_mpi_dev}, libjansson-dev, nettle-dev, libhdf5-dev")
set(CPACK_DEBIAN_DEVELOPMENT_PACKAGE_SUGGESTS "pkg-config, cmake")
# the headers, .pc and CMake files were in warmcal itself up to 0.1.0-1
set(CPACK_DEBIAN_DEVELOPMENT_PACKAGE_BREAKS "warmcal (<< 0.1.0-2)")
set(CPACK_DEBIAN_DEVELOPMENT_PACKAGE_REPLACES "warmcal (<< 0.1.0-2)")
# The shlibs file: what a package built against these libraries depends on.
# Written here, not generated (CPack would write "warmcal (>= VERSION)"):
# the SONAME carries 0.MINOR (cmake/Abi.cmake), and the next minor release's
# warmcal no longer holds this one's libraries, so the dependency is bounded
# above too: warmcal (>= 0.1.0-2), warmcal (<< 0.2~). Below, the release:
# 0.1.0-1 still held the SONAMEs of before (libwarmcal-*.so.0).
set(_warmcal_shlibs "")
get_property(_warmcal_abi_libraries GLOBAL PROPERTY WARMCAL_ABI_LIBRARIES) # cmake/Abi.cmake
foreach(_warmcal_lib IN LISTS _warmcal_abi_libraries)
  string(APPEND _warmcal_shlibs "${_warmcal_lib} ${WARMCAL_SOVERSION} "
         "${CPACK_DEBIAN_RUNTIME_PACKAGE_NAME} (>= ${PROJECT_VERSION}-${CPACK_DEBIAN_PACKAGE_RELEASE}), "
         "${CPACK_DEBIAN_RUNTIME_PACKAGE_NAME} (<< ${WARMCAL_SOVERSION_NEXT}~)\n")
endforeach()
file(WRITE ${PROJECT_BINARY_DIR}/deb/shlibs "${_warmcal_shlibs}")
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)
# warmcal's maintainer scripts: ldconfig by trigger (its own postinst and
# postrm keep CPack from writing ones that call it as well), the Python
# package's byte code compiled at configure and removed before removal
if(IS_ABSOLUTE "${WARMCAL_PYTHON_INSTALL_DIR}")
  set(WARMCAL_DEB_PYTHON_PACKAGE "${WARMCAL_PYTHON_INSTALL_DIR}/warmcal")
else()
  set(WARMCAL_DEB_PYTHON_PACKAGE "${CPACK_PACKAGING_INSTALL_PREFIX}/${WARMCAL_PYTHON_INSTALL_DIR}/warmcal")
endif()
set(CPACK_DEBIAN_RUNTIME_PACKAGE_CONTROL_EXTRA ${CMAKE_CURRENT_LIST_DIR}/deb/triggers
    ${PROJECT_BINARY_DIR}/deb/shlibs)
foreach(_warmcal_script IN ITEMS postinst prerm postrm)
  configure_file(${CMAKE_CURRENT_LIST_DIR}/deb/${_warmcal_script}.in
                 ${PROJECT_BINARY_DIR}/deb/${_warmcal_script} @ONLY)
  list(APPEND CPACK_DEBIAN_RUNTIME_PACKAGE_CONTROL_EXTRA ${PROJECT_BINARY_DIR}/deb/${_warmcal_script})
endforeach()
# compressed man pages and a changelog.Debian.gz in each staged tree
set(CPACK_PRE_BUILD_SCRIPTS ${CMAKE_CURRENT_LIST_DIR}/deb/prebuild.cmake)

include(CPack)
