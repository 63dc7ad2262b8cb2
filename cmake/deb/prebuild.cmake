# Run by cpack (CPACK_PRE_BUILD_SCRIPTS) on the staged /usr trees before the
# packages are made: what Debian's policy asks of a binary package that an
# install() rule does not give — man pages compressed (gzip -9n), a
# changelog.Debian.gz in /usr/share/doc/<package>, and the Python package's
# metadata as a distribution ships it. With one package per
# component group (cmake/Packaging.cmake), each group has its own staged
# tree, CPACK_TEMPORARY_DIRECTORY/<group>/usr.
find_program(_gzip gzip REQUIRED)
string(TIMESTAMP _date "%a, %d %b %Y %H:%M:%S +0000" UTC)

function(_warmcal_gzip file)
  execute_process(COMMAND ${_gzip} -9nf "${file}" RESULT_VARIABLE _rc)
  if(NOT _rc EQUAL 0)
    message(FATAL_ERROR "gzip ${file} failed")
  endif()
endfunction()

file(GLOB _trees LIST_DIRECTORIES true "${CPACK_TEMPORARY_DIRECTORY}/*")
foreach(_tree IN LISTS _trees)
  if(NOT IS_DIRECTORY "${_tree}/usr")
    continue()
  endif()
  get_filename_component(_group "${_tree}" NAME)
  string(TOUPPER "${_group}" _GROUP)
  set(_package "${CPACK_DEBIAN_${_GROUP}_PACKAGE_NAME}")
  if(NOT _package)
    message(FATAL_ERROR "prebuild.cmake: no package name for the staged tree ${_tree}")
  endif()
  file(GLOB_RECURSE _man_pages "${_tree}/usr/share/man/*.[0-9]")
  foreach(_page IN LISTS _man_pages)
    _warmcal_gzip("${_page}")
  endforeach()
  set(_doc "${_tree}/usr/share/doc/${_package}")
  file(MAKE_DIRECTORY "${_doc}")
  file(WRITE "${_doc}/changelog.Debian"
"${_package} (${CPACK_PACKAGE_VERSION}-${CPACK_DEBIAN_PACKAGE_RELEASE}) unstable; urgency=medium

  * Built by cpack from the warmcal source tree (cmake/Packaging.cmake).

 -- ${CPACK_DEBIAN_PACKAGE_MAINTAINER}  ${_date}
")
  _warmcal_gzip("${_doc}/changelog.Debian")
  # The Python package's dist-info as a distribution ships it (dh_python3
  # does the same): dpkg owns the files, so no RECORD that pip would act on
  # (pip then refuses to uninstall them), and INSTALLER says who did it.
  file(GLOB_RECURSE _records "${_tree}/usr/RECORD") # every RECORD below usr/
  foreach(_record IN LISTS _records)
    get_filename_component(_info "${_record}" DIRECTORY)
    if(NOT _info MATCHES "/warmcal-[^/]*\\.dist-info$")
      continue()
    endif()
    file(REMOVE "${_record}")
    file(WRITE "${_info}/INSTALLER" "debian\n")
  endforeach()
endforeach()
