/*
 * segaudit's compiled per-pixel kernels: the only code that touches every probability.
 *
 * Plain C functions called through ctypes (which releases the GIL, so worker threads
 * run them in parallel). The module init below exists only so that the shared object
 * is built and located like any extension module; it exports no Python functions.
 *
 * Layouts: pred_probs batches are (b, K, P) with P = H*W pixels per image (class
 * planes), or (b, P, K) for channels-last in the score kernels (strides say which).
 * Labels may be any integer type (see load_labels). "problems" is int64[4][2]: per
 * kind of malformed value, (count, first flat pixel index within the batch).
 *
 * Every reduction runs in a fixed order per image, so results never depend on how
 * images are grouped into batches or on how many workers run.
 *
 * Signed zeros: -0.0 is a probability of 0. Comparisons already treat it so; the scores
 * the kernels write (p[given label]) are normalised to +0.0, because their bit patterns
 * are histogram keys and cut keys (a -0.0 float32 has the sign bit set: read as an
 * unsigned key it would sort after every positive score).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Hot loops get an AVX2/FMA clone chosen at load time where the CPU has it. */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define HOT __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define HOT
#endif

#define EXPORT __attribute__((visibility("default")))
/* Helpers of the hot loops are inlined into them, so they share the loops' clones. */
#define INLINE static inline __attribute__((always_inline))

enum { NONFINITE = 0, NEGATIVE = 1, BAD_SUM = 2, BAD_LABEL = 3 };
enum { L_I8, L_U8, L_I16, L_U16, L_I32, L_U32, L_I64 };

#define F16_INF_BITS 0x7C00
#define F16_NEG_ZERO_BITS 0x8000

static inline void note(int64_t *problems, int kind, int64_t flat)
{
    if (problems[2 * kind] == 0)
        problems[2 * kind + 1] = flat;
    problems[2 * kind] += 1;
}

/* labels[start:start+n] of any integer type, as int64 (a vectorised conversion). */
INLINE void load_labels(const void *labels, int ltype, int64_t start, int64_t n, int64_t *out)
{
#define LOAD(T)                                                                                    \
    {                                                                                              \
        const T *src = (const T *)labels + start;                                                  \
        for (int64_t q = 0; q < n; q++)                                                            \
            out[q] = (int64_t)src[q];                                                              \
    }                                                                                              \
    break;
    switch (ltype) {
    case L_I8: LOAD(int8_t)
    case L_U8: LOAD(uint8_t)
    case L_I16: LOAD(int16_t)
    case L_U16: LOAD(uint16_t)
    case L_I32: LOAD(int32_t)
    case L_U32: LOAD(uint32_t)
    default: LOAD(int64_t)
    }
#undef LOAD
}

INLINE void store_pred(void *pred, int pred_wide, int64_t at, const int32_t *arg, int64_t n)
{
    if (pred_wide) {
        uint16_t *out = (uint16_t *)pred + at;
        for (int64_t q = 0; q < n; q++)
            out[q] = (uint16_t)arg[q];
    } else {
        uint8_t *out = (uint8_t *)pred + at;
        for (int64_t q = 0; q < n; q++)
            out[q] = (uint8_t)arg[q];
    }
}

/*
 * What a scan kernel adds up besides the per-pixel arrays (see segaudit.kernels.Summary):
 * per image the lowest score and the number of scored pixels (for the softmin), and,
 * when hist is not NULL, the histogram of the scores' top 16 bits up to bin hist_top
 * (higher scores are not counted) and the records of the mispredicted pixels (flat
 * index in the batch, predicted class, its probability, score, given label; classes in
 * pred's width), appended at "found".
 */
typedef struct {
    int64_t *hist;
    int64_t hist_top;
    int64_t *index;
    void *pred;
    void *pmax;
    void *s;
    void *label;
    int64_t found;
    double *low;
    int64_t *count;
} Summary;

/*
 * Each pixel's class slot, from labels[start:start+n] of any integer type: its label
 * where that is a class, else -1 (ignored or out of range). Returns whether any label
 * is out of range without being the ignore value. Labels up to 32 bits are compared in
 * 32-bit lanes (an ignore value outside that range matches none of them), wider ones
 * in 64-bit lanes; either way the loop is branch-free and vectorises.
 */
