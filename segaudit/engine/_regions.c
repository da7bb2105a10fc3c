/*
 * The region step's per-pixel loops (segaudit.engine.regions), over one image's issue
 * pixels only: their 8-neighbour links, their depth inside their region, and whether
 * they lie near an edge between two labelled classes. Connected components are not
 * here: they come from scipy's csgraph, over the links found here.
 *
 * Issue pixels are given as flat indices in ascending (raster) order, so every
 * neighbour lookup is a merge of two ascending sequences: linear, no search.
 * Plain C functions called through ctypes, like _kernels.c, in the same shared object.
 */
#include <stdint.h>

#define EXPORT __attribute__((visibility("default")))

/* The four forward directions (dy, dx) whose opposites are the other four. */
static const int64_t FORWARD_DY[4] = {0, 1, 1, 1};
static const int64_t FORWARD_DX[4] = {1, -1, 0, 1};

/*
 * found (8, n): for issue pixel i (flat index index[i], ascending) and direction row r,
 * the position j of its neighbour when that is an issue pixel of the same pair code,
 * else -1. Rows 0-3 are the forward directions (right, down-left, down, down-right),
 * rows 4-7 their opposites (the same links seen from the other end).
 */
EXPORT void region_links(const int64_t *index, const int64_t *pair, int64_t n, int64_t height,
                         int64_t width, int64_t *found)
{
    for (int64_t q = 0; q < 8 * n; q++)
        found[q] = -1;
    for (int r = 0; r < 4; r++) {
        int64_t dy = FORWARD_DY[r], dx = FORWARD_DX[r], step = dy * width + dx, j = 0;
        int64_t *ahead = found + r * n, *behind = found + (r + 4) * n;
        for (int64_t i = 0; i < n; i++) {
            int64_t y = index[i] / width, x = index[i] - y * width;
            if (x + dx < 0 || x + dx >= width || y + dy >= height)
                continue;
            int64_t target = index[i] + step;
            while (j < n && index[j] < target) /* targets ascend with i: j never goes back */
                j++;
            if (j < n && index[j] == target && pair[j] == pair[i]) {
                ahead[i] = j;
                behind[j] = i;
            }
        }
    }
}

/*
 * depth (n): each issue pixel's chessboard distance from the nearest position outside
 * its region (or the image), from its links: 1 on the rim, k + 1 where all eight
 * neighbours are at least k deep. The classic two-pass distance transform, exact for
 * the chessboard metric: a raster pass over the backward links (rows 4-7), then a
 * reverse pass over the forward ones (rows 0-3); a missing link counts as depth 0.
 */
EXPORT void region_depths(const int64_t *found, int64_t n, int64_t *depth)
{
    for (int64_t i = 0; i < n; i++) {
        int64_t best = INT64_MAX;
        for (int r = 4; r < 8; r++) {
            int64_t j = found[r * n + i], d = j < 0 ? 1 : depth[j] + 1;
            best = d < best ? d : best;
        }
        depth[i] = best;
    }
    for (int64_t i = n - 1; i >= 0; i--) {
        int64_t best = depth[i];
        for (int r = 0; r < 4; r++) {
            int64_t j = found[r * n + i], d = j < 0 ? 1 : depth[j] + 1;
            best = d < best ? d : best;
        }
        depth[i] = best;
    }
}

/* Whether labels a and b (adjacent pixels) form an edge: both labelled, and different. */
#define EDGE(A, B) ((A) != (B) && (!has_ignore || ((A) != ignore && (B) != ignore)))

/*
 * near (n): whether issue pixel index[i] lies within `reach` pixels (chessboard) of an
 * edge pixel of the given labels (H, W), an edge pixel being either pixel of a 4-adjacent
 * pair of different labelled (not ignored) classes. Looks only at the (2 reach + 1)²
 * square around each pixel, and the pairs that touch it; stops at the first edge found.
 */
