// CPU emulation test of kernels/implicit_gemm_*.cu against a float64 reference from the definition.
#include "shim.h"
#define IGEMM_HOST_EMULATION 1
#include "implicit_gemm_fprop.cu"
#undef IGEMM_CONV_SIZE
#include "implicit_gemm_dgrad.cu"
#undef IGEMM_CONV_SIZE
#include "implicit_gemm_wgrad.cu"
#include "implicit_gemm_nhwc.cu"
#include "implicit_gemm_nhwc_wgrad.cu"
#include "implicit_gemm_nhwc_dgrad.cu"
#include "experimental/nonfinite_weights.cu"
#include <memory>
#include <random>
#include <type_traits>
#include <string>

struct Geo { int N, C, H, W, K, R, S, sh, sw, pt, pb, pl, pr, dh, dw, groups; int P, Q; };
static Geo make(Geo g) {
    g.P = (g.H + g.pt + g.pb - g.dh * (g.R - 1) - 1) / g.sh + 1;
    g.Q = (g.W + g.pl + g.pr - g.dw * (g.S - 1) - 1) / g.sw + 1;
    return g;
}
static std::mt19937 rng(1234);
static std::vector<double> rnd(size_t n) {
    std::uniform_real_distribution<double> u(-1, 1);
    std::vector<double> v(n);
    for (auto& e : v) e = u(rng);
    return v;
}
// Reference: visits every (n, k, p, q, c, r, s) with an in-range input pixel.
template <class F> static void taps(const Geo& g, F f) {
    int Cg = g.C / g.groups, Kg = g.K / g.groups;
    for (int n = 0; n < g.N; ++n) for (int k = 0; k < g.K; ++k) for (int p = 0; p < g.P; ++p) for (int q = 0; q < g.Q; ++q)
        for (int c = 0; c < Cg; ++c) for (int r = 0; r < g.R; ++r) for (int s = 0; s < g.S; ++s) {
            int h = p * g.sh - g.pt + r * g.dh, w = q * g.sw - g.pl + s * g.dw;
            if (h < 0 || h >= g.H || w < 0 || w >= g.W) continue;
            int cc = (k / Kg) * Cg + c;
            f((((size_t)n * g.C + cc) * g.H + h) * g.W + w, (((size_t)k * Cg + c) * g.R + r) * g.S + s,
              (((size_t)n * g.K + k) * g.P + p) * g.Q + q);
        }
}
// Conversions as the kernels make them (types.cuh): to T rounds to nearest even, back to float is exact.
template <typename T> static T from_float(float v) { return Accumulator<T>::store(v); }
template <typename T> static std::vector<T> cast(const std::vector<double>& v) {
    std::vector<T> o(v.size());
    for (size_t i = 0; i < v.size(); ++i) o[i] = from_float<T>((float)v[i]);
    return o;
}
template <typename T> static std::vector<double> back(const std::vector<T>& v) {
    std::vector<double> o(v.size());
    for (size_t i = 0; i < v.size(); ++i) o[i] = Accumulator<T>::load(v[i]);
    return o;
}
template <typename T> static const char* type_name() {
    if constexpr (sizeof(T) == 4) return "float";
    else if constexpr (std::is_same_v<T, __nv_bfloat16>) return "bf16";
    else return "half";
}
static int failures = 0;
static void compare(const char* what, const std::string& name, const std::vector<double>& got,
                    const std::vector<double>& want, double tol) {
    double err = 0, scale = 1e-30;
    for (size_t i = 0; i < want.size(); ++i) {
        scale = std::max(scale, std::fabs(want[i]));
        double e = std::fabs(got[i] - want[i]);
        if (!(e <= err)) err = e;  // NaN (an unwritten, poisoned element) propagates
    }
    bool ok = err <= tol * scale;
    if (!ok) ++failures;
    printf("%-5s %-48s max|err|/max|ref| = %.2e %s\n", what, name.c_str(), err / scale, ok ? "ok" : "FAIL");
}
static int cdiv(long a, long b) { return (int)((a + b - 1) / b); }

