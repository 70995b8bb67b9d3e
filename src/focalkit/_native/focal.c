/* focalkit native CPU kernel: sigmoid focal loss and its gradient in one pass.
 *
 * A plain C ABI over raw memory (loaded with ctypes), not built against torch's C++ API, so one
 * build serves every torch version. The maths is focalkit/core/sigmoid.py's, in log space:
 *   lp = log sigmoid(x), ln = log sigmoid(-x), p = e^lp, q = e^ln, w+ = y a+ pw, w- = (1-y) a-,
 *   L = -(w+ (1-p)^g lp + w- p^g ln),  L' = w- p^g (p - g q ln) - w+ (1-p)^g (q - g p lp).
 * This is the "linear" soft form; for 0/1 targets it is also the "pt" form (soft "pt" targets run on
 * the eager backend: its selects between vectorised calls defeat gcc's if-conversion).
 * No 1 - sigmoid(x), no negative power of a vanishing 1 - p_t: finite for every finite x, g >= 0.
 *
 * Per class c (last dimension): apos[c], aneg[c] weight the positive / negative terms (alpha, 1 - alpha;
 * 1 and 1 when alpha is off) and pw[c] is BCEWithLogitsLoss's pos_weight.
 *
 * Speed: each option combination gets its own loop (an always-inline body specialised by constant
 * flags) so that the loop has no branches and vectorises; exp / log / log1p come from glibc's libmvec
 * (declare simd) without -ffast-math, so NaN and inf keep their IEEE meaning. target_clones builds
 * baseline, AVX2 and AVX-512 versions, chosen when the library loads. The sum is accumulated in
 * double, one partial per thread over a fixed partition: deterministic for a fixed thread count.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#pragma omp declare simd notinbranch
float expf(float);
#pragma omp declare simd notinbranch
float logf(float);
#pragma omp declare simd notinbranch
float log1pf(float);
#pragma omp declare simd notinbranch
double exp(double);
#pragma omp declare simd notinbranch
double log(double);
#pragma omp declare simd notinbranch
double log1p(double);

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define FK_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define FK_CLONES
#endif
#define FK_INLINE static inline __attribute__((always_inline))

#define FK_DEFINE(T, SUF, EXP, LOG, LOG1P)                                                                  \
FK_INLINE double fk_range_##SUF(const T *x, const T *y, const T *w, const T *apos, const T *aneg,           \
        const T *pw, int64_t lo, int64_t hi, T g, T scale, T *loss_out, T *grad_out,                          \
        const int HAS_W, const int STORE) {                                                                  \
    /* apos, aneg, pw point at the class of element lo; they advance with it only in the nested layout */  \
    double acc = 0.0;                                                                                        \
    _Pragma("omp simd reduction(+:acc)")                                                                     \
    for (int64_t i = lo; i < hi; i++) {                                                                      \
        const int64_t k = i - lo;                                                                            \
        const T xi = x[i], yi = y[i];                                                                        \
        const T ap = apos[k], an = aneg[k], pwi = pw[k];                                                     \
        /* both log-sigmoids from one softplus term: lp - x would cancel for very negative x */             \
        const T e = EXP(xi < 0 ? xi : -xi);                                                                  \
        const T sp = LOG1P(e);                                                                               \
        const T lp = (xi < 0 ? xi : (T)0) - sp, ln = (xi > 0 ? -xi : (T)0) - sp;                             \
        /* sigmoid(x) and sigmoid(-x) from the same e = exp(-|x|): a select of arithmetic, which      */    \
        /* vectorises (unlike a select of call results), and two exp calls fewer                     */    \
        const T r = 1 / (1 + e), er = e * r;                                                                 \
        const T p = xi < 0 ? er : r, q = xi < 0 ? r : er;                                                    \
        /* the linear form; for 0/1 targets it equals the p_t form */                                      \
        const T wp = yi * pwi * ap, wn = (1 - yi) * an;                                                      \
        const T mp = EXP(g * ln), mn = EXP(g * lp);                                                          \
        T loss = -(wp * mp * lp + wn * mn * ln);                                                             \
        T grad = wn * mn * (p - g * q * ln) - wp * mp * (q - g * p * lp);                                    \
        if (HAS_W) {                                                                                         \
            loss *= w[i];                                                                                    \
            grad *= w[i];                                                                                    \
        }                                                                                                    \
        if (STORE) loss_out[i] = loss;                                                                       \
        grad_out[i] = grad * scale;                                                                          \
        acc += (double)loss;                                                                                 \
    }                                                                                                        \
    return acc;                                                                                              \
}                                                                                                            \
                                                                                                             \
