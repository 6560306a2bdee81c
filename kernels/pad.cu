// Explicit padding for conv2d's padding_mode ('reflect', 'replicate', 'circular'), and its adjoint.
//
// x is (planes, H, W) with planes = N*C, contiguous; the padded xp is (planes, Hp, Wp) with
// Hp = top + H + bottom and Wp = left + W + right. Along one axis, padded position i (counted from the
// input's origin, so i in [-lo, size + hi)) copies input position
//     reflect    i < 0: -i          i >= size: 2*(size - 1) - i      (needs lo, hi < size)
//     replicate  clamp(i, 0, size - 1)
//     circular   i mod size                                          (needs lo, hi <= size)
// gpuconv/_params.py checks those limits before any kernel runs.
#include "common.cuh"

// Mode codes; gpuconv/_cuda/pad.py passes the same numbers.
#define PAD_REFLECT 0
#define PAD_REPLICATE 1
#define PAD_CIRCULAR 2

// The input position that padded position i (from the input's origin) copies, along an axis of `size`.
__device__ __forceinline__ int pad_source(int i, int size, int mode) {
    if (mode == PAD_REFLECT) {
        if (i < 0) return -i;
        if (i >= size) return 2 * (size - 1) - i;
        return i;
    }
    if (mode == PAD_REPLICATE) return min(max(i, 0), size - 1);
    return ((i % size) + size) % size;  // circular; i >= -size, so one wrap suffices
}

// The padded positions (from the input's origin) that copy input position i, along an axis of `size`
// padded by lo before and hi after: at most three runs of consecutive positions, each [start, start + length).
struct PadPreimage {
    int start[3];
    int length[3];
    int runs;
};

__device__ __forceinline__ void add_run(PadPreimage& pre, int start, int length) {
    pre.start[pre.runs] = start;
    pre.length[pre.runs] = length;
    ++pre.runs;
}

// Closed form of the preimage of pad_source, per mode:
//   reflect    i itself; -i when 1 <= i <= lo; 2*(size - 1) - i when it lies in [size, size + hi)
//   replicate  one run: from -lo (if i is the first position) or i, to size - 1 + hi (if i is the last) or i
//   circular   i - size when >= -lo; i; i + size when < size + hi
__device__ __forceinline__ PadPreimage pad_preimage(int i, int size, int lo, int hi, int mode) {
    PadPreimage pre;
    pre.runs = 0;
    if (mode == PAD_REPLICATE) {
        const int first = (i == 0) ? -lo : i;
        const int last = (i == size - 1) ? size - 1 + hi : i;
        add_run(pre, first, last - first + 1);
        return pre;
    }
    const int below = (mode == PAD_REFLECT) ? -i : i - size;
    const int above = (mode == PAD_REFLECT) ? 2 * (size - 1) - i : i + size;
    if (below < 0 && below >= -lo) add_run(pre, below, 1);
    add_run(pre, i, 1);
    if (above >= size && above < size + hi) add_run(pre, above, 1);
    return pre;
}

// xp[plane, i, j] = x[plane, pad_source(i - top, H), pad_source(j - left, W)].
// Threads: one per element of xp (planes*Hp*Wp, j fastest), grid-stride loop.
// Bounds: pad_source maps every padded position into [0, H) x [0, W) given the limits above.
template <typename T>
__global__ void pad2d(const T* __restrict__ x, T* __restrict__ xp, index_t planes, int H, int W,
                      int Hp, int Wp, int top, int left, int mode) {
    const index_t total = planes * Hp * Wp;
    for (index_t o = first_thread_index(); o < total; o += thread_count()) {
        const int j = (int)(o % Wp);
        const int i = (int)((o / Wp) % Hp);
        const index_t plane = o / ((index_t)Hp * Wp);
        const int h = pad_source(i - top, H, mode);
        const int w = pad_source(j - left, W, mode);
        xp[o] = x[(plane * H + h) * W + w];
    }
}

// gx[plane, h, w] = sum of gxp[plane, top + a, left + b] over every padded (a, b) with
// pad_source(a, H) == h and pad_source(b, W) == w: the adjoint of pad2d.
// A gather over the closed-form preimages (pad_preimage), rows then columns in ascending runs: each
// thread owns one element of gx and sums in a fixed order, so results are bitwise reproducible.
// Threads: one per element of gx (planes*H*W, w fastest), grid-stride loop.
// Bounds: every preimage lies in [-top, H + bottom) x [-left, W + right), inside gxp.
template <typename T>
__global__ void pad2d_backward(const T* __restrict__ gxp, T* __restrict__ gx, index_t planes, int H,
                               int W, int Hp, int Wp, int top, int left, int mode) {
    typedef Accumulator<T> A;
    const int bottom = Hp - H - top;
    const int right = Wp - W - left;
    const index_t total = planes * H * W;
    for (index_t o = first_thread_index(); o < total; o += thread_count()) {
        const int w = (int)(o % W);
        const int h = (int)((o / W) % H);
        const index_t plane = o / ((index_t)H * W);
        const PadPreimage rows = pad_preimage(h, H, top, bottom, mode);
        const PadPreimage cols = pad_preimage(w, W, left, right, mode);
        const T* g = gxp + plane * Hp * Wp;
        typename A::type acc = 0;
        for (int a = 0; a < rows.runs; ++a) {
            for (int i = rows.start[a]; i < rows.start[a] + rows.length[a]; ++i) {
                for (int b = 0; b < cols.runs; ++b) {
                    for (int j = cols.start[b]; j < cols.start[b] + cols.length[b]; ++j) {
                        acc += A::load(g[(index_t)(top + i) * Wp + (left + j)]);
                    }
                }
            }
        }
        gx[o] = A::store(acc);
    }
}
