// Fused softmax attention inside fixed-size patches, for CPUs, float32, head width 8.
//
// Used by srkd/models/cpu_attention.py for PTv3's serialized patch attention (Wu et al., CVPR
// 2024, Sec. 3.3) at head width 8 (every level of ptv3_half). torch's CPU flash-attention kernel
// runs two GEMMs per block whose inner or outer size is the head width; at width 8 their call and
// packing costs dominate. Here one head's keys and values stay in cache, blocked by W keys, and
// each query row is one pass of vector FMAs and exponentials. At width 16 torch's kernel is as
// fast or faster (measured; docs/benchmarks.md), so only width 8 is built.
//
// Math (Vaswani et al. 2017; the backward as in Dao et al., FlashAttention, 2022, Alg. 2):
//   s_ij = scale * q_i . k_j,  m_i = max_j s_ij,  l_i = sum_j exp(s_ij - m_i),
//   o_i = sum_j exp(s_ij - m_i) v_j / l_i,   lse_i = m_i + log l_i
//   p_ij = exp(s_ij - lse_i),  dp_ij = do_i . v_j,  delta_i = do_i . o_i,
//   ds_ij = p_ij (dp_ij - delta_i),  dv_j = sum_i p_ij do_i,
//   dq_i = scale sum_j ds_ij k_j,  dk_j = scale sum_i ds_ij q_i.
// The code forms every exponential in base 2, exp(s - m) = 2^(s log2 e - m log2 e), and keeps lse
// in base 2 (lse_i log2 e) between the passes; see vexp2.
//
// Layouts (all contiguous, row-major):
//   qkv  (S, L, 3, H, D)  patch s, slot i, {q, k, v}, head h, channel d
//   len  (S,) int32       valid slots of each patch (NULL: all L); slots >= len are ignored
//   out  (S, L, H, D)     zero at invalid slots
//   lse  (S, H, L)        log-sum-exp of each query row times log2(e) (base 2, as the forward
//                         pass forms it), zero at invalid slots
//   dqkv (S, L, 3, H, D)  zero at invalid slots
// A call computes the (patch, head) tasks t in [begin, end), t = s * H + h; tasks write
// disjoint memory, so callers run ranges on several threads.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>
#if defined(__AVX512F__)
#include <immintrin.h>
#elif defined(__SSE__)
#include <xmmintrin.h>
#endif

