# The Python package warmcal (gate, torch phase helper, importers) in an
# installed tree, for cmake --install; included from gate/CMakeLists.txt.
# pip installs the same package from gate/python/pyproject.toml instead.
#
# WARMCAL_PYTHON_INSTALL_DIR: the folder that receives warmcal/, relative to
# the install prefix (or absolute). The default, lib/python3/dist-packages,
# is on the path of Debian's python3 for the prefix /usr (the .deb); under
# another prefix P, put P/lib/python3/dist-packages on PYTHONPATH (or pass
# e.g. -DWARMCAL_PYTHON_INSTALL_DIR=lib/python3.11/dist-packages for Debian's
# python3 under /usr/local, lib/python3.11/site-packages for a venv). The
# `warmcal import` command finds the package there relative to itself.
# The package loads the C libraries installed with it from their folder
# (install_metadata.cmake writes where it is, relative to the package), and
# else by their SONAME through the dynamic loader (the ld.so cache,
# LD_LIBRARY_PATH).
set(WARMCAL_PYTHON_INSTALL_DIR lib/python3/dist-packages CACHE STRING
    "Folder for the Python package warmcal, relative to the install prefix or absolute")
install(DIRECTORY ${CMAKE_CURRENT_LIST_DIR}/warmcal
        DESTINATION ${WARMCAL_PYTHON_INSTALL_DIR} COMPONENT python
        PATTERN __pycache__ EXCLUDE
        PATTERN *.pyc EXCLUDE
        # in the source tree a link to the top-level file: installed as a copy
        PATTERN VERSION EXCLUDE)
install(FILES ${PROJECT_SOURCE_DIR}/VERSION DESTINATION ${WARMCAL_PYTHON_INSTALL_DIR}/warmcal
        COMPONENT python)
install(CODE "set(WARMCAL_PY_DIR \"${WARMCAL_PYTHON_INSTALL_DIR}\")
set(WARMCAL_PY_LIBDIR \"${CMAKE_INSTALL_LIBDIR}\")
set(WARMCAL_PY_VERSION \"${PROJECT_VERSION}\")
set(WARMCAL_PY_STAGE \"${PROJECT_BINARY_DIR}/python-install\")" COMPONENT python)
install(SCRIPT ${CMAKE_CURRENT_LIST_DIR}/install_metadata.cmake COMPONENT python)
