# SPDX-License-Identifier: MIT
# strop — writes and installs strop.pc at install time, when the real prefix is known
# (`cmake --install build --prefix P` changes it after configuring). Included by the
# install(CODE) in CMakeLists.txt with STROP_PC_IN, STROP_PC_OUT_DIR, STROP_PC_LIBDIR,
# STROP_PC_INCLUDEDIR (the GNUInstallDirs values) and PROJECT_VERSION set.
#
# An install to /usr gets an ordinary .pc (prefix=/usr), as distributions expect; so does one
# whose libdir was given as an absolute path. Any other prefix gets a relocatable one:
# prefix=${pcfiledir}/.. with one .. per level of <libdir>/pkgconfig, so the folder can be
# moved after installing and pkg-config still points into it.
if(CMAKE_INSTALL_PREFIX STREQUAL "/usr" OR CMAKE_INSTALL_PREFIX STREQUAL "/usr/" OR
   IS_ABSOLUTE "${STROP_PC_LIBDIR}")
  string(REGEX REPLACE "(.)/$" "\\1" prefix "${CMAKE_INSTALL_PREFIX}")
else()
  set(prefix "\${pcfiledir}")
  string(REPLACE "/" ";" _strop_parts "${STROP_PC_LIBDIR}/pkgconfig")
  foreach(_part IN LISTS _strop_parts)
    if(NOT _part STREQUAL "" AND NOT _part STREQUAL ".")
      string(APPEND prefix "/..")
    endif()
  endforeach()
endif()
foreach(_dir LIBDIR INCLUDEDIR)
  if(IS_ABSOLUTE "${STROP_PC_${_dir}}")
    set(STROP_PC_${_dir}_VALUE "${STROP_PC_${_dir}}")
  else()
    set(STROP_PC_${_dir}_VALUE "\${prefix}/${STROP_PC_${_dir}}")
  endif()
endforeach()
set(STROP_PC_PREFIX "${prefix}")
# one file per destination, so that installs to several prefixes at once (tests) do not race
string(MD5 _strop_dest "$ENV{DESTDIR}|${CMAKE_INSTALL_PREFIX}")
set(STROP_PC_OUT "${STROP_PC_OUT_DIR}/${_strop_dest}/strop.pc")
configure_file("${STROP_PC_IN}" "${STROP_PC_OUT}" @ONLY)
if(IS_ABSOLUTE "${STROP_PC_LIBDIR}")
  set(_strop_pc_dest "${STROP_PC_LIBDIR}/pkgconfig")
else()
  set(_strop_pc_dest "${CMAKE_INSTALL_PREFIX}/${STROP_PC_LIBDIR}/pkgconfig")
endif()
file(INSTALL DESTINATION "${_strop_pc_dest}" TYPE FILE FILES "${STROP_PC_OUT}")
file(REMOVE_RECURSE "${STROP_PC_OUT_DIR}/${_strop_dest}")
