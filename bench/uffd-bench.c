/* SPDX-License-Identifier: MIT */
/*
 * userfaultfd fault throughput and latency: libmemfault's backend against a
 * hand-written loop, in the same run.
 *
 *   lib  memfault_uffd_* with MEMFAULT_UFFD_SERVICE_THREAD: a region bitmap
 *        with every page missing, claim, page_in(), install, publish
 *   raw  one service thread: poll() + read() (up to 16 messages, as the
 *        library) + fill a bounce page + UFFDIO_COPY (or fill the alias +
 *        UFFDIO_CONTINUE in MINOR mode); no bitmap
 *
 * Memory kinds (4 KiB host pages); both sides take the same kernel path:
 *   anon         anonymous private memory: MISSING mode, UFFDIO_COPY
 *   memfd-minor  a memfd mapped twice: MINOR (and MISSING, for its holes)
 *                mode, the page written through the alias, UFFDIO_CONTINUE
 *   memfd-copy   a memfd: MISSING mode, UFFDIO_COPY
 *
 * 1, 2, 4 and 8 threads each read the first byte of every page of their own
 * slice of the region, timing each access (p50/p99 over every fault of
 * every repetition). Both sides fill each page with the same pattern, and
 * every page is checked afterwards. The repetitions come in pairs, one run
 * of each side, in alternating order (lib, raw, raw, lib, lib, ...), so a
 * drift of the machine's load hits both sides alike; "ratio" is the median
 * of the per-pair ratios lib/raw of faults/s, with its distribution-free 95%
 * confidence interval and the quartiles of the pair ratios (the spread).
 * The rates are the medians over the repetitions of pages / wall time.
 * lib_service_p50/p99 are the library's own histogram (reading a fault to
 * installing it) of the last repetition.
 *
 * Prints one JSON object per line on stdout and a table on stderr. Links
 * the KVM simulator only for the VM object libmemfault hangs its handlers
 * on: no KVM is involved in any fault.
 *
 *   uffd-bench [--pages N] [--reps R] [--memory KIND] [--threads T]
 *                   (defaults 4096 pages, 21 pairs, every kind, 1 2 4 8)
 *
 * Exits 77 when userfaultfd is not usable (not permitted, qemu-user).
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <linux/kvm.h>
#include <linux/userfaultfd.h>

#include "bench-stats.h"
#include "kvmsim.h"
#include "memfault/memfault.h"

#define MAX_THREADS 8
#define MSG_BATCH 16

enum mem_kind { MEM_ANON, MEM_MEMFD, MEM_MEMFD_COPY, NR_MEM };
static const char *const mem_names[NR_MEM] = { "anon", "memfd-minor",
					       "memfd-copy" };
/* the kernel path, the same on both sides */
static const char *const modes[NR_MEM] = { "missing+copy", "minor+continue",
					   "missing+copy" };

static size_t ps;
static size_t npages = 4096;
static int reps = 21;

static uint64_t
now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* The page's contents, the same for both sides. */
static void
fill_page(void *dst, uint64_t page)
{
	uint64_t *w = dst;

	for (size_t i = 0; i < ps / 8; i++)
		w[i] = page * 0x9E3779B97F4A7C15ull + i;
}

/* ---- memory ---- */

struct mem {
	char *map, *alias;
	int fd;
	size_t size;
};

