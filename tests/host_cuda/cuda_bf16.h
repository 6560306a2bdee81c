// Host stand-in for cuda_bf16.h (see bf16_stand_in.h).
#pragma once
#include "bf16_stand_in.h"