namespace {

// Lanes per vector: one register of the widest vector unit the build targets. A wider vector type
// than the registers makes GCC spill every vector to memory (measured 6x slower at W = 16 on AVX2).
#if defined(__AVX512F__)
constexpr int W = 16;
#elif defined(__AVX__)
constexpr int W = 8;
#else
constexpr int W = 4;  // SSE, NEON
#endif
typedef float vf __attribute__((vector_size(W * sizeof(float))));
typedef int32_t vi __attribute__((vector_size(W * sizeof(int32_t))));

inline vf load(const float* p) { vf v; std::memcpy(&v, p, sizeof v); return v; }
inline void store(float* p, vf v) { std::memcpy(p, &v, sizeof v); }
inline vf splat(float x) { return vf{} + x; }
inline vf vmax(vf a, vf b) { return a > b ? a : b; }
// x clamped to [lo, hi]; NaN stays NaN (so a NaN input reaches the output, as in SDPA)
inline vf clamp(vf x, float lo, float hi) {
    x = x < lo ? splat(lo) : x;
    return x > hi ? splat(hi) : x;
}

inline float hsum(vf v) {
    float s = 0.0f;
    for (int i = 0; i < W; ++i) s += v[i];
    return s;
}

inline float hmax(vf v) {
    float m = v[0];
    for (int i = 1; i < W; ++i) m = std::max(m, v[i]);
    return m;
}

// exp(s - m) = 2^x with x = s log2(e) - m log2(e), one FMA per lane (m log2(e) once per row).
constexpr float LOG2E = 1.44269504088896341f;

// 2^x for float32 lanes: x = n + f with n = round(x) and |f| <= 1/2 (f is exact), then
// 2^f = 1 + c1 f + f^2 q(f), c1 = ln 2 rounded to float32 and q of degree 4 fitted for srkd on
// [-1/2, 1/2] for the least maximal relative error of 2^f (Lawson's weighted least squares):
// 3e-9 in exact arithmetic, under 1e-7 (one ulp) evaluated in float32 by Horner's rule with FMAs.
// Then times 2^n.
inline vf exp2_reduced(vf x, vf n) {
    const vf f = x - n;
    vf p = splat(1.532430033e-4f);
    p = p * f + 1.339095645e-3f;
    p = p * f + 9.618517943e-3f;
    p = p * f + 5.550359562e-2f;
    p = p * f + 2.402264774e-1f;
    p = p * f + 6.931471825e-1f;
    return p * f + 1.0f;
}

#if defined(__AVX512F__)
// AVX-512: round and scale by 2^n in one instruction each; scalef underflows to 0 (denormals are
// flushed, see FlushDenormals) and overflows to inf, so no clamping is needed.
inline vf vexp2(vf x) {
    const __m512 n = _mm512_roundscale_ps((__m512)x, _MM_FROUND_TO_NEAREST_INT);
    return (vf)_mm512_scalef_ps((__m512)exp2_reduced(x, (vf)n), n);
}
#else
// Portable: x is clamped to [-126, 127] (below it the result is ~1e-38), n is rounded by adding
// and subtracting 1.5 * 2^23, and 2^n is built from the exponent bits.
inline vf vexp2(vf x) {
    x = clamp(x, -126.0f, 127.0f);
    const vf magic = splat(12582912.0f);
    const vf n = (x + magic) - magic;
    const vi bits = (__builtin_convertvector(n, vi) + 127) << 23;
    vf two_n;
    std::memcpy(&two_n, &bits, sizeof two_n);
    return exp2_reduced(x, n) * two_n;
}
#endif

struct Shape {
    int64_t S, L, H;
    float scale;
};

// Per-(patch, head) work buffer, blocked by W keys: block b holds `arrays` arrays (K, V and, in
// the backward pass, dK and dV) of D vectors each, key j of the block in lane j mod W. One block
// is contiguous (arrays * D * W floats), so a pass over the keys streams through memory; a
// (D, L) transpose would put the D rows of every array in one cache set.
template <int D>
struct Blocks {
    float* base;
    int arrays;
    float* at(int64_t j, int a, int d) const { return base + (((j / W) * arrays + a) * D + d) * W; }
};

// K and V of one (patch, head) into arrays 0 and 1 of `blk`, zero past the n valid keys.
template <int D>
void gather_kv(const float* qkv, const Shape& sh, int64_t s, int64_t h, int n, int64_t lp,
               const Blocks<D>& blk) {
    std::fill(blk.base, blk.base + lp * blk.arrays * D, 0.0f);
    const int64_t row = 3 * sh.H * D;
    const float* base = qkv + (s * sh.L * 3 * sh.H + h) * D;
    for (int j = 0; j < n; ++j) {
        const float* k = base + j * row + sh.H * D;
        const float* v = k + sh.H * D;
        float* kb = blk.at(j, 0, 0) + j % W;
        float* vb = blk.at(j, 1, 0) + j % W;
        for (int d = 0; d < D; ++d) {
            kb[d * W] = k[d];
            vb[d * W] = v[d];
        }
    }
}

// Lane masks of the last, partial block: keep (-1 or 0, for selects) and minus (0 or -3e38, for
// maxima). Padded lanes are selected away, never multiplied by 0: their exponential may be inf.
struct Tail {
    vi keep;
    vf minus;
    explicit Tail(int lanes) {
        for (int i = 0; i < W; ++i) {
            keep[i] = i < lanes ? -1 : 0;
            minus[i] = i < lanes ? 0.0f : -3.0e38f;
        }
    }
    vf mask(vf p) const { return keep ? p : vf{}; }
};

constexpr int R = 4;   // query rows per pass over the keys, forward
constexpr int RB = 8;  // and backward (measured fastest of 1, 2, 4, 8, 16; at W = 16 only)

template <int D>
void forward_task(const float* qkv, const int32_t* len, const Shape& sh, int64_t t, float* out,
                  float* lse, std::vector<float>& buf) {
    const int64_t s = t / sh.H, h = t % sh.H;
    const int n = len ? len[s] : static_cast<int>(sh.L);
    const int64_t lp = (n + W - 1) / W * W;
    buf.resize(2 * D * lp + R * lp);
    const Blocks<D> kv{buf.data(), 2};
    float* sc = buf.data() + 2 * D * lp;
    gather_kv<D>(qkv, sh, s, h, n, lp, kv);
    const Tail tail(static_cast<int>(n - (lp - W)));
    const int64_t full = n / W * W;  // blocks before it need no mask
    const int64_t row = 3 * sh.H * D;
    const float* q0 = qkv + (s * sh.L * 3 * sh.H + h) * D;
    float* o0 = out + (s * sh.L * sh.H + h) * D;
    float* lse0 = lse + (s * sh.H + h) * sh.L;

    for (int i0 = 0; i0 < n; i0 += R) {
        float qs[R][D];
        for (int r = 0; r < R; ++r) {
            const float* q = q0 + std::min(i0 + r, n - 1) * row;  // rows past n repeat the last
            for (int d = 0; d < D; ++d) qs[r][d] = q[d] * sh.scale;
        }
        vf m[R];
        for (int r = 0; r < R; ++r) m[r] = splat(-3.0e38f);
        for (int64_t j = 0; j < lp; j += W) {
            vf k[D];
            const float* kb = kv.at(j, 0, 0);
            for (int d = 0; d < D; ++d) k[d] = load(kb + d * W);
            const bool last = j >= full;
            for (int r = 0; r < R; ++r) {
                vf a = k[0] * qs[r][0];
                for (int d = 1; d < D; ++d) a += k[d] * qs[r][d];
                store(sc + r * lp + j, a);
                m[r] = vmax(m[r], last ? a + tail.minus : a);
            }
        }
        for (int r = 0; r < R && i0 + r < n; ++r) {
            const float mr = hmax(m[r]), mr2 = mr * LOG2E;
            vf l = vf{};
            vf o[D];
            for (int d = 0; d < D; ++d) o[d] = vf{};
            for (int64_t j = 0; j < lp; j += W) {
                vf p = vexp2(load(sc + r * lp + j) * LOG2E - mr2);
                if (j >= full) p = tail.mask(p);
                l += p;
                const float* vb = kv.at(j, 1, 0);
                for (int d = 0; d < D; ++d) o[d] += p * load(vb + d * W);
            }
            const float lsum = hsum(l);
            float* o_row = o0 + (i0 + r) * sh.H * D;
            for (int d = 0; d < D; ++d) o_row[d] = hsum(o[d]) / lsum;
            lse0[i0 + r] = mr2 + std::log2(lsum);
        }
    }
    for (int64_t i = n; i < sh.L; ++i) {
        std::fill(o0 + i * sh.H * D, o0 + i * sh.H * D + D, 0.0f);
        lse0[i] = 0.0f;
    }
}

template <int D>
void backward_task(const float* qkv, const float* out, const float* dout, const float* lse,
                   const int32_t* len, const Shape& sh, int64_t t, float* dqkv,
                   std::vector<float>& buf) {
    const int64_t s = t / sh.H, h = t % sh.H;
    const int n = len ? len[s] : static_cast<int>(sh.L);
    const int64_t lp = (n + W - 1) / W * W;
    buf.resize(4 * D * lp);
    const Blocks<D> blk{buf.data(), 4};  // K, V, dK, dV
    gather_kv<D>(qkv, sh, s, h, n, lp, blk);
    const Tail tail(static_cast<int>(n - (lp - W)));
    const int64_t full = n / W * W;
    const int64_t row = 3 * sh.H * D;
    const int64_t orow = sh.H * D;
    const float* q0 = qkv + (s * sh.L * 3 * sh.H + h) * D;
    const float* o0 = out + (s * sh.L * sh.H + h) * D;
    const float* do0 = dout + (s * sh.L * sh.H + h) * D;
    const float* lse0 = lse + (s * sh.H + h) * sh.L;
    float* dq0 = dqkv + (s * sh.L * 3 * sh.H + h) * D;

    for (int i0 = 0; i0 < n; i0 += RB) {
        // RB query rows share each pass over the keys (and each load and store of dK, dV); a row
        // past n gets do = 0, so its p and ds add nothing.
        float qs[RB][D], go[RB][D], delta[RB], li[RB];  // li: the row's base-2 lse
        for (int r = 0; r < RB; ++r) {
            const int i = std::min(i0 + r, n - 1);
            const bool real = i0 + r < n;
            delta[r] = 0.0f;
            for (int d = 0; d < D; ++d) {
                qs[r][d] = q0[i * row + d] * sh.scale;
                go[r][d] = real ? do0[i * orow + d] : 0.0f;
                delta[r] += go[r][d] * o0[i * orow + d];
            }
            li[r] = lse0[i];
        }
        vf dq[RB][D];
        for (int r = 0; r < RB; ++r)
            for (int d = 0; d < D; ++d) dq[r][d] = vf{};
        for (int64_t j = 0; j < lp; j += W) {
            float* kb = blk.at(j, 0, 0);
            float* vb = kb + D * W;
            float* dkb = vb + D * W;
            float* dvb = dkb + D * W;
            vf p[RB], ds[RB];
            for (int r = 0; r < RB; ++r) {
                vf a = vf{}, dp = vf{};
                for (int d = 0; d < D; ++d) {
                    a += load(kb + d * W) * qs[r][d];
                    dp += load(vb + d * W) * go[r][d];
                }
                p[r] = vexp2(a * LOG2E - li[r]);
                if (j >= full) p[r] = tail.mask(p[r]);
                ds[r] = p[r] * (dp - delta[r]);
            }
            for (int d = 0; d < D; ++d) {
                const vf k = load(kb + d * W);
                vf dv = load(dvb + d * W), dk = load(dkb + d * W);
                for (int r = 0; r < RB; ++r) {
                    dv += p[r] * go[r][d];
                    dk += ds[r] * qs[r][d];
                    dq[r][d] += ds[r] * k;
                }
                store(dvb + d * W, dv);
                store(dkb + d * W, dk);
            }
        }
        for (int r = 0; r < RB && i0 + r < n; ++r)
            for (int d = 0; d < D; ++d) dq0[(i0 + r) * row + d] = hsum(dq[r][d]) * sh.scale;
    }
    for (int64_t i = 0; i < sh.L; ++i) {
        float* dq = dq0 + i * row;
        float* dk = dq + sh.H * D;
        float* dv = dk + sh.H * D;
        if (i >= n) std::fill(dq, dq + D, 0.0f);
        const float* dkb = blk.at(i, 2, 0) + i % W;
        const float* dvb = blk.at(i, 3, 0) + i % W;
        for (int d = 0; d < D; ++d) {
            dk[d] = i < n ? dkb[d * W] : 0.0f;
            dv[d] = i < n ? dvb[d * W] : 0.0f;
        }
    }
}

template <int D>
void forward_range(const float* qkv, const int32_t* len, const Shape& sh, float* out,
                   float* lse, int64_t begin, int64_t end) {
    std::vector<float> buf;
    for (int64_t t = begin; t < end; ++t) forward_task<D>(qkv, len, sh, t, out, lse, buf);
}

template <int D>
void backward_range(const float* qkv, const float* out, const float* dout, const float* lse,
                    const int32_t* len, const Shape& sh, float* dqkv, int64_t begin,
                    int64_t end) {
    std::vector<float> buf;
    for (int64_t t = begin; t < end; ++t)
        backward_task<D>(qkv, out, dout, lse, len, sh, t, dqkv, buf);
}

// Flushes denormal results and inputs to zero while alive (x86): tiny probabilities times small
// gradients are denormal, and each denormal operation costs about a hundred cycles.
class FlushDenormals {
#if defined(__SSE__)
    unsigned int saved_ = _mm_getcsr();
  public:
    FlushDenormals() { _mm_setcsr(saved_ | 0x8040); }  // FTZ | DAZ
    ~FlushDenormals() { _mm_setcsr(saved_); }
#endif
};

}  // namespace

extern "C" {

// Head widths other than 8 return -1 from both entry points (cpu_attention.HEAD_WIDTHS).
int srkd_attention_forward(const float* qkv, const int32_t* len, int64_t S, int64_t L,
                           int64_t H, int64_t D, float scale, float* out, float* lse,
                           int64_t begin, int64_t end) {
    const Shape sh{S, L, H, scale};
    const FlushDenormals ftz;
    try {
        switch (D) {
            case 8: forward_range<8>(qkv, len, sh, out, lse, begin, end); return 0;
            default: return -1;
        }
    } catch (...) {
        return -2;  // allocation failure
    }
}

int srkd_attention_backward(const float* qkv, const float* out, const float* dout,
                            const float* lse, const int32_t* len, int64_t S, int64_t L,
                            int64_t H, int64_t D, float scale, float* dqkv, int64_t begin,
                            int64_t end) {
    const Shape sh{S, L, H, scale};
    const FlushDenormals ftz;
    try {
        switch (D) {
            case 8: backward_range<8>(qkv, out, dout, lse, len, sh, dqkv, begin, end); return 0;
            default: return -1;
        }
    } catch (...) {
        return -2;
    }
}

}  // extern "C"
