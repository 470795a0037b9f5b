/* SPDX-License-Identifier: MIT */
/*
 * linux-vmm.h - what the files of linux-vmm share: the VMM's state and the
 * functions one file calls in another. main.c describes the program.
 *
 *   main.c      options, the run (boot, or boot + snapshot + restore), the
 *               report and the verdict
 *   image.c     the RAM image: bzImage, boot_params, e820 map, MP table
 *   source.c    the page source (child process), page_in(), the checks
 *   vm.c        the VM, its region and vCPUs, the vCPU threads, teardown
 *   devices.c   the UART and the keyboard controller's reset port
 *   snapshot.c  pause, save, restore into a fresh VM
 */
#ifndef LINUX_VMM_H
#define LINUX_VMM_H

#if !defined(__x86_64__)
#error "linux-vmm is x86-64 only (meson builds other-arch.c elsewhere)"
#endif

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <linux/kvm.h>
#include <memfault/memfault.h>

#define PAGE         4096u
#define MAX_CPUS     8
#define BOOT_PARAMS  0x10000u
#define CMDLINE_ADDR 0x20000u
#define MPTABLE_ADDR 0xf0000u
#define KERNEL_ADDR  0x100000u
#define IOAPIC_ADDR  0xfec00000u

/* The page source's counters, as it answers a PAGE_REQ_STATS request. */
struct source_stats {
	uint64_t requests, distinct, duplicates;
};

struct vmm;

/* One vCPU and the thread that runs it. */
struct vmm_cpu {
	struct vmm *vmm;
	int index; /* also its APIC id */
	struct memfault_vcpu *vcpu;
	pthread_t thread;
	int rc; /* how its loop ended: 0, or a negative errno */
};

struct vmm {
	/* what main() parsed */
	uint64_t mem_size, npages;
	int ncpus;
	bool eager;
	bool restoring; /* vmm_setup() restores a snapshot instead of booting */
	const char *mutant;
	const char *kernel, *initrd, *append;
	unsigned timeout_s;
	cpu_set_t all_cpus; /* the process's CPUs at start */

	uint8_t *image; /* the RAM image: the page source's copy */
	uint8_t *ram;   /* the region's memory */

	/* the page source: its pid and pipes, one request at a time */
	pid_t source;
	int req_fd, rep_fd;
	pthread_mutex_t source_lock;
	/* per page, written by page_in() on any thread, read after the run */
	_Atomic uint64_t *src_sum, *got_sum;
	_Atomic uint32_t *fetched; /* page_in() calls */
	uint64_t fetch_ns;         /* under source_lock */
	_Atomic uint64_t fetches;  /* written under source_lock */

	int kvm_fd, vm_fd;
	struct memfault_vm *vm;
	struct memfault_region *region;
	struct memfault_uffd *uffd;
	struct vmm_cpu cpu[MAX_CPUS];

	/* the UART, under uart_lock */
	pthread_mutex_t uart_lock;
	uint8_t ier, lcr, mcr, scr, dll, dlm, rbr;
	bool rx_ready, thre_pending;
	bool panicked; /* the guest printed "Kernel panic" */
	char line[256];
	size_t line_len;

	/* snapshot: pause after the guest printed "GUEST: tick N" */
	int snapshot_at;
	int last_tick;
	/*
	 * The stop flags. Each is stored with release before stop_all()'s
	 * kicks and loaded with acquire by the vCPU threads, the watchdog
	 * and main() after the vCPU threads are joined.
	 */
	atomic_int snapshot; /* the stop is a pause for a snapshot */
	atomic_int stop;     /* the guest reset, a vCPU failed, or a timeout */
	atomic_int reset;    /* the stop was the guest's reset */

	double t_start, t_init; /* t_init: "GUEST: init" seen */
};

/* main.c */
double now(void);
int fail(const char *what, int r);
bool is_mutant(const struct vmm *v, const char *name);

/* image.c */
int build_image(struct vmm *v);

/* source.c */
int xfer(int fd, void *buf, size_t len, bool wr);
int source_start(struct vmm *v);
int source_fetch(struct vmm *v, uint64_t page, uint8_t *dst, uint64_t *sum);
void source_stop(struct vmm *v);
int page_in(void *user, struct memfault_vcpu *vcpu,
	    struct memfault_region *region, uint64_t page, void *hva,
	    uint64_t page_size);
bool check_pages(struct vmm *v);

/* vm.c */
void pin_to(const struct vmm *v, int index);
int vmm_setup(struct vmm *v);
bool run_phase(struct vmm *v);
void stop_all(struct vmm *v);
void teardown(struct vmm *v);

/* devices.c */
void handle_io(struct vmm *v, struct kvm_run *run);

/* snapshot.c */
int snapshot_save(struct vmm *v);
int snapshot_restore(struct vmm *v);

#endif
