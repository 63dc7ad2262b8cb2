# Run by cpack (CPACK_PRE_BUILD_SCRIPTS) on the staged /usr tree before the
# .deb is made: what Debian's policy asks of a binary package that an
# install() rule does not give — man pages compressed (gzip -9n) and a
# changelog.Debian.gz in /usr/share/doc/warmcal.
set(_root "${CPACK_TEMPORARY_DIRECTORY}")
if(NOT IS_DIRECTORY "${_root}/usr")
  set(_root "${CPACK_TEMPORARY_INSTALL_DIRECTORY}")
endif()
find_program(_gzip gzip REQUIRED)
file(GLOB_RECURSE _man_pages "${_root}/usr/share/man/*.[0-9]")
foreach(_page IN LISTS _man_pages)
  execute_process(COMMAND ${_gzip} -9nf "${_page}" RESULT_VARIABLE _rc)
  if(NOT _rc EQUAL 0)
    message(FATAL_ERROR "gzip ${_page} failed")
  endif()
endforeach()
set(_doc "${_root}/usr/share/doc/${CPACK_DEBIAN_PACKAGE_NAME}")
file(MAKE_DIRECTORY "${_doc}")
string(TIMESTAMP _date "%a, %d %b %Y %H:%M:%S +0000" UTC)
file(WRITE "${_doc}/changelog.Debian"
"${CPACK_DEBIAN_PACKAGE_NAME} (${CPACK_PACKAGE_VERSION}-${CPACK_DEBIAN_PACKAGE_RELEASE}) unstable; urgency=medium

  * Built by cpack from the warmcal source tree (cmake/Packaging.cmake).

 -- ${CPACK_DEBIAN_PACKAGE_MAINTAINER}  ${_date}
")
execute_process(COMMAND ${_gzip} -9nf "${_doc}/changelog.Debian" RESULT_VARIABLE _rc)
if(NOT _rc EQUAL 0)
  message(FATAL_ERROR "gzip changelog.Debian failed")
endif()
