# Installs the coring build tree into a fresh prefix, then configures, builds
# and runs tests/consumer against it with find_package(coring).
file(REMOVE_RECURSE "${WORK}")
function(step)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "consumer test: '${ARGN}' failed (${rc})")
  endif()
endfunction()
step(${CMAKE_COMMAND} --install "${CORING_BUILD}" --prefix "${WORK}/prefix")
step(${CMAKE_COMMAND} -S "${CONSUMER_SRC}" -B "${WORK}/build" -DCMAKE_CXX_COMPILER=${CXX}
     "-DCMAKE_PREFIX_PATH=${WORK}/prefix" -DCMAKE_BUILD_TYPE=Release)
step(${CMAKE_COMMAND} --build "${WORK}/build")
step("${WORK}/build/consumer")
