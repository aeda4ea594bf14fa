// couplevae_bench_cuda: bench.cpp on the cuda backend (see its header).
#define COUPLEVAE_BENCH_BACKEND cuda
#include "bench.cpp"
