// SPDX-License-Identifier: MIT
/* The one runner and the shared helpers; see test-common.h. */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <kvm-userfault-proposed.h>
#include <linux/kvm.h>
#include <linux/userfaultfd.h>

#include "test-common.h"

/* Skips counted across Check's forked test processes: the parent maps it
 * shared before the run, each child adds to it. NULL outside a run. */
static unsigned *tc_skips;

void
tc_count_skip(void)
{
	if (tc_skips)
		__atomic_add_fetch(tc_skips, 1, __ATOMIC_RELAXED);
}

int
tc_run_srunner(SRunner *sr, struct tc_counts *counts)
{
	struct tc_counts c = { 0, 0, 0 };

	tc_skips = mmap(NULL, sizeof(*tc_skips), PROT_READ | PROT_WRITE,
			MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (tc_skips == MAP_FAILED)
		tc_skips = NULL;
	srunner_run_all(sr, CK_ENV);
	c.failed = srunner_ntests_failed(sr);
	c.ran = srunner_ntests_run(sr);
	c.skipped = tc_skips ? *tc_skips : 0;
	srunner_free(sr);
	if (tc_skips)
		munmap(tc_skips, sizeof(*tc_skips));
	tc_skips = NULL;
	if (counts)
		*counts = c;
	if (c.failed)
		return EXIT_FAILURE;
	/* every test skipped itself: the executable as a whole is a SKIP */
	return c.ran > 0 && c.skipped >= (unsigned)c.ran ? 77 : EXIT_SUCCESS;
}

int
tc_run_counted(Suite *s, struct tc_counts *counts)
{
	return tc_run_srunner(srunner_create(s), counts);
}

int
tc_run(Suite *s)
{
	return tc_run_counted(s, NULL);
}

int
tc_skip(Suite *s, const char *fmt, ...)
{
	va_list ap;

	printf("# SKIP: ");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	fflush(stdout);
	if (s)
		srunner_free(srunner_create(s));
	return 77;
}

Suite *
tc_suite(const char *name, const char *tcase, int timeout, ...)
{
	Suite *s = suite_create(name);
	TCase *tc = tcase_create(tcase);
	const TTest *t;
	va_list ap;

	if (timeout > 0)
		tcase_set_timeout(tc, timeout);
	va_start(ap, timeout);
	while ((t = va_arg(ap, const TTest *)))
		tcase_add_test(tc, t);
	va_end(ap);
	suite_add_tcase(s, tc);
	return s;
}

void
tc_init(void)
{
	static bool done;

	if (!done)
		setvbuf(stdout, NULL, _IOLBF, 0);
	done = true;
}

long
tc_status_kib(const char *field)
{
	FILE *f = fopen("/proc/self/status", "r");
	size_t n = strlen(field);
	char line[256];
	long v = -1;

	while (f && fgets(line, sizeof(line), f))
		if (!strncmp(line, field, n) && line[n] == ':' &&
		    sscanf(line + n + 1, "%ld", &v) == 1)
			break;
	if (f)
		fclose(f);
	return v;
}

long
tc_rss_kib(void)
{
	return tc_status_kib("VmRSS");
}

void
tc_catch_signal(int sig, void (*fn)(int, siginfo_t *, void *))
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = fn;
	sa.sa_flags = SA_SIGINFO;
	sigemptyset(&sa.sa_mask);
	ck_assert_int_eq(sigaction(sig, &sa, NULL), 0);
}

double
tc_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

uint64_t
tc_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

long
tc_open_fds(void)
{
	long n = 0;

	for (int fd = 0; fd < 4096; fd++)
		if (fcntl(fd, F_GETFD) >= 0)
			n++;
	return n;
}

int
tc_uffd_usable(char *why, size_t len)
{
	struct uffdio_api api = { .api = UFFD_API };
	int fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	int err = fd < 0 ? errno : 0, dev, dev_err = 0, r;

	if (fd < 0) {
		/* /dev/userfaultfd (6.1+) can be granted without the sysctl */
		dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
		if (dev >= 0) {
			fd = ioctl(dev, USERFAULTFD_IOC_NEW,
				   O_CLOEXEC | O_NONBLOCK);
			dev_err = fd < 0 ? errno : 0;
			close(dev);
		} else {
			dev_err = errno;
		}
	}
	if (fd < 0) {
		if (why)
			snprintf(why, len,
				 "userfaultfd: %s; /dev/userfaultfd: %s (not "
				 "permitted: vm.unprivileged_userfaultfd=0 "
				 "without root, or no userfaultfd in this "
				 "kernel or emulator)",
				 strerror(err), strerror(dev_err));
		return -(dev_err ? dev_err : err);
	}
	r = ioctl(fd, UFFDIO_API, &api) ? -errno : 0;
	close(fd);
	if (r && why)
		snprintf(why, len, "userfaultfd: UFFDIO_API: %s", strerror(-r));
	return r;
}

void
tc_kvm_open(int *kvm_fd, int *vm_fd, int *vcpu_fd, unsigned long vm_type)
{
	*kvm_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	ck_assert_msg(*kvm_fd >= 0, "/dev/kvm: %s", strerror(errno));
	*vm_fd = ioctl(*kvm_fd, KVM_CREATE_VM, vm_type);
	ck_assert_msg(*vm_fd >= 0, "KVM_CREATE_VM(%lu): %s", vm_type,
		      strerror(errno));
	*vcpu_fd = ioctl(*vm_fd, KVM_CREATE_VCPU, 0ul);
	ck_assert_msg(*vcpu_fd >= 0, "KVM_CREATE_VCPU: %s", strerror(errno));
}

void
tc_kvm_close(int kvm_fd, int vm_fd, int vcpu_fd)
{
	close(vcpu_fd);
	close(vm_fd);
	close(kvm_fd);
}

int
tc_memslot2(int vm_fd, uint32_t slot, uint32_t flags, uint64_t gpa,
	    uint64_t size, const void *hva, int gmem_fd, uint64_t gmem_off,
	    const void *bitmap)
{
	struct kvm_userspace_memory_region2_uf r;

	memset(&r, 0, sizeof(r));
	r.slot = slot;
	r.flags = flags;
	r.guest_phys_addr = gpa;
	r.memory_size = size;
	r.userspace_addr = (uintptr_t)hva;
	r.guest_memfd = (uint32_t)gmem_fd;
	r.guest_memfd_offset = gmem_off;
	r.userfault_bitmap = (uintptr_t)bitmap;
	return ioctl(vm_fd, KVM_SET_USER_MEMORY_REGION2, &r) < 0 ? -errno : 0;
}

int
tc_memslot1(int vm_fd, uint32_t slot, uint32_t flags, uint64_t gpa,
	    uint64_t size, const void *hva)
{
	struct kvm_userspace_memory_region r = {
		.slot = slot,
		.flags = flags,
		.guest_phys_addr = gpa,
		.memory_size = size,
		.userspace_addr = (uintptr_t)hva,
	};

	return ioctl(vm_fd, KVM_SET_USER_MEMORY_REGION, &r) < 0 ? -errno : 0;
}
