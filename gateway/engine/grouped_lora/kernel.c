/* A decode-sized batch's LoRA term for one linear layer, every token and slice in one
 * call (built into the package when it is installed: setup.py; loaded by kernel.py).
 *
 * At decode sizes the torch path is a dozen small ops per layer, and on a CPU each op's
 * dispatch costs more than its arithmetic: with eight adapters in a batch the LoRA term
 * cost more than the layer's own product. Here each token with an adapter gets
 *
 *   s = round(A[slot] x)                      (all slices' ranks at once, float32 sums)
 *   y[:, slice i] = round(y + round(B_i[slot] s_i))
 *
 * with the same roundings to bfloat16 as vLLM's path (its shrink result, then its expand
 * result, then the add into the output). Base-model tokens (slot < 0) are left alone.
 */
#include <omp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Portable build, fast on the CPU it meets: the hot loop is compiled once per ISA below
 * (GCC/clang function multi-versioning) and the loader picks the best clone the CPU
 * supports when the library is loaded, so one shipped library runs on any x86-64 and
 * never executes an instruction its CPU lacks. Elsewhere: one baseline build. */
#if defined(__x86_64__) && defined(__GNUC__)
#define CLONES 1
#define HOT __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define CLONES 0
#define HOT
#endif

static inline float bf16_to_f32(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* Round to nearest even, as torch's float -> bfloat16 conversion does. */
static inline uint16_t f32_to_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40u); /* NaN */
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

static inline float round_bf16(float f) { return bf16_to_f32(f32_to_bf16(f)); }

#define BLOCK 64 /* output columns summed in registers across a slice's ranks */

/* One token: its ranks, then each slice's columns in blocks, added into its output row. */
HOT static void one_token(const uint16_t *xt, const float *as, const float *bs, int64_t in,
                      int64_t rank, int64_t slices, const int64_t *widths, int64_t width,
                      float *xf, float *s, uint16_t *yt) {
    int64_t ranks = slices * rank;
    for (int64_t k = 0; k < in; k++) xf[k] = bf16_to_f32(xt[k]);
    for (int64_t r = 0; r < ranks; r++) {  /* as: (ranks, in) */
        const float *row = as + r * in;
        float acc = 0.0f;
#pragma omp simd reduction(+ : acc)
        for (int64_t k = 0; k < in; k++) acc += xf[k] * row[k];
        s[r] = round_bf16(acc);
    }
    int64_t column = 0;
    for (int64_t i = 0; i < slices; i++) {
        const float *si = s + i * rank;
        for (int64_t j0 = column; j0 < column + widths[i]; j0 += BLOCK) {
            int64_t n = column + widths[i] - j0 < BLOCK ? column + widths[i] - j0 : BLOCK;
            float acc[BLOCK] = {0.0f};
            for (int64_t r = 0; r < rank; r++) {
                const float *brow = bs + r * width + j0;
                float sr = si[r];
                if (n == BLOCK) {
#pragma omp simd
                    for (int64_t j = 0; j < BLOCK; j++) acc[j] += sr * brow[j];
                } else {
                    for (int64_t j = 0; j < n; j++) acc[j] += sr * brow[j];
                }
            }
            uint16_t *out = yt + j0;
            for (int64_t j = 0; j < n; j++)
                out[j] = f32_to_bf16(bf16_to_f32(out[j]) + round_bf16(acc[j]));
        }
        column += widths[i];
    }
}

/* x: (tokens, in) bfloat16 rows, x_stride elements apart; token_slot: (tokens,) int64;
 * a: (slots, slices * rank, in) float32, scaling folded in; b: (slots, rank, width)
 * float32, slice i's B in its own columns; widths: (slices,) int64 summing to width;
 * y: (tokens, >= width) bfloat16 rows, y_stride elements apart. Tokens are shared among
 * the process's OpenMP threads (torch's runtime: the library is loaded after torch's
 * libgomp, so it resolves to the same one and torch.set_num_threads governs both).
 * Returns 0, or -1 when its scratch could not be allocated: y is then untouched. */
int gateway_lora_decode(int64_t tokens, const uint16_t *x, int64_t x_stride,
                        const int64_t *token_slot, int64_t slots, const float *a,
                        const float *b, int64_t in, int64_t rank, int64_t slices,
                        const int64_t *widths, uint16_t *y, int64_t y_stride) {
    int64_t ranks = slices * rank, width = 0, per_thread = in + ranks;
    for (int64_t i = 0; i < slices; i++) width += widths[i];
    /* all threads' scratch at once, before any output is written */
    float *scratch = malloc(sizeof(float) * (size_t)(per_thread * omp_get_max_threads()));
    if (!scratch) return -1;
#pragma omp parallel if (tokens > 1)
    {
        float *xf = scratch + per_thread * omp_get_thread_num();
#pragma omp for schedule(static)
        for (int64_t t = 0; t < tokens; t++) {
            int64_t slot = token_slot[t];
            if (slot < 0 || slot >= slots) continue;
            one_token(x + t * x_stride, a + slot * ranks * in, b + slot * rank * width, in,
                      rank, slices, widths, width, xf, xf + in, y + t * y_stride);
        }
    }
    free(scratch);
    return 0;
}

/* Which clone of one_token the loader picked (the same order as its resolver), for the
 * gateway to report: "avx512f", "avx2" or "baseline". */
const char *gateway_lora_isa(void) {
#if CLONES
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f")) return "avx512f";
    if (__builtin_cpu_supports("avx2")) return "avx2";
#endif
    return "baseline";
}
