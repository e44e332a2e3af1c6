// Memory-bandwidth baselines for benchmarks/bench_step.py, in plain C (compiled as C++ with the
// C++ kernel's flags by lionlib.fused.cpu.build, so both meet the same compiler and OpenMP pool).
//
// - triad: STREAM's a = b + s * c (12 bytes per element counted; with ordinary stores the CPU
//   also reads a before writing it, so the non-temporal variant streams a out instead).
// - lion_pass: Lion's fp32 update as one plain OpenMP loop over one flat buffer (read p, g, m;
//   write p, m: 20 bytes per element), the eager rounding of lionlib's kernel but none of its
//   machinery (no tensor list, no prefetch blocks, OpenMP's static schedule).
#include <algorithm>
#include <cmath>
#include <cstdint>

#include <omp.h>
#if defined(__SSE__)
#include <immintrin.h>
#endif

extern "C" {

void triad(float* a, const float* b, const float* c, float s, int64_t n, int threads, int nontemporal) {
#pragma omp parallel num_threads(threads)
  {
    const int64_t t = omp_get_thread_num(), nt = omp_get_num_threads();
    const int64_t per = (n / nt + 63) / 64 * 64;  // cache-line multiples per thread
    const int64_t begin = std::min(n, t * per), end = std::min(n, begin + per);
    int64_t i = begin;
#if defined(__SSE__)
    if (nontemporal) {
      const __m128 sv = _mm_set1_ps(s);
      for (; i < end && (reinterpret_cast<uintptr_t>(a + i) % 16) != 0; ++i) a[i] = b[i] + s * c[i];
      for (; i + 4 <= end; i += 4) _mm_stream_ps(a + i, _mm_add_ps(_mm_loadu_ps(b + i), _mm_mul_ps(sv, _mm_loadu_ps(c + i))));
    }
#endif
#pragma omp simd
    for (int64_t j = i; j < end; ++j) a[j] = b[j] + s * c[j];
  }
#if defined(__SSE__)
  _mm_sfence();
#endif
}

void lion_pass(float* p, const float* g, float* m, int64_t n, float decay_mul, float beta1, float one_minus_beta1,
               float neg_lr, float beta2, float one_minus_beta2, int threads) {
#pragma omp parallel for simd num_threads(threads) schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    const float gi = g[i], mi = m[i];
    const float c = std::fma(gi, one_minus_beta1, mi * beta1);
    const float sign = static_cast<float>((c > 0.0f) - (c < 0.0f));
    p[i] = std::fma(sign, neg_lr, p[i] * decay_mul);
    m[i] = std::fma(gi, one_minus_beta2, mi * beta2);
  }
}

}  // extern "C"
