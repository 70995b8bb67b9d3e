/* focalkit native CPU kernel: sigmoid focal loss and its gradient in one pass.
 *
 * A plain C ABI over raw memory (loaded with ctypes), not built against torch's C++ API, so one
 * build serves every torch version. The maths is focalkit/core/sigmoid.py's, in log space:
 *   lp = log sigmoid(x), ln = log sigmoid(-x), p = e^lp, q = e^ln, w+ = y a+ pw, w- = (1-y) a-,
 *   L = -(w+ (1-p)^g lp + w- p^g ln),  L' = w- p^g (p - g q ln) - w+ (1-p)^g (q - g p lp).
 * This is the "linear" soft form; for 0/1 targets it is also the "pt" form. Soft targets in the "pt"
 * form, alpha_t (1-p_t)^g BCE(x, y) with log(1-p_t) = logaddexp(log(1-y) + lp, log(y) + ln), have their
 * own loop, and sparse targets (one class index per row, C = background) set y = [class == label].
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
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

/* Vector variants from glibc's libmvec, declared only where the glibc built against has them: a wheel */
/* built on glibc 2.28 (manylinux_2_28) must not call the expm1 / log1p variants that came in 2.35.     */
/* Elsewhere (macOS, Windows, musl) the loops stay scalar calls.                                         */
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 22))
#pragma omp declare simd notinbranch
float expf(float);
#pragma omp declare simd notinbranch
float logf(float);
#pragma omp declare simd notinbranch
double exp(double);
#pragma omp declare simd notinbranch
double log(double);
#endif
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 35))
#pragma omp declare simd notinbranch
float expm1f(float);
#pragma omp declare simd notinbranch
float log1pf(float);
#pragma omp declare simd notinbranch
double expm1(double);
#pragma omp declare simd notinbranch
double log1p(double);
#endif

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define FK_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define FK_CLONES
#endif
#if defined(_MSC_VER)
#define FK_INLINE static __forceinline
#else
#define FK_INLINE static inline __attribute__((always_inline))
#endif

/* MODE: 0 linear form (also "pt" / "signed" for 0/1 targets), 1 the "pt" form for soft targets, 2 sparse */
/* labels, 3 the "signed" form (MONAI's) for soft targets                                               */
#define FK_LINEAR 0
#define FK_PT 1
#define FK_SPARSE 2
#define FK_SIGNED 3
#define FK_BCE 4 /* the "bce" form (segmentation_models_pytorch's, p_t = exp(-BCE)) for soft targets      */
#define FK_QUALITY 5 /* the "quality" form (QFL: |y - p|^g) for soft targets                               */

/* Each thread's partial sum of the call (an expression of t and nthreads) over a fixed partition, added in
 * thread order into *sum_out (deterministic for a fixed thread count); the function returns 0, or 2 when
 * the partials cannot be allocated. */
#define FK_THREAD_SUM(...)                                                                                   \
    double *part = (double *)calloc((size_t)nthreads, sizeof(double));                                       \
    if (!part) return 2;                                                                                     \
    _Pragma("omp parallel for num_threads(nthreads) schedule(static, 1)")                                    \
    for (int t = 0; t < nthreads; t++) part[t] = (__VA_ARGS__);                                              \
    double s = 0.0;                                                                                          \
    for (int t = 0; t < nthreads; t++) s += part[t];                                                         \
    free(part);                                                                                              \
    *sum_out = s;                                                                                            \
    return 0;

/* The end of an elementwise loop body (sigmoid, Varifocal): the element's loss and gradient times its
 * weight, the loss stored or summed, the gradient scaled and stored. Uses the loop's own names. */
#define FK_ELEMENT_OUT(i)                                                                                    \
    if (HAS_W) {                                                                                             \
        loss *= w[i];                                                                                        \
        grad *= w[i];                                                                                        \
    }                                                                                                        \
    if (STORE) loss_out[i] = loss;                                                                           \
    grad_out[i] = grad * scale;                                                                              \
    acc += (double)loss;

#define FK_DEFINE(T, SUF, EXP, EXPM1, LOG, LOG1P)                                                                 \
FK_INLINE double fk_range_##SUF(const T *x, const T *y, int64_t lab, const T *w, const T *apos,             \
        const T *aneg, const T *pw, int64_t lo, int64_t hi, T g, T scale, T *loss_out, T *grad_out,           \
        const int HAS_W, const int STORE, const int MODE, const int G2) {                                    \
    /* apos, aneg, pw point at the class of element lo; they advance with it only in the nested layout */  \
    double acc = 0.0;                                                                                        \
    _Pragma("omp simd reduction(+:acc)")                                                                     \
    for (int64_t i = lo; i < hi; i++) {                                                                      \
        const int64_t k = i - lo;                                                                            \
        const T xi = x[i];                                                                                   \
        const T yi = MODE == FK_SPARSE ? (T)(k == lab) : y[i]; /* sparse: a row's one positive class */      \
        const T ap = apos[k], an = aneg[k], pwi = pw[k];                                                     \
        /* both log-sigmoids from one softplus term: lp - x would cancel for very negative x */             \
        const T e = EXP(xi < 0 ? xi : -xi);                                                                  \
        const T sp = LOG1P(e);                                                                               \
        const T lp = (xi < 0 ? xi : (T)0) - sp, ln = (xi > 0 ? -xi : (T)0) - sp;                             \
        /* sigmoid(x) and sigmoid(-x) from the same e = exp(-|x|): a select of arithmetic, which      */    \
        /* vectorises (unlike a select of call results), and two exp calls fewer                     */    \
        const T r = 1 / (1 + e), er = e * r;                                                                 \
        const T p = xi < 0 ? er : r, q = xi < 0 ? r : er;                                                    \
        T loss, grad;                                                                                        \
        if (MODE == FK_PT || MODE == FK_SIGNED || MODE == FK_BCE || MODE == FK_QUALITY) {                    \
            /* a_t u^g BCE. "pt": log u = log(1 - p_t) = logaddexp(log(1-y) + lp, log(y) + ln);       */    \
            /* "signed": log u = logsigmoid((1-2y) x). Every call made unconditionally, then selects  */    \
            /* of plain values only, so the loop stays vectorised                                     */    \
            const T pwy = pwi * yi, bce = -(pwy * lp + (1 - yi) * ln), dbce = (1 - yi) * p - pwy * q;      \
            T log_u, sr;                                                                                     \
            if (MODE == FK_PT) {                                                                             \
                const T la = LOG1P(-yi) + lp, lb = LOG(yi) + ln;                                             \
                const T big = la > lb ? la : lb, sml = la > lb ? lb : la;                                    \
                const T d = big == -INFINITY ? -INFINITY : sml - big;                                        \
                log_u = big + LOG1P(EXP(d));                                                                 \
                sr = (1 - 2 * yi) * EXP(lp + ln - log_u);                                                    \
            } else if (MODE == FK_SIGNED) {                                                                  \
                const T s = 1 - 2 * yi, v = s * xi, ev = EXP(v < 0 ? v : -v), rv = 1 / (1 + ev);             \
                log_u = (v < 0 ? v : (T)0) - LOG1P(ev);                                                      \
                sr = s * (v < 0 ? rv : ev * rv); /* (1-2y) sigmoid(-v) */                                    \
            } else if (MODE == FK_QUALITY) { /* log u = log|p - y|, d log u / dx = p q / (p - y); 0 at p = y */ \
                const T d = p > (T)0.5 ? (1 - yi) - q : p - yi; /* no p - 1 cancellation near y = 1 */    \
                const T ad = d < 0 ? -d : d;                                                                 \
                log_u = yi == 1 ? ln : yi == 0 ? lp : LOG(ad); /* hard labels: exact log-sigmoids */        \
                sr = ad > 0 ? p * q / d : (T)0;                                                              \
            } else { /* "bce": log u = log(1 - exp(-B0)), d log u/dx = B0'/expm1(B0), B0 the BCE without */ \
                /* pos_weight; B0 = 0 gives u = 0                                                      */ \
                const T b0 = -(yi * lp + (1 - yi) * ln), bs = b0 > 0 ? b0 : (T)1;                            \
                const T lu = bs > (T)0.693147180559945309 ? LOG1P(-EXP(-bs)) : LOG(-EXPM1(-bs));             \
                log_u = b0 > 0 ? lu : -INFINITY;                                                             \
                sr = b0 > 0 ? ((1 - yi) * p - yi * q) / EXPM1(bs) : (T)0;                                    \
            }                                                                                                \
            const T m = g == 0 ? (T)1 : EXP(g * log_u);                                                      \
            const T at = yi * ap + (1 - yi) * an;                                                            \
            loss = at * m * bce;                                                                             \
            grad = at * m * (dbce + g * sr * bce);                                                           \
        } else {                                                                                             \
            const T wp = yi * pwi * ap, wn = (1 - yi) * an;                                                  \
            /* gamma = 2, the usual one: q^2 and p^2 instead of two exp calls */                             \
            const T mp = G2 ? q * q : EXP(g * ln), mn = G2 ? p * p : EXP(g * lp);                             \
            loss = -(wp * mp * lp + wn * mn * ln);                                                           \
            grad = wn * mn * (p - g * q * ln) - wp * mp * (q - g * p * lp);                                  \
        }                                                                                                    \
        FK_ELEMENT_OUT(i)                                                                                    \
    }                                                                                                        \
    return acc;                                                                                              \
}                                                                                                            \
                                                                                                             \
