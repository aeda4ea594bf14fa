# Compile-fail tests: each source must fail to compile with the static_assert message that
# names the fix. The targets are excluded from `all`; the test builds one and matches its
# output (ctest passes on the message, whatever the exit code).
function(couplevae_compile_fail name source message)
  add_library(cf_${name} OBJECT EXCLUDE_FROM_ALL ${CMAKE_CURRENT_SOURCE_DIR}/compile_fail/${source})
  target_link_libraries(cf_${name} PRIVATE couplevae::couplevae)
  add_test(NAME compile_fail.${name}
           COMMAND ${CMAKE_COMMAND} --build ${CMAKE_BINARY_DIR} --target cf_${name})
  set_tests_properties(compile_fail.${name} PROPERTIES
    PASS_REGULAR_EXPRESSION "${message}" LABELS compile_fail RESOURCE_LOCK build_tree)
endfunction()

couplevae_compile_fail(coupled_twice coupled_twice.cpp "couple the base model once")
couplevae_compile_fail(flow_zero flow_zero.cpp "Flow<K> needs K >= 1")
couplevae_compile_fail(unknown_posterior unknown_posterior.cpp "unknown posterior family")
couplevae_compile_fail(coupled_dae coupled_dae.cpp "needs a stochastic posterior")
couplevae_compile_fail(coupled_lm coupled_lm.cpp "the GRU-LM has none to couple")
couplevae_compile_fail(cuda_without_header cuda_without_header.cpp "cuda> is not visible: include <couplevae/cuda.cuh>")
couplevae_compile_fail(coupled_savae coupled_savae.cpp "the paper does not couple it")
couplevae_compile_fail(savae_mmd savae_mmd.cpp "use Regularizer<KL> or Regularizer<Beta>")
