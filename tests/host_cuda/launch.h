// Runs a kernel body over a grid on the host (see cuda_fp16.h in this directory for the model).
#pragma once

#include <thread>
#include <vector>

// A 2-D grid of grid_x x grid_y blocks, one block after another (y outer, x inner).
template <typename Body>
void host_launch_2d(unsigned grid_x, unsigned grid_y, unsigned block, bool uses_syncthreads, Body body) {
    gridDim.x = grid_x;
    gridDim.y = grid_y;
    blockDim.x = block;
    for (unsigned by = 0; by < grid_y; ++by) {
        for (unsigned b = 0; b < grid_x; ++b) {
            if (!uses_syncthreads) {
                blockIdx.x = b;
                blockIdx.y = by;
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
                    blockIdx.y = by;
                    threadIdx.x = t;
                    body();
                });
            }
            for (auto& th : threads) th.join();
            host_block_barrier = nullptr;
        }
    }
}

template <typename Body>
void host_launch(unsigned grid, unsigned block, bool uses_syncthreads, Body body) {
    host_launch_2d(grid, 1, block, uses_syncthreads, body);
}