FK_INLINE double fk_part_##SUF(const T *x, const T *y, const int64_t *labels, const T *w, const T *apos,    \
        const T *aneg, const T *pw, int64_t n, int64_t C, int nested, int t, int nt, T g, T scale,            \
        T *loss_out, T *grad_out, const int HAS_W, const int STORE, const int MODE, const int G2) {          \
    double acc = 0.0;                                                                                        \
    if (nested || MODE == FK_SPARSE) { /* rows x classes: the class arrays advance along each row */        \
        const int64_t rows = n / C, r0 = rows * t / nt, r1 = rows * (t + 1) / nt;                            \
        for (int64_t r = r0; r < r1; r++)                                                                    \
            acc += fk_range_##SUF(x, y, MODE == FK_SPARSE ? labels[r] : 0, w, apos, aneg, pw, r * C,         \
                                  (r + 1) * C, g, scale, loss_out, grad_out, HAS_W, STORE, MODE, G2);        \
    } else { /* one class value for all: the arrays are broadcast by a zero stride */                        \
        const int64_t lo = n * t / nt, hi = n * (t + 1) / nt;                                                \
        const int64_t B = 1024;                                                                              \
        T ap[1024], an[1024], pwb[1024];                                                                     \
        for (int64_t j = 0; j < B; j++) { ap[j] = apos[0]; an[j] = aneg[0]; pwb[j] = pw[0]; }                \
        for (int64_t s = lo; s < hi; s += B) {                                                               \
            const int64_t e = s + B < hi ? s + B : hi;                                                       \
            acc += fk_range_##SUF(x, y, 0, w, ap, an, pwb, s, e, g, scale, loss_out, grad_out, HAS_W, STORE,  \
                                  MODE, G2);                                                                 \
        }                                                                                                    \
    }                                                                                                        \
    return acc;                                                                                              \
}                                                                                                            \
                                                                                                             \
/* Every (weight, store, mode, gamma = 2) combination is its own branch-free loop. */                        \
FK_CLONES static double fk_dispatch_##SUF(const T *x, const T *y, const int64_t *labels, const T *w,         \
        const T *apos, const T *aneg, const T *pw, int64_t n, int64_t C, int nested, int mode, int t, int nt,  \
        T g, T scale, T *loss_out, T *grad_out) {                                                            \
    const int sel = (w != 0) | (loss_out != 0) << 1 | ((mode == FK_LINEAR || mode == FK_SPARSE) && g == 2) << 2; \
    FK_CASES(SUF, 0) FK_CASES(SUF, 1) FK_CASES(SUF, 2) FK_CASES(SUF, 3)                                      \
    FK_CASES_G2(SUF, 4) FK_CASES_G2(SUF, 5) FK_CASES_G2(SUF, 6) FK_CASES_G2(SUF, 7)                          \
    return 0.0;                                                                                              \
}                                                                                                            \
                                                                                                             \
/* labels: int64 class per row (sparse targets, C = background) or NULL; y: dense targets or NULL.      */  \
/* pt: 1 for the "pt" form with soft targets, 2 the "signed" form, 3 the "bce" form, 4 the "quality"  */ \
/* form (0/1 targets take the linear loop, which equals them all).                                     */  \
int fk_sigmoid_focal_##SUF(const T *x, const T *y, const int64_t *labels, const T *w, const T *apos,         \
        const T *aneg, const T *pw, int64_t n, int64_t C, int nested, int pt, double g, double scale,        \
        T *loss_out, T *grad_out, int nthreads, double *sum_out) {                                           \
    *sum_out = 0.0;                                                                                          \
    if (n == 0) return 0;                                                                                    \
    if (C < 1 || n < 0 || ((nested || labels) && n % C) || (!y && !labels)) return 1;                        \
    if (labels) { /* class indices in [0, C] (C = background): anything else is an error, not background */ \
        int64_t bad = 0;                                                                                     \
        for (int64_t r = 0; r < n / C; r++) bad |= (labels[r] < 0) | (labels[r] > C);                        \
        if (bad) return 3;                                                                                   \
    }                                                                                                        \
    if (nthreads < 1 || n < 65536) nthreads = 1; /* small inputs: a second thread costs more than it gives */ \
    if (pt < 0 || pt > 4) return 1;                                                                          \
    const int mode = labels ? FK_SPARSE : pt == 1 ? FK_PT : pt == 2 ? FK_SIGNED : pt == 3 ? FK_BCE : pt == 4 ? FK_QUALITY : FK_LINEAR;                                            \
    FK_THREAD_SUM(fk_dispatch_##SUF(x, y, labels, w, apos, aneg, pw, n, C, nested, mode, t, nthreads, (T)g,  \
                                    (T)scale, loss_out, grad_out))                                           \
}                                                                                                            \
                                                                                                             \
/* How many targets lie outside {0, 1}: the "pt" form equals the kernel's "linear" one only when none  */   \
/* do, and the linear loop is the cheaper. One read-only pass.                                        */   \
int64_t fk_count_soft_##SUF(const T *y, int64_t n, int nthreads) {                                          \
    int64_t count = 0;                                                                                       \
    if (nthreads < 1 || n < 65536) nthreads = 1;                                                             \
    _Pragma("omp parallel for simd num_threads(nthreads) reduction(+:count)")                                \
    for (int64_t i = 0; i < n; i++) count += (int64_t)((y[i] != 0) & (y[i] != 1));                           \
    return count;                                                                                            \
}

/* The cases of fk_dispatch for one selector value S (bit 0 weight, bit 1 store, bit 2 gamma = 2), over
 * the modes; the "pt" and "signed" loops have no gamma = 2 variant. */
#define FK_CASE(SUF, S, M)                                                                                   \
    if (sel == S && mode == M)                                                                               \
        return fk_part_##SUF(x, y, labels, w, apos, aneg, pw, n, C, nested, t, nt, g, scale, loss_out,       \
                             grad_out, (S) & 1, ((S) >> 1) & 1, M, (S) >> 2);
#define FK_CASES(SUF, S) FK_CASE(SUF, S, FK_LINEAR) FK_CASE(SUF, S, FK_PT) FK_CASE(SUF, S, FK_SPARSE) \
    FK_CASE(SUF, S, FK_SIGNED) FK_CASE(SUF, S, FK_BCE) FK_CASE(SUF, S, FK_QUALITY)
#define FK_CASES_G2(SUF, S) FK_CASE(SUF, S, FK_LINEAR) FK_CASE(SUF, S, FK_SPARSE)

FK_DEFINE(float, f32, expf, expm1f, logf, log1pf)
FK_DEFINE(double, f64, exp, expm1, log, log1p)

/* ---- softmax focal loss ------------------------------------------------------------------------
 * Logits (N, C, S) with S = d1*...*dk (S = 1 for (N, C)). Three walks, one maths: (N, C, S) positions
 * go 64 at a time, class k of the tile contiguous in memory, every per-position step vectorised across
 * the positions (no transpose); 2-D rows of up to 64 classes go the same way after a copy of 64 rows
 * into a class-major tile; wider 2-D rows are copied one at a time into the gradient buffer and turned
 * into their gradient in place while they sit in L1. Class indices and dense coefficients (label
 * smoothing, probability targets) take each walk. The maths is focalkit/core/softmax.py's:
 *   hard target y:  L = c_y (1-p_y)^g (-log p_y),  dL/dz = c_y K_y (p - e_y),  K = (1-p)^g (1 + g psi),
 *   psi = -p log p / (1-p) in [0, 1]; log(1-p_y) from the sum over the other classes (no cancellation).
 *   dense coefficients c_k (label smoothing, probability targets):
 *   L = sum_k c_k (1-p_k)^g (-log p_k),  dL/dz_j = p_j S - c_j K_j,  S = sum_k c_k K_k,
 *   where only the arg-max class can have p > 1/2 and is taken exactly, as for hard targets.
 */
#define FK_LN2 0.69314718055994530942

#define FK_SMX_TILE 64 /* positions per tile: consecutive s of one image, or (2-D) consecutive rows */
/* 2-D rows of up to 64 classes go FK_SMX_TILE rows at a time through a class-major copy, so that  */
/* the per-row maths (logs and exps) runs across rows, one row per vector lane (indices or dense).    */
#define FK_SMX_ROW_BLOCKS(S, C) ((S) == 1 && (C) <= 64)
#define FK_SOFTMAX_DEFINE(T, SUF, EXP, LOG, LOG1P)                                                          \
/* One row with a hard target y: r holds the logits on entry and the gradient (times scale) on exit. */     \
FK_INLINE T fk_smx_hard_row_##SUF(T *r, int64_t C, int64_t y, T c, T g, T scale) {                          \
    T m = -INFINITY;                                                                                         \
    _Pragma("omp simd reduction(max:m)")                                                                     \
    for (int64_t k = 0; k < C; k++) m = r[k] > m ? r[k] : m;                                                 \
    const T zy = r[y];                                                                                       \
    T s1 = 0, s2 = 0;                                                                                        \
    _Pragma("omp simd reduction(+:s1)")                                                                      \
    for (int64_t k = 0; k < y; k++) { const T e = EXP(r[k] - m); r[k] = e; s1 += e; }                        \
    _Pragma("omp simd reduction(+:s2)")                                                                      \
    for (int64_t k = y + 1; k < C; k++) { const T e = EXP(r[k] - m); r[k] = e; s2 += e; }                    \
    const T rest = s1 + s2, ey = EXP(zy - m), s = rest + ey, ls = LOG(s);                                    \
    T logp = zy - m - ls;                                                                                    \
    const T u = rest / s; /* 1 - p_y, exact: no 1 - p cancellation */                                        \
    if (logp > (T)-FK_LN2) logp = LOG1P(-u);                                                                 \
    const T psi = u > 0 ? -EXP(logp) * logp / u : (T)0;                                                      \
    const T mod = g == 0 ? (T)1 : EXP(g * (LOG(rest) - ls));                                                 \
    const T loss = c * mod * -logp, ck = c * mod * (1 + g * psi), f = ck * scale / s;                        \
    _Pragma("omp simd")                                                                                      \
    for (int64_t k = 0; k < C; k++) r[k] *= f;                                                               \
    r[y] = -ck * u * scale;                                                                                  \
    return loss;                                                                                             \
}                                                                                                            \
                                                                                                             \