static int
mem_open(struct mem *m, enum mem_kind kind, int alias)
{
	memset(m, 0, sizeof(*m));
	m->fd = -1;
	m->size = npages * ps;
	if (kind == MEM_ANON) {
		m->map = mmap(NULL, m->size, PROT_READ | PROT_WRITE,
			      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		return m->map == MAP_FAILED ? -errno : 0;
	}
	m->fd = memfd_create("uffd-bench", MFD_CLOEXEC);
	if (m->fd < 0 || ftruncate(m->fd, (off_t)m->size))
		return -errno;
	m->map = mmap(NULL, m->size, PROT_READ | PROT_WRITE, MAP_SHARED, m->fd,
		      0);
	if (m->map == MAP_FAILED)
		return -errno;
	if (alias) {
		m->alias = mmap(NULL, m->size, PROT_READ | PROT_WRITE,
				MAP_SHARED, m->fd, 0);
		if (m->alias == MAP_FAILED)
			return -errno;
	}
	return 0;
}

static void
mem_close(struct mem *m)
{
	munmap(m->map, m->size);
	if (m->alias)
		munmap(m->alias, m->size);
	if (m->fd >= 0)
		close(m->fd);
}

/* ---- faulting threads ---- */

struct toucher {
	const char *base;
	size_t first, count;
	uint64_t *lat; /* ns per fault */
	pthread_barrier_t *start;
	pthread_t t;
};

static void *
toucher_main(void *arg)
{
	struct toucher *t = arg;

	pthread_barrier_wait(t->start);
	for (size_t i = 0; i < t->count; i++) {
		const volatile char *p = t->base + (t->first + i) * ps;
		uint64_t t0 = now_ns();

		(void)*p;
		t->lat[i] = now_ns() - t0;
	}
	return NULL;
}

/* Fault every page from @nthreads threads; the wall time in ns. */
static uint64_t
touch_all(const char *base, int nthreads, uint64_t *lat)
{
	struct toucher t[MAX_THREADS];
	pthread_barrier_t start;
	size_t per = npages / (size_t)nthreads;
	uint64_t t0;

	pthread_barrier_init(&start, NULL, (unsigned)nthreads + 1);
	for (int i = 0; i < nthreads; i++) {
		t[i] = (struct toucher){
			.base = base,
			.first = (size_t)i * per,
			.count = i == nthreads - 1 ? npages - (size_t)i * per
						   : per,
			.lat = lat + (size_t)i * per,
			.start = &start,
		};
		pthread_create(&t[i].t, NULL, toucher_main, &t[i]);
	}
	pthread_barrier_wait(&start);
	t0 = now_ns();
	for (int i = 0; i < nthreads; i++)
		pthread_join(t[i].t, NULL);
	t0 = now_ns() - t0;
	pthread_barrier_destroy(&start);
	return t0;
}

static int
check_all(const char *base)
{
	char *want = malloc(ps);
	int bad = 0;

	for (size_t p = 0; p < npages && want; p++) {
		fill_page(want, p);
		if (memcmp(base + p * ps, want, ps))
			bad++;
	}
	free(want);
	return want ? bad : -1;
}

/* ---- raw: a hand-written userfaultfd loop ---- */

struct raw {
	int uffd, stop;
	const char *base;
	char *bounce, *alias; /* alias: MINOR mode */
	pthread_t t;
};

static void *
raw_service(void *arg)
{
	struct raw *r = arg;
	struct pollfd p[2] = { { .fd = r->uffd, .events = POLLIN },
			       { .fd = r->stop, .events = POLLIN } };
	struct uffd_msg msg[MSG_BATCH];

	for (;;) {
		ssize_t n;

		if (poll(p, 2, -1) < 0)
			continue;
		if (p[1].revents)
			return NULL;
		n = read(r->uffd, msg, sizeof(msg));
		if (n <= 0)
			continue;
		for (ssize_t i = 0; i < n / (ssize_t)sizeof(msg[0]); i++) {
			uint64_t addr = msg[i].arg.pagefault.address &
					~(uint64_t)(ps - 1);
			struct uffdio_copy c = {
				.dst = addr,
				.src = (uintptr_t)r->bounce,
				.len = ps,
			};

			if (msg[i].event != UFFD_EVENT_PAGEFAULT)
				continue;
			if (r->alias) {
				/* MINOR: the page cache through the alias,
				 * then map it */
				struct uffdio_continue cc = {
					.range = { addr, ps },
				};
				uint64_t off = addr - (uintptr_t)r->base;

				fill_page(r->alias + off, off / ps);
				if (ioctl(r->uffd, UFFDIO_CONTINUE, &cc) &&
				    errno == EEXIST) {
					struct uffdio_range w = { addr, ps };

					ioctl(r->uffd, UFFDIO_WAKE, &w);
				}
				continue;
			}
			fill_page(r->bounce, (addr - (uintptr_t)r->base) / ps);
			if (ioctl(r->uffd, UFFDIO_COPY, &c) && errno == EEXIST) {
				struct uffdio_range w = { addr, ps };

				ioctl(r->uffd, UFFDIO_WAKE, &w);
			}
		}
	}
}

static int
raw_run(enum mem_kind kind, int nthreads, uint64_t *lat, uint64_t *ret_ns)
{
	struct uffdio_api api = { .api = UFFD_API };
	struct uffdio_register reg;
	struct raw r;
	struct mem m;
	uint64_t one = 1;
	int err;

	if (mem_open(&m, kind, kind == MEM_MEMFD))
		return -errno;
	r.uffd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	if (r.uffd < 0)
		return -errno;
	if (kind == MEM_MEMFD)
		api.features = UFFD_FEATURE_MINOR_SHMEM |
			       UFFD_FEATURE_MISSING_SHMEM;
	else if (kind != MEM_ANON)
		api.features = UFFD_FEATURE_MISSING_SHMEM;
	if (ioctl(r.uffd, UFFDIO_API, &api))
		return -errno;
	memset(&reg, 0, sizeof(reg));
	reg.range.start = (uintptr_t)m.map;
	reg.range.len = m.size;
	/* MINOR as the library registers it: holes of the memfd trap too
	 * (MISSING) and are served the same way, through the alias */
	reg.mode = kind == MEM_MEMFD ? UFFDIO_REGISTER_MODE_MINOR |
					       UFFDIO_REGISTER_MODE_MISSING
				     : UFFDIO_REGISTER_MODE_MISSING;
	if (ioctl(r.uffd, UFFDIO_REGISTER, &reg))
		return -errno;
	r.stop = eventfd(0, EFD_CLOEXEC);
	r.base = m.map;
	r.alias = m.alias;
	r.bounce = aligned_alloc(ps, ps);
	pthread_create(&r.t, NULL, raw_service, &r);

	*ret_ns = touch_all(m.map, nthreads, lat);
	err = check_all(m.map) ? -EIO : 0;

	if (write(r.stop, &one, sizeof(one)) < 0)
		err = -errno;
	pthread_join(r.t, NULL);
	close(r.stop);
	close(r.uffd);
	free(r.bounce);
	mem_close(&m);
	return err;
}

/* ---- lib: libmemfault ---- */

static int
lib_page_in(void *user, struct memfault_vcpu *vcpu, struct memfault_region *r,
	    uint64_t page, void *hva, uint64_t page_size)
{
	(void)user;
	(void)vcpu;
	(void)r;
	(void)page_size;
	fill_page(hva, page);
	return MEMFAULT_RESOLVED;
}

static struct memfault_vm *vm;

static int
lib_run(enum mem_kind kind, int nthreads, uint64_t *lat, uint64_t *ret_ns,
	struct memfault_uffd_stats *ret_stats)
{
	MEMFAULT_OPTS(memfault_uffd_opts, uo,
		      .flags = MEMFAULT_UFFD_SERVICE_THREAD);
	MEMFAULT_OPTS(memfault_region_opts, ro,
		      .flags = MEMFAULT_REGION_MISSING |
			       MEMFAULT_REGION_NO_MEMSLOT);
	struct memfault_region *region;
	struct memfault_uffd *u;
	struct mem m;
	int err;

	err = mem_open(&m, kind, kind == MEM_MEMFD);
	if (err)
		return err;
	err = memfault_region_new(vm, 0, 0x100000000ull, m.size, m.map, &ro,
				  &region);
	if (err)
		return err;
	err = memfault_uffd_new(vm, &uo, &u);
	if (err)
		return err;
	err = memfault_uffd_register(u, region,
				     kind == MEM_MEMFD ? MEMFAULT_UFFD_MINOR :
							 MEMFAULT_UFFD_MISSING,
				     m.alias);
	if (err)
		return err;

	*ret_ns = touch_all(m.map, nthreads, lat);
	err = check_all(m.map) ? -EIO : 0;

	memfault_uffd_get_stats(u, ret_stats, sizeof(*ret_stats));
	memfault_uffd_free(u);
	memfault_region_free(region);
	mem_close(&m);
	return err;
}

/* ---- statistics ---- */

static int
cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static uint64_t
pct(const uint64_t *sorted, size_t n, unsigned int p)
{
	size_t i = (n * p + 99) / 100;

	return sorted[i ? i - 1 : 0];
}

static int
uffd_usable(void)
{
	int fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);

	if (fd < 0)
		return 0;
	close(fd);
	return 1;
}