INLINE int load_slots(const void *labels, int ltype, int64_t start, int64_t n, int64_t K,
                      int64_t ignore, int has_ignore, int32_t *slot)
{
    int bad = 0;
#define SLOTS(T, W)                                                                                \
    {                                                                                              \
        const T *src = (const T *)labels + start;                                                  \
        int fits = (int64_t)(W)ignore == ignore;                                                   \
        W skip = (W)ignore, classes = (W)K, use_skip = has_ignore & fits; /* K < 2**16 */          \
        for (int64_t q = 0; q < n; q++) {                                                          \
            W l = (W)src[q];                                                                       \
            W is_class = (l >= 0) & (l < classes), ignored = use_skip & (l == skip);               \
            bad |= (int)(!is_class & !ignored);                                                    \
            slot[q] = is_class & !ignored ? (int32_t)l : -1;                                       \
        }                                                                                          \
    }                                                                                              \
    break;
    switch (ltype) {
    case L_I8: SLOTS(int8_t, int32_t)
    case L_U8: SLOTS(uint8_t, int32_t)
    case L_I16: SLOTS(int16_t, int32_t)
    case L_U16: SLOTS(uint16_t, int32_t)
    case L_I32: SLOTS(int32_t, int32_t)
    case L_U32: SLOTS(uint32_t, int64_t)
    default: SLOTS(int64_t, int64_t)
    }
#undef SLOTS
    return bad;
}

static void note_labels(const int64_t *lab, int64_t n, int64_t K, int64_t ignore, int has_ignore,
                        int64_t at, int64_t *problems)
{
    for (int64_t q = 0; q < n; q++)
        if (!(has_ignore && lab[q] == ignore) && (lab[q] < 0 || lab[q] >= K))
            note(problems, BAD_LABEL, at + q);
}

#define LANES 8

/* Where the run of equal slots starting at q ends: eight slots compared at a time. */
INLINE int64_t run_end(const int32_t *slot, int64_t q, int64_t n)
{
    int32_t l = slot[q];
    int64_t r = q + 1;
    for (; r + LANES <= n; r += LANES) {
        int32_t differ = 0;
        for (int j = 0; j < LANES; j++)
            differ |= slot[r + j] ^ l;
        if (differ)
            break;
    }
    while (r < n && slot[r] == l)
        r++;
    return r;
}

/* Sum (in float64) and minimum of a run of scores, in a fixed lane order that vectorises. */
#define DEFINE_RUN_TOTALS(NAME, T)                                                                 \
    INLINE void NAME(const T *v, int64_t n, double *sum, double *least)                            \
    {                                                                                              \
        double acc[LANES] = {0};                                                                   \
        T low[LANES];                                                                              \
        for (int j = 0; j < LANES; j++)                                                            \
            low[j] = (T)INFINITY;                                                                  \
        int64_t q = 0;                                                                             \
        for (; q + LANES <= n; q += LANES)                                                         \
            for (int j = 0; j < LANES; j++) {                                                      \
                T x = v[q + j];                                                                    \
                acc[j] += (double)x;                                                               \
                low[j] = x < low[j] ? x : low[j];                                                  \
            }                                                                                      \
        double total = 0.0, lowest = INFINITY;                                                     \
        for (; q < n; q++) {                                                                       \
            total += (double)v[q];                                                                 \
            lowest = (double)v[q] < lowest ? (double)v[q] : lowest;                                \
        }                                                                                          \
        for (int j = 0; j < LANES; j++) {                                                          \
            total += acc[j];                                                                       \
            lowest = (double)low[j] < lowest ? (double)low[j] : lowest;                            \
        }                                                                                          \
        *sum = total, *least = lowest;                                                             \
    }

/* One tile's share of an image's per-class sums and counts of the scores, and of its
 * lowest score and scored-pixel count. Labels come in runs; each run is one sum. */
#define DEFINE_TILE_TOTALS(NAME, T, RUN)                                                           \
    INLINE void NAME(const T *s, const int32_t *slot, int64_t n, double *class_sum,                \
                     int64_t *class_cnt, double *low, int64_t *count)                              \
    {                                                                                              \
        for (int64_t q = 0, r; q < n; q = r) {                                                     \
            int32_t l = slot[q];                                                                   \
            r = run_end(slot, q, n);                                                               \
            if (l < 0)                                                                             \
                continue;                                                                          \
            double sum, least;                                                                     \
            RUN(s + q, r - q, &sum, &least);                                                       \
            class_sum[l] += sum;                                                                   \
            class_cnt[l] += r - q;                                                                 \
            *count += r - q;                                                                       \
            *low = least < *low ? least : *low;                                                    \
        }                                                                                          \
    }

DEFINE_RUN_TOTALS(run_totals_f32, float)
DEFINE_RUN_TOTALS(run_totals_f64, double)
DEFINE_TILE_TOTALS(tile_totals_f32, float, run_totals_f32)
DEFINE_TILE_TOTALS(tile_totals_f64, double, run_totals_f64)

/* The summary's part of one tile: the histogram of the scores' top 16 bits and the
 * records of the mispredicted pixels (TOP: pixel q's top probability). Most pixels are
 * confident and right, so a vectorised first pass flags the pixels that count at all
 * (flag must hold n + 8 bytes), and the second skips unflagged ones eight at a time. */