// One variant: T element type, BM x BN tile, STAGES, MMA (tensor cores) or SIMT.
template <typename T, int BM, int BN, int STAGES, bool MMA>
static void run(const Geo& g, const std::string& label, double tol) {
    int Cg = g.C / g.groups, Kg = g.K / g.groups;
    auto xd = rnd((size_t)g.N * g.C * g.H * g.W), wd = rnd((size_t)g.K * Cg * g.R * g.S), gyd = rnd((size_t)g.N * g.K * g.P * g.Q);
    auto bd = rnd(g.K), cbd = rnd(g.C);
    auto x = cast<T>(xd), w = cast<T>(wd), gy = cast<T>(gyd), bk = cast<T>(bd), bc = cast<T>(cbd);
    xd = back(x); wd = back(w); gyd = back(gy); bd = back(bk); cbd = back(bc);
    std::vector<double> y_ref((size_t)g.N * g.K * g.P * g.Q), gx_ref(xd.size(), 0.0), gw_ref(wd.size(), 0.0);
    for (size_t i = 0; i < y_ref.size(); ++i) y_ref[i] = bd[(i / ((size_t)g.P * g.Q)) % g.K];
    for (size_t i = 0; i < gx_ref.size(); ++i) gx_ref[i] = cbd[(i / ((size_t)g.H * g.W)) % g.C];
    taps(g, [&](size_t xi, size_t wi, size_t yi) {
        y_ref[yi] += xd[xi] * wd[wi];
        gx_ref[xi] += gyd[yi] * wd[wi];
        gw_ref[wi] += gyd[yi] * xd[xi];
    });
    std::string name = label + (MMA ? " mma<" : " simt<") + type_name<T>() + std::string(",") +
                       std::to_string(BM) + "," + std::to_string(BN) + "," + std::to_string(STAGES) + ">";
    const T nanT = from_float<T>(NAN);
#define SIZES g.N, g.C, g.H, g.W, g.K, g.R, g.S, g.P, g.Q, g.sh, g.sw, g.pt, g.pl, g.dh, g.dw, g.groups
    {   // fprop: grid (M / BM, Kg / BN, groups)
        std::vector<T> y(y_ref.size(), nanT);
        dim3 grid{(unsigned)cdiv((long)g.N * g.P * g.Q, BM), (unsigned)cdiv(Kg, BN), (unsigned)g.groups};
        launch(grid, [&] {
            if constexpr (MMA) conv2d_fprop_implicit_gemm_mma<T, BM, BN, STAGES>(x.data(), w.data(), bk.data(), y.data(), SIZES);
            else conv2d_fprop_implicit_gemm_simt<T, BM, BN, STAGES>(x.data(), w.data(), bk.data(), y.data(), SIZES);
        });
        compare("fprop", name, back(y), y_ref, tol);
    }
    {   // dgrad: grid (largest phase M / BM, Cg / BN, groups * sh * sw)
        std::vector<T> gx(gx_ref.size(), nanT);
        long maxM = (long)g.N * cdiv(g.H, g.sh) * cdiv(g.W, g.sw);
        dim3 grid{(unsigned)cdiv(maxM, BM), (unsigned)cdiv(Cg, BN), (unsigned)(g.groups * g.sh * g.sw)};
        launch(grid, [&] {
            if constexpr (MMA) conv2d_dgrad_implicit_gemm_mma<T, BM, BN, STAGES>(gy.data(), w.data(), bc.data(), gx.data(), SIZES);
            else conv2d_dgrad_implicit_gemm_simt<T, BM, BN, STAGES>(gy.data(), w.data(), bc.data(), gx.data(), SIZES);
        });
        compare("dgrad", name, back(gx), gx_ref, tol);
    }
    for (int splits : {1, 3}) {   // wgrad: grid (Kg / BM, Cg*R*S / BN, groups * splits), then the reduction
        constexpr int BK = MMA ? igemm::MmaBK<T>::value : igemm::SIMT_BK;
        int Kdim = g.N * g.P * g.Q;
        int chunk = cdiv(cdiv(Kdim, splits), BK) * BK;
        std::vector<float> ws((size_t)splits * gw_ref.size(), NAN);
        std::vector<T> gw(gw_ref.size(), nanT);
        dim3 grid{(unsigned)cdiv(Kg, BM), (unsigned)cdiv(Cg * g.R * g.S, BN), (unsigned)(g.groups * splits)};
        launch(grid, [&] {
            if constexpr (MMA) conv2d_wgrad_implicit_gemm_mma<T, BM, BN, STAGES>(x.data(), gy.data(), ws.data(), SIZES, splits, chunk);
            else conv2d_wgrad_implicit_gemm_simt<T, BM, BN, STAGES>(x.data(), gy.data(), ws.data(), SIZES, splits, chunk);
        });
        launch(dim3{1, 1, 1}, [&] { conv2d_wgrad_reduce_splits<T>(ws.data(), gw.data(), splits, (long long)gw.size()); });
        compare("wgrad", name + " splits=" + std::to_string(splits), back(gw), gw_ref, tol);
    }
}

