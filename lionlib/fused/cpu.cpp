// One Lion-K step over a list of CPU tensors, in a single pass over memory.
//
// Built and loaded by lionlib/fused/cpu.py (plain C ABI, no torch headers, so it compiles in
// seconds). Every element reads p, g, m once and writes p, m once: 20 bytes per fp32 parameter.
//
// The arithmetic is eager torch's, operation for operation, so results are bit-identical to
// `lionlib.fused.eager.forloop` (tests/test_fused.py): products are rounded, `a.add_(b, alpha=s)` is
// one fused multiply-add, bf16/fp16 values are computed in fp32 and rounded once when stored.
// Compiled with -ffp-contract=off, so only the explicit std::fma calls are fused. Threads are
// OpenMP's: in a torch process, torch's own pool (see cpu.py).
//
// The kernel codes (enum Kappa), the scalar slots (struct Hyper) and the dtype codes come from
// lionk_contract.h, which cpu.py generates from lionlib/fused/contract.py for every build.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include <omp.h>

#include "lionk_contract.h"

namespace {

struct BFloat16 {
  uint16_t bits;
};

inline float to_float(float x) { return x; }
inline double to_float(double x) { return x; }  // fp64 is computed in fp64
inline float to_float(_Float16 x) { return static_cast<float>(x); }
inline float to_float(BFloat16 x) {
  uint32_t u = static_cast<uint32_t>(x.bits) << 16;
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

template <typename T> inline T from_float(float x);
template <typename T> inline T from_float(double x);
template <> inline float from_float<float>(float x) { return x; }
template <> inline double from_float<double>(double x) { return x; }
template <> inline _Float16 from_float<_Float16>(float x) { return static_cast<_Float16>(x); }
template <> inline BFloat16 from_float<BFloat16>(float x) {
  // Round to nearest even, as c10::BFloat16; NaN becomes the canonical quiet NaN.
  uint32_t u;
  std::memcpy(&u, &x, sizeof u);
  uint16_t bits = std::isnan(x) ? uint16_t{0x7FC0} : static_cast<uint16_t>((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);
  return BFloat16{bits};
}

// Hyper / HyperF64 (lionk_contract.h): the scalars, for fp32/bf16/fp16 each already rounded to
// fp32 as torch rounds a Python scalar, for fp64 the host's doubles; k_param is the K's kernel
// parameter (huber/logcosh delta, relativistic delta^2, ...). The compute type is that of the
// struct's fields: float, or double for fp64 tensors.

template <typename T> inline T sign(T x) { return static_cast<T>((x > T(0)) - (x < T(0))); }  // 0 for 0 and NaN, as torch

template <int K, typename T> inline T direction(T c, T k) {  // grad K(c), as lionlib.kappa computes it
  static_assert(K != LP, "lp needs a whole-tensor norm: foreach takes it on CPU");
  if constexpr (K == L1) {
    return sign(c);
  } else if constexpr (K == HALF_SQ_L2) {
    return c;
  } else if constexpr (K == HUBER) {
    T x = c / k;  // clamp(-1, 1) keeps NaN
    return x < T(-1) ? T(-1) : (x > T(1) ? T(1) : x);
  } else if constexpr (K == RELATIVISTIC) {
    return c / std::sqrt(c * c + k);
  } else if constexpr (K == LOGCOSH) {
    return std::tanh(c / k);
  } else if constexpr (K == L1_PLUS_SQ_L2) {
    return sign(c) + k * c;
  } else {
    static_assert(K < 0, "no arithmetic for this kernel code: add it here");
    return c;
  }
}

// How p is stored (contract.STORE): rounded to nearest; Kahan-compensated (a buffer `comp` of
// p's dtype holds what rounding lost, added back next step); or stochastically rounded (bf16:
// fp32 bits plus 16 random bits, truncated; the bits are hash32(key + element index)).
inline uint32_t hash32(uint32_t x) {  // lowbias32 (C. Wellons); also in fused/eager.py and triton_kernel.py
  x ^= x >> 16;
  x *= 0x7feb352dU;
  x ^= x >> 15;
  x *= 0x846ca68bU;
  x ^= x >> 16;
  return x;
}

inline BFloat16 stochastic_bf16(float x, uint32_t r) {
  uint32_t u;
  std::memcpy(&u, &x, sizeof u);
  return BFloat16{std::isnan(x) ? uint16_t{0x7FC0} : static_cast<uint16_t>((u + (r & 0xFFFFu)) >> 16)};
}

template <int K, bool IMPLICIT, int STORE, typename P, typename M, typename H>
inline void update_element(P& p, P g, M& m, P* comp, const H& h, uint32_t key, int64_t index) {
  using C = decltype(h.beta1);  // the compute type
  C gf = to_float(g), mf = to_float(m), p0 = to_float(p);
  C pf = p0 * h.decay_mul;
  C c = std::fma(gf, h.one_minus_beta1, mf * h.beta1);
  pf = std::fma(direction<K>(c, h.k_param), h.neg_lr, pf);
  if constexpr (IMPLICIT) pf = pf / h.decay_div;
  if constexpr (STORE == STORE_KAHAN) {
    C d = (pf - p0) + to_float(*comp);  // the intended change plus what rounding lost before
    p = from_float<P>(p0 + d);
    *comp = from_float<P>(d - (to_float(p) - p0));
  } else if constexpr (STORE == STORE_STOCHASTIC) {
    static_assert(std::is_same_v<P, BFloat16>, "stochastic rounding stores bf16");
    p = stochastic_bf16(pf, hash32(key + static_cast<uint32_t>(index)));
  } else {
    p = from_float<P>(pf);
  }
  m = from_float<M>(std::fma(gf, h.one_minus_beta2, mf * h.beta2));
}

// The loop: by default one `omp simd` loop over the range, no software prefetch (PLAIN). The
// alternative, blocks of BLOCK elements each prefetching the block PREFETCH_AHEAD elements on
// (hardware prefetchers stop at every 4 KiB page), was faster on this project's machine in an
// earlier measurement and slower in a later one; benchmarks/prefetch.py builds this file with
// each PREFETCH_AHEAD (and PLAIN) and times them, so the choice can be re-measured.
constexpr int64_t PLAIN = -1;
constexpr int64_t BLOCK = 128, PREFETCH_AHEAD = PLAIN;

template <int RW, typename T> inline void prefetch_block(const T* x) {
  for (int64_t j = 0; j < BLOCK; j += 64 / static_cast<int64_t>(sizeof(T))) __builtin_prefetch(x + j, RW);
}

template <int K, bool IMPLICIT, int STORE, typename P, typename M, typename H>
void update(void* p_out, const void* g_in, void* m_out, void* comp_out, int64_t n, const H& h, uint32_t key, int64_t first) {
  auto* __restrict p = static_cast<P*>(p_out);
  auto* __restrict g = static_cast<const P*>(g_in);
  auto* __restrict m = static_cast<M*>(m_out);
  auto* __restrict comp = static_cast<P*>(comp_out);
  if constexpr (PREFETCH_AHEAD == PLAIN) {
#pragma omp simd
    for (int64_t i = 0; i < n; ++i)
      update_element<K, IMPLICIT, STORE>(p[i], g[i], m[i], STORE == STORE_KAHAN ? comp + i : nullptr, h, key, first + i);
    return;
  }
  for (int64_t start = 0; start < n; start += BLOCK) {
    if (start + PREFETCH_AHEAD < n) {
      prefetch_block<1>(p + start + PREFETCH_AHEAD);
      prefetch_block<0>(g + start + PREFETCH_AHEAD);
      prefetch_block<1>(m + start + PREFETCH_AHEAD);
      if constexpr (STORE == STORE_KAHAN) prefetch_block<1>(comp + start + PREFETCH_AHEAD);
    }
    const int64_t stop = std::min(n, start + BLOCK);
    for (int64_t i = start; i < stop; ++i)
      update_element<K, IMPLICIT, STORE>(p[i], g[i], m[i], STORE == STORE_KAHAN ? comp + i : nullptr, h, key, first + i);
  }
}

// (p, g, m, comp, n, hyper, key, index of the range's first element in its tensor)
template <typename H> using Range = void (*)(void*, const void*, void*, void*, int64_t, const H&, uint32_t, int64_t);

template <int STORE, typename P, typename M, typename H = Hyper> Range<H> pick_k(int k, bool implicit) {
#define LIONK_CASE(K) \
  case K: \
    return implicit ? &update<K, true, STORE, P, M, H> : &update<K, false, STORE, P, M, H>;
  switch (k) {
    LIONK_ELEMENTWISE_KERNELS(LIONK_CASE)  // every elementwise kernel of the contract
    default:
      return nullptr;
  }
#undef LIONK_CASE
}

// Kahan and stochastic stores exist for the low-precision parameters they help (bf16; Kahan also fp16).
template <typename P, typename M> Range<Hyper> pick_store(int store, int k, bool implicit) {
  if (store == STORE_NEAREST) return pick_k<STORE_NEAREST, P, M>(k, implicit);
  if constexpr (!std::is_same_v<P, float>) {
    if (store == STORE_KAHAN) return pick_k<STORE_KAHAN, P, M>(k, implicit);
    if constexpr (std::is_same_v<P, BFloat16>) {
      if (store == STORE_STOCHASTIC) return pick_k<STORE_STOCHASTIC, P, M>(k, implicit);
    }
  }
  return nullptr;
}

Range<Hyper> pick(int p_dtype, int m_dtype, int store, int k, bool implicit) {
  if (p_dtype == FLOAT32 && m_dtype == FLOAT32) return pick_store<float, float>(store, k, implicit);
  if (p_dtype == BFLOAT16 && m_dtype == BFLOAT16) return pick_store<BFloat16, BFloat16>(store, k, implicit);
  if (p_dtype == BFLOAT16 && m_dtype == FLOAT32) return pick_store<BFloat16, float>(store, k, implicit);
  if (p_dtype == FLOAT16 && m_dtype == FLOAT16) return pick_store<_Float16, _Float16>(store, k, implicit);
  if (p_dtype == FLOAT16 && m_dtype == FLOAT32) return pick_store<_Float16, float>(store, k, implicit);
  return nullptr;
}

constexpr int64_t ALIGN = 64;               // elements: thread ranges start on cache-line multiples
constexpr int64_t MIN_PER_THREAD = 1 << 16;  // below this, waking a thread costs more than it saves

// The slot array as the struct H (Hyper: floats, HyperF64: doubles), field by field in slot order.
template <typename H> H unpack(const double* hyper) {
  using C = decltype(H{}.beta1);
  C values[HYPER_SLOTS];
  for (int i = 0; i < HYPER_SLOTS; ++i) values[i] = static_cast<C>(hyper[i]);
  H h;
  std::memcpy(&h, values, sizeof h);
  return h;
}

// Tensors t = 0..n-1, their elements taken in order, split into `threads` contiguous ranges of
// equal length, one per thread.
template <typename H>
void run(Range<H> range, const H& h, int64_t n, const int64_t* params, const int64_t* grads, const int64_t* exp_avgs,
         const int64_t* comps, const int64_t* keys, const int64_t* sizes, int64_t p_size, int64_t m_size, int threads) {
  int64_t total = 0;
  for (int64_t t = 0; t < n; ++t) total += sizes[t];
  auto work = [&](int64_t begin, int64_t end) {  // the global element range [begin, end)
    int64_t offset = 0;  // global index of tensor t's first element
    for (int64_t t = 0; t < n && offset < end; ++t) {
      int64_t lo = std::max(begin - offset, int64_t{0}), hi = std::min(end - offset, sizes[t]);
      if (lo < hi)
        range(reinterpret_cast<char*>(params[t]) + lo * p_size, reinterpret_cast<const char*>(grads[t]) + lo * p_size,
              reinterpret_cast<char*>(exp_avgs[t]) + lo * m_size, reinterpret_cast<char*>(comps[t]) + lo * p_size,
              hi - lo, h, static_cast<uint32_t>(keys[t]), lo);
      offset += sizes[t];
    }
  };
  threads = static_cast<int>(std::max(int64_t{1}, std::min<int64_t>(threads, total / MIN_PER_THREAD)));
  const int64_t per_thread = (total / threads + ALIGN - 1) / ALIGN * ALIGN;
#pragma omp parallel num_threads(threads) if (threads > 1)
  {
    const int64_t begin = std::min(total, omp_get_thread_num() * per_thread);
    work(begin, std::min(total, begin + per_thread));
  }
}

int64_t dtype_size(int dtype) { return dtype == FLOAT64 ? 8 : (dtype == FLOAT32 ? 4 : 2); }

}  // namespace

extern "C" {

// Updates tensors t = 0..n-1: params[t], grads[t] (the param's dtype) and exp_avgs[t], each
// dense with sizes[t] elements; with store = STORE_KAHAN also comps[t] (the param's dtype), with
// STORE_STOCHASTIC keys[t] (the tensor's random key this step; comps/keys are 0 otherwise). `hyper` holds the slots as doubles (fp32-rounded ones for
// fp32/bf16/fp16 tensors, which the float kernels read exactly). Returns 0, or -1 for an
// unsupported (dtype, K) combination, before touching any memory.
int lionk_step(int64_t n, const int64_t* params, const int64_t* grads, const int64_t* exp_avgs,
               const int64_t* comps, const int64_t* keys, const int64_t* sizes, int p_dtype, int m_dtype, int store,
               int k, int implicit, const double* hyper, int threads) {
  const int64_t p_size = dtype_size(p_dtype), m_size = dtype_size(m_dtype);
  if (p_dtype == FLOAT64 || m_dtype == FLOAT64) {
    if (p_dtype != m_dtype || store != STORE_NEAREST) return -1;
    Range<HyperF64> range = pick_k<STORE_NEAREST, double, double, HyperF64>(k, implicit != 0);
    if (range == nullptr) return -1;
    run(range, unpack<HyperF64>(hyper), n, params, grads, exp_avgs, comps, keys, sizes, p_size, m_size, threads);
    return 0;
  }
  Range<Hyper> range = pick(p_dtype, m_dtype, store, k, implicit != 0);
  if (range == nullptr) return -1;
  run(range, unpack<Hyper>(hyper), n, params, grads, exp_avgs, comps, keys, sizes, p_size, m_size, threads);
  return 0;
}

}  // extern "C"