/* Part of a dense row, classes [lo, hi), none of them the arg-max (so p <= 1/2): coefficient c_k, K_k   */  \
/* into t, p into r; returns the loss, adds c_k K_k to *S.                                               */  \
FK_INLINE T fk_smx_dense_range_##SUF(T *r, T *t, const T *cf, int64_t lo, int64_t hi, T m, T ls, T is,       \
                                     T g, T *S, const int G2) {                                              \
    T loss = 0, acc = 0;                                                                                     \
    _Pragma("omp simd reduction(+:loss, acc)")                                                               \
    for (int64_t k = lo; k < hi; k++) {                                                                      \
        const T lp = r[k] - m - ls, p = t[k] * is, om = 1 - p; /* p <= 1/2: 1 - p is exact enough */       \
        /* G2: 1 for gamma = 2 (a square), 2 for gamma = 0 (no factor: cross-entropy), 0 any other */    \
        const T psi = -p * lp / om, mod = G2 == 1 ? om * om : G2 == 2 ? (T)1 : EXP(g * LOG1P(-p)), c = cf[k]; \
        const T ck = c * mod * (1 + g * psi);                                                                \
        loss += c * mod * -lp;                                                                               \
        acc += ck;                                                                                           \
        t[k] = ck;                                                                                           \
        r[k] = p;                                                                                            \
    }                                                                                                        \
    *S += acc;                                                                                               \
    return loss;                                                                                             \
}                                                                                                            \
                                                                                                             \
/* One row with per-class coefficients cf (class weight times target mass); t is scratch of length C. */     \
FK_INLINE T fk_smx_dense_row_##SUF(T *r, T *t, const T *cf, int64_t C, T g, T scale, const int G2) {        \
    T m = -INFINITY;                                                                                         \
    int64_t a = 0;                                                                                           \
    for (int64_t k = 0; k < C; k++) if (r[k] > m) { m = r[k]; a = k; }                                       \
    T s1 = 0, s2 = 0;                                                                                        \
    _Pragma("omp simd reduction(+:s1)")                                                                      \
    for (int64_t k = 0; k < a; k++) { const T e = EXP(r[k] - m); t[k] = e; s1 += e; }                        \
    _Pragma("omp simd reduction(+:s2)")                                                                      \
    for (int64_t k = a + 1; k < C; k++) { const T e = EXP(r[k] - m); t[k] = e; s2 += e; }                    \
    const T rest = s1 + s2, za = r[a], s = rest + EXP(za - m), ls = LOG(s), is = 1 / s;                      \
    T S = 0;                                                                                                 \
    T loss = fk_smx_dense_range_##SUF(r, t, cf, 0, a, m, ls, is, g, &S, G2)                                  \
           + fk_smx_dense_range_##SUF(r, t, cf, a + 1, C, m, ls, is, g, &S, G2);                             \
    { /* the arg-max class, exactly */                                                                       \
        T logp = za - m - ls;                                                                                \
        const T u = rest / s;                                                                                \
        if (logp > (T)-FK_LN2) logp = LOG1P(-u);                                                             \
        const T p = EXP(logp), psi = u > 0 ? -p * logp / u : (T)0;                                           \
        const T mod = g == 0 ? (T)1 : EXP(g * (LOG(rest) - ls)), c = cf[a];                                  \
        const T ck = c * mod * (1 + g * psi);                                                                \
        loss += c * mod * -logp;                                                                             \
        S += ck;                                                                                             \
        t[a] = ck;                                                                                           \
        r[a] = p;                                                                                            \
    }                                                                                                        \
    _Pragma("omp simd")                                                                                      \
    for (int64_t k = 0; k < C; k++) r[k] = (r[k] * S - t[k]) * scale;                                        \
    return loss;                                                                                             \
}                                                                                                            \
                                                                                                             \
/* A tile of nb positions (consecutive s of one n, S > 1) with hard targets, vectorised across the      */ \
/* positions: class k's logits of the tile are contiguous, so nothing is transposed. z, gr: class 0 of   */ \
/* the tile's first position; yt, lo: its label and loss slot. sc: 5 nb scratch values, yv: nb labels.   */ \
FK_INLINE double fk_smx_cols_##SUF(const T *z, const int64_t *yt, const T *w, int64_t C, int64_t S,         \
        int64_t nb, int64_t ignore, T g, T scale, T *lo, T *gr, T *sc, int64_t *yv, int *bad) {              \
    T *m = sc, *rest = sc + nb, *zy = sc + 2 * nb, *f = sc + 3 * nb, *fy = sc + 4 * nb;                       \
    for (int64_t j = 0; j < nb; j++) { m[j] = -INFINITY; rest[j] = 0; }                                      \
    for (int64_t k = 0; k < C; k++) {                                                                        \
        const T *zk = z + k * S;                                                                             \
        _Pragma("omp simd")                                                                                  \
        for (int64_t j = 0; j < nb; j++) m[j] = zk[j] > m[j] ? zk[j] : m[j];                                 \
    }                                                                                                        \
    for (int64_t j = 0; j < nb; j++) { /* gathered before gr (which may be z) is written */                  \
        const int64_t yj = yt[j];                                                                            \
        const int ok = yj != ignore && yj >= 0 && yj < C;                                                    \
        if (!ok && yj != ignore) *bad = 1; /* out of range: reported as an error */                          \
        yv[j] = ok ? yj : -1;                                                                                \
        zy[j] = ok ? z[yj * S + j] : (T)0;                                                                   \
        f[j] = ok ? (w ? w[yj] : (T)1) : (T)0; /* the target's class weight, until f is the gradient's factor */\
    }                                                                                                        \
    for (int64_t k = 0; k < C; k++) { /* e_k = exp(z_k - m) into gr; rest = the sum over k != y, exactly */  \
        const T *zk = z + k * S;                                                                             \
        T *gk = gr + k * S;                                                                                  \
        _Pragma("omp simd")                                                                                  \
        for (int64_t j = 0; j < nb; j++) {                                                                   \
            const T e = EXP(zk[j] - m[j]);                                                                   \
            gk[j] = e;                                                                                       \
            rest[j] += yv[j] == k ? (T)0 : e;                                                                \
        }                                                                                                    \
    }                                                                                                        \
    double acc = 0.0;                                                                                        \
    /* fk_smx_hard_row's per-row maths, vectorised across the positions: every call made, then selects  */   \
    /* of plain values (a position not counted, ignored or bad, gives 0 whatever its logits hold)          */\
    _Pragma("omp simd reduction(+:acc)")                                                                     \
    for (int64_t j = 0; j < nb; j++) {                                                                       \
        const int ok = yv[j] >= 0;                                                                           \
        const T c = f[j], rj = rest[j];                                                                      \
        const T ey = EXP(zy[j] - m[j]), s = rj + ey, ls = LOG(s);                                            \
        const T u = rj / s, l1 = LOG1P(-u);                                                                  \
        const T lq = zy[j] - m[j] - ls, logp = lq > (T)-FK_LN2 ? l1 : lq; /* 1 - p_y exact near p_y = 1 */   \
        const T ep = EXP(logp), em = EXP(g * (LOG(rj) - ls));                                                \
        const T psi = u > 0 ? -ep * logp / u : (T)0;                                                         \
        const T mod = g == 0 ? (T)1 : em;                                                                    \
        const T loss = c * mod * -logp, ck = c * mod * (1 + g * psi);                                        \
        f[j] = ok ? ck * scale / s : (T)0;                                                                   \
        fy[j] = ok ? -ck * u * scale : (T)0;                                                                 \
        const T lj = ok ? loss : (T)0;                                                                       \
        if (lo) lo[j] = lj;                                                                                  \
        acc += (double)lj;                                                                                   \
    }                                                                                                        \
    for (int64_t k = 0; k < C; k++) {                                                                        \
        T *gk = gr + k * S;                                                                                  \
        _Pragma("omp simd")                                                                                  \
        for (int64_t j = 0; j < nb; j++) /* an ignored position: exactly 0, even where its logits are NaN */ \
            gk[j] = yv[j] == k ? fy[j] : yv[j] < 0 ? (T)0 : gk[j] * f[j];                                    \
    }                                                                                                        \
    return acc;                                                                                              \
}                                                                                                            \
                                                                                                             \