// The NHWC fprop path (kernels/implicit_gemm_nhwc.cu): the layout kernel on x and w (checked bitwise against
// the transposes), then conv2d_fprop_implicit_gemm_nhwc<half, BM, BN, STAGES> against the float64 reference;
// everything NaN-poisoned. groups must be 1, C and K multiples of 8.
template <int BM, int BN, int STAGES>
static void run_nhwc(const Geo& g, const std::string& label, double tol, bool with_bias = true) {
    if (g.groups != 1 || g.C % 8 || g.K % 8) std::abort();
    auto xd = rnd((size_t)g.N * g.C * g.H * g.W), wd = rnd((size_t)g.K * g.C * g.R * g.S), bd = rnd(g.K);
    auto x = cast<__half>(xd), w = cast<__half>(wd), bk = cast<__half>(bd);
    xd = back(x); wd = back(w); bd = back(bk);
    std::vector<double> y_ref((size_t)g.N * g.K * g.P * g.Q);
    for (size_t i = 0; i < y_ref.size(); ++i) y_ref[i] = with_bias ? bd[(i / ((size_t)g.P * g.Q)) % g.K] : 0.0;
    taps(g, [&](size_t xi, size_t wi, size_t yi) { y_ref[yi] += xd[xi] * wd[wi]; });
    std::string name = label + " nhwc<half," + std::to_string(BM) + "," + std::to_string(BN) + "," +
                       std::to_string(STAGES) + ">" + (g_cp_async_eager ? " eager" : "") +
                       (with_bias ? "" : " no-bias");
    const __half nanT = from_float<__half>(NAN);

    // Layout: x (N, C, H*W) -> xh (N, H*W, C), w (K, C, R*S) -> wh (K, R*S, C); grid.z of at most 2 slices
    // so that the kernel's stride over slices runs too.
    auto transpose = [&](const std::vector<__half>& a, int B, int C, int L) {
        std::vector<__half> out(a.size(), nanT);
        dim3 grid{(unsigned)cdiv(L, 32), (unsigned)cdiv(C, 32), (unsigned)std::min(B, 2)};
        launch(grid, [&] { nchw_to_nhwc<__half>(a.data(), out.data(), B, C, L); });
        size_t bad = 0;
        for (int b = 0; b < B; ++b)
            for (int c = 0; c < C; ++c)
                for (int l = 0; l < L; ++l)
                    bad += __half_as_ushort(out[((size_t)b * L + l) * C + c]) !=
                           __half_as_ushort(a[((size_t)b * C + c) * L + l]);
        return std::make_pair(out, bad);
    };
    auto [xh, xbad] = transpose(x, g.N, g.C, g.H * g.W);
    auto [wh, wbad] = transpose(w, g.K, g.C, g.R * g.S);
    bool layout_ok = xbad == 0 && wbad == 0;
    if (!layout_ok) ++failures;
    printf("%-5s %-48s %zu + %zu elements misplaced %s\n", "nhwc", (label + " layout x, w").c_str(), xbad, wbad,
           layout_ok ? "ok" : "FAIL");

    std::vector<__half> y(y_ref.size(), nanT);
    dim3 grid{(unsigned)cdiv((long)g.N * g.P * g.Q, BM), (unsigned)cdiv(g.K, BN), 1};
    launch(grid, [&] {
        conv2d_fprop_implicit_gemm_nhwc<__half, BM, BN, STAGES>(xh.data(), wh.data(), with_bias ? bk.data() : nullptr,
                                                                 y.data(), g.N, g.C, g.H, g.W, g.K, g.R, g.S, g.P,
                                                                 g.Q, g.sh, g.sw, g.pt, g.pl, g.dh, g.dw);
    });
    compare("fprop", name, back(y), y_ref, tol);
}

// float16 inputs, float32 accumulation, one float16 rounding of y: about 2^-11 of max|y| at worst.
constexpr double NHWC_TOL = 2e-3;

static int nhwc_main() {
    std::vector<std::pair<std::string, Geo>> cases = {
        // N  C  H  W   K  R  S  sh sw pt pb pl pr dh dw groups
        {"3x3 pad1 C16 K24 M126",            make({2, 16, 7, 9, 24, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1})},
        {"1x1 C32 K16 M90",                  make({3, 32, 5, 6, 16, 1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1})},
        {"5x3 s(2,1) d(1,2) asym pad C8 K8", make({2, 8, 11, 10, 8, 5, 3, 2, 1, 3, 1, 0, 2, 1, 2, 1})},
        {"3x3 pad1 C72 K136 M42",            make({1, 72, 6, 7, 136, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1})},
        {"3x3 pad1 C8 K16 M300",             make({3, 8, 10, 10, 16, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1})},
    };
    for (auto& [label, g] : cases) {
        run_nhwc<128, 128, 3>(g, label, NHWC_TOL);
        run_nhwc<128, 64, 4>(g, label, NHWC_TOL);
        run_nhwc<64, 128, 4>(g, label, NHWC_TOL);
        run_nhwc<64, 64, 4>(g, label, NHWC_TOL);
    }
    // The other landing mode of the emulated cp.async, and the kernel without a bias.
    g_cp_async_eager = true;
    run_nhwc<128, 128, 3>(cases[3].second, cases[3].first, NHWC_TOL);
    run_nhwc<64, 64, 4>(cases[2].second, cases[2].first, NHWC_TOL);
    g_cp_async_eager = false;
    run_nhwc<128, 64, 4>(cases[0].second, cases[0].first, NHWC_TOL, false);
    printf("%s\n", failures ? "FAILURES" : "all ok");
    return failures != 0;
}

// a (B, C, L) -> (B, L, C) on the host (the layout kernel is checked bitwise in run_nhwc).
static std::vector<__half> host_to_nhwc(const std::vector<__half>& a, int B, int C, int L) {
    std::vector<__half> out(a.size());
    for (int b = 0; b < B; ++b)
        for (int c = 0; c < C; ++c)
            for (int l = 0; l < L; ++l) out[((size_t)b * L + l) * C + c] = a[((size_t)b * C + c) * L + l];
    return out;
}