#define SUMMARIZE_TILE(T, UINT, TOP)                                                               \
    {                                                                                              \
        int64_t *restrict hist = sm->hist, *restrict index = sm->index, r = sm->found;             \
        const UINT top_key = (UINT)sm->hist_top, shift = sizeof(UINT) * 8 - 16;                    \
        T *restrict rec_pmax = sm->pmax, *restrict rec_s = sm->s;                                  \
        for (int64_t q = 0; q < n; q++) {                                                          \
            UINT key;                                                                              \
            memcpy(&key, &out[q], sizeof key);                                                     \
            flag[q] = (slot[q] >= 0) & (((key >> shift) <= top_key) | (arg[q] != slot[q]));        \
        }                                                                                          \
        memset(flag + n, 0, 8);                                                                    \
        for (int64_t q8 = 0; q8 < n; q8 += 8) {                                                    \
            uint64_t any;                                                                          \
            memcpy(&any, flag + q8, sizeof any);                                                   \
            for (int64_t q = q8; any && q < q8 + 8 && q < n; q++) {                                \
                if (!flag[q])                                                                      \
                    continue;                                                                      \
                int32_t l = slot[q];                                                               \
                T value = out[q];                                                                  \
                UINT key;                                                                          \
                memcpy(&key, &value, sizeof key);                                                  \
                key >>= shift;                                                                     \
                if (key <= top_key)                                                                \
                    hist[key] += 1;                                                                \
                if (arg[q] != l) {                                                                 \
                    index[r] = at + q;                                                             \
                    if (pred_wide) {                                                               \
                        ((uint16_t *)sm->pred)[r] = (uint16_t)arg[q];                              \
                        ((uint16_t *)sm->label)[r] = (uint16_t)l;                                  \
                    } else {                                                                       \
                        ((uint8_t *)sm->pred)[r] = (uint8_t)arg[q];                                \
                        ((uint8_t *)sm->label)[r] = (uint8_t)l;                                    \
                    }                                                                              \
                    rec_pmax[r] = TOP;                                                             \
                    rec_s[r] = value;                                                              \
                    r++;                                                                           \
                }                                                                                  \
            }                                                                                      \
        }                                                                                          \
        sm->found = r;                                                                             \
    }

/* One class plane's value v for one pixel of class slot l: running sum, first maximum,
 * minimum, and the value of the pixel's own class, taken as v + 0: that turns -0.0 into
 * +0.0 and leaves every other value (NaN included) as it is, branch-free, so no score
 * a scan kernel writes is -0.0. */
#define PLANE_STEP(T, VALUE, K_INDEX)                                                              \
    {                                                                                              \
        T v = VALUE;                                                                               \
        sum += v;                                                                                  \
        a = v > top ? (int32_t)(K_INDEX) : a;                                                      \
        top = v > top ? v : top;                                                                   \
        least = v < least ? v : least;                                                             \
        own = l == (int32_t)(K_INDEX) ? v + (T)0 : own;                                            \
    }

/* Planes k .. k+NP-1 (NP = 1, 2, 4 or 8) of one tile folded into its running state in
 * one pass, branch-free so that it vectorises (the NP tests are compile-time constants). */
#define PLANES_PASS(T, NP)                                                                         \
    {                                                                                              \
        const T *p[8]; /* planes past NP alias plane k: never read, never out of bounds */         \
        for (int j = 0; j < 8; j++)                                                                \
            p[j] = img + (k + (j < NP ? j : 0)) * P + t0;                                          \
        const T *restrict p0 = p[0], *restrict p1 = p[1], *restrict p2 = p[2];                     \
        const T *restrict p3 = p[3], *restrict p4 = p[4], *restrict p5 = p[5];                     \
        const T *restrict p6 = p[6], *restrict p7 = p[7];                                          \
        for (int64_t q = 0; q < n; q++) {                                                          \
            T top = bst[q], least = lw[q], sum = tt[q], own = out[q];                              \
            int32_t a = ag[q], l = sl[q];                                                          \
            PLANE_STEP(T, p0[q], k)                                                                \
            if (NP > 1)                                                                            \
                PLANE_STEP(T, p1[q], k + 1)                                                        \
            if (NP > 2) {                                                                          \
                PLANE_STEP(T, p2[q], k + 2)                                                        \
                PLANE_STEP(T, p3[q], k + 3)                                                        \
            }                                                                                      \
            if (NP > 4) {                                                                          \
                PLANE_STEP(T, p4[q], k + 4)                                                        \
                PLANE_STEP(T, p5[q], k + 5)                                                        \
                PLANE_STEP(T, p6[q], k + 6)                                                        \
                PLANE_STEP(T, p7[q], k + 7)                                                        \
            }                                                                                      \
            bst[q] = top, lw[q] = least, tt[q] = sum, ag[q] = a, out[q] = own;                     \
        }                                                                                          \
    }

/* Whether any pixel of a tile has a non-finite or negative probability, or (with
 * check_sums) probabilities that do not sum to 1 within tol; branch-free. */
