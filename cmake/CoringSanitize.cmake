# Applies CORING_SANITIZE to every target in the tree (ours and test deps alike).
if(CORING_SANITIZE)
  if(NOT CORING_SANITIZE MATCHES "^(address,undefined|undefined,address|address|undefined|thread)$")
    message(FATAL_ERROR "CORING_SANITIZE='${CORING_SANITIZE}': use 'address,undefined' or 'thread'")
  endif()
  add_compile_options(-fsanitize=${CORING_SANITIZE} -fno-omit-frame-pointer
                      -fno-sanitize-recover=all)
  add_link_options(-fsanitize=${CORING_SANITIZE})
  add_compile_definitions(CORING_SANITIZED=1)
endif()
