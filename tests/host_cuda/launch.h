// Runs a kernel body over a grid on the host (see cuda_fp16.h in this directory for the model).
#pragma once

#include <thread>
#include <vector>

template <typename Body>
void host_launch(unsigned grid, unsigned block, bool uses_syncthreads, Body body) {
    gridDim.x = grid;
    blockDim.x = block;
    for (unsigned b = 0; b < grid; ++b) {
        if (!uses_syncthreads) {
            blockIdx.x = b;
            for (unsigned t = 0; t < block; ++t) {
                threadIdx.x = t;
                body();
            }
            continue;
        }
        std::barrier<> barrier((std::ptrdiff_t)block);
        host_block_barrier = &barrier;
        std::vector<std::thread> threads;
        for (unsigned t = 0; t < block; ++t) {
            threads.emplace_back([&, t] {
                blockIdx.x = b;
                threadIdx.x = t;
                body();
            });
        }
        for (auto& th : threads) th.join();
        host_block_barrier = nullptr;
    }
}
