# The ABI of warmcal's shared libraries: their SONAME and the version node
# of every exported symbol. Included from the top-level CMakeLists.txt
# before the libraries' folders.
#
# While the major version is 0 a minor release may change the API (the CMake
# package's version file accepts only the same 0.MINOR), so the SONAME
# carries 0.MINOR (libwarmcal-gate.so.0.1): a program built against 0.1
# never loads a 0.2 library it was not built for. From 1.0 on, the major
# alone. The Python package derives the same name from the same VERSION
# file (gate/python/warmcal/_libfind.py).
# WARMCAL_SOVERSION_NEXT is the first release that will no longer carry it
# (the Debian package's shlibs bound, cmake/Packaging.cmake).
if(PROJECT_VERSION_MAJOR EQUAL 0)
  set(WARMCAL_SOVERSION ${PROJECT_VERSION_MAJOR}.${PROJECT_VERSION_MINOR})
  math(EXPR _warmcal_next_minor "${PROJECT_VERSION_MINOR} + 1")
  set(WARMCAL_SOVERSION_NEXT 0.${_warmcal_next_minor})
else()
  set(WARMCAL_SOVERSION ${PROJECT_VERSION_MAJOR})
  math(EXPR WARMCAL_SOVERSION_NEXT "${PROJECT_VERSION_MAJOR} + 1")
endif()

# warmcal_library_abi(TARGET NODE MAP_IN): TARGET gets the SONAME above and
# exports exactly the symbols the version script MAP_IN (a .map.in with
# @WARMCAL_ABI_NODE@ as its node's name) lists, each under the version node
# NODE_<SOVERSION> (WARMCAL_GATE_0.1). A node per library: the error.h
# functions that the gate and the trace library both carry are then two
# distinct symbols, and a program linked against both binds each call to
# the library it was linked with, never to whichever the loader found first.
# Every such library is listed in the global property WARMCAL_ABI_LIBRARIES
# (libwarmcal-gate, ...): the Debian package's shlibs file names them.
# From 1.0 on, when a minor release adds functions under an unchanged
# SONAME, they go in a new node that inherits the previous one
# (WARMCAL_GATE_1.1 { ... } WARMCAL_GATE_1;), so that a program needing them
# fails at load time on an older library, not at its first call.
function(warmcal_library_abi target node map_in)
  set(WARMCAL_ABI_NODE ${node}_${WARMCAL_SOVERSION})
  get_filename_component(_name ${map_in} NAME_WLE)
  set(_map ${CMAKE_CURRENT_BINARY_DIR}/${_name})
  configure_file(${map_in} ${_map} @ONLY)
  set_target_properties(${target} PROPERTIES VERSION ${PROJECT_VERSION}
                        SOVERSION ${WARMCAL_SOVERSION} LINK_DEPENDS ${_map})
  target_link_options(${target} PRIVATE -Wl,--version-script=${_map})
  get_target_property(_output ${target} OUTPUT_NAME)
  if(NOT _output)
    set(_output ${target})
  endif()
  set_property(GLOBAL APPEND PROPERTY WARMCAL_ABI_LIBRARIES lib${_output})
endfunction()

# the commands name the installed libraries by SONAME ("libwarmcal-inject.so."
# WARMCAL_SOVERSION): a run-time install has no development links
add_compile_definitions(WARMCAL_SOVERSION="${WARMCAL_SOVERSION}")