/* A tile of nb positions with dense coefficients (label smoothing, probability targets), vectorised    */   \
/* across the positions as fk_smx_cols: z and gr hold class k of the tile at k * S (gr may be z); cq,     */ \
/* with the same layout, the probabilities (NULL: class indices yt, smoothed by eps). tb: C x 64         */  \
/* scratch (c_k K_k); sc: 10 nb values; av: nb arg-max classes. fk_smx_dense_row's maths, every value    */  \
/* computed and then selected: the arg-max class exactly (the only one that can have p > 1/2).           */  \
FK_INLINE double fk_smx_dense_cols_##SUF(const T *z, const T *cq, const int64_t *yt, const T *w, int64_t C,  \
        int64_t S, int64_t nb, int64_t ignore, T eps, T g, T scale, T *lo, T *gr, T *tb, T *sc, int64_t *yv, \
        int64_t *av, int *bad, const int G2) {                                                               \
    T *m = sc, *rest = sc + nb, *za = sc + 2 * nb, *ca = sc + 3 * nb, *wy = sc + 4 * nb, *ls = sc + 5 * nb;  \
    T *is = sc + 6 * nb, *acc_s = sc + 7 * nb, *acc_l = sc + 8 * nb, *pa = sc + 9 * nb;                      \
    const T ec = eps / (T)C;                                                                                 \
    for (int64_t j = 0; j < nb; j++) { m[j] = -INFINITY; av[j] = 0; rest[j] = 0; acc_s[j] = 0; acc_l[j] = 0; } \
    for (int64_t k = 0; k < C; k++) { /* max and arg-max (the first), as fk_smx_dense_row */                 \
        const T *zk = z + k * S;                                                                             \
        _Pragma("omp simd")                                                                                  \
        for (int64_t j = 0; j < nb; j++) {                                                                   \
            const int gt = zk[j] > m[j];                                                                     \
            av[j] = gt ? k : av[j];                                                                          \
            m[j] = gt ? zk[j] : m[j];                                                                        \
        }                                                                                                    \
    }                                                                                                        \
    for (int64_t j = 0; j < nb; j++) { /* gathered before gr (which may be z, or cq tb) is written */        \
        const int64_t a = av[j];                                                                             \
        int ok = 1;                                                                                          \
        yv[j] = 0;                                                                                           \
        if (!cq) {                                                                                           \
            const int64_t yj = yt[j];                                                                        \
            ok = yj != ignore && yj >= 0 && yj < C;                                                          \
            if (!ok && yj != ignore) *bad = 1; /* out of range: reported as an error */                      \
            yv[j] = ok ? yj : -1;                                                                            \
            wy[j] = ok ? (w ? w[yj] : (T)1) * (1 - eps) : (T)0;                                              \
        }                                                                                                    \
        const T wa = w ? w[a] : (T)1;                                                                        \
        za[j] = z[a * S + j];                                                                                \
        ca[j] = !ok ? (T)0 : cq ? wa * ((1 - eps) * cq[a * S + j] + ec) : wa * ec + (yv[j] == a ? wy[j] : (T)0); \
    }                                                                                                        \
    for (int64_t k = 0; k < C; k++) { /* rest = the sum of exp(z_k - m) over k != arg-max */                 \
        const T *zk = z + k * S;                                                                             \
        _Pragma("omp simd")                                                                                  \
        for (int64_t j = 0; j < nb; j++) rest[j] += av[j] == k ? (T)0 : EXP(zk[j] - m[j]);                   \
    }                                                                                                        \
    _Pragma("omp simd")                                                                                      \
    for (int64_t j = 0; j < nb; j++) {                                                                       \
        const T s = rest[j] + EXP(za[j] - m[j]);                                                             \
        ls[j] = LOG(s);                                                                                      \
        is[j] = 1 / s;                                                                                       \
    }                                                                                                        \
    for (int64_t k = 0; k < C; k++) { /* every class but the arg-max: p <= 1/2, 1 - p exact enough */        \
        const T *zk = z + k * S;                                                                             \
        const T wk = w ? w[k] : (T)1;                                                                        \
        T *gk = gr + k * S, *tk = tb + k * FK_SMX_TILE;                                                      \
        if (cq) { /* the coefficients into tk first (tk may be cq's row), each loop branch-free */           \
            const T *qk = cq + k * S;                                                                        \
            _Pragma("omp simd")                                                                              \
            for (int64_t j = 0; j < nb; j++) tk[j] = wk * ((1 - eps) * qk[j] + ec);                          \
        } else {                                                                                             \
            _Pragma("omp simd")                                                                              \
            for (int64_t j = 0; j < nb; j++) tk[j] = yv[j] < 0 ? (T)0 : wk * ec + (yv[j] == k ? wy[j] : (T)0); \
        }                                                                                                    \
        _Pragma("omp simd")                                                                                  \
        for (int64_t j = 0; j < nb; j++) {                                                                   \
            const T lp = zk[j] - m[j] - ls[j], p = EXP(zk[j] - m[j]) * is[j], om = 1 - p;                    \
            const T psi = -p * lp / om, mod = G2 == 1 ? om * om : G2 == 2 ? (T)1 : EXP(g * LOG1P(-p));       \
            const T c = tk[j], ck = c * mod * (1 + g * psi);                                                 \
            const int a = av[j] == k;                                                                        \
            acc_l[j] += a ? (T)0 : c * mod * -lp;                                                            \
            acc_s[j] += a ? (T)0 : ck;                                                                       \
            tk[j] = ck;                                                                                      \
            gk[j] = p;                                                                                       \
        }                                                                                                    \
    }                                                                                                        \
    double acc = 0.0;                                                                                        \
    _Pragma("omp simd reduction(+:acc)")                                                                     \
    for (int64_t j = 0; j < nb; j++) { /* the arg-max class, exactly */                                      \
        const T rj = rest[j], u = rj * is[j], lq = za[j] - m[j] - ls[j];                                     \
        const T logp = lq > (T)-FK_LN2 ? LOG1P(-u) : lq;                                                     \
        const T p = EXP(logp), psi = u > 0 ? -p * logp / u : (T)0;                                           \
        const T mod = g == 0 ? (T)1 : EXP(g * (LOG(rj) - ls[j])), c = ca[j];                                 \
        const T ck = c * mod * (1 + g * psi);                                                                \
        const int ok = cq || yv[j] >= 0;                                                                     \
        const T lj = ok ? acc_l[j] + c * mod * -logp : (T)0;                                                 \
        acc_s[j] += ck;                                                                                      \
        ca[j] = ck;                                                                                          \
        pa[j] = p;                                                                                           \
        if (lo) lo[j] = lj;                                                                                  \
        acc += (double)lj;                                                                                   \
    }                                                                                                        \
    for (int64_t k = 0; k < C; k++) {                                                                        \
        T *gk = gr + k * S;                                                                                  \
        const T *tk = tb + k * FK_SMX_TILE;                                                                  \
        _Pragma("omp simd")                                                                                  \
        for (int64_t j = 0; j < nb; j++) { /* an ignored position: exactly 0, even where its logits are NaN */ \
            const T d = av[j] == k ? pa[j] * acc_s[j] - ca[j] : gk[j] * acc_s[j] - tk[j];                    \
            gk[j] = cq || yv[j] >= 0 ? d * scale : (T)0;                                                     \
        }                                                                                                    \
    }                                                                                                        \
    return acc;                                                                                              \
}                                                                                                            \
/* fk_smx_dense_cols for gamma = 2 (a square), gamma = 0 (no factor) or any other gamma. */                  \
FK_INLINE double fk_smx_dense_tile_##SUF(const T *z, const T *cq, const int64_t *yt, const T *w, int64_t C,  \
        int64_t S, int64_t nb, int64_t ignore, T eps, T g, T scale, T *lo, T *gr, T *tb, T *sc, int64_t *yv, \
        int64_t *av, int *bad) {                                                                             \
    return g == 2 ? fk_smx_dense_cols_##SUF(z, cq, yt, w, C, S, nb, ignore, eps, g, scale, lo, gr, tb, sc, yv, av, \
                                            bad, 1)                                                          \
         : g == 0 ? fk_smx_dense_cols_##SUF(z, cq, yt, w, C, S, nb, ignore, eps, g, scale, lo, gr, tb, sc, yv, av, \
                                            bad, 2)                                                          \
                  : fk_smx_dense_cols_##SUF(z, cq, yt, w, C, S, nb, ignore, eps, g, scale, lo, gr, tb, sc, yv, av, \
                                            bad, 0);                                                         \
}                                                                                                            \
                                                                                                             \