#define DEFINE_VALUES_BAD(NAME, T)                                                                 \
    INLINE int NAME(const T *tot, const T *low, int64_t n, int check_sums, double tol)             \
    {                                                                                              \
        int bad = 0;                                                                               \
        for (int64_t q = 0; q < n; q++) {                                                          \
            T total = tot[q];                                                                      \
            bad |= !(total - total == 0) | (low[q] < 0) |                                          \
                   (check_sums & (fabs((double)total - 1.0) > tol));                               \
        }                                                                                          \
        return bad;                                                                                \
    }

/* The same test pixel by pixel, noting each malformed one (only for tiles that have some). */
#define DEFINE_NOTE_VALUES(NAME, T)                                                                \
    static void NAME(const T *tot, const T *low, int64_t n, int check_sums, double tol,            \
                     int64_t at, int64_t *problems)                                                \
    {                                                                                              \
        for (int64_t q = 0; q < n; q++) {                                                          \
            T total = tot[q];                                                                      \
            if (!isfinite(total))                                                                  \
                note(problems, NONFINITE, at + q);                                                 \
            else if (low[q] < 0)                                                                   \
                note(problems, NEGATIVE, at + q);                                                  \
            else if (check_sums && fabs((double)total - 1.0) > tol)                                \
                note(problems, BAD_SUM, at + q);                                                   \
        }                                                                                          \
    }

DEFINE_VALUES_BAD(values_bad_f32, float)
DEFINE_VALUES_BAD(values_bad_f64, double)
DEFINE_NOTE_VALUES(note_values_f32, float)
DEFINE_NOTE_VALUES(note_values_f64, double)

/*
 * scan_f32 / scan_f64: per pixel the predicted class (first maximum) and the probability
 * of the given label (NaN where the label is ignored or invalid), plus per-image
 * per-class sums of the latter and the summary; counts malformed values so validation
 * costs no extra pass. Walks the class planes in tiles of pixels small enough that the
 * tile's running state stays in cache, picking each pixel's own class on the way, so
 * every probability is read exactly once.
 */
#define DEFINE_SCAN(NAME, T, UINT, SUFFIX)                                                         \
    EXPORT HOT int NAME(const T *probs, int64_t b, int64_t K, int64_t P, const void *labels,       \
                        int ltype, int64_t ignore, int has_ignore, double tol, int64_t tile,       \
                        int check_sums, void *pred, int pred_wide, T *s,                           \
                        double *class_sum, int64_t *class_cnt, int64_t *problems, Summary *sm)     \
    {                                                                                              \
        T *best = malloc(tile * sizeof(T)), *low = malloc(tile * sizeof(T));                       \
        T *tot = malloc(tile * sizeof(T));                                                         \
        int32_t *arg = malloc(tile * sizeof(int32_t)), *slot = malloc(tile * sizeof(int32_t));     \
        int64_t *lab = malloc(tile * sizeof(int64_t));                                             \
        uint8_t *flag = malloc(tile + 8);                                                          \
        if (!best || !low || !tot || !arg || !slot || !lab || !flag) {                             \
            free(best), free(low), free(tot), free(arg), free(slot), free(lab), free(flag);        \
            return -1;                                                                             \
        }                                                                                          \
        for (int64_t i = 0; i < b; i++) {                                                          \
            const T *img = probs + i * K * P;                                                      \
            sm->low[i] = INFINITY, sm->count[i] = 0;                                               \
            for (int64_t t0 = 0; t0 < P; t0 += tile) {                                             \
                int64_t n = P - t0 < tile ? P - t0 : tile, at = i * P + t0;                        \
                int labels_bad = load_slots(labels, ltype, at, n, K, ignore, has_ignore, slot);    \
                T *restrict bst = best, *restrict lw = low, *restrict tt = tot;                    \
                T *restrict out = s + at; /* the scores, picked plane by plane */                  \
                int32_t *restrict ag = arg;                                                        \
                const int32_t *restrict sl = slot;                                                 \
                const T *restrict plane = img + t0;                                                \
                for (int64_t q = 0; q < n; q++) {                                                  \
                    T v = plane[q];                                                                \
                    bst[q] = v, lw[q] = v, ag[q] = 0, tt[q] = v;                                   \
                    out[q] = sl[q] == 0 ? v + (T)0 : (T)NAN;                                       \
                }                                                                                  \
                int64_t k = 1; /* eight, four, two, then one plane per pass over the state */     \
                for (; k + 8 <= K; k += 8)                                                         \
                    PLANES_PASS(T, 8)                                                              \
                for (; k + 4 <= K; k += 4)                                                         \
                    PLANES_PASS(T, 4)                                                              \
                for (; k + 2 <= K; k += 2)                                                         \
                    PLANES_PASS(T, 2)                                                              \
                for (; k < K; k++)                                                                 \
                    PLANES_PASS(T, 1)                                                              \
                store_pred(pred, pred_wide, at, arg, n);                                           \
                if (values_bad_##SUFFIX(tot, low, n, check_sums, tol))                             \
                    note_values_##SUFFIX(tot, low, n, check_sums, tol, at, problems);              \
                if (labels_bad) {                                                                  \
                    load_labels(labels, ltype, at, n, lab);                                        \
                    note_labels(lab, n, K, ignore, has_ignore, at, problems);                      \
                }                                                                                  \
                tile_totals_##SUFFIX(out, slot, n, class_sum + i * K, class_cnt + i * K,           \
                                     sm->low + i, sm->count + i);                                  \
                if (sm->hist)                                                                      \
                    SUMMARIZE_TILE(T, UINT, best[q])                                               \
            }                                                                                      \
        }                                                                                          \
        free(best), free(low), free(tot), free(arg), free(slot), free(lab), free(flag);            \
        return 0;                                                                                  \
    }