#define DEFINE_NEAR_EDGE(NAME, T)                                                                  \
    EXPORT void NAME(const T *labels, int64_t height, int64_t width, int64_t ignore64,           \
                     int has_ignore, const int64_t *index, int64_t n, int64_t reach,               \
                     uint8_t *near)                                                                \
    {                                                                                              \
        const T ignore = (T)ignore64;                                                              \
        for (int64_t i = 0; i < n; i++) {                                                          \
            int64_t y = index[i] / width, x = index[i] - y * width;                                \
            int64_t y0 = y - reach < 0 ? 0 : y - reach;                                            \
            int64_t y1 = y + reach >= height ? height - 1 : y + reach;                             \
            int64_t x0 = x - reach < 0 ? 0 : x - reach;                                            \
            int64_t x1 = x + reach >= width ? width - 1 : x + reach;                               \
            int found = 0;                                                                         \
            for (int64_t yy = y0; yy <= y1 && !found; yy++) {                                      \
                const T *row = labels + yy * width;                                                \
                int64_t lo = x0 > 0 ? x0 - 1 : 0, hi = x1 < width - 1 ? x1 + 1 : x1;               \
                for (int64_t xx = lo; xx < hi; xx++) /* pairs (xx, xx + 1) touching the square */  \
                    if (EDGE(row[xx], row[xx + 1])) {                                              \
                        found = 1;                                                                 \
                        break;                                                                     \
                    }                                                                              \
            }                                                                                      \
            int64_t ylo = y0 > 0 ? y0 - 1 : 0, yhi = y1 < height - 1 ? y1 + 1 : y1;                \
            for (int64_t yy = ylo; yy < yhi && !found; yy++) { /* pairs (yy, yy + 1) */            \
                const T *row = labels + yy * width, *below = row + width;                          \
                for (int64_t xx = x0; xx <= x1; xx++)                                              \
                    if (EDGE(row[xx], below[xx])) {                                                \
                        found = 1;                                                                 \
                        break;                                                                     \
                    }                                                                              \
            }                                                                                      \
            near[i] = (uint8_t)found;                                                              \
        }                                                                                          \
    }

DEFINE_NEAR_EDGE(near_edge_u8, uint8_t)
DEFINE_NEAR_EDGE(near_edge_u16, uint16_t)
DEFINE_NEAR_EDGE(near_edge_i32, int32_t)
DEFINE_NEAR_EDGE(near_edge_i64, int64_t)

/*
 * Per-region features in one pass over the kept issue pixels (ascending flat indices,
 * each with its region number 0..count-1): size, inclusive box, the largest depth, and
 * the sums of x, y, score, top and near, added in pixel order (as numpy's bincount adds
 * its weights), so means computed from them are the same to the last bit. `ints` is
 * (7, count): pixels, x0, y0, x1, y1, thickness, and the position of the region's first
 * pixel; `sums` is (5, count).
 */
EXPORT void region_features(const int64_t *index, const int64_t *number, const double *score,
                            const double *top, const uint8_t *near, const int64_t *depth,
                            int64_t n, int64_t width, int64_t count, int64_t *ints, double *sums)
{
    int64_t *size = ints, *x0 = ints + count, *y0 = ints + 2 * count, *x1 = ints + 3 * count;
    int64_t *y1 = ints + 4 * count, *thick = ints + 5 * count, *at = ints + 6 * count;
    double *sx = sums, *sy = sums + count, *ss = sums + 2 * count, *st = sums + 3 * count;
    double *sn = sums + 4 * count;
    for (int64_t c = 0; c < count; c++) {
        size[c] = 0, x0[c] = INT64_MAX, y0[c] = INT64_MAX, x1[c] = -1, y1[c] = -1, thick[c] = 0;
        sx[c] = 0.0, sy[c] = 0.0, ss[c] = 0.0, st[c] = 0.0, sn[c] = 0.0;
    }
    for (int64_t i = 0; i < n; i++) {
        int64_t c = number[i], y = index[i] / width, x = index[i] - y * width;
        at[c] = size[c] == 0 ? i : at[c];
        size[c] += 1;
        x0[c] = x < x0[c] ? x : x0[c], y0[c] = y < y0[c] ? y : y0[c];
        x1[c] = x > x1[c] ? x : x1[c], y1[c] = y > y1[c] ? y : y1[c];
        thick[c] = depth[i] > thick[c] ? depth[i] : thick[c];
        sx[c] += (double)x, sy[c] += (double)y, ss[c] += score[i], st[c] += top[i];
        sn[c] += (double)near[i];
    }
}

/*
 * The forward links of `found` as a CSR graph over the issue pixels: row i lists the
 * positions of pixel i's neighbours in the forward directions (rows 0-3 of `found`, in
 * that order, so ascending). indptr has n + 1 entries, targets room for 4 n; returns
 * how many targets were written. Int32, as scipy's csgraph works in.
 */
EXPORT int64_t region_graph(const int64_t *found, int64_t n, int32_t *indptr, int32_t *targets)
{
    int64_t m = 0;
    indptr[0] = 0;
    for (int64_t i = 0; i < n; i++) {
        for (int r = 0; r < 4; r++) {
            int64_t j = found[r * n + i];
            if (j >= 0)
                targets[m++] = (int32_t)j;
        }
        indptr[i + 1] = (int32_t)m;
    }
    return m;
}