/* Positions [b0, b1) of the (N, S) grid: tiles of 64 consecutive s of one n (N-D), tiles of 64 rows */      \
/* transposed class-major (2-D rows of up to 64 classes), or one row at a time (wider 2-D rows).     */      \
FK_CLONES static double fk_smx_part_##SUF(const T *z, const int64_t *y, const T *q, const T *w, int64_t N,   \
        int64_t C, int64_t S, int64_t b0, int64_t b1, int64_t ignore, T eps, T g, T scale, T *loss_out,      \
        T *grad, T *buf, T *tb, T *tq, T *cf, T *sc, int64_t *yv, int64_t *av, int *bad) {                   \
    double acc = 0.0;                                                                                        \
    const int dense = q || eps != 0;                                                                         \
    if (FK_SMX_ROW_BLOCKS(S, C)) { /* rows [64 b, 64 b + 64) into buf (and their q into tb), class-major */  \
        for (int64_t b = b0; b < b1; b++) {                                                                  \
            const int64_t r0 = b * FK_SMX_TILE, nb = N - r0 < FK_SMX_TILE ? N - r0 : FK_SMX_TILE;            \
            for (int64_t j = 0; j < nb; j++)                                                                 \
                for (int64_t k = 0; k < C; k++) buf[k * FK_SMX_TILE + j] = z[(r0 + j) * C + k];              \
            if (q)                                                                                           \
                for (int64_t j = 0; j < nb; j++)                                                             \
                    for (int64_t k = 0; k < C; k++) tb[k * FK_SMX_TILE + j] = q[(r0 + j) * C + k];           \
            T *lo = loss_out ? loss_out + r0 : 0;                                                            \
            acc += dense ? fk_smx_dense_tile_##SUF(buf, q ? tb : 0, q ? 0 : y + r0, w, C, FK_SMX_TILE, nb, ignore, \
                                                   eps, g, scale, lo, buf, tb, sc, yv, av, bad)              \
                         : fk_smx_cols_##SUF(buf, y + r0, w, C, FK_SMX_TILE, nb, ignore, g, scale, lo, buf, sc, \
                                             yv, bad);                                                       \
            for (int64_t j = 0; j < nb; j++) /* after the whole tile is read: grad may be z */               \
                for (int64_t k = 0; k < C; k++) grad[(r0 + j) * C + k] = buf[k * FK_SMX_TILE + j];           \
        }                                                                                                    \
        return acc;                                                                                          \
    }                                                                                                        \
    if (S != 1) { /* (N, C, S): class k of a tile's positions is contiguous, nothing is transposed */        \
        const int64_t tiles_per_n = (S + FK_SMX_TILE - 1) / FK_SMX_TILE;                                     \
        for (int64_t b = b0; b < b1; b++) {                                                                  \
            const int64_t n = b / tiles_per_n, s0 = (b % tiles_per_n) * FK_SMX_TILE;                         \
            const int64_t nb = s0 + FK_SMX_TILE < S ? FK_SMX_TILE : S - s0;                                  \
            const int64_t base = n * C * S + s0;                                                             \
            T *lo = loss_out ? loss_out + n * S + s0 : 0;                                                    \
            acc += dense ? fk_smx_dense_tile_##SUF(z + base, q ? q + base : 0, q ? 0 : y + n * S + s0, w, C, S, nb, \
                                                   ignore, eps, g, scale, lo, grad + base, tb, sc, yv, av, bad) \
                         : fk_smx_cols_##SUF(z + base, y + n * S + s0, w, C, S, nb, ignore, g, scale, lo,    \
                                             grad + base, sc, yv, bad);                                      \
        }                                                                                                    \
        return acc;                                                                                          \
    }                                                                                                        \
    for (int64_t pos = b0; pos < b1; pos++) { /* 2-D rows of more than 64 classes, one at a time */          \
        T *r = grad + pos * C;                                                                               \
        if (r != z + pos * C) memcpy(r, z + pos * C, (size_t)C * sizeof(T));                                 \
        T loss;                                                                                              \
        if (q) { /* probability targets, smoothed: c_k = w_k ((1 - eps) q_k + eps / C) */                    \
            for (int64_t k = 0; k < C; k++) cf[k] = (w ? w[k] : (T)1) * ((1 - eps) * q[pos * C + k] + eps / (T)C); \
            loss = g == 2 ? fk_smx_dense_row_##SUF(r, tq, cf, C, g, scale, 1)                                \
                 : g == 0 ? fk_smx_dense_row_##SUF(r, tq, cf, C, g, scale, 2)                                \
                          : fk_smx_dense_row_##SUF(r, tq, cf, C, g, scale, 0);                               \
        } else if (y[pos] == ignore || y[pos] < 0 || y[pos] >= C) {                                          \
            if (y[pos] != ignore) *bad = 1; /* out of range: reported as an error */                         \
            memset(r, 0, (size_t)C * sizeof(T));                                                             \
            loss = 0;                                                                                        \
        } else if (eps == 0) {                                                                               \
            loss = fk_smx_hard_row_##SUF(r, C, y[pos], w ? w[y[pos]] : (T)1, g, scale);                      \
        } else { /* smoothed class index: c_k = w_k eps / C + w_y (1 - eps) [k = y] */                       \
            for (int64_t k = 0; k < C; k++) cf[k] = (w ? w[k] : (T)1) * eps / (T)C;                          \
            cf[y[pos]] += (w ? w[y[pos]] : (T)1) * (1 - eps);                                                \
            loss = g == 2 ? fk_smx_dense_row_##SUF(r, tq, cf, C, g, scale, 1)                                \
                 : g == 0 ? fk_smx_dense_row_##SUF(r, tq, cf, C, g, scale, 2)                                \
                          : fk_smx_dense_row_##SUF(r, tq, cf, C, g, scale, 0);                               \
        }                                                                                                    \
        if (loss_out) loss_out[pos] = loss;                                                                  \
        acc += (double)loss;                                                                                 \
    }                                                                                                        \
    return acc;                                                                                              \
}                                                                                                            \
/* y: int64 class indices (N, S) or NULL; q: probabilities (N, C, S) or NULL; w: class weights or NULL.   */ \
/* grad may equal z (the gradient then overwrites the logits). Returns 0, or an error code.              */ \
int fk_softmax_focal_##SUF(const T *z, const int64_t *y, const T *q, const T *w, int64_t N, int64_t C,       \
        int64_t S, int64_t ignore, double eps, double g, double scale, T *loss_out, T *grad, int nthreads,   \
        double *sum_out) {                                                                                   \
    if (C < 1 || N < 0 || S < 1 || (!y && !q)) return 1;                                                    \
    const int rb = FK_SMX_ROW_BLOCKS(S, C);                                                                  \
    const int64_t B = S == 1 && !rb ? 1 : FK_SMX_TILE;                                                       \
    const int64_t tiles = rb ? (N + FK_SMX_TILE - 1) / FK_SMX_TILE : N * ((S + B - 1) / B);                  \
    if (nthreads < 1 || N * C * S < 65536) nthreads = 1;                                                     \
    if (nthreads > tiles) nthreads = tiles > 0 ? (int)tiles : 1;                                             \
    double *part = (double *)calloc((size_t)nthreads, sizeof(double));                                      \
    const size_t per = (size_t)(2 * B * C + 2 * C + 10 * B); /* buf, tb: B x C; tq, cf: C; sc: 10 B */       \
    T *scratch = (T *)malloc((size_t)nthreads * per * sizeof(T));                                            \
    int64_t *labels = (int64_t *)malloc((size_t)nthreads * (size_t)(2 * B) * sizeof(int64_t)); /* yv, av */  \
    int *bad = (int *)calloc((size_t)nthreads, sizeof(int));                                                 \
    if (!part || !scratch || !labels || !bad) { free(part); free(scratch); free(labels); free(bad); return 2; }\
    _Pragma("omp parallel for num_threads(nthreads) schedule(static, 1)")                                    \
    for (int t = 0; t < nthreads; t++) {                                                                     \
        T *buf = scratch + (size_t)t * per;                                                                  \
        int64_t *yv = labels + (size_t)t * (size_t)(2 * B);                                                  \
        part[t] = fk_smx_part_##SUF(z, y, q, w, N, C, S, tiles * t / nthreads, tiles * (t + 1) / nthreads,   \
                                    ignore, (T)eps, (T)g, (T)scale, loss_out, grad, buf, buf + B * C,        \
                                    buf + 2 * B * C, buf + 2 * B * C + C, buf + 2 * B * C + 2 * C, yv, yv + B, \
                                    &bad[t]);                                                                \
    }                                                                                                        \
    double s = 0.0;                                                                                          \
    int any_bad = 0;                                                                                         \
    for (int t = 0; t < nthreads; t++) { s += part[t]; any_bad |= bad[t]; }                                  \
    free(part);                                                                                              \
    free(scratch);                                                                                           \
    free(labels);                                                                                            \
    free(bad);                                                                                               \
    *sum_out = s;                                                                                            \
    return any_bad ? 3 : 0;                                                                                  \
}

FK_SOFTMAX_DEFINE(float, f32, expf, logf, log1pf)
FK_SOFTMAX_DEFINE(double, f64, exp, log, log1p)

/* ---- Varifocal and Distribution Focal Loss ------------------------------------------------------
 * The maths is focalkit/core/quality.py's varifocal / distribution_focal.
 *   VFL: L = w B, w = l w+ + (1-l) a s(x)^g, B = BCE(x, q), w+ = q (iou_weighted) or 1, l = labels or
 *        [q > 0]; L' = w B' + (1-l) g s(-x) a s(x)^g B, s(x)^g = exp(g lp) (p^2 at g = 2).
 *   DFL: per row of C = n+1 bins, y clamped into [0, n], i = min(floor y, n-1):
 *        L = logsumexp(z) - (i+1-y) z_i - (y-i) z_{i+1},  dL/dz = softmax(z) - two-hot; NaN y: a NaN row.
 * Loss and gradient (times scale) in one pass; float64 sum, one partial per thread.
 */
#define FK_DFL_BINS 64 /* DFL rows of up to this many bins take the blocked loop */
#define FK_DFL_ROWS 16 /* rows per block there: one vector lane each */
#define FK_QUALITY_DEFINE(T, SUF, EXP, LOG, LOG1P)                                                           \
FK_INLINE double fk_vfl_range_##SUF(const T *x, const T *q, const T *lab, const T *w, int64_t lo, int64_t hi, \
        T alpha, T g, int iou, T scale, T *loss_out, T *grad_out, const int HAS_LAB, const int HAS_W,           \
        const int STORE, const int G2) {                                                                     \
    double acc = 0.0;                                                                                        \
    _Pragma("omp simd reduction(+:acc)")                                                                     \
    for (int64_t i = lo; i < hi; i++) {                                                                      \
        const T xi = x[i], qi = q[i];                                                                        \
        const T e = EXP(xi < 0 ? xi : -xi);                                                                  \
        const T sp = LOG1P(e);                                                                               \
        const T lp = (xi < 0 ? xi : (T)0) - sp, ln = (xi > 0 ? -xi : (T)0) - sp;                             \
        const T r = 1 / (1 + e), er = e * r;                                                                 \
        const T p = xi < 0 ? er : r, qq = xi < 0 ? r : er;                                                   \
        const T bce = -(qi * lp + (1 - qi) * ln), dbce = (1 - qi) * p - qi * qq;                            \
        const T m = G2 ? p * p : EXP(g * lp);                                                                \
        const T wneg = alpha * (g == 0 ? (T)1 : m), wpos = iou ? qi : (T)1;                                  \
        T neg, wt;                                                                                           \
        if (HAS_LAB) {                                                                                       \
            neg = 1 - lab[i];                                                                                \
            wt = lab[i] * wpos + neg * wneg;                                                                 \
        } else {                                                                                             \
            const int is_neg = !(qi > 0);                                                                    \
            neg = is_neg ? (T)1 : (T)0;                                                                      \
            wt = is_neg ? wneg : wpos;                                                                       \
        }                                                                                                    \
        T loss = wt * bce, grad = wt * dbce + neg * g * qq * wneg * bce;                                     \
        FK_ELEMENT_OUT(i)                                                                                    \
    }                                                                                                        \
    return acc;                                                                                              \
}                                                                                                            \
                                                                                                             \