// The NHWC wgrad path (kernels/implicit_gemm_nhwc_wgrad.cu): conv2d_wgrad_implicit_gemm_nhwc<half, BM, BN,
// STAGES> on xh and gyh with about `want_splits` splits (NaN-poisoned workspace), then conv2d_wgrad_nhwc_reduce
// (NaN-poisoned gw, grid.z 2 so that its stride over k runs), against the float64 reference.
template <int BM, int BN, int STAGES>
static void run_nhwc_wgrad(const Geo& g, const std::string& label, int want_splits, double tol) {
    if (g.groups != 1 || g.C % 8 || g.K % 8) std::abort();
    constexpr int BK = igemm::nhwc_wgrad::BK;
    auto xd = rnd((size_t)g.N * g.C * g.H * g.W), gyd = rnd((size_t)g.N * g.K * g.P * g.Q);
    auto x = cast<__half>(xd), gy = cast<__half>(gyd);
    xd = back(x); gyd = back(gy);
    std::vector<double> gw_ref((size_t)g.K * g.C * g.R * g.S, 0.0);
    taps(g, [&](size_t xi, size_t wi, size_t yi) { gw_ref[wi] += gyd[yi] * xd[xi]; });
    auto xh = host_to_nhwc(x, g.N, g.C, g.H * g.W), gyh = host_to_nhwc(gy, g.N, g.K, g.P * g.Q);
    int Kred = g.N * g.P * g.Q, RSC = g.R * g.S * g.C;
    int chunk = cdiv(cdiv(Kred, want_splits), BK) * BK;
    int splits = cdiv(Kred, chunk);
    std::vector<float> ws((size_t)splits * g.K * RSC, NAN);
    dim3 grid{(unsigned)cdiv(g.K, BM), (unsigned)cdiv(RSC, BN), (unsigned)splits};
    launch(grid, [&] {
        conv2d_wgrad_implicit_gemm_nhwc<__half, BM, BN, STAGES>(xh.data(), gyh.data(), ws.data(), g.N, g.C, g.H, g.W,
                                                                 g.K, g.R, g.S, g.P, g.Q, g.sh, g.sw, g.pt, g.pl,
                                                                 g.dh, g.dw, splits, chunk);
    });
    std::vector<__half> gw(gw_ref.size(), from_float<__half>(NAN));
    int RS = g.R * g.S;
    launch(dim3{(unsigned)cdiv(g.C, 32), (unsigned)cdiv(RS, 32), 2u},
           [&] { conv2d_wgrad_nhwc_reduce<__half>(ws.data(), gw.data(), splits, g.K, g.C, RS); });
    std::string name = label + " nhwc_wgrad<half," + std::to_string(BM) + "," + std::to_string(BN) + "," +
                       std::to_string(STAGES) + "> splits=" + std::to_string(splits) +
                       (g_cp_async_eager ? " eager" : "");
    compare("wgrad", name, back(gw), gw_ref, tol);
}

static int nhwc_wgrad_main() {
    std::vector<std::pair<std::string, Geo>> cases = {
        // N  C  H  W   K  R  S  sh sw pt pb pl pr dh dw groups
        {"3x3 pad1 C16 K24 NPQ126",           make({2, 16, 7, 9, 24, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1})},
        {"5x3 s(2,1) d(1,2) asym C8 K8",       make({2, 8, 11, 10, 8, 5, 3, 2, 1, 3, 1, 0, 2, 1, 2, 1})},
        {"3x3 s2 d2 pad2 C72 K136 PQ<BK",     make({3, 72, 6, 7, 136, 3, 3, 2, 2, 2, 1, 2, 2, 2, 2, 1})},
        {"1x1 s2 C8 K16 Q1",                  make({5, 8, 9, 1, 16, 1, 1, 2, 2, 0, 0, 0, 0, 1, 1, 1})},
        {"3x3 pad1 C40 K8 RSC360",            make({1, 40, 4, 5, 8, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1})},
        {"3x3 pad1 C8 K16 NPQ300",            make({3, 8, 10, 10, 16, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1})},
        {"3x3 pad1 C8 K8 Q45>BK",             make({1, 8, 3, 45, 8, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1})},
    };
    // two tiles per case, alternating (every tile sees three or four cases), with 1 and several splits (the
    // last split partial)
    for (size_t i = 0; i < cases.size(); ++i) {
        auto& [label, g] = cases[i];
        if (i % 2 == 0) {
            run_nhwc_wgrad<128, 128, 3>(g, label, 1, NHWC_TOL);
            run_nhwc_wgrad<64, 64, 4>(g, label, 4, NHWC_TOL);
        } else {
            run_nhwc_wgrad<128, 64, 4>(g, label, 3, NHWC_TOL);
            run_nhwc_wgrad<64, 128, 4>(g, label, 2, NHWC_TOL);
        }
    }
    g_cp_async_eager = true;  // copies land at once: a slot refilled while another warp reads it shows
    run_nhwc_wgrad<128, 128, 3>(cases[2].second, cases[2].first, 2, NHWC_TOL);
    run_nhwc_wgrad<64, 64, 4>(cases[0].second, cases[0].first, 1, NHWC_TOL);
    g_cp_async_eager = false;
    printf("%s\n", failures ? "FAILURES" : "all ok");
    return failures != 0;
}

