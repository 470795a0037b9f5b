/* SPDX-License-Identifier: MIT */
/*
 * linux-vmm.c - boot a real Linux guest (x86-64) whose RAM is served lazily
 * through libmemfault, as the destination of a post-copy migration would.
 *
 * The VMM loads a bzImage (32-bit boot protocol: boot_params with an e820
 * map, the command line, the initramfs placed high) and an MP table (so
 * that more than one vCPU boots) into a RAM image. It never writes that
 * image into the guest: a page-source child process (fork) holds it and
 * answers page requests over a pair of pipes (small test kernels have no
 * AF_UNIX sockets). The guest RAM is one libmemfault region that starts
 * with every page missing:
 *
 *   - a vCPU touching a missing page gets a KVM Userfault exit
 *     (MEMFAULT_REGION_USERFAULT), which memfault_vcpu_run_dispatch()
 *     resolves through the page_in() handler below;
 *   - every other access (the VMM's own threads, KVM's accesses through
 *     the host mapping) faults on the region's userfaultfd
 *     (memfault_uffd_register(), MISSING mode), served by the library's
 *     service thread through the same page_in() and the same bitmap.
 *
 * The page source counts requests per page and sends, with each page, a
 * checksum of the page as its image holds it; page_in() checksums what it
 * wrote. After the guest resets, the VMM checks: every fetched page
 * arrived intact, no page was requested twice, and the pages fetched are
 * exactly the pages the guest memory has resident (mincore()).
 *
 * The guest command line needs noxsave (the supported CPUID passed through
 * gives an XSAVE size the guest rejects), lpj= and no_timer_check (nested
 * SVM under TCG delivers timer interrupts late, so calibration and the
 * IO-APIC timer check can fail on a loaded host).
 *
 * Devices: the in-kernel irqchip and PIT, an 8250 UART at 0x3f8 (output,
 * transmitter-empty interrupt, loopback for the driver's autoconfiguration),
 * port 0x64 reads as 0 and a write of 0xfe there (reboot=k) ends the run.
 *
 * Usage: linux-vmm --kernel bzImage --initrd initrd.gz [--mem MiB]
 *        [--cpus N] [--append "cmdline"] [--eager] [--timeout s]
 *        [--snapshot-at N]
 * --snapshot-at N: when the guest prints "GUEST: tick N", pause it, save
 * its vCPU and device state and its RAM (as a new page source's image),
 * and restore it into a fresh VM whose RAM starts all missing again: the
 * guest goes on from where it stopped, its pages served lazily
 * (Firecracker-style lazy restore).
 * --eager copies the image into RAM up front (no page source), for
 * comparison. Exit status 0 only if the guest reset and every check passed.
 * MEMFAULT_LINUX_VMM_MUTANT (test only) breaks one step on purpose:
 * "dup" requests one page twice, "byte" makes the source corrupt a byte,
 * "extra" requests a page nobody touched, "stale" restores a snapshot
 * from the boot image instead of the guest's pages.
 *
 * arm64 is not done: its boot protocol (Image header, a device tree) and
 * devices (GIC, PL011) would be a second VMM of their own.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <linux/kvm.h> /* the project's copy of the Linux 7.2 uapi */
#include <memfault/memfault.h>

#if defined(__x86_64__)

#define PAGE           4096u
#define MAX_CPUS       8
#define BOOT_PARAMS    0x10000u
#define CMDLINE_ADDR   0x20000u
#define MPTABLE_ADDR   0xf0000u
#define KERNEL_ADDR    0x100000u
#define IOAPIC_ADDR    0xfec00000u
#define PAGE_REQ_STATS UINT64_MAX

struct source_stats {
	uint64_t requests, distinct, duplicates;
};

struct vmm {
	uint64_t mem_size, npages;
	int ncpus;
	bool eager;
	bool restoring; /* setup() restores a snapshot instead of booting */
	const char *mutant;
	uint8_t *image; /* the RAM image: the page source's copy */
	uint8_t *ram;   /* the region's memory */

	/* the page source: its pid and pipes, one request at a time */
	pid_t source;
	int req_fd, rep_fd;
	pthread_mutex_t source_lock;
	uint64_t *src_sum, *got_sum; /* per page, written by page_in() */
	uint32_t *fetched;           /* per page, page_in() calls */
	uint64_t fetch_ns, fetches;  /* under source_lock */

	int kvm_fd, vm_fd;
	struct memfault_vm *vm;
	struct memfault_region *region;
	struct memfault_uffd *uffd;
	struct memfault_vcpu *vcpu[MAX_CPUS];
	pthread_t thread[MAX_CPUS];
	int vcpu_rc[MAX_CPUS];

	/* the UART, under uart_lock */
	pthread_mutex_t uart_lock;
	uint8_t ier, lcr, mcr, scr, dll, dlm, rbr;
	bool rx_ready, thre_pending;
	bool panicked; /* the guest printed "Kernel panic" */
	char line[256];
	size_t line_len;

	/* snapshot: pause after the guest printed "GUEST: tick N" */
	int snapshot_at;
	int snapshot; /* atomic: the stop is a pause for a snapshot */
	int last_tick;

	double t_start, t_init; /* t_init: "GUEST: init" seen */
	int stop;               /* atomic: the guest reset, or a timeout */
	int reset;              /* atomic: the stop was the guest's reset */
};

static double
now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* FNV-1a, 64 bits: cheap, and any changed byte changes it. */
static uint64_t
page_sum(const uint8_t *p)
{
	uint64_t h = 0xcbf29ce484222325ull;

	for (unsigned i = 0; i < PAGE; i++)
		h = (h ^ p[i]) * 0x100000001b3ull;
	return h;
}