FK_CLONES static double fk_vfl_dispatch_##SUF(const T *x, const T *q, const T *lab, const T *w, int64_t lo,  \
        int64_t hi, T alpha, T g, int iou, T scale, T *loss_out, T *grad_out) {                              \
    const int sel = (lab != 0) | (w != 0) << 1 | (loss_out != 0) << 2 | (g == 2) << 3;                       \
    switch (sel) {                                                                                           \
    FK_VFL_CASES(SUF, 0) FK_VFL_CASES(SUF, 8)                                                                \
    }                                                                                                        \
    return 0.0;                                                                                              \
}                                                                                                            \
                                                                                                             \
/* labels (the positives' weights l) and w may be NULL; iou: positives weighted by q (else by 1).       */  \
int fk_varifocal_##SUF(const T *x, const T *q, const T *lab, const T *w, int64_t n, double alpha, double g,  \
        int iou, double scale, T *loss_out, T *grad_out, int nthreads, double *sum_out) {                    \
    *sum_out = 0.0;                                                                                          \
    if (n == 0) return 0; /* an empty tensor may have no data pointer */                                     \
    if (n < 0 || !x || !q || !grad_out) return 1;                                                            \
    if (nthreads < 1 || n < 65536) nthreads = 1;                                                             \
    FK_THREAD_SUM(fk_vfl_dispatch_##SUF(x, q, lab, w, n * t / nthreads, n * (t + 1) / nthreads, (T)alpha, (T)g,\
                                        iou, (T)scale, loss_out, grad_out))                                  \
}                                                                                                            \
                                                                                                             \
FK_INLINE double fk_dfl_rows_##SUF(const T *z, const T *y, const T *w, int64_t r0, int64_t r1, int64_t C,     \
        T scale, T *loss_out, T *grad, const int HAS_W, const int STORE) {                                   \
    double acc = 0.0;                                                                                        \
    const int64_t n = C - 1;                                                                                 \
    for (int64_t r = r0; r < r1; r++) {                                                                      \
        const T *zr = z + r * C;                                                                             \
        T *gr = grad + r * C;                                                                                \
        T m = -INFINITY, s = 0;                                                                              \
        _Pragma("omp simd reduction(max:m)")                                                                 \
        for (int64_t k = 0; k < C; k++) m = zr[k] > m ? zr[k] : m;                                           \
        _Pragma("omp simd reduction(+:s)")                                                                   \
        for (int64_t k = 0; k < C; k++) {                                                                    \
            const T e = EXP(zr[k] - m);                                                                      \
            gr[k] = e;                                                                                       \
            s += e;                                                                                          \
        }                                                                                                    \
        const T yi = y[r];                                                                                   \
        const int nan = yi != yi;                                                                            \
        T yc = nan ? (T)0 : yi;                                                                              \
        yc = yc < 0 ? (T)0 : yc > (T)n ? (T)n : yc;                                                          \
        int64_t li = (int64_t)yc; /* floor: yc >= 0 */                                                       \
        if (li > n - 1) li = n - 1;                                                                          \
        const T wl = nan ? yi : (T)li + 1 - yc, wr = yc - (T)li;                                             \
        const T wt = HAS_W ? w[r] : (T)1;                                                                    \
        const T loss = wt * (m + LOG(s) - wl * zr[li] - wr * zr[li + 1]);                                    \
        const T sc = wt * scale, inv = sc / s;                                                               \
        _Pragma("omp simd")                                                                                  \
        for (int64_t k = 0; k < C; k++) gr[k] = nan ? (T)NAN : gr[k] * inv;                                  \
        gr[li] -= wl * sc;                                                                                   \
        gr[li + 1] -= wr * sc;                                                                               \
        if (STORE) loss_out[r] = loss;                                                                       \
        acc += (double)loss;                                                                                 \
    }                                                                                                        \
    return acc;                                                                                              \
}                                                                                                            \
                                                                                                             \
FK_INLINE double fk_dfl_block_##SUF(const T *z, const T *y, const T *w, int64_t r0, int64_t r1, int64_t C,   \
        T scale, T *loss_out, T *grad, const int HAS_W, const int STORE) {                                   \
    /* Up to FK_DFL_BINS bins: FK_DFL_ROWS rows at a time, transposed into buf (bin-major), so that the      \
     * max, exp, sum and scaling run across rows, one row a vector lane, with no horizontal reduction */     \
    double acc = 0.0;                                                                                        \
    const int64_t n = C - 1;                                                                                 \
    T buf[FK_DFL_BINS * FK_DFL_ROWS], m[FK_DFL_ROWS], s[FK_DFL_ROWS], lse[FK_DFL_ROWS], wt[FK_DFL_ROWS];     \
    for (int64_t b0 = r0; b0 < r1; b0 += FK_DFL_ROWS) {                                                      \
        const int64_t nb = r1 - b0 < FK_DFL_ROWS ? r1 - b0 : FK_DFL_ROWS;                                    \
        const T *zb = z + b0 * C;                                                                            \
        T *gb = grad + b0 * C;                                                                               \
        for (int64_t j = 0; j < FK_DFL_ROWS; j++) /* rows past the end: zeros, computed and dropped */       \
            for (int64_t k = 0; k < C; k++) buf[k * FK_DFL_ROWS + j] = j < nb ? zb[j * C + k] : (T)0;        \
        _Pragma("omp simd")                                                                                  \
        for (int64_t j = 0; j < FK_DFL_ROWS; j++) {                                                          \
            m[j] = buf[j];                                                                                   \
            s[j] = 0;                                                                                        \
            wt[j] = HAS_W && j < nb ? w[b0 + j] : (T)1;                                                      \
        }                                                                                                    \
        for (int64_t k = 1; k < C; k++) {                                                                    \
            _Pragma("omp simd")                                                                              \
            for (int64_t j = 0; j < FK_DFL_ROWS; j++) m[j] = buf[k * FK_DFL_ROWS + j] > m[j] ? buf[k * FK_DFL_ROWS + j] : m[j];\
        }                                                                                                    \
        for (int64_t k = 0; k < C; k++) {                                                                    \
            _Pragma("omp simd")                                                                              \
            for (int64_t j = 0; j < FK_DFL_ROWS; j++) {                                                      \
                const T e = EXP(buf[k * FK_DFL_ROWS + j] - m[j]);                                            \
                buf[k * FK_DFL_ROWS + j] = e;                                                                \
                s[j] += e;                                                                                   \
            }                                                                                                \
        }                                                                                                    \
        _Pragma("omp simd")                                                                                  \
        for (int64_t j = 0; j < FK_DFL_ROWS; j++) {                                                          \
            lse[j] = m[j] + LOG(s[j]);                                                                       \
            s[j] = wt[j] * scale / s[j];                                                                     \
        }                                                                                                    \
        for (int64_t k = 0; k < C; k++) {                                                                    \
            _Pragma("omp simd")                                                                              \
            for (int64_t j = 0; j < FK_DFL_ROWS; j++) buf[k * FK_DFL_ROWS + j] *= s[j];                      \
        }                                                                                                    \
        for (int64_t j = 0; j < nb; j++)                                                                     \
            for (int64_t k = 0; k < C; k++) gb[j * C + k] = buf[k * FK_DFL_ROWS + j];                        \
        for (int64_t j = 0; j < nb; j++) {                                                                   \
            const T yi = y[b0 + j];                                                                          \
            const int nan = yi != yi;                                                                        \
            T yc = nan ? (T)0 : yi;                                                                          \
            yc = yc < 0 ? (T)0 : yc > (T)n ? (T)n : yc;                                                      \
            int64_t li = (int64_t)yc; /* floor: yc >= 0 */                                                   \
            if (li > n - 1) li = n - 1;                                                                      \
            const T wl = nan ? yi : (T)li + 1 - yc, wr = yc - (T)li, sc = wt[j] * scale;                     \
            const T loss = wt[j] * (lse[j] - wl * zb[j * C + li] - wr * zb[j * C + li + 1]);                 \
            T *gr = gb + j * C;                                                                              \
            gr[li] -= wl * sc;                                                                               \
            gr[li + 1] -= wr * sc;                                                                           \
            if (nan)                                                                                         \
                for (int64_t k = 0; k < C; k++) gr[k] = (T)NAN;                                              \
            if (STORE) loss_out[b0 + j] = loss;                                                              \
            acc += (double)loss;                                                                             \
        }                                                                                                    \
    }                                                                                                        \
    return acc;                                                                                              \
}                                                                                                            \
                                                                                                             \
FK_CLONES static double fk_dfl_dispatch_##SUF(const T *z, const T *y, const T *w, int64_t r0, int64_t r1,     \
        int64_t C, T scale, T *loss_out, T *grad) {                                                          \
    if (C <= FK_DFL_BINS) { /* the usual 16 / 17 bins */                                                     \
        if (w && loss_out) return fk_dfl_block_##SUF(z, y, w, r0, r1, C, scale, loss_out, grad, 1, 1);       \
        if (w) return fk_dfl_block_##SUF(z, y, w, r0, r1, C, scale, loss_out, grad, 1, 0);                   \
        if (loss_out) return fk_dfl_block_##SUF(z, y, w, r0, r1, C, scale, loss_out, grad, 0, 1);            \
        return fk_dfl_block_##SUF(z, y, w, r0, r1, C, scale, loss_out, grad, 0, 0);                          \
    }                                                                                                        \
    if (w && loss_out) return fk_dfl_rows_##SUF(z, y, w, r0, r1, C, scale, loss_out, grad, 1, 1);            \
    if (w) return fk_dfl_rows_##SUF(z, y, w, r0, r1, C, scale, loss_out, grad, 1, 0);                        \
    if (loss_out) return fk_dfl_rows_##SUF(z, y, w, r0, r1, C, scale, loss_out, grad, 0, 1);                 \
    return fk_dfl_rows_##SUF(z, y, w, r0, r1, C, scale, loss_out, grad, 0, 0);                               \
}                                                                                                            \
                                                                                                             \
