/* SPDX-License-Identifier: MIT */
/* Timing and statistics shared by the benchmarks in bench/. */
#ifndef MEMFAULT_BENCH_STATS_H
#define MEMFAULT_BENCH_STATS_H

#include <stdlib.h>
#include <time.h>

/* CLOCK_MONOTONIC, in nanoseconds. */
static inline double
now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static inline int
cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

/* The median of v[0..n), n > 0; sorts v. */
static inline double
median(double *v, int n)
{
	qsort(v, (size_t)n, sizeof(*v), cmp_double);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/*
 * A distribution-free 95% confidence interval of the median of the sorted
 * v[0..n): the order statistics n/2 -+ 0.98 sqrt(n).
 */
static inline void
median_ci(const double *sorted, int n, double *lo, double *hi)
{
	double r = 0;
	int l, h;

	while ((r + 1) * (r + 1) <= n)
		r++;
	l = (int)(n / 2.0 - 0.98 * r);
	h = (int)(n / 2.0 + 0.98 * r + 0.999);
	*lo = sorted[l < 0 ? 0 : l];
	*hi = sorted[h > n - 1 ? n - 1 : h];
}

/*
 * The start and the end of the window bench/sstep-count.c single-steps: an
 * int3 when MEMFAULT_BENCH_SSTEP is set (sstep-count sets it), nothing
 * otherwise. Both sides of a comparison pass the same marks, so their cost
 * cancels in a difference.
 */
static inline void
bench_sstep_mark(void)
{
	static int on = -1;

	if (on < 0)
		on = getenv("MEMFAULT_BENCH_SSTEP") != NULL;
#if defined(__x86_64__) || defined(__i386__)
	if (on)
		__asm__ volatile("int3" ::: "memory");
#endif
}

#endif
