# -Werror is for the project's own CI and developers (scripts/test.sh turns it
# on); a build for anyone else must not fail on a new compiler's new warning.
option(CORING_WERROR "Make warnings in coring's own targets errors (-Werror)" OFF)

# coring_warnings(target): the project's own code compiles warning-free with
# g++ 12 and clang 14, with -Wall -Wextra (and -Werror if CORING_WERROR).
function(coring_warnings target)
  target_compile_options(${target} PRIVATE -Wall -Wextra $<$<BOOL:${CORING_WERROR}>:-Werror>)
endfunction()

# coring_library(NAME <lib> SOURCES ... [PUBLIC_DEPS ...] [PRIVATE_DEPS ...])
#
# Builds coring_<lib> (alias coring::<lib>) from the folder <lib>/. Its headers
# are reachable only as "coring/<lib>/x.h", through a per-library include root
# holding a single link, so a target sees exactly the headers of the coring
# libraries it links: net/ cannot include codec/ because it does not link it.
function(coring_library)
  cmake_parse_arguments(ARG "" "NAME" "SOURCES;PUBLIC_DEPS;PRIVATE_DEPS" ${ARGN})
  set(target coring_${ARG_NAME})
  set(root "${PROJECT_BINARY_DIR}/include/${ARG_NAME}")
  file(MAKE_DIRECTORY "${root}/coring")
  file(CREATE_LINK "${CMAKE_CURRENT_SOURCE_DIR}" "${root}/coring/${ARG_NAME}" SYMBOLIC)
  if(ARG_SOURCES)
    set(kind STATIC)
    set(scope PUBLIC)
  else()  # headers only, so far
    set(kind INTERFACE)
    set(scope INTERFACE)
  endif()
  add_library(${target} ${kind} ${ARG_SOURCES})
  add_library(coring::${ARG_NAME} ALIAS ${target})
  set_target_properties(${target} PROPERTIES EXPORT_NAME ${ARG_NAME})
  target_include_directories(${target} ${scope} "$<BUILD_INTERFACE:${root}>"
                                                "$<INSTALL_INTERFACE:include>")
  target_compile_features(${target} ${scope} cxx_std_20)
  # The headers free with sized ::operator delete, which g++ enables in C++14
  # and later but clang 14 only with -fsized-deallocation: a usage requirement,
  # so it also reaches an installed package's clang users.
  target_compile_options(${target} ${scope} $<$<CXX_COMPILER_ID:Clang>:-fsized-deallocation>)
  target_link_libraries(${target} ${scope} ${ARG_PUBLIC_DEPS})
  if(ARG_SOURCES)
    set_target_properties(${target} PROPERTIES OUTPUT_NAME coring_${ARG_NAME})
    target_link_libraries(${target} PRIVATE ${ARG_PRIVATE_DEPS})
    coring_warnings(${target})
  endif()
  install(TARGETS ${target} EXPORT coringTargets ARCHIVE DESTINATION lib)
  install(DIRECTORY "${CMAKE_CURRENT_SOURCE_DIR}/" DESTINATION include/coring/${ARG_NAME}
          FILES_MATCHING PATTERN "*.h")
endfunction()