DEFINE_SCAN(scan_f32, float, uint32_t, f32)
DEFINE_SCAN(scan_f64, double, uint64_t, f64)

static inline uint16_t half_bits(uint16_t v)
{
    return (uint16_t)(v & -(uint16_t)(v != F16_NEG_ZERO_BITS)); /* -0.0 reads as 0 */
}

/* Which problem a float16 pixel whose largest bit pattern is malformed has, in scan_f32's
 * order: any NaN or infinity (of either sign) first, then any negative value. Re-reads
 * the pixel's K values: only for tiles that hold such a pixel (the input is refused). */
static int half_problem(const uint16_t *pixel, int64_t K, int64_t P)
{
    int negative = 0;
    for (int64_t k = 0; k < K; k++) {
        uint16_t v = half_bits(pixel[k * P]);
        if ((v & 0x7FFF) >= F16_INF_BITS)
            return NONFINITE;
        negative |= v >= F16_NEG_ZERO_BITS;
    }
    return negative ? NEGATIVE : -1;
}

/* One float16 plane's bits VALUE for one pixel of class slot l: the running float32 sum
 * (bits shifted into a float32 and rescaled by 2**112: exact for normals, subnormals and
 * zero), first maximum and largest pattern (any malformed one is larger than every
 * valid one), and the own-class bits. Branch-free, so that it vectorises. */
#define HALF_STEP(VALUE, K_INDEX)                                                                  \
    {                                                                                              \
        uint32_t v = half_bits(VALUE), shifted = (v & 0x7FFF) << 13;                               \
        float value;                                                                               \
        memcpy(&value, &shifted, sizeof value);                                                    \
        sum += value * rescale;                                                                    \
        a = v > top ? (int32_t)(K_INDEX) : a;                                                      \
        top = v > top ? v : top;                                                                   \
        high = v > high ? v : high;                                                                \
        own = l == (int32_t)(K_INDEX) ? v : own;                                                   \
    }

/* Planes k .. k+NP-1 of one tile folded into its running state in one pass, as
 * PLANES_PASS does for float32 (the state stays in registers across the NP planes; each
 * pixel's sum still adds its planes in class order, so results do not change). */
#define HALF_PLANES_PASS(NP)                                                                       \
    {                                                                                              \
        const uint16_t *p[8]; /* planes past NP alias plane k: never read */                      \
        for (int j = 0; j < 8; j++)                                                                \
            p[j] = img + (k + (j < NP ? j : 0)) * P + t0;                                          \
        const uint16_t *restrict p0 = p[0], *restrict p1 = p[1], *restrict p2 = p[2];              \
        const uint16_t *restrict p3 = p[3], *restrict p4 = p[4], *restrict p5 = p[5];              \
        const uint16_t *restrict p6 = p[6], *restrict p7 = p[7];                                   \
        for (int64_t q = 0; q < n; q++) {                                                          \
            uint32_t top = bst[q], high = wst[q], own = ow[q];                                     \
            float sum = tt[q];                                                                     \
            int32_t a = ag[q], l = sl[q];                                                          \
            HALF_STEP(p0[q], k)                                                                    \
            if (NP > 1)                                                                            \
                HALF_STEP(p1[q], k + 1)                                                            \
            if (NP > 2) {                                                                          \
                HALF_STEP(p2[q], k + 2)                                                            \
                HALF_STEP(p3[q], k + 3)                                                            \
            }                                                                                      \
            if (NP > 4) {                                                                          \
                HALF_STEP(p4[q], k + 4)                                                            \
                HALF_STEP(p5[q], k + 5)                                                            \
                HALF_STEP(p6[q], k + 6)                                                            \
                HALF_STEP(p7[q], k + 7)                                                            \
            }                                                                                      \
            bst[q] = (uint16_t)top, wst[q] = (uint16_t)high, ow[q] = (uint16_t)own;                \
            tt[q] = sum, ag[q] = a;                                                                \
        }                                                                                          \
    }