static int
xfer(int fd, void *buf, size_t len, bool wr)
{
	uint8_t *p = buf;

	while (len) {
		ssize_t n = wr ? write(fd, p, len) : read(fd, p, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n ? -errno : -EPIPE;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* ---- the page source (child process) ---------------------------------- */

static void
source_main(struct vmm *v, int rfd, int wfd)
{
	uint32_t *count = calloc(v->npages, sizeof(*count));
	struct source_stats st = { 0 };
	uint8_t buf[PAGE + 8];
	uint64_t page, sum;
	bool corrupt = v->mutant && !strcmp(v->mutant, "byte");

	if (!count)
		_exit(2);
	while (xfer(rfd, &page, sizeof(page), false) == 0) {
		if (page == PAGE_REQ_STATS) {
			if (xfer(wfd, &st, sizeof(st), true))
				_exit(2);
			continue;
		}
		if (page >= v->npages)
			_exit(3);
		st.requests++;
		if (count[page]++)
			st.duplicates++;
		else
			st.distinct++;
		memcpy(buf, v->image + page * PAGE, PAGE);
		sum = page_sum(buf);
		memcpy(buf + PAGE, &sum, sizeof(sum));
		/* mutant: the 100th page sent has one byte wrong */
		if (corrupt && st.requests == 100)
			buf[17] ^= 0x40;
		if (xfer(wfd, buf, sizeof(buf), true))
			_exit(2);
	}
	_exit(0);
}

static int
source_start(struct vmm *v)
{
	int req[2], rep[2];

	if (pipe2(req, O_CLOEXEC) || pipe2(rep, O_CLOEXEC))
		return -errno;
	fflush(NULL);
	v->source = fork();
	if (v->source < 0)
		return -errno;
	if (v->source == 0) {
		close(req[1]);
		close(rep[0]);
		source_main(v, req[0], rep[1]);
	}
	close(req[0]);
	close(rep[1]);
	v->req_fd = req[1];
	v->rep_fd = rep[0];
	/* From now on only the source holds the image. */
	munmap(v->image, v->mem_size);
	v->image = NULL;
	return 0;
}

/* Ask the source for @page into @dst; returns the source's checksum. */
static int
source_fetch(struct vmm *v, uint64_t page, uint8_t *dst, uint64_t *sum)
{
	uint8_t buf[PAGE + 8];
	double t0 = now();
	int r;

	pthread_mutex_lock(&v->source_lock);
	r = xfer(v->req_fd, &page, sizeof(page), true);
	if (!r)
		r = xfer(v->rep_fd, buf, sizeof(buf), false);
	v->fetch_ns += (uint64_t)((now() - t0) * 1e9);
	v->fetches++;
	pthread_mutex_unlock(&v->source_lock);
	if (r)
		return r;
	memcpy(dst, buf, PAGE);
	memcpy(sum, buf + PAGE, sizeof(*sum));
	return 0;
}

static int
source_stats(struct vmm *v, struct source_stats *st)
{
	uint64_t q = PAGE_REQ_STATS;
	int r;

	pthread_mutex_lock(&v->source_lock);
	r = xfer(v->req_fd, &q, sizeof(q), true);
	if (!r)
		r = xfer(v->rep_fd, st, sizeof(*st), false);
	pthread_mutex_unlock(&v->source_lock);
	return r;
}

/*
 * page_in(): a vCPU's KVM Userfault exit, or a host access caught by
 * userfaultfd, needs @page. @hva is the library's buffer (installed with
 * UFFDIO_COPY after we return), so checksumming it checks what the guest
 * gets.
 */
static int
page_in(void *user, struct memfault_vcpu *vcpu, struct memfault_region *region,
	uint64_t page, void *hva, uint64_t page_size)
{
	struct vmm *v = user;
	uint64_t sum;
	int r;

	(void)vcpu;
	(void)region;
	if (page_size != PAGE || page >= v->npages)
		return -EINVAL;
	r = source_fetch(v, page, hva, &sum);
	if (r)
		return r;
	/* mutant: the 50th page-in asks the source twice */
	if (v->mutant && !strcmp(v->mutant, "dup") &&
	    __atomic_load_n(&v->fetches, __ATOMIC_RELAXED) == 50)
		source_fetch(v, page, hva, &sum);
	__atomic_store_n(&v->src_sum[page], sum, __ATOMIC_RELAXED);
	__atomic_store_n(&v->got_sum[page], page_sum(hva), __ATOMIC_RELAXED);
	__atomic_add_fetch(&v->fetched[page], 1, __ATOMIC_RELAXED);
	return MEMFAULT_RESOLVED;
}

static void
log_message(void *user, int level, const char *message)
{
	(void)user;
	if (level <= 4)
		fprintf(stderr, "libmemfault: %s\n", message);
}

/* ---- the RAM image: bzImage, boot_params, e820, MP table --------------- */

static int
read_file(const char *path, uint8_t **data, size_t *len)
{
	struct stat st;
	int fd = open(path, O_RDONLY | O_CLOEXEC), r = 0;

	if (fd < 0 || fstat(fd, &st))
		return -errno;
	*len = (size_t)st.st_size;
	*data = malloc(*len ? *len : 1);
	if (!*data)
		r = -ENOMEM;
	else
		r = xfer(fd, *data, *len, false);
	close(fd);
	return r;
}

static void
put16(uint8_t *p, uint16_t x)
{
	memcpy(p, &x, 2);
}

static void
put32(uint8_t *p, uint32_t x)
{
	memcpy(p, &x, 4);
}

static void
put64(uint8_t *p, uint64_t x)
{
	memcpy(p, &x, 8);
}

static uint8_t
mp_checksum(const uint8_t *p, size_t len)
{
	uint8_t s = 0;

	while (len--)
		s += *p++;
	return (uint8_t)-s;
}

/*
 * An MP configuration table (Intel MP spec 1.4): the only firmware table
 * this guest gets. One processor entry per vCPU (APIC id = vCPU id), an
 * ISA bus, the IOAPIC, ISA IRQ i on IOAPIC pin i (KVM's default routing),
 * the external-interrupt line on LINT0 and NMI on LINT1.
 */
static void
build_mptable(uint8_t *base, int ncpus)
{
	uint8_t *fp = base, *ct = base + 16, *e = ct + 44;
	uint16_t n = 0;

	for (int i = 0; i < ncpus; i++, n++, e += 20) {
		e[0] = 0; /* processor */
		e[1] = (uint8_t)i;
		e[2] = 0x14;
		e[3] = 1 | (i == 0 ? 2 : 0); /* enabled, bootstrap */
		put32(e + 4, 0x600);
		put32(e + 8, 0x201); /* FPU, APIC */
	}
	e[0] = 1; /* bus 0: ISA */
	memcpy(e + 2, "ISA   ", 6);
	e += 8, n++;
	e[0] = 2; /* IOAPIC */
	e[1] = (uint8_t)ncpus;
	e[2] = 0x11;
	e[3] = 1;
	put32(e + 4, IOAPIC_ADDR);
	e += 8, n++;
	for (int irq = 0; irq < 16; irq++, e += 8, n++) {
		e[0] = 3; /* I/O interrupt */
		e[1] = 0; /* INT */
		e[4] = 0; /* bus */
		e[5] = (uint8_t)irq;
		e[6] = (uint8_t)ncpus;
		e[7] = (uint8_t)irq;
	}
	for (int lint = 0; lint < 2; lint++, e += 8, n++) {
		e[0] = 4;            /* local interrupt */
		e[1] = lint ? 1 : 3; /* NMI, external interrupt */
		e[6] = 0xff;
		e[7] = (uint8_t)lint;
	}
	memcpy(ct, "PCMP", 4);
	put16(ct + 4, (uint16_t)(e - ct));
	ct[6] = 4;
	memcpy(ct + 8, "MEMFAULT", 8);
	memcpy(ct + 16, "LINUX-VMM   ", 12);
	put16(ct + 34, n);
	put32(ct + 36, 0xfee00000u);
	ct[7] = mp_checksum(ct, (size_t)(e - ct));
	memcpy(fp, "_MP_", 4);
	put32(fp + 4, MPTABLE_ADDR + 16);
	fp[8] = 1;
	fp[9] = 4;
	fp[10] = mp_checksum(fp, 16);
}

static int
build_image(struct vmm *v, const char *kernel, const char *initrd,
	    const char *cmdline)
{
	uint8_t *kimg, *rd, *bp;
	size_t klen, rdlen, setup_len, hdr_end;
	uint32_t rd_addr, rd_max;
	int r;

	v->image = mmap(NULL, v->mem_size, PROT_READ | PROT_WRITE,
			MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (v->image == MAP_FAILED)
		return -errno;
	r = read_file(kernel, &kimg, &klen);
	if (r)
		return r;
	if (klen < 0x300 || memcmp(kimg + 0x202, "HdrS", 4) ||
	    kimg[0x206] + kimg[0x207] * 256 < 0x20c) {
		fprintf(stderr, "%s: not a bzImage of boot protocol 2.12+\n",
			kernel);
		return -EINVAL;
	}
	setup_len = ((kimg[0x1f1] ? kimg[0x1f1] : 4) + 1) * 512u;
	if (setup_len >= klen || KERNEL_ADDR + klen > v->mem_size / 2)
		return -EINVAL;
	memcpy(v->image + KERNEL_ADDR, kimg + setup_len, klen - setup_len);

	/* boot_params: the setup header as the image has it, then ours */
	bp = v->image + BOOT_PARAMS;
	hdr_end = 0x202 + kimg[0x201];
	memcpy(bp + 0x1f1, kimg + 0x1f1, hdr_end - 0x1f1);
	put16(bp + 0x1fa, 0xffff); /* vid_mode: normal */
	bp[0x210] = 0xff;          /* type_of_loader: undefined */
	bp[0x211] |= 0x80;         /* loadflags: CAN_USE_HEAP */
	put16(bp + 0x224, 0xfe00); /* heap_end_ptr */
	put32(bp + 0x228, CMDLINE_ADDR);
	if (strlen(cmdline) >= 4096)
		return -E2BIG;
	strcpy((char *)v->image + CMDLINE_ADDR, cmdline);

	r = read_file(initrd, &rd, &rdlen);
	if (r)
		return r;
	memcpy(&rd_max, kimg + 0x22c, 4);
	rd_addr = (uint32_t)((v->mem_size < (uint64_t)rd_max + 1
				      ? v->mem_size
				      : (uint64_t)rd_max + 1) -
			     rdlen) &
		  ~(PAGE - 1);
	if (rd_addr < KERNEL_ADDR + 64u * 1024 * 1024 / 2)
		return -E2BIG;
	memcpy(v->image + rd_addr, rd, rdlen);
	put32(bp + 0x218, rd_addr);
	put32(bp + 0x21c, (uint32_t)rdlen);

	/* e820: low RAM, the BIOS hole (the MP table lives there), RAM */
	uint8_t *e = bp + 0x2d0;
	put64(e, 0);
	put64(e + 8, 0x9fc00);
	put32(e + 16, 1);
	put64(e + 20, 0x9fc00);
	put64(e + 28, 0x100000 - 0x9fc00);
	put32(e + 36, 2);
	put64(e + 40, 0x100000);
	put64(e + 48, v->mem_size - 0x100000);
	put32(e + 56, 1);
	bp[0x1e8] = 3;
	build_mptable(v->image + MPTABLE_ADDR, v->ncpus);
	free(kimg);
	free(rd);
	return 0;
}

/* ---- the UART (8250 at 0x3f8, IRQ 4) ------------------------------------- */

static void
uart_irq(struct vmm *v)
{
	struct kvm_irq_level irq = { .irq = 4 };

	irq.level = (v->rx_ready && (v->ier & 1)) ||
		    (v->thre_pending && (v->ier & 2));
	ioctl(v->vm_fd, KVM_IRQ_LINE, &irq);
}

static void stop_all(struct vmm *v);

static void
uart_putc(struct vmm *v, uint8_t c)
{
	if (c == '\r')
		return;
	if (c != '\n' && v->line_len < sizeof(v->line) - 1) {
		v->line[v->line_len++] = (char)c;
		return;
	}
	v->line[v->line_len] = 0;
	printf("%s\n", v->line);
	fflush(stdout);
	if (strstr(v->line, "Kernel panic"))
		v->panicked = true;
	if (!v->t_init && strstr(v->line, "GUEST: init"))
		v->t_init = now();
	if (sscanf(v->line, "GUEST: tick %d", &v->last_tick) == 1 &&
	    v->last_tick == v->snapshot_at) {
		__atomic_store_n(&v->snapshot, 1, __ATOMIC_RELEASE);
		stop_all(v);
	}
	v->line_len = 0;
}

static void
uart_io(struct vmm *v, uint16_t port, bool out, uint8_t *data)
{
	unsigned reg = port - 0x3f8;
	bool dlab = v->lcr & 0x80;

	pthread_mutex_lock(&v->uart_lock);
	if (out) {
		uint8_t x = *data;

		switch (reg) {
		case 0:
			if (dlab) {
				v->dll = x;
			} else if (v->mcr & 0x10) { /* loopback */
				v->rbr = x;
				v->rx_ready = true;
			} else {
				uart_putc(v, x);
				v->thre_pending = true;
			}
			break;
		case 1:
			if (dlab) {
				v->dlm = x;
			} else {
				/* enabling THRI with an empty THR raises it */
				if ((x & 2) && !(v->ier & 2))
					v->thre_pending = true;
				v->ier = x & 0x0f;
			}
			break;
		case 3:
			v->lcr = x;
			break;
		case 4:
			v->mcr = x & 0x1f;
			break;
		case 7:
			v->scr = x;
			break;
		default:
			break; /* FCR, LSR, MSR */
		}
	} else {
		switch (reg) {
		case 0:
			*data = dlab ? v->dll : v->rbr;
			if (!dlab)
				v->rx_ready = false;
			break;
		case 1:
			*data = dlab ? v->dlm : v->ier;
			break;
		case 2: /* IIR: no FIFO, so the driver sees a 16450 */
			if (v->rx_ready && (v->ier & 1)) {
				*data = 0x04;
			} else if (v->thre_pending && (v->ier & 2)) {
				*data = 0x02;
				v->thre_pending = false;
			} else {
				*data = 0x01;
			}
			break;
		case 3:
			*data = v->lcr;
			break;
		case 4:
			*data = v->mcr;
			break;
		case 5:
			*data = 0x60 | (v->rx_ready ? 1 : 0);
			break;
		case 6:
			if (v->mcr &
			    0x10) /* loopback: the MCR lines come back */
				*data = (uint8_t)(((v->mcr & 1) << 5) |
						  ((v->mcr & 2) << 3) |
						  ((v->mcr & 4) << 4) |
						  ((v->mcr & 8) << 4));
			else
				*data = 0xb0; /* DCD, DSR, CTS */
			break;
		default:
			*data = v->scr;
			break;
		}
	}
	uart_irq(v);
	pthread_mutex_unlock(&v->uart_lock);
}

/* ---- vCPUs ------------------------------------------------------------------
 */

static void
stop_all(struct vmm *v)
{
	__atomic_store_n(&v->stop, 1, __ATOMIC_RELEASE);
	for (int i = 0; i < v->ncpus; i++)
		if (v->vcpu[i])
			memfault_vcpu_kick(v->vcpu[i]);
}

static void
handle_io(struct vmm *v, struct kvm_run *run)
{
	uint8_t *data = (uint8_t *)run + run->io.data_offset;
	bool out = run->io.direction == KVM_EXIT_IO_OUT;
	uint16_t port = run->io.port;

	for (uint32_t i = 0; i < run->io.count; i++, data += run->io.size) {
		if (port >= 0x3f8 && port <= 0x3ff && run->io.size == 1) {
			uart_io(v, port, out, data);
		} else if (port == 0x64) {
			if (out &&
			    *data == 0xfe) { /* keyboard controller reset */
				__atomic_store_n(&v->reset, 1,
						 __ATOMIC_RELEASE);
				stop_all(v);
			} else if (!out) {
				memset(data, 0, run->io.size);
			}
		} else if (!out) {
			memset(data, 0xff, run->io.size); /* nothing there */
		}
	}
}

static struct vmm the_vmm;

/*
 * Thread placement (a no-op on one CPU): the VMM's main thread, and so the
 * page source and the library's userfaultfd thread it starts, on the
 * first CPU, and vCPU i on CPU i modulo the CPUs there are. Seen under
 * nested SVM emulated by TCG: an L1 CPU running a guest takes its own
 * interrupts late (an IPI that wakes the page source on another CPU cost
 * 3 ms), and two vCPUs of a guest sharing the only L1 CPU could starve
 * each other (one spinning in the guest for the other) and hang L1.
 */
static cpu_set_t all_cpus; /* the process's CPUs at start */

static void
pin_to(int index)
{
	cpu_set_t one;
	int n = CPU_COUNT(&all_cpus), want;

	if (n < 2)
		return;
	want = index % n;
	CPU_ZERO(&one);
	for (int c = 0, k = 0; c < CPU_SETSIZE; c++) {
		if (CPU_ISSET(c, &all_cpus) && k++ == want) {
			CPU_SET(c, &one);
			break;
		}
	}
	sched_setaffinity(0, sizeof(one), &one);
}
static unsigned watchdog_seconds = 60;

static void *
vcpu_main(void *arg)
{
	struct memfault_vcpu *vcpu = arg;
	struct vmm *v = &the_vmm;
	struct kvm_run *run;
	int i, r;

	memfault_vcpu_get_run(vcpu, &run);
	for (i = 0; i < v->ncpus; i++)
		if (v->vcpu[i] == vcpu)
			pin_to(i);
	for (;;) {
		if (__atomic_load_n(&v->stop, __ATOMIC_ACQUIRE)) {
			/*
			 * Before its state is saved, KVM must complete the
			 * exit just handled (an IN's data goes into the
			 * guest's register on the next entry): one more
			 * KVM_RUN with immediate_exit, which the kick sets.
			 */
			r = 0;
			if (__atomic_load_n(&v->snapshot, __ATOMIC_ACQUIRE)) {
				memfault_vcpu_kick(vcpu);
				r = memfault_vcpu_run(vcpu);
				r = r == MEMFAULT_RUN_INTERRUPTED ? 0 : -EIO;
			}
			break;
		}
		r = memfault_vcpu_run_dispatch(vcpu);
		if (r == MEMFAULT_RUN_INTERRUPTED || r == MEMFAULT_RUN_RETRY)
			continue;
		if (r != MEMFAULT_RUN_EXIT)
			break; /* an unresolved fault or an error */
		if (run->exit_reason == KVM_EXIT_IO) {
			handle_io(v, run);
		} else if (run->exit_reason == KVM_EXIT_SHUTDOWN) {
			fprintf(stderr, "vcpu: shutdown (triple fault)\n");
			r = -ESHUTDOWN;
			break;
		} else if (run->exit_reason != KVM_EXIT_HLT) {
			fprintf(stderr, "vcpu: unexpected exit %u\n",
				run->exit_reason);
			r = -EIO;
			break;
		}
	}
	for (i = 0; i < v->ncpus; i++)
		if (v->vcpu[i] == vcpu)
			v->vcpu_rc[i] = r;
	if (r < 0 || r == MEMFAULT_RUN_MEMORY_FAULT) {
		fprintf(stderr, "vcpu: stopped with %d (%s)\n", r,
			r < 0 ? strerror(-r) : "fault");
		stop_all(v);
	}
	return NULL;
}

static int
fail(const char *what, int r)
{
	fprintf(stderr, "linux-vmm: %s: %s\n", what, strerror(r < 0 ? -r : r));
	return r < 0 ? r : -r;
}

static int
setup_cpuid(struct vmm *v, int fd, int id)
{
	int n = 256;
	struct kvm_cpuid2 *c =
		calloc(1, sizeof(*c) + n * sizeof(c->entries[0]));

	if (!c)
		return -ENOMEM;
	c->nent = (uint32_t)n;
	if (ioctl(v->kvm_fd, KVM_GET_SUPPORTED_CPUID, c))
		return -errno;
	for (uint32_t i = 0; i < c->nent; i++) {
		struct kvm_cpuid_entry2 *e = &c->entries[i];

		if (e->function == 1)
			e->ebx = (e->ebx & 0x00ffffff) | ((uint32_t)id << 24);
		if (e->function == 0xb || e->function == 0x1f)
			e->edx = (uint32_t)id;
	}
	n = ioctl(fd, KVM_SET_CPUID2, c) ? -errno : 0;
	free(c);
	return n;
}

/* The 32-bit boot protocol's entry state: flat segments, paging off. */
static int
setup_bsp(int fd)
{
	struct kvm_sregs s;
	struct kvm_regs regs = { .rip = KERNEL_ADDR,
				 .rsi = BOOT_PARAMS,
				 .rflags = 2 };
	struct kvm_segment cs = { .base = 0,
				  .limit = 0xffffffff,
				  .selector = 0x10,
				  .type = 0xb,
				  .present = 1,
				  .db = 1,
				  .s = 1,
				  .g = 1 };
	struct kvm_segment ds = cs;

	if (ioctl(fd, KVM_GET_SREGS, &s))
		return -errno;
	ds.selector = 0x18;
	ds.type = 0x3;
	s.cs = cs;
	s.ds = s.es = s.fs = s.gs = s.ss = ds;
	s.cr0 |= 1;
	s.cr0 &= ~(1ul << 31);
	if (ioctl(fd, KVM_SET_SREGS, &s) || ioctl(fd, KVM_SET_REGS, &regs))
		return -errno;
	return 0;
}

static int
setup(struct vmm *v)
{
	MEMFAULT_OPTS(memfault_handlers, handlers, .user = v,
		      .page_in = page_in, .log = log_message);
	MEMFAULT_OPTS(memfault_region_opts, ropts,
		      .flags = v->eager ? 0
					: MEMFAULT_REGION_USERFAULT |
						  MEMFAULT_REGION_MISSING);
	MEMFAULT_OPTS(memfault_uffd_opts, uopts,
		      .flags = MEMFAULT_UFFD_SERVICE_THREAD);
	MEMFAULT_OPTS(memfault_vcpu_opts, vopts,
		      .flags = MEMFAULT_VCPU_OWN_FD |
			       MEMFAULT_VCPU_TIME_HANDLERS);
	struct kvm_pit_config pit = { 0 };
	int r;

	v->kvm_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (v->kvm_fd < 0)
		return fail("open /dev/kvm", -errno);
	v->vm_fd = ioctl(v->kvm_fd, KVM_CREATE_VM, 0);
	if (v->vm_fd < 0)
		return fail("KVM_CREATE_VM", -errno);
	MEMFAULT_OPTS(memfault_vm_opts, vmopts, .flags = MEMFAULT_VM_OWN_FD,
		      .kvm_fd = v->kvm_fd);
	r = memfault_vm_new(v->vm_fd, &vmopts, &v->vm);
	if (r)
		return fail("memfault_vm_new", r);
	r = memfault_vm_set_handlers(v->vm, &handlers);
	if (r)
		return fail("memfault_vm_set_handlers", r);
	if (ioctl(v->vm_fd, KVM_SET_TSS_ADDR, 0xfffbd000ul) ||
	    ioctl(v->vm_fd, KVM_CREATE_IRQCHIP, 0) ||
	    ioctl(v->vm_fd, KVM_CREATE_PIT2, &pit))
		return fail("irqchip/PIT", -errno);

	v->ram = mmap(NULL, v->mem_size, PROT_READ | PROT_WRITE,
		      MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (v->ram == MAP_FAILED)
		return fail("mmap RAM", -errno);
	if (v->eager) {
		memcpy(v->ram, v->image, v->mem_size);
		munmap(v->image, v->mem_size);
		v->image = NULL;
	} else {
		r = source_start(v);
		if (r)
			return fail("page source", r);
	}
	r = memfault_region_new(v->vm, 0, 0, v->mem_size, v->ram, &ropts,
				&v->region);
	if (r)
		return fail("memfault_region_new (KVM Userfault)", r);
	if (!v->eager) {
		r = memfault_uffd_new(v->vm, &uopts, &v->uffd);
		if (r)
			return fail("memfault_uffd_new", r);
		r = memfault_uffd_register(v->uffd, v->region,
					   MEMFAULT_UFFD_MISSING, NULL);
		if (r)
			return fail("memfault_uffd_register", r);
	}
	for (int i = 0; i < v->ncpus; i++) {
		int fd = ioctl(v->vm_fd, KVM_CREATE_VCPU, i);

		if (fd < 0)
			return fail("KVM_CREATE_VCPU", -errno);
		r = setup_cpuid(v, fd, i);
		if (!r && i == 0 && !v->restoring)
			r = setup_bsp(fd);
		if (r) {
			close(fd);
			return fail("vCPU setup", r);
		}
		r = memfault_vcpu_new(v->vm, fd, &vopts, &v->vcpu[i]);
		if (r) {
			close(fd);
			return fail("memfault_vcpu_new", r);
		}
		if (v->uffd) {
			r = memfault_uffd_add_vcpu(v->uffd, v->vcpu[i]);
			if (r)
				return fail("memfault_uffd_add_vcpu", r);
		}
	}
	return 0;
}

/* ---- the checks after the run ------------------------------------------- */

static int
check(struct vmm *v)
{
	uint64_t fetched = 0, twice = 0, bad = 0, resident = 0, missing = 0;
	unsigned char *vec = malloc(v->npages);
	struct source_stats st = { 0 };
	int ok = 1;

	if (!vec)
		return 0;
	for (uint64_t p = 0; p < v->npages; p++) {
		uint32_t n = __atomic_load_n(&v->fetched[p], __ATOMIC_RELAXED);

		fetched += n ? 1 : 0;
		twice += n > 1;
		if (n && v->src_sum[p] != v->got_sum[p]) {
			if (bad++ < 5)
				printf("check: page %" PRIu64 " (gpa 0x%" PRIx64
				       "): checksum %016" PRIx64
				       " != source's %016" PRIx64 "\n",
				       p, p * PAGE, v->got_sum[p],
				       v->src_sum[p]);
		}
	}
	/* the pages the guest memory holds: touched by somebody, so fetched */
	if (mincore(v->ram, v->mem_size, vec) == 0)
		for (uint64_t p = 0; p < v->npages; p++)
			resident += vec[p] & 1;
	free(vec);
	memfault_region_count_missing(v->region, &missing);
	if (source_stats(v, &st))
		printf("check: the page source did not answer\n"), ok = 0;
	printf("pages: %" PRIu64 " fetched (%" PRIu64 " KiB), %" PRIu64
	       " resident, %" PRIu64 " present in the bitmap, source: %" PRIu64
	       " requests, %" PRIu64 " distinct pages, %" PRIu64
	       " duplicates\n",
	       fetched, fetched * 4, resident, v->npages - missing, st.requests,
	       st.distinct, st.duplicates);
	if (st.duplicates || twice) {
		printf("check: FAILED: %" PRIu64
		       " pages requested twice (%" PRIu64 " page-ins twice)\n",
		       st.duplicates, twice);
		ok = 0;
	}
	if (st.requests != fetched || st.distinct != fetched ||
	    resident != fetched || v->npages - missing != fetched) {
		printf("check: FAILED: fetched, requested, resident and "
		       "present differ\n");
		ok = 0;
	}
	if (bad) {
		printf("check: FAILED: %" PRIu64
		       " pages differ from the source's image\n",
		       bad);
		ok = 0;
	}
	if (ok)
		printf("check: OK: every touched page fetched exactly once, "
		       "all %" PRIu64 " checksums equal the source's\n",
		       fetched);
	return ok;
}

static void
report(struct vmm *v)
{
	struct memfault_vcpu_stats t = { 0 };

	for (int i = 0; i < v->ncpus; i++) {
		struct memfault_vcpu_stats s = { 0 };

		memfault_vcpu_get_stats(v->vcpu[i], &s, sizeof(s));
		printf("vcpu%d: %" PRIu64 " runs, %" PRIu64 " exits, %" PRIu64
		       " userfault exits, %" PRIu64 " page-ins, %" PRIu64
		       " waits, %" PRIu64 " uffd faults, handlers %.1f ms\n",
		       i, s.runs, s.exits, s.userfaults, s.page_ins,
		       s.page_waits, s.uffd_faults, s.handler_ns / 1e6);
		t.userfaults += s.userfaults;
		t.page_ins += s.page_ins;
		t.handler_ns += s.handler_ns;
	}
	if (v->uffd) {
		struct memfault_uffd_stats u = { 0 };

		memfault_uffd_get_stats(v->uffd, &u, sizeof(u));
		printf("uffd: %" PRIu64 " faults, %" PRIu64
		       " page-ins, %" PRIu64
		       " KVM-exit page-ins installed, %" PRIu64
		       " waits, p50 %" PRIu64 " us\n",
		       u.faults, u.page_ins, u.kvm_page_ins, u.waits,
		       u.latency_p50_ns / 1000);
	}
	printf("timing: init at %.3f s, run %.3f s, %" PRIu64
	       " source fetches %.1f ms (%.1f us each), handlers %.1f ms\n",
	       v->t_init ? v->t_init - v->t_start : -1.0, now() - v->t_start,
	       v->fetches, v->fetch_ns / 1e6,
	       v->fetches ? v->fetch_ns / 1e3 / v->fetches : 0.0,
	       t.handler_ns / 1e6);
}

/* The run's time limit, and a kick of every vCPU every 100 ms. */
static void *
watchdog(void *arg)
{
	struct vmm *v = arg;

	for (unsigned i = 0; i < watchdog_seconds * 10; i++) {
		if (__atomic_load_n(&v->stop, __ATOMIC_ACQUIRE))
			return NULL;
		usleep(100000);
		/*
		 * Under nested SVM emulated by TCG, a timer interrupt can stay
		 * pending without being injected until the vCPU exits (seen
		 * as hangs in delay calibration and as "IO-APIC + timer
		 * doesn't work!" panics on a loaded host): an exit every
		 * 100 ms gets it injected at the next entry.
		 */
		for (int c = 0; c < v->ncpus; c++)
			memfault_vcpu_kick(v->vcpu[c]);
	}
	fprintf(stderr, "linux-vmm: timeout after %u s\n", watchdog_seconds);
	for (int c = 0; c < v->ncpus; c++) {
		struct memfault_vcpu_stats st = { 0 };

		memfault_vcpu_get_stats(v->vcpu[c], &st, sizeof(st));
		fprintf(stderr,
			"linux-vmm: vcpu%d at the timeout: %" PRIu64
			" runs, %" PRIu64 " exits, %" PRIu64
			" page-ins, %" PRIu64 " interrupted\n",
			c, st.runs, st.exits, st.page_ins, st.interrupted);
	}
	stop_all(v);
	return NULL;
}

/* ---- snapshot: pause, save, restore into a fresh VM --------------------- */

struct cpu_state {
	struct kvm_mp_state mp;
	struct kvm_regs regs;
	struct kvm_sregs sregs;
	struct kvm_xsave *xsave; /* legacy 4 KiB area (KVM_GET_XSAVE) */
	struct kvm_xcrs xcrs;
	struct kvm_debugregs dregs;
	struct kvm_lapic_state lapic;
	struct kvm_vcpu_events events;
	struct kvm_msrs *msrs;
};

static struct {
	struct cpu_state cpu[MAX_CPUS];
	struct kvm_irqchip chip[3]; /* PIC master, PIC slave, IOAPIC */
	struct kvm_pit_state2 pit;
	struct kvm_clock_data clock;
} snap;

/* Every MSR KVM lists that this vCPU lets us read, with its value. */
static int
save_msrs(struct vmm *v, int fd, struct cpu_state *c)
{
	struct kvm_msr_list probe = { .nmsrs = 0 }, *list;
	struct kvm_msrs *one;
	uint32_t n = 0;

	if (ioctl(v->kvm_fd, KVM_GET_MSR_INDEX_LIST, &probe) && errno != E2BIG)
		return -errno;
	list = calloc(1, sizeof(*list) + probe.nmsrs * sizeof(uint32_t));
	c->msrs = calloc(1, sizeof(*c->msrs) +
				    probe.nmsrs * sizeof(struct kvm_msr_entry));
	if (!list || !c->msrs)
		return -ENOMEM;
	list->nmsrs = probe.nmsrs;
	if (ioctl(v->kvm_fd, KVM_GET_MSR_INDEX_LIST, list))
		return -errno;
	one = calloc(1, sizeof(*one) + sizeof(struct kvm_msr_entry));
	if (!one) {
		free(list);
		return -ENOMEM;
	}
	for (uint32_t i = 0; i < list->nmsrs; i++) {
		one->nmsrs = 1;
		one->entries[0].index = list->indices[i];
		if (ioctl(fd, KVM_GET_MSRS, one) == 1)
			c->msrs->entries[n++] = one->entries[0];
	}
	c->msrs->nmsrs = n;
	free(one);
	free(list);
	return 0;
}

static int
save_state(struct vmm *v)
{
	for (int i = 0; i < v->ncpus; i++) {
		struct cpu_state *c = &snap.cpu[i];
		int fd = memfault_vcpu_get_fd(v->vcpu[i]), r;

		c->xsave = calloc(1, sizeof(*c->xsave));
		if (!c->xsave)
			return -ENOMEM;
		if (ioctl(fd, KVM_GET_MP_STATE, &c->mp) ||
		    ioctl(fd, KVM_GET_REGS, &c->regs) ||
		    ioctl(fd, KVM_GET_SREGS, &c->sregs) ||
		    ioctl(fd, KVM_GET_XSAVE, c->xsave) ||
		    ioctl(fd, KVM_GET_XCRS, &c->xcrs) ||
		    ioctl(fd, KVM_GET_DEBUGREGS, &c->dregs) ||
		    ioctl(fd, KVM_GET_LAPIC, &c->lapic) ||
		    ioctl(fd, KVM_GET_VCPU_EVENTS, &c->events))
			return fail("saving vCPU state", -errno);
		r = save_msrs(v, fd, c);
		if (r)
			return fail("saving MSRs", r);
	}
	for (uint32_t i = 0; i < 3; i++) {
		snap.chip[i].chip_id = i;
		if (ioctl(v->vm_fd, KVM_GET_IRQCHIP, &snap.chip[i]))
			return fail("KVM_GET_IRQCHIP", -errno);
	}
	if (ioctl(v->vm_fd, KVM_GET_PIT2, &snap.pit) ||
	    ioctl(v->vm_fd, KVM_GET_CLOCK, &snap.clock))
		return fail("saving the PIT and clock", -errno);
	return 0;
}

/* The order of the vCPU calls: sregs (APIC base) before the LAPIC, the
 * MSRs before the events; the VM's devices before the vCPUs run. */
static int
restore_state(struct vmm *v)
{
	struct kvm_clock_data clock = { .clock = snap.clock.clock };

	for (uint32_t i = 0; i < 3; i++)
		if (ioctl(v->vm_fd, KVM_SET_IRQCHIP, &snap.chip[i]))
			return fail("KVM_SET_IRQCHIP", -errno);
	if (ioctl(v->vm_fd, KVM_SET_PIT2, &snap.pit) ||
	    ioctl(v->vm_fd, KVM_SET_CLOCK, &clock))
		return fail("restoring the PIT and clock", -errno);
	for (int i = 0; i < v->ncpus; i++) {
		struct cpu_state *c = &snap.cpu[i];
		int fd = memfault_vcpu_get_fd(v->vcpu[i]), n;

		if (ioctl(fd, KVM_SET_MP_STATE, &c->mp) ||
		    ioctl(fd, KVM_SET_REGS, &c->regs) ||
		    ioctl(fd, KVM_SET_SREGS, &c->sregs) ||
		    ioctl(fd, KVM_SET_XSAVE, c->xsave) ||
		    ioctl(fd, KVM_SET_XCRS, &c->xcrs) ||
		    ioctl(fd, KVM_SET_DEBUGREGS, &c->dregs) ||
		    ioctl(fd, KVM_SET_LAPIC, &c->lapic))
			return fail("restoring vCPU state", -errno);
		n = ioctl(fd, KVM_SET_MSRS, c->msrs);
		if (n != (int)c->msrs->nmsrs) {
			fprintf(stderr,
				"linux-vmm: KVM_SET_MSRS set %d of %u (stopped "
				"at 0x%x)\n",
				n, c->msrs->nmsrs,
				n >= 0 && n < (int)c->msrs->nmsrs
					? c->msrs->entries[n].index
					: 0);
			return -EIO;
		}
		if (ioctl(fd, KVM_SET_VCPU_EVENTS, &c->events))
			return fail("KVM_SET_VCPU_EVENTS", -errno);
		free(c->msrs);
		c->msrs = NULL;
		free(c->xsave);
		c->xsave = NULL;
	}
	return 0;
}

/* Everything of the VM, the vCPUs, the region and the page source goes. */
static void
teardown(struct vmm *v)
{
	for (int i = 0; i < v->ncpus; i++) {
		if (v->uffd)
			memfault_uffd_remove_vcpu(v->uffd, v->vcpu[i]);
	}
	memfault_uffd_free(v->uffd);
	v->uffd = NULL;
	for (int i = 0; i < v->ncpus; i++) {
		memfault_vcpu_free(v->vcpu[i]);
		v->vcpu[i] = NULL;
		v->vcpu_rc[i] = 0;
	}
	memfault_region_free(v->region);
	v->region = NULL;
	memfault_vm_free(v->vm);
	v->vm = NULL;
	munmap(v->ram, v->mem_size);
	close(v->kvm_fd);
	if (v->source > 0) {
		close(v->req_fd);
		close(v->rep_fd);
		waitpid(v->source, NULL, 0);
		v->source = 0;
	}
	memset(v->fetched, 0, v->npages * sizeof(*v->fetched));
	v->fetches = v->fetch_ns = 0;
	v->stop = v->snapshot = v->reset = 0;
}

/*
 * The snapshot's RAM image: the boot image (rebuilt: it is what the first
 * page source held, so it is what every page never fetched still holds)
 * with every present page of the paused guest over it.
 */
static int
snapshot_image(struct vmm *v, const char *kernel, const char *initrd,
	       const char *append)
{
	uint64_t present = 0;
	int r = build_image(v, kernel, initrd, append);

	if (r)
		return r;
	/* mutant "stale": restore the boot image, not the guest's pages */
	for (uint64_t p = 0; p < v->npages; p++) {
		if (v->mutant && !strcmp(v->mutant, "stale"))
			break;
		if (memfault_region_is_missing(v->region, p) == 0) {
			memcpy(v->image + p * PAGE, v->ram + p * PAGE, PAGE);
			present++;
		}
	}
	printf("linux-vmm: snapshot at tick %d: %" PRIu64
	       " pages present of %" PRIu64 "\n",
	       v->last_tick, present, v->npages);
	return 0;
}

static bool
run_phase(struct vmm *v)
{
	pthread_t wd;
	bool ok = true;

	pthread_create(&wd, NULL, watchdog, v);
	for (int i = 0; i < v->ncpus; i++)
		pthread_create(&v->thread[i], NULL, vcpu_main, v->vcpu[i]);
	for (int i = 0; i < v->ncpus; i++)
		pthread_join(v->thread[i], NULL);
	stop_all(v);
	pthread_join(wd, NULL);
	report(v);
	for (int i = 0; i < v->ncpus; i++)
		if (v->vcpu_rc[i] != 0)
			ok = false;
	return ok;
}

int
main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "kernel", required_argument, NULL, 'k' },
		{ "initrd", required_argument, NULL, 'i' },
		{ "append", required_argument, NULL, 'a' },
		{ "mem", required_argument, NULL, 'm' },
		{ "cpus", required_argument, NULL, 'c' },
		{ "eager", no_argument, NULL, 'e' },
		{ "timeout", required_argument, NULL, 't' },
		{ "snapshot-at", required_argument, NULL, 's' },
		{ 0 },
	};
	struct vmm *v = &the_vmm;
	const char *kernel = NULL, *initrd = NULL;
	const char *append =
		"console=ttyS0 noxsave lpj=700000 no_timer_check reboot=k "
		"panic=-1 quiet";
	int c, r, ok;

	v->mem_size = 128ull << 20;
	v->ncpus = 1;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'k':
			kernel = optarg;
			break;
		case 'i':
			initrd = optarg;
			break;
		case 'a':
			append = optarg;
			break;
		case 'm':
			v->mem_size = strtoull(optarg, NULL, 0) << 20;
			break;
		case 'c':
			v->ncpus = atoi(optarg);
			break;
		case 'e':
			v->eager = true;
			break;
		case 't':
			watchdog_seconds = (unsigned)atoi(optarg);
			break;
		case 's':
			v->snapshot_at = atoi(optarg);
			break;
		default:
			return 2;
		}
	}
	if (v->snapshot_at && v->eager)
		v->snapshot_at = 0; /* restores are lazy only */
	if (!kernel || !initrd || v->ncpus < 1 || v->ncpus > MAX_CPUS ||
	    v->mem_size < (64ull << 20) || v->mem_size > (3ull << 30)) {
		fprintf(stderr,
			"usage: linux-vmm --kernel bzImage --initrd initrd "
			"[--mem MiB (64-3072)] [--cpus 1-%d] [--append "
			"cmdline] [--eager] [--timeout s] [--snapshot-at N]\n",
			MAX_CPUS);
		return 2;
	}
	v->mutant = getenv("MEMFAULT_LINUX_VMM_MUTANT");
	v->npages = v->mem_size / PAGE;
	v->src_sum = calloc(v->npages, sizeof(*v->src_sum));
	v->got_sum = calloc(v->npages, sizeof(*v->got_sum));
	v->fetched = calloc(v->npages, sizeof(*v->fetched));
	if (!v->src_sum || !v->got_sum || !v->fetched)
		return 2;
	pthread_mutex_init(&v->source_lock, NULL);
	pthread_mutex_init(&v->uart_lock, NULL);
	v->t_start = now();
	if (sched_getaffinity(0, sizeof(all_cpus), &all_cpus))
		CPU_ZERO(&all_cpus);
	pin_to(0);
	r = build_image(v, kernel, initrd, append);
	if (r)
		return fail("loading the kernel and initrd", r), 2;
	if (setup(v))
		return 2;
	printf("linux-vmm: %d vCPU(s), %" PRIu64 " MiB, %s\n", v->ncpus,
	       v->mem_size >> 20,
	       v->eager ? "eager (RAM copied up front)"
			: "lazy: all pages missing, served by the page source "
			  "(KVM Userfault + userfaultfd)");
	/* The VMM's own access: it reads the setup header back through the
	 * guest RAM, a host access that userfaultfd serves. */
	if (memcmp(v->ram + BOOT_PARAMS + 0x202, "HdrS", 4)) {
		printf("linux-vmm: boot_params do not read back\n");
		return 1;
	}
	ok = run_phase(v);
	if (ok && __atomic_load_n(&v->snapshot, __ATOMIC_ACQUIRE)) {
		/* paused: check what was fetched so far, save, restore */
		ok = check(v);
		if (save_state(v) || snapshot_image(v, kernel, initrd, append))
			return 1;
		teardown(v);
		v->restoring = true;
		v->snapshot_at = -1;
		if (setup(v) || restore_state(v))
			return 1;
		printf("linux-vmm: restored into a fresh VM, all %" PRIu64
		       " pages missing\n",
		       v->npages);
		ok = run_phase(v) && ok;
	}
	if (!__atomic_load_n(&v->reset, __ATOMIC_ACQUIRE)) {
		printf("linux-vmm: FAILED: the guest did not reset\n");
		ok = 0;
	}
	if (v->panicked) {
		printf("linux-vmm: FAILED: the guest panicked\n");
		ok = 0;
	}
	if (!v->eager && v->mutant && !strcmp(v->mutant, "extra")) {
		/* mutant: one request for a page nobody touched */
		uint64_t page, sum;
		uint8_t *buf = malloc(PAGE);

		if (buf && !memfault_region_find_missing(v->region, 0, &page))
			source_fetch(v, page, buf, &sum);
		free(buf);
	}
	if (!v->eager)
		ok = check(v) && ok;
	if (v->source > 0) {
		close(v->req_fd);
		waitpid(v->source, NULL, 0);
	}
	printf("linux-vmm: %s\n", ok ? "PASS" : "FAIL");
	return ok ? 0 : 1;
}

#else /* !__x86_64__ */

#include <stdio.h>

int
main(void)
{
	fprintf(stderr, "linux-vmm: x86-64 only\n");
	return 77;
}

#endif