int
main(int argc, char **argv)
{
	static const int threads[] = { 1, 2, 4, 8 };
	struct kvmsim_config cfg = { KVMSIM_X86_64, KVMSIM_LEVEL_7_2, 0 };
	MEMFAULT_OPTS(memfault_handlers, h, .page_in = lib_page_in);
	int kvm_fd, vm_fd, only_mem = -1, only_threads = 0;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--pages") && i + 1 < argc) {
			npages = strtoull(argv[++i], NULL, 0);
		} else if (!strcmp(argv[i], "--reps") && i + 1 < argc) {
			reps = atoi(argv[++i]);
		} else if (!strcmp(argv[i], "--memory") && i + 1 < argc) {
			i++;
			for (int k = 0; k < NR_MEM; k++)
				if (!strcmp(argv[i], mem_names[k]))
					only_mem = k;
			if (only_mem < 0) {
				fprintf(stderr, "--memory: anon, memfd-minor or memfd-copy\n");
				return 2;
			}
		} else if (!strcmp(argv[i], "--threads") && i + 1 < argc) {
			only_threads = atoi(argv[++i]);
			if (only_threads != 1 && only_threads != 2 &&
			    only_threads != 4 && only_threads != 8) {
				fprintf(stderr, "--threads: 1, 2, 4 or 8\n");
				return 2;
			}
		} else {
			fprintf(stderr,
				"usage: %s [--pages N] [--reps R] [--memory KIND] [--threads T]\n",
				argv[0]);
			return 2;
		}
	}
	if (npages < MAX_THREADS || reps < 1 || reps > 199) {
		fprintf(stderr, "--pages must be >= 8, --reps 1..199\n");
		return 2;
	}
	ps = (size_t)sysconf(_SC_PAGESIZE);
	if (!uffd_usable()) {
		fprintf(stderr, "userfaultfd is not usable here\n");
		return 77;
	}
	cfg.quirks = kvmsim_default_quirks(cfg.arch, cfg.level);
	if (kvmsim_reset(&cfg))
		return 1;
	kvm_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	vm_fd = ioctl(kvm_fd, KVM_CREATE_VM, 0);
	if (vm_fd < 0 || memfault_vm_new(vm_fd, NULL, &vm) ||
	    memfault_vm_set_handlers(vm, &h)) {
		fprintf(stderr, "cannot create the VM object\n");
		return 1;
	}

	fprintf(stderr,
		"%-11s %3s %12s %12s %6s %9s %9s %9s %9s\n", "memory",
		"thr", "lib flt/s", "raw flt/s", "ratio", "lib p50", "lib p99",
		"raw p50", "raw p99");
	for (int k = 0; k < NR_MEM; k++) {
		if (only_mem >= 0 && k != only_mem)
			continue;
		for (size_t ti = 0; ti < sizeof(threads) / sizeof(threads[0]);
		     ti++) {
			int n = threads[ti];

			if (only_threads && n != only_threads)
				continue;
			uint64_t *llat = malloc(npages * (size_t)reps * 8);
			uint64_t *rlat = malloc(npages * (size_t)reps * 8);
			double lrate[199], rrate[199], pair[199], lmed, rmed;
			double pmed, plo, phi;
			struct memfault_uffd_stats st;
			uint64_t lns = 1, rns = 1;

			if (!llat || !rlat)
				return 1;
			for (int r = 0; r < reps; r++) {
				int e1, e2;

				/* A/B, then B/A: which side runs first
				 * alternates, so drift hits both alike */
				if (r % 2) {
					e2 = raw_run(k, n, rlat + (size_t)r * npages,
						     &rns);
					e1 = lib_run(k, n, llat + (size_t)r * npages,
						     &lns, &st);
				} else {
					e1 = lib_run(k, n, llat + (size_t)r * npages,
						     &lns, &st);
					e2 = raw_run(k, n, rlat + (size_t)r * npages,
						     &rns);
				}
				if (e1 || e2) {
					fprintf(stderr, "%s, %d threads: lib %d raw %d\n",
						mem_names[k], n, e1, e2);
					return 1;
				}
				lrate[r] = (double)npages * 1e9 / (double)lns;
				rrate[r] = (double)npages * 1e9 / (double)rns;
				pair[r] = lrate[r] / rrate[r];
			}
			pmed = median(pair, reps);
			median_ci(pair, reps, &plo, &phi);
			lmed = median(lrate, reps);
			rmed = median(rrate, reps);
			qsort(llat, npages * (size_t)reps, 8, cmp_u64);
			qsort(rlat, npages * (size_t)reps, 8, cmp_u64);
			printf("{\"bench\":\"uffd\",\"memory\":\"%s\",\"threads\":%d,"
			       "\"pages\":%zu,\"page_size\":%zu,\"reps\":%d,"
			       "\"lib_mode\":\"%s\",\"raw_mode\":\"%s\","
			       "\"order\":\"alternating pairs\","
			       "\"lib_faults_per_s\":%.0f,\"raw_faults_per_s\":%.0f,"
			       "\"ratio\":%.3f,\"ratio_ci95_lo\":%.3f,"
			       "\"ratio_ci95_hi\":%.3f,\"ratio_p25\":%.3f,"
			       "\"ratio_p75\":%.3f,\"ratio_min\":%.3f,"
			       "\"ratio_max\":%.3f,"
			       "\"lib_p50_us\":%.2f,\"lib_p99_us\":%.2f,"
			       "\"raw_p50_us\":%.2f,\"raw_p99_us\":%.2f,"
			       "\"lib_service_p50_us\":%.2f,\"lib_service_p99_us\":%.2f}\n",
			       mem_names[k], n, npages, ps, reps, modes[k],
			       modes[k], lmed, rmed, pmed, plo, phi,
			       pair[reps / 4], pair[(3 * reps) / 4], pair[0],
			       pair[reps - 1],
			       pct(llat, npages * (size_t)reps, 50) / 1e3,
			       pct(llat, npages * (size_t)reps, 99) / 1e3,
			       pct(rlat, npages * (size_t)reps, 50) / 1e3,
			       pct(rlat, npages * (size_t)reps, 99) / 1e3,
			       st.latency_p50_ns / 1e3, st.latency_p99_ns / 1e3);
			fflush(stdout);
			fprintf(stderr,
				"%-11s %3d %12.0f %12.0f %6.3f %7.1fus %7.1fus %7.1fus %7.1fus\n",
				mem_names[k], n, lmed, rmed, pmed,
				pct(llat, npages * (size_t)reps, 50) / 1e3,
				pct(llat, npages * (size_t)reps, 99) / 1e3,
				pct(rlat, npages * (size_t)reps, 50) / 1e3,
				pct(rlat, npages * (size_t)reps, 99) / 1e3);
			free(llat);
			free(rlat);
		}
	}
	memfault_vm_free(vm);
	close(vm_fd);
	close(kvm_fd);
	return 0;
}