// The NHWC dgrad path (kernels/implicit_gemm_nhwc_dgrad.cu): conv2d_dgrad_implicit_gemm_nhwc<half, BM, BN,
// STAGES> on gyh (N, P, Q, K) and wt (C, R, S, K), one grid.z slice per stride phase, NaN-poisoned gx, against
// the float64 reference (with or without the bias).
template <int BM, int BN, int STAGES>
static void run_nhwc_dgrad(const Geo& g, const std::string& label, double tol, bool with_bias = true) {
    if (g.groups != 1 || g.C % 8 || g.K % 8) std::abort();
    auto wd = rnd((size_t)g.K * g.C * g.R * g.S), gyd = rnd((size_t)g.N * g.K * g.P * g.Q), bd = rnd(g.C);
    auto w = cast<__half>(wd), gy = cast<__half>(gyd), bc = cast<__half>(bd);
    wd = back(w); gyd = back(gy); bd = back(bc);
    std::vector<double> gx_ref((size_t)g.N * g.C * g.H * g.W);
    for (size_t i = 0; i < gx_ref.size(); ++i) gx_ref[i] = with_bias ? bd[(i / ((size_t)g.H * g.W)) % g.C] : 0.0;
    taps(g, [&](size_t xi, size_t wi, size_t yi) { gx_ref[xi] += gyd[yi] * wd[wi]; });
    auto gyh = host_to_nhwc(gy, g.N, g.K, g.P * g.Q), wt = host_to_nhwc(w, 1, g.K, g.C * g.R * g.S);
    std::vector<__half> gx(gx_ref.size(), from_float<__half>(NAN));
    long maxM = (long)g.N * cdiv(g.H, g.sh) * cdiv(g.W, g.sw);
    dim3 grid{(unsigned)cdiv(maxM, BM), (unsigned)cdiv(g.C, BN), (unsigned)(g.sh * g.sw)};
    launch(grid, [&] {
        conv2d_dgrad_implicit_gemm_nhwc<__half, BM, BN, STAGES>(gyh.data(), wt.data(), with_bias ? bc.data() : nullptr,
                                                                 gx.data(), g.N, g.C, g.H, g.W, g.K, g.R, g.S, g.P,
                                                                 g.Q, g.sh, g.sw, g.pt, g.pl, g.dh, g.dw);
    });
    std::string name = label + " nhwc_dgrad<half," + std::to_string(BM) + "," + std::to_string(BN) + "," +
                       std::to_string(STAGES) + ">" + (g_cp_async_eager ? " eager" : "") +
                       (with_bias ? "" : " no-bias");
    compare("dgrad", name, back(gx), gx_ref, tol);
}

static int nhwc_dgrad_main() {
    std::vector<std::pair<std::string, Geo>> cases = {
        // N  C  H  W   K  R  S  sh sw pt pb pl pr dh dw groups
        {"3x3 s2 pad1 C16 K24",                make({2, 16, 9, 11, 24, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1, 1})},
        {"4x4 s2 pad1 tconv-ish C8 K16",       make({1, 8, 9, 8, 16, 4, 4, 2, 2, 1, 0, 1, -1, 1, 1, 1})},
        {"2x2 s2 C136 K8",                      make({2, 136, 8, 6, 8, 2, 2, 2, 2, 0, 0, 0, 0, 1, 1, 1})},
        {"3x3 s3 d2 (phase taps) C8 K8",       make({1, 8, 13, 12, 8, 3, 3, 3, 3, 2, 2, 2, 2, 2, 2, 1})},
        {"5x3 s(2,3) d(2,1) asym C8 K40",      make({2, 8, 11, 10, 40, 5, 3, 2, 3, 3, 1, 0, 2, 2, 1, 1})},
        {"3x3 s2 pad1 C72 K8 M300",            make({3, 72, 20, 20, 8, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1, 1})},
        {"3x3 s1 pad1 C16 K24 (one phase)",    make({2, 16, 7, 9, 24, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1})},
    };
    for (size_t i = 0; i < cases.size(); ++i) {  // two tiles per case, alternating
        auto& [label, g] = cases[i];
        if (i % 2 == 0) {
            run_nhwc_dgrad<128, 128, 3>(g, label, NHWC_TOL);
            run_nhwc_dgrad<64, 64, 4>(g, label, NHWC_TOL);
        } else {
            run_nhwc_dgrad<128, 64, 4>(g, label, NHWC_TOL);
            run_nhwc_dgrad<64, 128, 4>(g, label, NHWC_TOL);
        }
    }
    g_cp_async_eager = true;  // copies land at once: a slot refilled while another warp reads it shows
    run_nhwc_dgrad<128, 128, 3>(cases[4].second, cases[4].first, NHWC_TOL);
    run_nhwc_dgrad<64, 64, 4>(cases[5].second, cases[5].first, NHWC_TOL);
    g_cp_async_eager = false;
    run_nhwc_dgrad<128, 64, 4>(cases[0].second, cases[0].first, NHWC_TOL, false);
    printf("%s\n", failures ? "FAILURES" : "all ok");
    return failures != 0;
}

