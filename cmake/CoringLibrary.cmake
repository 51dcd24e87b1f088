# coring_warnings(target): the project's own code compiles warning-free.
function(coring_warnings target)
  target_compile_options(${target} PRIVATE -Wall -Wextra -Werror)
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
