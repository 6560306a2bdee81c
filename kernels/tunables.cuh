// Tunables that the kernels and their Python launchers share, defined here only: the kernels include this
// header, and gpuconv/_cuda/_defines.py reads the same lines (a "#define NAME integer" each) for the
// launchers. Change a value here and both sides follow.
#pragma once

// conv_depthwise.cu: DW_MAX_THREADS, the largest block the launcher uses (a multiple of 32; the kernels read
// blockDim.x); DW_OUTPUTS_PER_THREAD, outputs per thread along a row (TW = threads_x * this); DW_SMEM_BYTES,
// the static shared memory of each kernel (staged tiles, weights, the wgrad reduction).
#define DW_MAX_THREADS 256
#define DW_OUTPUTS_PER_THREAD 4
#define DW_SMEM_BYTES 16384

// experimental/conv_depthwise_v2.cuh: DW2_ROWS, output rows per unit (7 divides every ImageNet-style plane
// size: 112, 56, 28, 14, 7); DW2_VEC, elements per vector load of an input row; DW2_THREADS, the block size
// of every launch (the wgrad block sum is sized for it); DW2_DGRAD_ROWS and DW2_DGRAD_COLS, the gx rows and
// columns a stride-2 dgrad unit owns (rows even: the row phases repeat from unit to unit).
#define DW2_ROWS 7
#define DW2_VEC 4
#define DW2_THREADS 128
#define DW2_DGRAD_ROWS 8
#define DW2_DGRAD_COLS 8

// experimental/bias_grad.cu: BG_THREADS, the largest block (the shared tree's size, a power of two); the
// launcher uses a power of two from 32 up to this.
#define BG_THREADS 256