/*
 * The float16 twin of scan_f32, on the raw bits. Non-negative float16 values order
 * like uint16, so maxima are integer compares; "table" maps bits to float32 values
 * (all exact). Any pattern with the sign bit (other than -0.0) or an all-ones exponent
 * is malformed. Sums are float32: float16 -> float32 by shifting the bits into place
 * and rescaling by 2**112 (exact for normals, subnormals and zero).
 */
EXPORT HOT int scan_f16(const uint16_t *bits, const float *table, int64_t b, int64_t K, int64_t P,
                        const void *labels, int ltype, int64_t ignore, int has_ignore, double tol,
                        int64_t tile, int check_sums, void *pred, int pred_wide, float *s,
                        double *class_sum, int64_t *class_cnt, int64_t *problems, Summary *sm)
{
    uint16_t *best = malloc(tile * sizeof(uint16_t)), *worst = malloc(tile * sizeof(uint16_t));
    uint16_t *own = malloc(tile * sizeof(uint16_t));
    float *tot = malloc(tile * sizeof(float));
    int32_t *arg = malloc(tile * sizeof(int32_t)), *slot = malloc(tile * sizeof(int32_t));
    int64_t *lab = malloc(tile * sizeof(int64_t));
    uint8_t *flag = malloc(tile + 8);
    if (!best || !worst || !own || !tot || !arg || !slot || !lab || !flag) {
        free(best), free(worst), free(own), free(tot), free(arg), free(slot), free(lab), free(flag);
        return -1;
    }
    const float rescale = 0x1p112f;
    for (int64_t i = 0; i < b; i++) {
        const uint16_t *img = bits + i * K * P;
        sm->low[i] = INFINITY, sm->count[i] = 0;
        for (int64_t t0 = 0; t0 < P; t0 += tile) {
            int64_t n = P - t0 < tile ? P - t0 : tile, at = i * P + t0;
            int labels_bad = load_slots(labels, ltype, at, n, K, ignore, has_ignore, slot);
            uint16_t *restrict bst = best, *restrict wst = worst, *restrict ow = own;
            float *restrict tt = tot;
            int32_t *restrict ag = arg;
            const int32_t *restrict sl = slot;
            const uint16_t *restrict plane = img + t0;
            for (int64_t q = 0; q < n; q++) {
                uint16_t v = half_bits(plane[q]);
                bst[q] = v, wst[q] = v, ag[q] = 0, tt[q] = table[v], ow[q] = v;
            }
            int64_t k = 1; /* eight, four, two, then one plane per pass over the state */
            for (; k + 8 <= K; k += 8)
                HALF_PLANES_PASS(8)
            for (; k + 4 <= K; k += 4)
                HALF_PLANES_PASS(4)
            for (; k + 2 <= K; k += 2)
                HALF_PLANES_PASS(2)
            for (; k < K; k++)
                HALF_PLANES_PASS(1)
            store_pred(pred, pred_wide, at, arg, n);
            float *restrict out = s + at;
            for (int64_t q = 0; q < n; q++)
                out[q] = sl[q] >= 0 ? table[own[q]] : NAN;
            int values_bad = 0;
            for (int64_t q = 0; q < n; q++)
                values_bad |= (worst[q] >= F16_INF_BITS) |
                              (check_sums & (fabs((double)tot[q] - 1.0) > tol));
            for (int64_t q = 0; values_bad && q < n; q++) {
                int kind = worst[q] >= F16_INF_BITS ? half_problem(img + t0 + q, K, P) : -1;
                if (kind >= 0)
                    note(problems, kind, at + q);
                else if (check_sums && fabs((double)tot[q] - 1.0) > tol)
                    note(problems, BAD_SUM, at + q);
            }
            if (labels_bad) {
                load_labels(labels, ltype, at, n, lab);
                note_labels(lab, n, K, ignore, has_ignore, at, problems);
            }
            tile_totals_f32(out, slot, n, class_sum + i * K, class_cnt + i * K, sm->low + i,
                            sm->count + i);
            if (sm->hist)
                SUMMARIZE_TILE(float, uint32_t, table[best[q]])
        }
    }
    free(best), free(worst), free(own), free(tot), free(arg), free(slot), free(lab), free(flag);
    return 0;
}

/* ------------------------------------------------------------------ softmin */

#define LOG2E 1.4426950408889634
#define LN2_HI 6.93147180369123816490e-01
#define LN2_LO 1.90821492927058770002e-10
#define SHIFTER 6755399441055744.0 /* 1.5 * 2**52: adding it rounds to an integer */
#define EXP_FLOOR -708.0           /* exp below this is < 3.3e-308: counted as 0 */

/*
 * exp(x) for x in [EXP_FLOOR, 0], branch-free so that it vectorises: x = k ln2 + r,
 * |r| <= ln2 / 2, exp(r) by its degree-11 Taylor polynomial (truncation below 7e-15
 * relative), evaluated in Estrin's scheme (four dependent steps instead of Horner's
 * eleven); 2**k from the integer left in the low bits of x * log2(e) + SHIFTER.
 */