// Issue 14, class 2: a NaN or infinite weight. The dgrads above stage zeros for the taps that reach a pixel
// only through padding and multiply them by the weight, so such a weight makes NaN there where the reference
// (only the taps that hit, as PyTorch) has a finite value or an infinity. The experimental repair
// (experimental/nonfinite_weights.cu) recomputes the NaN pixels of the channels with a non-finite weight; after
// it, gx must have the reference's NaNs exactly, its infinities, and its finite values within tol. The check
// also asserts that the kernel alone gets the NaNs wrong on these cases (else the case proves nothing).
static void plant_nonfinite_weights(std::vector<double>& wd, const Geo& g, double bad) {
    int Cg = g.C / g.groups;
    wd[(size_t)(g.R - 1) * g.S + g.S - 1] = bad;                          // w[0, 0, R-1, S-1]
    wd[(((size_t)(g.K - 1) * Cg + Cg - 1) * g.R) * g.S] = bad;              // w[K-1, Cg-1, 0, 0]
}
// gx = bias[c] + the taps that hit (PyTorch's input gradient: a NaN or infinite weight only where it hits).
static std::vector<double> dgrad_reference(const Geo& g, const std::vector<double>& gyd, const std::vector<double>& wd,
                                           const std::vector<double>& cbd) {
    std::vector<double> gx_ref((size_t)g.N * g.C * g.H * g.W);
    for (size_t i = 0; i < gx_ref.size(); ++i) gx_ref[i] = cbd[(i / ((size_t)g.H * g.W)) % g.C];
    taps(g, [&](size_t xi, size_t wi, size_t yi) { gx_ref[xi] += gyd[yi] * wd[wi]; });
    return gx_ref;
}
template <typename T>
static void check_repair(const char* kernel, const Geo& g, const std::vector<T>& gy, const std::vector<T>& w,
                         const std::vector<T>& bc, std::vector<T> gx, const std::vector<double>& gx_ref, double tol,
                         const std::string& label) {
    auto wrong_nans = [&](const std::vector<double>& got) {
        size_t n = 0;
        for (size_t i = 0; i < got.size(); ++i) n += std::isnan(got[i]) != std::isnan(gx_ref[i]);
        return n;
    };
    size_t before = wrong_nans(back(gx));
    int Cg = g.C / g.groups, Kg = g.K / g.groups;
    std::unique_ptr<bool[]> finite(new bool[g.C]);
    for (int c = 0; c < g.C; ++c) {
        finite[c] = true;
        int grp = c / Cg, ci = c - grp * Cg;
        for (int k = grp * Kg; k < (grp + 1) * Kg; ++k)
            for (int t = 0; t < g.R * g.S; ++t)
                finite[c] = finite[c] && std::isfinite((double)Accumulator<T>::load(w[((size_t)k * Cg + ci) * g.R * g.S + t]));
    }
    launch(dim3{3, 1, 1}, [&] {  // 3 blocks: the loop over the N*C planes wraps
        conv2d_dgrad_nonfinite_repair<T>(gy.data(), w.data(), bc.data(), finite.get(), gx.data(), SIZES);
    });
    auto got = back(gx);
    size_t after = wrong_nans(got), wrong_inf = 0, ref_inf = 0, ref_nan = 0;
    double err = 0, scale = 1e-30;
    for (size_t i = 0; i < got.size(); ++i) {
        if (std::isinf(gx_ref[i])) { wrong_inf += got[i] != gx_ref[i]; ++ref_inf; continue; }
        if (std::isnan(gx_ref[i])) { ++ref_nan; continue; }
        scale = std::max(scale, std::fabs(gx_ref[i]));
        double e = std::fabs(got[i] - gx_ref[i]);
        if (!(e <= err)) err = e;
    }
    bool ok = before > 0 && after == 0 && wrong_inf == 0 && err <= tol * scale;
    if (!ok) ++failures;
    printf("repair %-36s %-18s reference NaN/inf %3zu/%3zu; NaNs wrong %2zu -> %zu, infinities wrong %zu, "
           "max|err|/max|ref| = %.2e %s\n", label.c_str(), kernel, ref_nan, ref_inf, before, after, wrong_inf,
           err / scale, ok ? "ok" : "FAIL");
}

