// SPDX-License-Identifier: MIT
/* The fixture of the userfaultfd tests; see uffd-fixture.h. */
#include "uffd-fixture.h"

struct fx F;

/* ---- deterministic page contents ---- */

uint64_t
pattern_word(uint64_t page, size_t i)
{
	return page * 0x9E3779B97F4A7C15ull + i * 0xBF58476D1CE4E5B9ull + 1;
}

void
fill_page(void *dst, uint64_t page, size_t ps)
{
	uint64_t *w = dst;

	for (size_t i = 0; i < ps / 8; i++)
		w[i] = pattern_word(page, i);
}

/* 1 if the page holds its pattern, every byte. */
int
page_ok(const void *src, uint64_t page, size_t ps)
{
	const volatile uint64_t *w = src;

	for (size_t i = 0; i < ps / 8; i++)
		if (w[i] != pattern_word(page, i))
			return 0;
	return 1;
}

int
page_zero(const void *src, size_t ps)
{
	const volatile uint64_t *w = src;

	for (size_t i = 0; i < ps / 8; i++)
		if (w[i])
			return 0;
	return 1;
}

/* ---- handlers ---- */

int
page_in(void *user, struct memfault_vcpu *vcpu, struct memfault_region *r,
	uint64_t page, void *hva, uint64_t page_size)
{
	struct fx *f = user;
	char *h = hva;

	(void)r;
	if (f->mode == MEMFAULT_UFFD_MINOR) {
		if (h != f->alias + page * f->ps)
			__atomic_fetch_add(&f->bad_hva, 1, __ATOMIC_RELAXED);
	} else if (h >= f->mem && h < f->mem + f->npages * f->ps) {
		/* MISSING: a bounce buffer, never the trapped mapping */
		__atomic_fetch_add(&f->bad_hva, 1, __ATOMIC_RELAXED);
	}
	if (vcpu && f->hold_vcpu) {
		pthread_mutex_lock(&f->lock);
		f->holding = 1;
		pthread_cond_broadcast(&f->cond);
		while (f->hold_vcpu)
			pthread_cond_wait(&f->cond, &f->lock);
		pthread_mutex_unlock(&f->lock);
	}
	if (f->slow_us)
		usleep((useconds_t)f->slow_us);
	if (page == f->fail_page &&
	    __atomic_fetch_sub(&f->fail_left, 1, __ATOMIC_RELAXED) > 0)
		return f->fail_ret;
	if (page == f->partial_page)
		memset(hva, 0x11, PARTIAL_BYTES);
	else
		fill_page(hva, page, page_size);
	/* atomic: the reader learns of it through the kernel's wake-up,
	 * which TSan does not see */
	__atomic_store_n(&f->seen_vcpu[page], vcpu, __ATOMIC_RELAXED);
	__atomic_fetch_add(&f->fetches[page], 1, __ATOMIC_RELAXED);
	__atomic_fetch_add(vcpu ? &f->by_vcpu : &f->by_host, 1,
			   __ATOMIC_RELAXED);
	return MEMFAULT_RESOLVED;
}

void
on_log(void *user, int level, const char *msg)
{
	struct fx *f = user;
	size_t n;

	pthread_mutex_lock(&f->lock);
	n = strlen(f->log);
	snprintf(f->log + n, sizeof(f->log) - n, "%d:%s\n", level, msg);
	if (level <= 3)
		f->log_errors++;
	pthread_mutex_unlock(&f->lock);
}

/* ---- setup ---- */

void
fx_open(struct fx *f, uint32_t arch, uint32_t level)
{
	MEMFAULT_OPTS(memfault_handlers, h, .user = f, .page_in = page_in,
		      .log = on_log);

	memset(f, 0, sizeof(*f));
	f->memfd = -1;
	f->fail_page = UINT64_MAX;
	f->partial_page = UINT64_MAX;
	pthread_mutex_init(&f->lock, NULL);
	pthread_cond_init(&f->cond, NULL);
	sim_env_open(&f->e, arch, level);
	f->ps = (size_t)f->e.page;
	ck_assert_int_eq(memfault_vm_set_handlers(f->e.vm, &h), 0);
}

/*
 * Memory for @npages pages: anonymous (MISSING), a memfd mapped twice
 * (MINOR), or with @shared a memfd in MISSING mode too.
 */
void
fx_memory_shared(struct fx *f, uint32_t mode, size_t npages, bool shared)
{
	size_t size = npages * f->ps;

	f->mode = mode;
	f->npages = npages;
	if (mode == MEMFAULT_UFFD_MISSING && !shared) {
		f->mem = mmap(NULL, size, PROT_READ | PROT_WRITE,
			      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		ck_assert_ptr_ne(f->mem, MAP_FAILED);
		return;
	}
	f->memfd = memfd_create("test-uffd", MFD_CLOEXEC);
	ck_assert_int_ge(f->memfd, 0);
	ck_assert_int_eq(ftruncate(f->memfd, (off_t)size), 0);
	f->mem = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED,
		      f->memfd, 0);
	ck_assert_ptr_ne(f->mem, MAP_FAILED);
	if (mode == MEMFAULT_UFFD_MISSING)
		return;
	f->alias = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED,
			f->memfd, 0);
	ck_assert_ptr_ne(f->alias, MAP_FAILED);
}

