/* SPDX-License-Identifier: MIT */
/*
 * A 1 TiB region with its memslot on the host's /dev/kvm: how much of
 * memfault_region_new() (and memfault_region_free()) is KVM's
 * KVM_SET_USER_MEMORY_REGION2 and how much is the library's, interleaved in
 * one process, medians of repeated trials.
 *
 *   kvm   ioctl(KVM_SET_USER_MEMORY_REGION2) of the same slot (gpa, size,
 *         hva), then the same ioctl with size 0 (delete)
 *   lib   memfault_region_new(1 TiB, memslot [| MISSING]), then
 *         memfault_region_free()
 *
 * KVM's time for one 1 TiB slot moves by hundreds of ms between calls on a
 * loaded machine, so the library's part is not taken as lib - kvm: this
 * program interposes ioctl() (the library calls it through the PLT) and
 * times the KVM_SET_USER_MEMORY_REGION2 calls made inside
 * memfault_region_new()/free(); the library's part is the call's time
 * minus that, in the same call (median over the trials). The raw ioctls'
 * own times are given next to it. The hva is one 1 TiB MAP_NORESERVE
 * mapping; nothing is touched, so no page is committed.
 *
 *   region-kvm-bench [GiB] [trials]      defaults 1024 GiB, 9 trials
 *
 * Prints one JSON object per mode; exits 77 without a usable /dev/kvm (or
 * when it refuses a slot of this size).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <stdarg.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <linux/kvm.h>

#include "bench-stats.h"
#include "memfault/memfault.h"

#define SLOT 1
#define GPA (1ull << 40)

static int vmfd;
static struct memfault_vm *vm;
static void *hva;
/* time and number of KVM_SET_USER_MEMORY_REGION2 calls, all callers */
static double memslot_ns;
static int memslot_calls;

/*
 * Every ioctl() of the process, the library's included: the memslot calls
 * are timed. The system call itself, so nothing else runs in between.
 */
int
ioctl(int fd, unsigned long req, ...)
{
	va_list ap;
	void *arg;
	double t = 0;
	long r;

	va_start(ap, req);
	arg = va_arg(ap, void *);
	va_end(ap);
	if (req == KVM_SET_USER_MEMORY_REGION2)
		t = now();
	r = syscall(SYS_ioctl, fd, req, arg);
	if (req == KVM_SET_USER_MEMORY_REGION2) {
		memslot_ns += now() - t;
		memslot_calls++;
	}
	return (int)r;
}

static int
kvm_slot(uint64_t size)
{
	struct kvm_userspace_memory_region2 m;

	memset(&m, 0, sizeof(m));
	m.slot = SLOT;
	m.guest_phys_addr = GPA;
	m.memory_size = size;
	m.userspace_addr = (uintptr_t)hva;
	return ioctl(vmfd, KVM_SET_USER_MEMORY_REGION2, &m) ? -errno : 0;
}

/* One trial of the raw ioctls: set and delete times in ns. */
static int
kvm_trial(uint64_t size, double *set, double *del)
{
	double t = now();
	int err = kvm_slot(size);

	*set = now() - t;
	if (err)
		return err;
	t = now();
	err = kvm_slot(0);
	*del = now() - t;
	return err;
}

/* One trial of the library: its own parts (the call's time minus the
 * memslot ioctls it made) and the number of such ioctls. */
static int
lib_trial(uint64_t size, bool missing, double *set, double *del,
	  int *calls)
{
	MEMFAULT_OPTS(memfault_region_opts, o,
		      .flags = missing ? MEMFAULT_REGION_MISSING : 0);
	struct memfault_region *r;
	double t, k;
	int err, c;

	k = memslot_ns;
	c = memslot_calls;
	t = now();
	err = memfault_region_new(vm, SLOT, GPA, size, hva, &o, &r);
	*set = now() - t - (memslot_ns - k);
	if (err)
		return err;
	k = memslot_ns;
	t = now();
	memfault_region_free(r);
	*del = now() - t - (memslot_ns - k);
	*calls = memslot_calls - c;
	return 0;
}

int
main(int argc, char **argv)
{
	uint64_t gib = argc > 1 ? strtoull(argv[1], NULL, 0) : 1024;
	int trials = argc > 2 ? atoi(argv[2]) : 9;
	uint64_t size = gib << 30;
	int kvm, err;

	if (!gib || gib > 4096 || trials < 1 || trials > 99) {
		fprintf(stderr, "usage: %s [GiB 1..4096] [trials 1..99]\n",
			argv[0]);
		return 2;
	}
	kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (kvm < 0) {
		printf("{\"benchmark\":\"region_kvm\",\"skip\":\"no /dev/kvm: %s\"}\n",
		       strerror(errno));
		return 77;
	}
	vmfd = ioctl(kvm, KVM_CREATE_VM, 0);
	hva = mmap(NULL, size, PROT_READ | PROT_WRITE,
		   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (vmfd < 0 || hva == MAP_FAILED || memfault_vm_new(vmfd, NULL, &vm)) {
		printf("{\"benchmark\":\"region_kvm\",\"skip\":\"setup: %s\"}\n",
		       strerror(errno));
		return 77;
	}
	for (int missing = 0; missing < 2; missing++) {
		double ks[99], kd[99], ls[99], ld[99];
		const char *mode = missing ? "memslot+missing" : "memslot";
		int calls = 0;

		for (int i = 0; i < trials; i++) {
			/* which side goes first alternates */
			err = i % 2 ? lib_trial(size, missing, &ls[i], &ld[i],
						&calls)
				    : kvm_trial(size, &ks[i], &kd[i]);
			if (!err)
				err = i % 2 ? kvm_trial(size, &ks[i], &kd[i])
					    : lib_trial(size, missing, &ls[i],
							&ld[i], &calls);
			if (err) {
				printf("{\"benchmark\":\"region_kvm\",\"mode\":\"%s\","
				       "\"skip\":\"%s\"}\n",
				       mode, strerror(-err));
				fflush(stdout);
				if (missing)
					break;
				return 77;
			}
		}
		if (err)
			continue;
		printf("{\"benchmark\":\"region_kvm\",\"mode\":\"%s\","
		       "\"backend\":\"/dev/kvm\",\"size\":%llu,\"trials\":%d,"
		       "\"kvm_set_ns\":%.0f,\"kvm_delete_ns\":%.0f,"
		       "\"lib_part_new_ns\":%.0f,\"lib_part_free_ns\":%.0f,"
		       "\"lib_memslot_ioctls\":%d}\n",
		       mode, (unsigned long long)size, trials,
		       median(ks, trials), median(kd, trials),
		       median(ls, trials), median(ld, trials), calls);
		fflush(stdout);
	}
	memfault_vm_free(vm);
	return 0;
}