// The NCHW implicit-GEMM dgrad (simt, mma half, TF32) with a non-finite weight, then the repair.
template <typename T, int BM, int BN, int STAGES, bool MMA>
static void run_nonfinite(const Geo& g, const std::string& label, double bad, double tol) {
    int Cg = g.C / g.groups;
    auto wd = rnd((size_t)g.K * Cg * g.R * g.S), gyd = rnd((size_t)g.N * g.K * g.P * g.Q), cbd = rnd(g.C);
    plant_nonfinite_weights(wd, g, bad);
    auto w = cast<T>(wd), gy = cast<T>(gyd), bc = cast<T>(cbd);
    wd = back(w); gyd = back(gy); cbd = back(bc);
    auto gx_ref = dgrad_reference(g, gyd, wd, cbd);
    std::vector<T> gx(gx_ref.size(), from_float<T>(NAN));
    long maxM = (long)g.N * cdiv(g.H, g.sh) * cdiv(g.W, g.sw);
    dim3 grid{(unsigned)cdiv(maxM, BM), (unsigned)cdiv(Cg, BN), (unsigned)(g.groups * g.sh * g.sw)};
    launch(grid, [&] {
        if constexpr (MMA) conv2d_dgrad_implicit_gemm_mma<T, BM, BN, STAGES>(gy.data(), w.data(), bc.data(), gx.data(), SIZES);
        else conv2d_dgrad_implicit_gemm_simt<T, BM, BN, STAGES>(gy.data(), w.data(), bc.data(), gx.data(), SIZES);
    });
    std::string kernel = std::string(MMA ? "mma<" : "simt<") + type_name<T>() + ">" + (std::isnan(bad) ? " NaN" : " inf");
    check_repair(kernel.c_str(), g, gy, w, bc, gx, gx_ref, tol, label);

    // The forward needs no repair: its tiles hold zeros for the padding and the MMA multiplies them by the
    // weight, as PyTorch's sum over the zero-padded input does (0 * inf is NaN there).
    auto xd = rnd((size_t)g.N * g.C * g.H * g.W), bd = rnd(g.K);
    auto x = cast<T>(xd), bk = cast<T>(bd);
    xd = back(x); bd = back(bk);
    std::vector<double> y_ref((size_t)g.N * g.K * g.P * g.Q);
    for (int n = 0; n < g.N; ++n) for (int k = 0; k < g.K; ++k) for (int p = 0; p < g.P; ++p) for (int q = 0; q < g.Q; ++q) {
        double acc = bd[k];
        for (int c = 0; c < Cg; ++c) for (int r = 0; r < g.R; ++r) for (int s = 0; s < g.S; ++s) {
            int h = p * g.sh - g.pt + r * g.dh, col = q * g.sw - g.pl + s * g.dw;
            bool inside = h >= 0 && h < g.H && col >= 0 && col < g.W;
            double xv = inside ? xd[(((size_t)n * g.C + (k / (g.K / g.groups)) * Cg + c) * g.H + h) * g.W + col] : 0.0;
            acc += xv * wd[(((size_t)k * Cg + c) * g.R + r) * g.S + s];
        }
        y_ref[(((size_t)n * g.K + k) * g.P + p) * g.Q + q] = acc;
    }
    std::vector<T> y(y_ref.size(), from_float<T>(NAN));
    dim3 fgrid{(unsigned)cdiv((long)g.N * g.P * g.Q, BM), (unsigned)cdiv(g.K / g.groups, BN), (unsigned)g.groups};
    launch(fgrid, [&] {
        if constexpr (MMA) conv2d_fprop_implicit_gemm_mma<T, BM, BN, STAGES>(x.data(), w.data(), bk.data(), y.data(), SIZES);
        else conv2d_fprop_implicit_gemm_simt<T, BM, BN, STAGES>(x.data(), w.data(), bk.data(), y.data(), SIZES);
    });
    auto got = back(y);
    size_t wrong = 0, ref_nan = 0;
    for (size_t i = 0; i < got.size(); ++i) {
        ref_nan += std::isnan(y_ref[i]);
        wrong += std::isnan(got[i]) != std::isnan(y_ref[i]) || (std::isinf(y_ref[i]) && got[i] != y_ref[i]);
    }
    bool ok = wrong == 0 && ref_nan > 0;
    if (!ok) ++failures;
    printf("fprop  %-36s %-18s reference NaN %3zu; NaNs or infinities wrong %zu %s\n", label.c_str(), kernel.c_str(),
           ref_nan, wrong, ok ? "ok" : "FAIL");
}

// The same for the experimental channels-last dgrad (groups 1, C and K multiples of 8).
static void run_nonfinite_nhwc(const Geo& g, const std::string& label, double bad) {
    auto wd = rnd((size_t)g.K * g.C * g.R * g.S), gyd = rnd((size_t)g.N * g.K * g.P * g.Q), cbd = rnd(g.C);
    plant_nonfinite_weights(wd, g, bad);
    auto w = cast<__half>(wd), gy = cast<__half>(gyd), bc = cast<__half>(cbd);
    wd = back(w); gyd = back(gy); cbd = back(bc);
    auto gx_ref = dgrad_reference(g, gyd, wd, cbd);
    auto gyh = host_to_nhwc(gy, g.N, g.K, g.P * g.Q), wt = host_to_nhwc(w, 1, g.K, g.C * g.R * g.S);
    std::vector<__half> gx(gx_ref.size(), from_float<__half>(NAN));
    long maxM = (long)g.N * cdiv(g.H, g.sh) * cdiv(g.W, g.sw);
    dim3 grid{(unsigned)cdiv(maxM, 64), (unsigned)cdiv(g.C, 64), (unsigned)(g.sh * g.sw)};
    launch(grid, [&] {
        conv2d_dgrad_implicit_gemm_nhwc<__half, 64, 64, 4>(gyh.data(), wt.data(), bc.data(), gx.data(), g.N, g.C, g.H,
                                                           g.W, g.K, g.R, g.S, g.P, g.Q, g.sh, g.sw, g.pt, g.pl, g.dh, g.dw);
    });
    std::string kernel = std::string("nhwc_dgrad<half>") + (std::isnan(bad) ? " NaN" : " inf");
    check_repair(kernel.c_str(), g, gy, w, bc, gx, gx_ref, NHWC_TOL, label);
}