void
fx_memory(struct fx *f, uint32_t mode, size_t npages)
{
	fx_memory_shared(f, mode, npages, false);
}

/* A bitmap-only region over the memory, every page missing. */
void
fx_region(struct fx *f, uint64_t region_flags, uint32_t slot)
{
	MEMFAULT_OPTS(memfault_region_opts, o,
		      .flags = MEMFAULT_REGION_MISSING | region_flags);

	ck_assert_int_eq(memfault_region_new(f->e.vm, slot, RAM_GPA,
					     f->npages * f->ps, f->mem, &o,
					     &f->r), 0);
}

void *
poller_main(void *arg)
{
	struct fx *f = arg;
	struct pollfd p = { .fd = memfault_uffd_get_fd(f->u), .events = POLLIN };

	while (!__atomic_load_n(&f->stop_poll, __ATOMIC_ACQUIRE)) {
		if (poll(&p, 1, 5) > 0 && memfault_uffd_service(f->u, 8) < 0)
			__atomic_fetch_add(&f->poll_errors, 1, __ATOMIC_RELAXED);
	}
	return NULL;
}

void
fx_uffd(struct fx *f, enum run_mode run)
{
	MEMFAULT_OPTS(memfault_uffd_opts, o,
		      .flags = run == MODE_THREAD ? MEMFAULT_UFFD_SERVICE_THREAD
						  : 0);

	ck_assert_int_eq(memfault_uffd_new(f->e.vm, &o, &f->u), 0);
	ck_assert_int_eq(memfault_uffd_register(f->u, f->r, f->mode,
						f->mode == MEMFAULT_UFFD_MINOR ?
							f->alias :
							NULL),
			 0);
}

void
fx_start_poller(struct fx *f)
{
	f->stop_poll = 0;
	ck_assert_int_eq(pthread_create(&f->poller, NULL, poller_main, f), 0);
}

void
fx_stop_poller(struct fx *f)
{
	__atomic_store_n(&f->stop_poll, 1, __ATOMIC_RELEASE);
	pthread_join(f->poller, NULL);
	ck_assert_uint_eq(f->poll_errors, 0);
}

void
fx_close(struct fx *f)
{
	size_t size = f->npages * f->ps;

	memfault_uffd_free(f->u);
	memfault_region_free(f->r);
	if (f->mem)
		munmap(f->mem, size);
	if (f->alias)
		munmap(f->alias, size);
	if (f->memfd >= 0)
		close(f->memfd);
	sim_env_close(&f->e);
}

/* ---- host threads ---- */

void *
touch_random(void *arg)
{
	struct toucher *t = arg;
	struct fx *f = t->f;

	for (int k = 0; k < t->n; k++) {
		uint64_t page = (uint64_t)rand_r(&t->seed) % f->npages;

		if (!page_ok(f->mem + page * f->ps, page, f->ps))
			t->bad++;
	}
	__atomic_store_n(&t->done, 1, __ATOMIC_RELEASE);
	return NULL;
}

/*
 * The install wakes the faulting thread before the serving thread
 * publishes the page and counts the fault: wait for the serving threads
 * to finish the faults already resolved (the histogram is counted last).
 */
void
settle(struct fx *f)
{
	for (int i = 0; i < 5000; i++) {
		struct memfault_uffd_stats s;
		uint64_t sum = 0;

		ck_assert_int_eq(memfault_uffd_get_stats(f->u, &s, sizeof(s)),
				 0);
		for (int b = 0; b < MEMFAULT_UFFD_LATENCY_BUCKETS; b++)
			sum += s.latency[b];
		if (sum == s.faults)
			return;
		usleep(1000);
	}
	ck_abort_msg("faults still being served after 5 s");
}

void
stats_settled(struct fx *f, struct memfault_uffd_stats *s)
{
	settle(f);
	ck_assert_int_eq(memfault_uffd_get_stats(f->u, s, sizeof(*s)), 0);
}

void
check_all_pages_once(struct fx *f)
{
	uint64_t missing;

	/* the main thread touches every page: faults for the untouched */
	for (size_t p = 0; p < f->npages; p++) {
		ck_assert_msg(page_ok(f->mem + p * f->ps, p, f->ps),
			      "page %zu has wrong contents", p);
		ck_assert_msg(LD(f->fetches[p]) == 1,
			      "page %zu fetched %u times", p,
			      LD(f->fetches[p]));
	}
	settle(f);
	ck_assert_int_eq(memfault_region_count_missing(f->r, &missing), 0);
	ck_assert_uint_eq(missing, 0);
	ck_assert_uint_eq(LD(f->bad_hva), 0);
}

/* 1, 4, 8 threads x service thread / VMM polling */