/* z: (N, C) logits over C = n+1 >= 2 bins, y: (N,) distances in bin units, w: (N,) or NULL. */              \
int fk_dfl_##SUF(const T *z, const T *y, const T *w, int64_t N, int64_t C, double scale, T *loss_out,         \
        T *grad, int nthreads, double *sum_out) {                                                            \
    *sum_out = 0.0;                                                                                          \
    if (N == 0) return 0; /* an empty tensor may have no data pointer */                                     \
    if (N < 0 || C < 2 || !z || !y || !grad) return 1;                                                       \
    if (nthreads < 1 || N * C < 65536) nthreads = 1;                                                         \
    FK_THREAD_SUM(fk_dfl_dispatch_##SUF(z, y, w, N * t / nthreads, N * (t + 1) / nthreads, C, (T)scale, loss_out,\
                                        grad))                                                               \
}

/* fk_vfl_dispatch's cases: bit 0 labels, bit 1 weight, bit 2 store, bit 3 gamma = 2 (G bit given). */
#define FK_VFL_CASE(SUF, S)                                                                                  \
    case S: return fk_vfl_range_##SUF(x, q, lab, w, lo, hi, alpha, g, iou, scale, loss_out, grad_out,        \
                                      (S) & 1, ((S) >> 1) & 1, ((S) >> 2) & 1, ((S) >> 3) & 1);
#define FK_VFL_CASES(SUF, G) FK_VFL_CASE(SUF, (G) + 0) FK_VFL_CASE(SUF, (G) + 1) FK_VFL_CASE(SUF, (G) + 2)     \
    FK_VFL_CASE(SUF, (G) + 3) FK_VFL_CASE(SUF, (G) + 4) FK_VFL_CASE(SUF, (G) + 5) FK_VFL_CASE(SUF, (G) + 6)   \
    FK_VFL_CASE(SUF, (G) + 7)

FK_QUALITY_DEFINE(float, f32, expf, logf, log1pf)
FK_QUALITY_DEFINE(double, f64, exp, log, log1p)

/* ---- GBDT objectives: gradient and Hessian per raw score (float64), for the torch-free adapters ------
 * The maths is focalkit/core/sigmoid.py's sigmoid_focal_hard / sigmoid_focal_linear (hessian=True) and
 * core/softmax.py's softmax_focal_hard / softmax_focal_hard_hess_diag; tests/adapters compare them.
 * Every Hessian is floored at `floor` > 0 (a tree's Newton step needs a positive denominator).
 *   hard y:  t = 2y-1, lp = log s(t x), q = s(-t x), m = q^g,
 *            L = -a_t m lp,  L' = -t a_t m (q - g p lp),  L'' = a_t p m ((2g+1) q + g (q - g p) lp)
 *   soft y (the linear form): y w+ F+(x) + (1-y) w- F-(x), F- (x) = F+(-x).
 */
static inline void fk_bin_terms(double x, double g, double *lp, double *lq, double *p, double *q) {
    const double e = exp(-fabs(x)), sp = log1p(e);
    *lp = (x < 0 ? x : 0.0) - sp;  /* log s(x)  */
    *lq = (x > 0 ? -x : 0.0) - sp; /* log s(-x) */
    const double r = 1 / (1 + e), er = e * r;
    *p = x < 0 ? er : r;
    *q = x < 0 ? r : er;
    (void)g;
}

/* F+(x) = -(1-p)^g log p: value, first and second derivative */
static inline void fk_fplus(double lp, double lq, double p, double q, double g, double *f, double *d1, double *d2) {
    const double m = g == 0 ? 1.0 : exp(g * lq);
    *f = -m * lp;
    *d1 = -m * (q - g * p * lp);
    *d2 = p * m * ((2 * g + 1) * q + g * (q - g * p) * lp);
}

/* Hard labels: the one live term, F+(t x) with t = 2y - 1, branch-free so that it vectorises. */
FK_INLINE void fk_gbdt_hard_range(const double *x, const double *y, const double *w, int64_t lo, int64_t hi,
                                  double g, double apos, double aneg, double floor, double *loss, double *grad,
                                  double *hess, const int G2, const int HAS_W, const int STORE_L, const int GH) {
    _Pragma("omp simd")
    for (int64_t i = lo; i < hi; i++) {
        const double yi = y[i], t = 2 * yi - 1, xt = t * x[i];
        const double e = exp(xt < 0 ? xt : -xt), sp = log1p(e);
        const double lp = (xt < 0 ? xt : 0.0) - sp, lq = (xt > 0 ? -xt : 0.0) - sp;
        const double r = 1 / (1 + e), er = e * r;
        const double p = xt < 0 ? er : r, q = xt < 0 ? r : er;
        const double m = G2 ? q * q : exp(g * lq);
        const double at = (yi * apos + (1 - yi) * aneg) * (HAS_W ? w[i] : 1.0);
        if (STORE_L) loss[i] = -at * m * lp;
        if (GH) {
            grad[i] = -t * at * m * (q - g * p * lp);
            const double h = at * p * m * ((2 * g + 1) * q + g * (q - g * p) * lp);
            hess[i] = h > floor ? h : floor;
        }
    }
}

/* Soft labels (the linear form): both terms. */
FK_INLINE void fk_gbdt_soft_range(const double *x, const double *y, const double *w, int64_t lo, int64_t hi,
                                  double g, double apos, double aneg, double floor, double *loss, double *grad,
                                  double *hess) {
    for (int64_t i = lo; i < hi; i++) {
        const double yi = y[i];
        double lp, lq, p, q, fp, dp, hp, fn, dn, hn;
        fk_bin_terms(x[i], g, &lp, &lq, &p, &q);
        fk_fplus(lp, lq, p, q, g, &fp, &dp, &hp);        /* the positive term at x */
        fk_fplus(lq, lp, q, p, g, &fn, &dn, &hn);        /* the negative term: F+(-x), d/dx flips sign */
        const double wp = yi * apos, wn = (1 - yi) * aneg, wi = w ? w[i] : 1.0;
        if (loss) loss[i] = wi * (wp * fp + wn * fn);
        if (grad) grad[i] = wi * (wp * dp - wn * dn);
        if (hess) { const double h = wi * (wp * hp + wn * hn); hess[i] = h > floor ? h : floor; }
    }
}

#define FK_GBDT_HARD(G2, HW, SL, GH) fk_gbdt_hard_range(x, y, w, lo, hi, g, apos, aneg, floor, loss, grad, hess, \
                                                        G2, HW, SL, GH)

/* One thread's rows, compiled for AVX-512, AVX2 and the baseline (libmvec's exp / log1p vectorise). */
FK_CLONES static void fk_gbdt_binary_part(const double *x, const double *y, const double *w, int64_t lo, int64_t hi,
                                          double g, double apos, double aneg, double floor, double *loss,
                                          double *grad, double *hess, int soft) {
    const int G2 = g == 2, HW = w != 0, SL = loss != 0, GH = grad != 0;
    if (soft) fk_gbdt_soft_range(x, y, w, lo, hi, g, apos, aneg, floor, loss, grad, hess);
    else if (GH && !SL) {
        if (G2 && HW) FK_GBDT_HARD(1, 1, 0, 1);
        else if (G2) FK_GBDT_HARD(1, 0, 0, 1);
        else if (HW) FK_GBDT_HARD(0, 1, 0, 1);
        else FK_GBDT_HARD(0, 0, 0, 1);
    } else {
        if (G2 && HW) FK_GBDT_HARD(1, 1, SL, GH);
        else if (G2) FK_GBDT_HARD(1, 0, SL, GH);
        else if (HW) FK_GBDT_HARD(0, 1, SL, GH);
        else FK_GBDT_HARD(0, 0, SL, GH);
    }
}

/* Labels outside [0, 1] (or NaN): 3, nothing computed. All labels 0/1: the one-term loop. */
int fk_gbdt_binary_f64(const double *x, const double *y, const double *w, int64_t n, double g, double apos,
                       double aneg, double floor, double *loss, double *grad, double *hess, int nthreads) {
    if (n < 0 || !x || !y || (grad == 0) != (hess == 0)) return 1;
    if (nthreads < 1 || n < 65536) nthreads = 1;
    int64_t bad = 0, soft = 0;
    if (nthreads == 1) { /* no OpenMP region at all: small blocks (CatBoost's) called from other threads */
        for (int64_t i = 0; i < n; i++) {
            bad += !(y[i] >= 0 && y[i] <= 1);
            soft += (y[i] != 0) & (y[i] != 1);
        }
        if (bad) return 3;
        fk_gbdt_binary_part(x, y, w, 0, n, g, apos, aneg, floor, loss, grad, hess, soft != 0);
        return 0;
    }
    _Pragma("omp parallel for simd num_threads(nthreads) reduction(+:bad, soft)")
    for (int64_t i = 0; i < n; i++) {
        bad += !(y[i] >= 0 && y[i] <= 1);
        soft += (y[i] != 0) & (y[i] != 1);
    }
    if (bad) return 3;
    _Pragma("omp parallel num_threads(nthreads)")
    {
        const int t = omp_get_thread_num(), nt = omp_get_num_threads();
        fk_gbdt_binary_part(x, y, w, n * t / nt, n * (t + 1) / nt, g, apos, aneg, floor, loss, grad, hess,
                            soft != 0);
    }
    return 0;
}

