# Installs the exported package so that an out-of-tree project can
# find_package(coring) and link coring::net (tests/consumer proves it).
include(CMakePackageConfigHelpers)
install(EXPORT coringTargets NAMESPACE coring:: DESTINATION lib/cmake/coring)
configure_package_config_file("${PROJECT_SOURCE_DIR}/cmake/coringConfig.cmake.in"
                              "${PROJECT_BINARY_DIR}/coringConfig.cmake"
                              INSTALL_DESTINATION lib/cmake/coring)
write_basic_package_version_file("${PROJECT_BINARY_DIR}/coringConfigVersion.cmake"
                                 COMPATIBILITY SameMinorVersion)
install(FILES "${PROJECT_BINARY_DIR}/coringConfig.cmake"
              "${PROJECT_BINARY_DIR}/coringConfigVersion.cmake"
        DESTINATION lib/cmake/coring)
