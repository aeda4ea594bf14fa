# consumer_tests.cmake: the package as a downstream project sees it (ctest -L consumer).
#
#   consumer.install           a fresh minimal build of the source installed into a prefix
#                              (fixture consumer_prefix)
#   consumer.find_package      tests/consumer with find_package(couplevae <major.minor> REQUIRED)
#   consumer.version_mismatch  find_package with the next minor / next major version must fail
#   consumer.add_subdirectory  tests/consumer with add_subdirectory(<source> couplevae)
#   consumer.fetchcontent      tests/consumer with FetchContent (local SOURCE_DIR, no download)
#   consumer.cuda_missing      find_package(couplevae COMPONENTS cuda) on that install must fail
#   consumer.cuda              (COUPLEVAE_WITH_CUDA builds) a cuda install and tests/consumer/cuda,
#                              a .cu translation unit linked to couplevae::cuda
#
# Each test works in its own folder under <build>/tests/consumer/ and builds one translation
# unit at -O1 with -Wall -Wextra -Werror and neither OpenMP nor -march=native (single job),
# see tests/consumer/run_consumer.cmake.
set(COUPLEVAE_CONSUMER_WORK ${CMAKE_CURRENT_BINARY_DIR}/consumer)
set(COUPLEVAE_CONSUMER_PREFIX ${COUPLEVAE_CONSUMER_WORK}/prefix)
set(COUPLEVAE_CONSUMER_ARGS
  -DSOURCE_DIR=${PROJECT_SOURCE_DIR}
  -DPREFIX=${COUPLEVAE_CONSUMER_PREFIX}
  -DVERSION=${PROJECT_VERSION_MAJOR}.${PROJECT_VERSION_MINOR}
  -DGENERATOR=${CMAKE_GENERATOR}
  -DCXX_COMPILER=${CMAKE_CXX_COMPILER})
if(CMAKE_MAKE_PROGRAM)
  list(APPEND COUPLEVAE_CONSUMER_ARGS -DMAKE_PROGRAM=${CMAKE_MAKE_PROGRAM})
endif()

if(CMAKE_CUDA_COMPILER)
  list(APPEND COUPLEVAE_CONSUMER_ARGS -DCUDA_COMPILER=${CMAKE_CUDA_COMPILER})
endif()
set(COUPLEVAE_CONSUMER_MODES install find_package version_mismatch add_subdirectory fetchcontent cuda_missing)
if(COUPLEVAE_WITH_CUDA)
  list(APPEND COUPLEVAE_CONSUMER_MODES cuda)
endif()
foreach(mode ${COUPLEVAE_CONSUMER_MODES})
  add_test(NAME consumer.${mode}
           COMMAND ${CMAKE_COMMAND} -DMODE=${mode} -DWORK_DIR=${COUPLEVAE_CONSUMER_WORK}/${mode}
                   ${COUPLEVAE_CONSUMER_ARGS} -P ${CMAKE_CURRENT_SOURCE_DIR}/consumer/run_consumer.cmake)
  set_tests_properties(consumer.${mode} PROPERTIES LABELS consumer TIMEOUT 1200 PROCESSORS 1)
endforeach()
if(COUPLEVAE_WITH_CUDA)
  set_tests_properties(consumer.cuda PROPERTIES COST 85)  # seconds; see COST in tests/CMakeLists.txt
endif()
set_tests_properties(consumer.install PROPERTIES FIXTURES_SETUP consumer_prefix)
set_tests_properties(consumer.find_package consumer.version_mismatch consumer.cuda_missing PROPERTIES
                     FIXTURES_REQUIRED consumer_prefix)