static inline double exp_nonpositive(double x)
{
    double shifted = x * LOG2E + SHIFTER;
    double k = shifted - SHIFTER;
    double r = (x - k * LN2_HI) - k * LN2_LO;
    double r2 = r * r, r4 = r2 * r2, r8 = r4 * r4;
    double q0 = 1.0 + r, q1 = 1.0 / 2 + r * (1.0 / 6), q2 = 1.0 / 24 + r * (1.0 / 120);
    double q3 = 1.0 / 720 + r * (1.0 / 5040), q4 = 1.0 / 40320 + r * (1.0 / 362880);
    double q5 = 1.0 / 3628800 + r * (1.0 / 39916800);
    double p = (q0 + r2 * q1) + r4 * (q2 + r2 * q3) + r8 * (q4 + r2 * q5);
    uint64_t bits;
    memcpy(&bits, &shifted, sizeof bits);
    bits = (bits + 1023) << 52;
    double scale;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

/*
 * Softmin of one image's pixel scores: sum(s w) / sum(w) with w = exp((low - s) / T)
 * over non-NaN s, where low is their minimum (the max shift of a softmax). One
 * vectorised loop; the SIMD reduction's order is fixed by the code, so the result
 * depends only on the image, never on batching or workers. The two sums on their own
 * (softmin_parts) let a volume scanned slab by slab combine its slabs' sums.
 */
typedef struct {
    double num, den;
} softmin_sums;

#define DEFINE_SOFTMIN_SUMS(NAME, T)                                                               \
    static inline __attribute__((always_inline)) softmin_sums NAME(const T *s, int64_t n,          \
                                                                   double low, double inv_t)       \
    {                                                                                              \
        double num = 0.0, den = 0.0;                                                               \
        _Pragma("omp simd reduction(+ : num, den)") for (int64_t q = 0; q < n; q++)                \
        {                                                                                          \
            double v = (double)s[q];                                                               \
            double x = (low - v) * inv_t;                                                          \
            int keep = x >= EXP_FLOOR; /* false for NaN */                                         \
            double e = exp_nonpositive(keep ? x : 0.0);                                            \
            double w = keep ? e : 0.0;                                                             \
            num += (keep ? v : 0.0) * w;                                                           \
            den += w;                                                                              \
        }                                                                                          \
        return (softmin_sums){num, den};                                                           \
    }

DEFINE_SOFTMIN_SUMS(softmin_sums_f32, float)
DEFINE_SOFTMIN_SUMS(softmin_sums_f64, double)

#define DEFINE_SOFTMIN_ROW(NAME, T, SUMS)                                                          \
    static inline __attribute__((always_inline)) double NAME(const T *s, int64_t n, double low,    \
                                                             double inv_t)                         \
    {                                                                                              \
        softmin_sums sums = SUMS(s, n, low, inv_t);                                                \
        return sums.num / sums.den;                                                                \
    }

DEFINE_SOFTMIN_ROW(softmin_row_f32, float, softmin_sums_f32)
DEFINE_SOFTMIN_ROW(softmin_row_f64, double, softmin_sums_f64)

/* The two sums of one slab's softmin, shifted by the given low: parts = {num, den}. */
#define DEFINE_SOFTMIN_PARTS(NAME, T, SUMS)                                                        \
    EXPORT HOT void NAME(const T *s, int64_t n, double temperature, double low, double *parts)     \
    {                                                                                              \
        softmin_sums sums = SUMS(s, n, low, 1.0 / temperature);                                    \
        parts[0] = sums.num;                                                                       \
        parts[1] = sums.den;                                                                       \
    }

DEFINE_SOFTMIN_PARTS(softmin_parts_f32, float, softmin_sums_f32)
DEFINE_SOFTMIN_PARTS(softmin_parts_f64, double, softmin_sums_f64)

/* Per-image softmin of s (b, P) from each image's lowest score and number of scored
 * pixels (counted by the scan kernel); NaN entries skipped; images with none get NaN. */
#define DEFINE_SOFTMIN_IMAGES(NAME, T, ROW)                                                        \
    EXPORT HOT void NAME(const T *s, int64_t b, int64_t P, double temperature,                     \
                         const double *low, const int64_t *count, double *scores)                  \
    {                                                                                              \
        for (int64_t i = 0; i < b; i++)                                                            \
            scores[i] = count[i] ? ROW(s + i * P, P, low[i], 1.0 / temperature) : NAN;             \
    }

DEFINE_SOFTMIN_IMAGES(softmin_images_f32, float, softmin_row_f32)
DEFINE_SOFTMIN_IMAGES(softmin_images_f64, double, softmin_row_f64)

/*
 * Lowest score and number of scored pixels of one image (score kernels); notes
 * malformed values: negative, above 1 (+tol), infinite, NaN, invalid labels.
 */
#define DEFINE_CHECK_ROW(NAME, T)                                                                  \
    static int64_t NAME(const T *s, const int64_t *lab, int64_t n, int64_t K, int64_t ignore,      \
                        int has_ignore, double tol, int64_t base, int64_t *problems, double *low)  \
    {                                                                                              \
        double lowest = INFINITY;                                                                  \
        int64_t count = 0;                                                                         \
        for (int64_t q = 0; q < n; q++) {                                                          \
            double v = (double)s[q];                                                               \
            if (v == v) {                                                                          \
                if (v - v != 0.0) /* an infinity of either sign */                                 \
                    note(problems, NONFINITE, base + q);                                           \
                else if (v < 0.0)                                                                  \
                    note(problems, NEGATIVE, base + q);                                            \
                else if (v > 1.0 + tol)                                                            \
                    note(problems, BAD_SUM, base + q);                                             \
                count += 1;                                                                        \
                lowest = v < lowest ? v : lowest;                                                  \
            } else if (!(has_ignore && lab[q] == ignore)) {                                        \
                note(problems, lab[q] < 0 || lab[q] >= K ? BAD_LABEL : NONFINITE, base + q);       \
            }                                                                                      \
        }                                                                                          \
        *low = lowest;                                                                             \
        return count;                                                                              \
    }

DEFINE_CHECK_ROW(check_row_f32, float)
DEFINE_CHECK_ROW(check_row_f64, double)

/*
 * score_f32 / score_f64 / score_f16: pixel scores p[given label], softmin image scores
 * and scored-pixel counts of a batch, reading only the given label's probability of
 * each pixel (about 1/K of pred_probs when labels form regions). "probs" holds each
 * image flattened: element (class c, pixel q) at c * class_stride + q * pixel_stride.
 * Per image the scores are gathered, checked and reduced while still in cache.
 */
#define DEFINE_SCORE(NAME, TIN, TOUT, READ, CHECK, ROW)                                            \
    EXPORT HOT int NAME(const TIN *probs, const float *table, int64_t b, int64_t P, int64_t K,     \
                        int64_t class_stride, int64_t pixel_stride, const void *labels, int ltype, \
                        int64_t ignore, int has_ignore, double temperature, double tol, TOUT *s,   \
                        double *scores, int64_t *scored, int64_t *problems)                        \
    {                                                                                              \
        (void)table;                                                                               \
        int64_t *lab = malloc((P > 0 ? P : 1) * sizeof(int64_t));                                  \
        if (!lab)                                                                                  \
            return -1;                                                                             \
        for (int64_t i = 0; i < b; i++) {                                                          \
            const TIN *img = probs + i * K * P;                                                    \
            TOUT *restrict out = s + i * P;                                                        \
            load_labels(labels, ltype, i * P, P, lab);                                             \
            /* labels come in runs: copy each run from its class plane (checks run after) */       \
            for (int64_t q = 0, r; q < P; q = r) {                                                 \
                int64_t l = lab[q];                                                                \
                for (r = q + 1; r < P && lab[r] == l; r++)                                         \
                    ;                                                                              \
                if ((l < 0) | (l >= K) | (has_ignore & (l == ignore))) {                           \
                    for (int64_t x = q; x < r; x++)                                                \
                        out[x] = (TOUT)NAN;                                                        \
                } else if (pixel_stride == 1) {                                                    \
                    const TIN *restrict plane = img + l * class_stride;                            \
                    for (int64_t x = q; x < r; x++)                                                \
                        out[x] = READ(plane[x]);                                                   \
                } else {                                                                           \
                    const TIN *plane = img + l * class_stride;                                     \
                    for (int64_t x = q; x < r; x++)                                                \
                        out[x] = READ(plane[x * pixel_stride]);                                    \
                }                                                                                  \
            }                                                                                      \
            double low;                                                                            \
            int64_t count = CHECK(out, lab, P, K, ignore, has_ignore, tol, i * P, problems, &low); \
            scored[i] = count;                                                                     \
            scores[i] = count ? ROW(out, P, low, 1.0 / temperature) : NAN;                         \
        }                                                                                          \
        free(lab);                                                                                 \
        return 0;                                                                                  \
    }

#define READ_PLAIN(x) ((x) + 0) /* -0.0 reads as +0.0 */
#define READ_HALF(x) table[half_bits(x)]

DEFINE_SCORE(score_f32, float, float, READ_PLAIN, check_row_f32, softmin_row_f32)
DEFINE_SCORE(score_f64, double, double, READ_PLAIN, check_row_f64, softmin_row_f64)
DEFINE_SCORE(score_f16, uint16_t, float, READ_HALF, check_row_f32, softmin_row_f32)

/* ------------------------------------------------------------------ module */

static struct PyModuleDef kernels_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "_ckernels",
    .m_doc = "segaudit's compiled kernels; called through ctypes by segaudit.kernels.",
    .m_size = -1,
};

PyMODINIT_FUNC PyInit__ckernels(void)
{
    return PyModule_Create(&kernels_module);
}