FK_INLINE double fk_part_##SUF(const T *x, const T *y, const T *w, const T *apos, const T *aneg,            \
        const T *pw, int64_t n, int64_t C, int nested, int t, int nt, T g, T scale, T *loss_out,              \
        T *grad_out, const int HAS_W, const int STORE) {                                                     \
    double acc = 0.0;                                                                                        \
    if (nested) { /* rows x classes: the class arrays advance along each row */                             \
        const int64_t rows = n / C, r0 = rows * t / nt, r1 = rows * (t + 1) / nt;                            \
        for (int64_t r = r0; r < r1; r++)                                                                    \
            acc += fk_range_##SUF(x, y, w, apos, aneg, pw, r * C, (r + 1) * C, g, scale, loss_out,           \
                                  grad_out, HAS_W, STORE);                                           \
    } else { /* one class value for all: the arrays are broadcast by a zero stride */                        \
        const int64_t lo = n * t / nt, hi = n * (t + 1) / nt;                                                \
        const int64_t B = 1024;                                                                              \
        T ap[1024], an[1024], pwb[1024];                                                                     \
        for (int64_t j = 0; j < B; j++) { ap[j] = apos[0]; an[j] = aneg[0]; pwb[j] = pw[0]; }                \
        for (int64_t s = lo; s < hi; s += B) {                                                               \
            const int64_t e = s + B < hi ? s + B : hi;                                                       \
            acc += fk_range_##SUF(x, y, w, ap, an, pwb, s, e, g, scale, loss_out, grad_out, HAS_W, STORE);   \
        }                                                                                                    \
    }                                                                                                        \
    return acc;                                                                                              \
}                                                                                                            \
                                                                                                             \
FK_CLONES static double fk_dispatch_##SUF(const T *x, const T *y, const T *w, const T *apos,                 \
        const T *aneg, const T *pw, int64_t n, int64_t C, int nested, int t, int nt, T g, T scale,            \
        T *loss_out, T *grad_out) {                                                           \
    if (w) return loss_out ? fk_part_##SUF(x, y, w, apos, aneg, pw, n, C, nested, t, nt, g, scale, loss_out, grad_out, 1, 1)  \
                           : fk_part_##SUF(x, y, w, apos, aneg, pw, n, C, nested, t, nt, g, scale, loss_out, grad_out, 1, 0); \
    return loss_out ? fk_part_##SUF(x, y, w, apos, aneg, pw, n, C, nested, t, nt, g, scale, loss_out, grad_out, 0, 1)          \
                    : fk_part_##SUF(x, y, w, apos, aneg, pw, n, C, nested, t, nt, g, scale, loss_out, grad_out, 0, 0);         \
}                                                                                                            \
                                                                                                             \
int fk_sigmoid_focal_##SUF(const T *x, const T *y, const T *w, const T *apos, const T *aneg, const T *pw,    \
        int64_t n, int64_t C, int nested, double g, double scale, T *loss_out, T *grad_out,                  \
        int nthreads, double *sum_out) {                                                                     \
    if (C < 1 || n < 0 || (nested && n % C)) return 1;                                                      \
    if (nthreads < 1 || n < 65536) nthreads = 1; /* small inputs: a second thread costs more than it gives */ \
    double *part = (double *)calloc((size_t)nthreads, sizeof(double));                                      \
    if (!part) return 2;                                                                                     \
    _Pragma("omp parallel for num_threads(nthreads) schedule(static, 1)")                                    \
    for (int t = 0; t < nthreads; t++)                                                                       \
        part[t] = fk_dispatch_##SUF(x, y, w, apos, aneg, pw, n, C, nested, t, nthreads, (T)g, (T)scale,      \
                                    loss_out, grad_out);                                             \
    double s = 0.0;                                                                                          \
    for (int t = 0; t < nthreads; t++) s += part[t];                                                         \
    free(part);                                                                                              \
    *sum_out = s;                                                                                            \
    return 0;                                                                                                \
}                                                                                                            \
                                                                                                             \
/* How many targets lie outside {0, 1}: the "pt" form equals the kernel's "linear" one only when none  */   \
/* do. One read-only pass, decided before any work is done.                                           */   \
int64_t fk_count_soft_##SUF(const T *y, int64_t n, int nthreads) {                                          \
    int64_t count = 0;                                                                                       \
    if (nthreads < 1 || n < 65536) nthreads = 1;                                                             \
    _Pragma("omp parallel for simd num_threads(nthreads) reduction(+:count)")                                \
    for (int64_t i = 0; i < n; i++) count += (int64_t)((y[i] != 0) & (y[i] != 1));                           \
    return count;                                                                                            \
}

FK_DEFINE(float, f32, expf, logf, log1pf)
FK_DEFINE(double, f64, exp, log, log1p)

int fk_abi_version(void) { return 4; }

/* Built by setuptools as an extension module but loaded with ctypes, never imported. */
void *PyInit__focal_native(void) { return 0; }
