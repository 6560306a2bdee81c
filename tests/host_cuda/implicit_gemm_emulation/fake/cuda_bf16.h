// Host stand-in for cuda_bf16.h in the CPU emulation of the kernels (the g++ shim's, one definition).
#pragma once
#include "../../bf16_stand_in.h"