/* CatBoost's calc_ders_range: one small block, one thread, no OpenMP region; labels float64 or float32
 * (y_f32); out2 is (n, 2) row-major: minus the gradient, minus the floored Hessian (CatBoost maximises).
 * Labels outside [0, 1] (or NaN): 3, nothing written. Chunks of 512 through the vectorised loops. */
int fk_gbdt_binary_ders_f64(const double *x, const void *y, int y_f32, const double *w, int64_t n, double g,
                            double apos, double aneg, double floor, double *out2) {
    if (n < 0 || !x || !y || !out2) return 1;
    double yb[512], gb[512], hb[512];
    for (int64_t s0 = 0; s0 < n; s0 += 512) {
        const int64_t m = n - s0 < 512 ? n - s0 : 512;
        int64_t bad = 0, soft = 0;
        for (int64_t i = 0; i < m; i++) {
            const double yi = y_f32 ? (double)((const float *)y)[s0 + i] : ((const double *)y)[s0 + i];
            yb[i] = yi;
            bad += !(yi >= 0 && yi <= 1);
            soft += (yi != 0) & (yi != 1);
        }
        if (bad) return 3;
        fk_gbdt_binary_part(x + s0, yb, w ? w + s0 : 0, 0, m, g, apos, aneg, floor, 0, gb, hb, soft != 0);
        for (int64_t i = 0; i < m; i++) {
            out2[2 * (s0 + i)] = -gb[i];
            out2[2 * (s0 + i) + 1] = -hb[i];
        }
    }
    return 0;
}

/* Softmax, hard labels y in [0, K), per-row coefficient c (class weight times sample weight):
 *   L = c u^g (-log p_y),  dL/dz = c K (p - e_y),  K = u^g (1 + g psi),  u = 1 - p_y,  psi = -p_y log p_y / u
 *   d2L/dz_j^2 = c [g p_y r_j^2 u^g (u (2 + log p_y) - (g-1) p_y log p_y) + K p_j (1 - p_j)],
 *   r_j = p_j / u (j != y), r_y = -1. */
int fk_gbdt_softmax_f64(const double *z, const int64_t *y, const double *c, int64_t n, int64_t K, double g,
                        double floor, double *loss, double *grad, double *hess, int nthreads) {
    if (n < 0 || K < 2 || !z || !y) return 1;
    if (nthreads < 1 || n * K < 65536) nthreads = 1;
    int bad = 0;
    _Pragma("omp parallel for num_threads(nthreads) schedule(static) reduction(|:bad)")
    for (int64_t i = 0; i < n; i++) {
        const double *zi = z + i * K;
        const int64_t yi = y[i];
        if (yi < 0 || yi >= K) { bad = 1; continue; }
        double m = -INFINITY;
        for (int64_t k = 0; k < K; k++) m = zi[k] > m ? zi[k] : m;
        double rest = 0;
        for (int64_t k = 0; k < K; k++) if (k != yi) rest += exp(zi[k] - m);
        const double ey = exp(zi[yi] - m), s = rest + ey, ls = log(s);
        double logp = zi[yi] - m - ls;
        const double u = rest / s;
        if (logp > -FK_LN2) logp = log1p(-u);
        const double py = exp(logp), psi = u > 0 ? -py * logp / u : 0.0;
        const double mod = g == 0 ? 1.0 : exp(g * (log(rest) - ls));
        const double ci = c ? c[i] : 1.0, Kf = mod * (1 + g * psi);
        const double curv = g * py * mod * (u * (2 + logp) - (g - 1) * py * logp);
        if (loss) loss[i] = ci * mod * -logp;
        for (int64_t k = 0; k < K; k++) {
            const double pk = k == yi ? py : exp(zi[k] - m) / s;
            const double rk = k == yi ? -1.0 : (rest > 0 ? exp(zi[k] - m) / rest : 0.0);
            if (grad) grad[i * K + k] = k == yi ? -ci * Kf * u : ci * Kf * pk;
            if (hess) {
                const double h = ci * (curv * rk * rk + Kf * pk * (k == yi ? u : 1 - pk));
                hess[i * K + k] = h > floor ? h : floor;
            }
        }
    }
    return bad ? 3 : 0;
}

/* ---- class indices, read once for the Python checks ----------------------------------------------
 * What `_checks.labels_in_range` and the mean's denominator of the softmax losses read on the CPU, in
 * one pass each instead of several tensor ops (a call's host cost on small inputs, benchmarks/bench_host).
 * The passes are written so that they vectorise: an OR (or a sum of 0/1 int64 values) of comparisons
 * with no `!(flag & ...)` in them, a range as one unsigned comparison, and target_clones for the 64-bit
 * comparisons SSE2 lacks (a negated flag or SSE2 alone left them scalar: 1.2 ns a label, now 0.12). */

/* The position of the first of n indices outside [lo, hi] that is not `ignore` (has_ignore), or -1. */
FK_CLONES static int64_t fk_labels_any_bad(const int64_t *y, int64_t n, int64_t lo, int64_t hi, int64_t keep,
                                           int nthreads) {
    int64_t bad = 0;
    const uint64_t span = (uint64_t)hi - (uint64_t)lo; /* lo <= hi: the range's width, exact mod 2**64 */
    _Pragma("omp parallel for simd num_threads(nthreads) reduction(|:bad)")
    for (int64_t i = 0; i < n; i++) bad |= (int64_t)((uint64_t)y[i] - (uint64_t)lo > span) & (int64_t)(y[i] != keep);
    return bad;
}

int64_t fk_labels_first_bad(const int64_t *y, int64_t n, int64_t lo, int64_t hi, int64_t ignore, int has_ignore,
                            int nthreads) {
    if (nthreads < 1 || n < 65536) nthreads = 1;
    /* keep: the value spared; without an ignore index lo, which lies inside the range (an empty range, */
    /* lo > hi, goes straight to the scalar loop)                                                        */
    if (lo <= hi && !fk_labels_any_bad(y, n, lo, hi, has_ignore ? ignore : lo, nthreads)) return -1;
    for (int64_t i = 0; i < n; i++)
        if ((y[i] < lo || y[i] > hi) && !(has_ignore && y[i] == ignore)) return i;
    return -1;
}

FK_CLONES static int64_t fk_labels_count(const int64_t *y, int64_t n, int64_t C, int64_t skip, int nthreads) {
    int64_t count = 0;
    _Pragma("omp parallel for simd num_threads(nthreads) reduction(+:count)")
    for (int64_t i = 0; i < n; i++) count += (int64_t)((uint64_t)y[i] < (uint64_t)C) & (int64_t)(y[i] != skip);
    return count;
}

/* F.cross_entropy's mean denominator over n indices: how many lie in [0, C) and are not `ignore`
 * (has_ignore), or with w (C float32 or float64 values, w_f64) their summed weight w[y], as one count
 * per class summed in class order (exact counts; the same sum for every thread count). -1 if the counts
 * cannot be allocated. */
double fk_labels_weight(const int64_t *y, const void *w, int w_f64, int64_t n, int64_t C, int64_t ignore,
                        int has_ignore, int nthreads) {
    if (nthreads < 1 || n < 65536) nthreads = 1;
    if (C < 1) return 0.0; /* no class: nothing is counted */
    if (!w) /* skip: the ignore index, or -1, which no counted index equals */
        return (double)fk_labels_count(y, n, C, has_ignore ? ignore : -1, nthreads);
    int64_t *hist = (int64_t *)calloc((size_t)C, sizeof(int64_t));
    if (!hist) return -1.0;
    for (int64_t i = 0; i < n; i++)
        if (y[i] >= 0 && y[i] < C && !(has_ignore && y[i] == ignore)) hist[y[i]]++;
    double sum = 0.0;
    for (int64_t k = 0; k < C; k++)
        if (hist[k]) sum += (double)hist[k] * (w_f64 ? ((const double *)w)[k] : (double)((const float *)w)[k]);
    free(hist);
    return sum;
}

/* ---- float values in a range, read once for the Python checks -----------------------------------
 * What `_checks.in_unit_interval` (targets in [0, 1]) and `_checks.nonnegative` (weights >= 0) read on
 * the CPU for float32 / float64 tensors: the position of the first of n values outside [lo, hi] that is
 * not `allow` (has_allow), or -1. NaN is not outside: it propagates. lo, hi and allow are given rounded
 * to T (as a tensor's comparison with a Python number rounds it), or as infinities. */
#define FK_RANGE_SCAN(T, SUF)                                                                                \
FK_CLONES static int fk_range_any_bad_##SUF(const T *y, int64_t n, T l, T h, T a, int no_allow, int nthreads) { \
    int bad = 0;                                                                                             \
    _Pragma("omp parallel for simd num_threads(nthreads) reduction(|:bad)")                                  \
    for (int64_t i = 0; i < n; i++) bad |= ((y[i] < l) | (y[i] > h)) & ((y[i] != a) | no_allow);             \
    return bad;                                                                                              \
}                                                                                                            \
int64_t fk_range_first_bad_##SUF(const T *y, int64_t n, double lo, double hi, double allow, int has_allow,   \
                                 int nthreads) {                                                             \
    const T l = (T)lo, h = (T)hi, a = (T)allow;                                                              \
    if (nthreads < 1 || n < 65536) nthreads = 1;                                                             \
    if (!fk_range_any_bad_##SUF(y, n, l, h, a, !has_allow, nthreads)) return -1;                             \
    for (int64_t i = 0; i < n; i++)                                                                          \
        if ((y[i] < l || y[i] > h) && !(has_allow && y[i] == a)) return i;                                   \
    return -1; /* not reached */                                                                             \
}
FK_RANGE_SCAN(float, f32)
FK_RANGE_SCAN(double, f64)

int fk_abi_version(void) { return 18; }

/* Built by setuptools as an extension module but loaded with ctypes, never imported. */
void *PyInit__focal_native(void) { return 0; }