static int nonfinite_main() {
    std::vector<std::pair<std::string, Geo>> cases = {
        // N  C  H  W   K  R  S  sh sw pt pb pl pr dh dw groups
        {"3x3 pad1",                make({2, 5, 7, 9, 6, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1})},
        {"5x3/2,3 dil2,1 asym pad", make({2, 4, 11, 10, 5, 5, 3, 2, 3, 3, 1, 0, 2, 2, 1, 1})},
        {"groups3 4x4/2 tconv-ish", make({1, 6, 9, 8, 9, 4, 4, 2, 2, 1, 0, 1, -1, 1, 1, 3})},
    };
    for (double bad : {(double)NAN, (double)INFINITY}) {
        for (auto& [label, g] : cases) {
            run_nonfinite<float, 64, 64, 3, false>(g, label, bad, 1e-5);
            run_nonfinite<__half, 64, 64, 2, true>(g, label, bad, 2e-2);
            run_nonfinite<float, 64, 64, 2, true>(g, label, bad, 1e-5);
        }
        run_nonfinite_nhwc(make({2, 16, 10, 12, 24, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1, 1}), "nhwc 3x3 s2 pad1 C16 K24 10x12", bad);
        run_nonfinite_nhwc(make({2, 16, 7, 9, 24, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1}), "nhwc 3x3 s1 pad1 C16 K24", bad);
    }
    printf("%s\n", failures ? "FAILURES" : "all ok");
    return failures != 0;
}

// bfloat16 inputs (the reference uses the same rounded values), float32 accumulation, one bfloat16 rounding of
// the output: at most 2^-8 of |y| (8 significant bits, round to nearest), plus float32 sums in another order;
// a quarter more leaves room for the latter (a kernel whose mma reads the bfloat16 fragments as float16 fails
// every check: planted and seen).
constexpr double BF16_TOL = 1.25 / 256;

int main(int argc, char** argv) {
    std::vector<std::pair<std::string, Geo>> cases = {
        // N  C  H  W   K  R  S  sh sw pt pb pl pr dh dw groups
        {"3x3 pad1",              make({2, 5, 7, 9, 6, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1})},
        {"5x3/2,3 dil2,1 asym pad", make({2, 4, 11, 10, 5, 5, 3, 2, 3, 3, 1, 0, 2, 2, 1, 1})},
        {"groups3 4x4/2 tconv-ish", make({1, 6, 9, 8, 9, 4, 4, 2, 2, 1, 0, 1, -1, 1, 1, 3})},
        {"1x1/2 K70",             make({3, 3, 6, 5, 70, 1, 1, 2, 2, 0, 0, 0, 0, 1, 1, 1})},
        {"3x3/3 dil2 (phase taps)", make({1, 3, 13, 12, 4, 3, 3, 3, 3, 2, 2, 2, 2, 2, 2, 1})},
    };
    std::string only = argc > 1 ? argv[1] : "";
    if (only == "nhwc") return nhwc_main();
    if (only == "nhwc_wgrad") return nhwc_wgrad_main();
    if (only == "nhwc_dgrad") return nhwc_dgrad_main();
    if (only == "nonfinite") return nonfinite_main();
    if (only == "big") {
        Geo g = make({2, 9, 12, 12, 130, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1});
        run<float, 128, 128, 3, false>(g, "K130 M288", 1e-5);
        run<float, 128, 64, 3, false>(g, "K130 M288", 1e-5);
        run<float, 64, 128, 3, false>(g, "K130 M288", 1e-5);
        run<__half, 128, 128, 2, true>(g, "K130 M288", 2e-2);
        run<__nv_bfloat16, 128, 128, 2, true>(g, "K130 M288", BF16_TOL);
        run<float, 128, 128, 2, true>(g, "K130 M288", 1e-5);
        printf("%s\n", failures ? "FAILURES" : "all ok");
        return failures != 0;
    }
    for (auto& [label, g] : cases) {
        if (only == "simt" || only.empty()) {
            run<float, 64, 64, 1, false>(g, label, 1e-5);
            run<float, 64, 64, 3, false>(g, label, 1e-5);
        }
        if (only == "mma" || only.empty()) {
            run<__half, 64, 64, 2, true>(g, label, 2e-2);
            run<float, 64, 64, 2, true>(g, label, 1e-5);
        }
        if (only == "mma_bf16" || only.empty()) {  // experimental (bf16_native): every tile shape
            run<__nv_bfloat16, 64, 64, 2, true>(g, label, BF16_TOL);
            run<__nv_bfloat16, 128, 64, 2, true>(g, label, BF16_TOL);
            run<__nv_bfloat16, 64, 128, 2, true>(g, label, BF16_TOL);
        }
    }
    if (only == "mma_bf16") run<__nv_bfloat16, 128, 128, 2, true>(cases[1].second, cases[1].first, BF16_TOL);
    printf("%s\n", failures ? "FAILURES" : "all ok");
    return failures != 0;
}
