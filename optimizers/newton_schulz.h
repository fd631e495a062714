/* Newton-Schulz orthogonalisation, the core of the Muon family.
 *
 * For the working matrix X (r x c, r <= c: a tall input is transposed first and the result
 * transposed back), after normalisation X0 = X / den, each coefficient triple (a, b, c) does
 *     A = X X^T            (r x r, a symmetric product: syrk)
 *     B = b A + c A A      (skipped A A when c == 0: the cubic sets)
 *     X = a X + B X
 * Upstream variants differ only in the coefficient sets, their iteration rule and the
 * normaliser, which eopt_ns_config captures:
 *   NVIDIA Muon/AdaptiveMuon  den = max(||X||_F, 1e-7)            (clamp)
 *   Muown                     den = max(||X||_F, 1e-15)           (clamp)
 *   dion polar express        den = 1.02 ||X||_F + eps            (add, group epsilon)
 *   dion NS5                  den = ||X||_F + eps                 (add) */
#ifndef EOPT_NEWTON_SCHULZ_H
#define EOPT_NEWTON_SCHULZ_H

#include "../framework/backend.h"
#include "../framework/tensor.h"

#define EOPT_NS_MAX_SETS 16

typedef struct {
    double a, b, c;
} eopt_ns_triple;

typedef enum { EOPT_NS_CYCLE = 0, EOPT_NS_REPEAT_LAST } eopt_ns_iter;

typedef struct {
    int nsets;
    eopt_ns_triple sets[EOPT_NS_MAX_SETS];
    eopt_ns_iter iter;
    int steps;        /* number of triples used (num_ns_steps) */
    double norm_scale; /* 1, or dion polar express's 1.02 */
    double eps;
    int eps_add;      /* 0: den = max(scale ||X||, eps); 1: den = scale ||X|| + eps */
    eopt_prec prec;   /* FP32 / TF32 / BF16 products (the CPU always computes in FP32) */
} eopt_ns_config;

/* The Emerging-Optimizers coefficient sets by name: simple, quintic, polar_express, cans,
 * aol, deepseekv4, cubic5 (Muown's commit; needs steps == 5). "custom" takes `custom`
 * (ncustom triples, cycled). Errors quote upstream's messages. Normaliser: clamp, eps 1e-7. */
eopt_status eopt_ns_emerging(const char *coefficient_type, int steps, const eopt_ns_triple *custom, int ncustom,
                             eopt_ns_config *out);
/* dion's orthogonalisers: polar express (default) or the quintic NS5, with the group epsilon. */
void eopt_ns_dion(int polar_express, double epsilon, eopt_ns_config *out);
/* The triple used at iteration i (0-based) under the cycle / repeat-last rule. */
eopt_ns_triple eopt_ns_triple_at(const eopt_ns_config *cfg, int i);
/* fp32_matmul_prec name -> precision ("highest" FP32, "high" TF32, "medium" BF16). */
eopt_status eopt_ns_precision(const char *fp32_matmul_prec, eopt_prec *out);

/* O = NS(X) for an m x n matrix (any aspect ratio). O may equal X. Temporaries come from ws
 * (no allocation after the first call). */
/* The workspace eopt_ns_orthogonalize takes for an m x n matrix (an upper bound). */
size_t eopt_ns_workspace_bytes(const eopt_backend *be, const eopt_ns_config *cfg, int m, int n);
eopt_status eopt_ns_orthogonalize(eopt_backend *be, eopt_workspace *ws, const eopt_ns_config *cfg, int m, int n,
                                  const float *X, float *O);

/* How far O (m x n) is from orthogonal, into *res (device): with r = min(m, n) and the r x r
 * Gram A = O O^T (wide) or O^T O (tall), ||A - I||_F / sqrt(r): 0 for exactly orthonormal rows
 * (columns), about 1 for a matrix far from it. Takes r x r floats of ws (counted in
 * eopt_ns_workspace_bytes, so that a diagnostic step stays within an update's workspace).
 * Diagnostics call it on the last orthogonalisation; SOAP/MOSO on their bases. */
eopt_status eopt_ns_residual(eopt_backend *be, eopt_workspace *ws, int m, int n, const float *O, float *res);

#endif
