/* SPDX-License-Identifier: MIT */
/*
 * vm.c - linux-vmm's VM: the KVM VM with its irqchip and PIT, the guest
 * RAM as one libmemfault region, its userfaultfd, the vCPUs, the threads
 * that run them and a watchdog, and the teardown before a restore.
 *
 * The guest RAM starts with every page missing (unless --eager):
 *   - a vCPU touching a missing page gets a KVM Userfault exit
 *     (MEMFAULT_REGION_USERFAULT), which memfault_vcpu_run_dispatch()
 *     resolves through page_in();
 *   - every other access (the VMM's own threads, KVM's accesses through
 *     the host mapping) faults on the region's userfaultfd
 *     (memfault_uffd_register(), MISSING mode), served by the library's
 *     service thread through the same page_in() and the same bitmap.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "linux-vmm.h"

static void
log_message(void *user, int level, const char *message)
{
	if (level <= 4)
		fprintf(stderr, "libmemfault: %s\n", message);
}

/*
 * Thread placement (a no-op on one CPU): the VMM's main thread, and so the
 * page source and the library's userfaultfd thread it starts, on the
 * first CPU, and vCPU i on CPU i modulo the CPUs there are. Seen under
 * nested SVM emulated by TCG: an L1 CPU running a guest takes its own
 * interrupts late (an IPI that wakes the page source on another CPU cost
 * 3 ms), and two vCPUs of a guest sharing the only L1 CPU could starve
 * each other (one spinning in the guest for the other) and hang L1.
 */
void
pin_to(const struct vmm *v, int index)
{
	cpu_set_t one;
	int n = CPU_COUNT(&v->all_cpus), want;

	if (n < 2)
		return;
	want = index % n;
	CPU_ZERO(&one);
	for (int c = 0, k = 0; c < CPU_SETSIZE; c++) {
		if (CPU_ISSET(c, &v->all_cpus) && k++ == want) {
			CPU_SET(c, &one);
			break;
		}
	}
	sched_setaffinity(0, sizeof(one), &one);
}

/* The host's supported CPUID, with this vCPU's APIC id in it. */
static int
setup_cpuid(struct vmm *v, int fd, int id)
{
	int n = 256;
	struct kvm_cpuid2 *c =
		calloc(1, sizeof(*c) + n * sizeof(c->entries[0]));

	if (!c)
		return -ENOMEM;
	c->nent = (uint32_t)n;
	if (ioctl(v->kvm_fd, KVM_GET_SUPPORTED_CPUID, c)) {
		n = -errno;
		free(c);
		return n;
	}
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

/* The VM, its devices, and its RAM as a region (all missing if lazy). */
static int
setup_vm(struct vmm *v)
{
	MEMFAULT_OPTS(memfault_handlers, handlers,
		      .user = v,
		      .page_in = page_in,
		      .log = log_message);
	MEMFAULT_OPTS(memfault_region_opts, ropts,
		      .flags = v->eager ? 0
					: MEMFAULT_REGION_USERFAULT |
						  MEMFAULT_REGION_MISSING);
	MEMFAULT_OPTS(memfault_uffd_opts, uopts,
		      .flags = MEMFAULT_UFFD_SERVICE_THREAD);
	MEMFAULT_OPTS(memfault_vm_opts, vmopts, .flags = MEMFAULT_VM_OWN_FD);
	struct kvm_pit_config pit = { 0 };
	int r;

	v->kvm_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (v->kvm_fd < 0)
		return fail("open /dev/kvm", -errno);
	v->vm_fd = ioctl(v->kvm_fd, KVM_CREATE_VM, 0);
	if (v->vm_fd < 0)
		return fail("KVM_CREATE_VM", -errno);
	vmopts.kvm_fd = v->kvm_fd;
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
	if (v->eager)
		return 0;
	r = memfault_uffd_new(v->vm, &uopts, &v->uffd);
	if (r)
		return fail("memfault_uffd_new", r);
	r = memfault_uffd_register(v->uffd, v->region, MEMFAULT_UFFD_MISSING,
				   NULL);
	return r ? fail("memfault_uffd_register", r) : 0;
}

/* vCPU @i: CPUID, the boot state (unless restoring), libmemfault's. */
static int
setup_vcpu(struct vmm *v, int i)
{
	MEMFAULT_OPTS(memfault_vcpu_opts, vopts,
		      .flags = MEMFAULT_VCPU_OWN_FD |
			       MEMFAULT_VCPU_TIME_HANDLERS);
	struct vmm_cpu *cpu = &v->cpu[i];
	int fd = ioctl(v->vm_fd, KVM_CREATE_VCPU, i), r;

	if (fd < 0)
		return fail("KVM_CREATE_VCPU", -errno);
	cpu->vmm = v;
	cpu->index = i;
	r = setup_cpuid(v, fd, i);
	if (!r && i == 0 && !v->restoring)
		r = setup_bsp(fd);
	if (!r)
		r = memfault_vcpu_new(v->vm, fd, &vopts, &cpu->vcpu);
	if (r) {
		close(fd); /* not yet the library's: it owns it on success */
		return fail("vCPU setup", r);
	}
	if (v->uffd) {
		r = memfault_uffd_add_vcpu(v->uffd, cpu->vcpu);
		if (r)
			return fail("memfault_uffd_add_vcpu", r);
	}
	return 0;
}

int
vmm_setup(struct vmm *v)
{
	int r = setup_vm(v);

	for (int i = 0; !r && i < v->ncpus; i++)
		r = setup_vcpu(v, i);
	return r;
}

/* Stop the run: every vCPU thread sees v->stop at its next exit. */
void
stop_all(struct vmm *v)
{
	/* pairs with the acquire loads in vcpu_main() and watchdog() */
	atomic_store_explicit(&v->stop, 1, memory_order_release);
	for (int i = 0; i < v->ncpus; i++)
		if (v->cpu[i].vcpu)
			memfault_vcpu_kick(v->cpu[i].vcpu);
}

/*
 * Before its state is saved, KVM must complete the exit just handled (an
 * IN's data goes into the guest's register on the next entry): one more
 * KVM_RUN with immediate_exit, which the kick sets.
 */
static int
finish_for_snapshot(struct memfault_vcpu *vcpu)
{
	memfault_vcpu_kick(vcpu);
	return memfault_vcpu_run(vcpu) == MEMFAULT_RUN_INTERRUPTED ? 0 : -EIO;
}

/* One exit the library returned to us; 0 to go on, else why we stop. */
static int
handle_exit(struct vmm *v, struct kvm_run *run)
{
	switch (run->exit_reason) {
	case KVM_EXIT_IO:
		handle_io(v, run);
		return 0;
	case KVM_EXIT_HLT:
		return 0;
	case KVM_EXIT_SHUTDOWN:
		fprintf(stderr, "vcpu: shutdown (triple fault)\n");
		return -ESHUTDOWN;
	default:
		fprintf(stderr, "vcpu: unexpected exit %u\n", run->exit_reason);
		return -EIO;
	}
}

static void *
vcpu_main(void *arg)
{
	struct vmm_cpu *cpu = arg;
	struct vmm *v = cpu->vmm;
	struct kvm_run *run;
	int r;

	memfault_vcpu_get_run(cpu->vcpu, &run);
	pin_to(v, cpu->index);
	for (;;) {
		/* pairs with the release stores of stop and snapshot */
		if (atomic_load_explicit(&v->stop, memory_order_acquire)) {
			r = 0;
			if (atomic_load_explicit(&v->snapshot,
						 memory_order_acquire))
				r = finish_for_snapshot(cpu->vcpu);
			break;
		}
		r = memfault_vcpu_run_dispatch(cpu->vcpu);
		if (r == MEMFAULT_RUN_INTERRUPTED || r == MEMFAULT_RUN_RETRY)
			continue;
		if (r != MEMFAULT_RUN_EXIT)
			break; /* an unresolved fault or an error */
		r = handle_exit(v, run);
		if (r)
			break;
	}
	cpu->rc = r;
	if (r < 0 || r == MEMFAULT_RUN_MEMORY_FAULT) {
		fprintf(stderr, "vcpu: stopped with %d (%s)\n", r,
			r < 0 ? strerror(-r) : "fault");
		stop_all(v);
	}
	return NULL;
}

/* The run's time limit, and a kick of every vCPU every 100 ms. */
static void *
watchdog(void *arg)
{
	struct vmm *v = arg;

	for (unsigned i = 0; i < v->timeout_s * 10; i++) {
		if (atomic_load_explicit(&v->stop, memory_order_acquire))
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
			memfault_vcpu_kick(v->cpu[c].vcpu);
	}
	fprintf(stderr, "linux-vmm: timeout after %u s\n", v->timeout_s);
	for (int c = 0; c < v->ncpus; c++) {
		struct memfault_vcpu_stats st = { 0 };

		memfault_vcpu_get_stats(v->cpu[c].vcpu, &st, sizeof(st));
		fprintf(stderr, "linux-vmm: vcpu%d at the timeout: %" PRIu64 " runs, %" PRIu64 " exits, %" PRIu64 " page-ins, %" PRIu64 " interrupted\n",
			c, st.runs, st.exits, st.page_ins, st.interrupted);
	}
	stop_all(v);
	return NULL;
}

/* Run the vCPUs until they stop; true if every one ended without error. */
bool
run_phase(struct vmm *v)
{
	pthread_t wd;
	bool ok = true;

	pthread_create(&wd, NULL, watchdog, v);
	for (int i = 0; i < v->ncpus; i++)
		pthread_create(&v->cpu[i].thread, NULL, vcpu_main, &v->cpu[i]);
	for (int i = 0; i < v->ncpus; i++)
		pthread_join(v->cpu[i].thread, NULL);
	stop_all(v);
	pthread_join(wd, NULL);
	for (int i = 0; i < v->ncpus; i++)
		if (v->cpu[i].rc != 0)
			ok = false;
	return ok;
}

/* Everything of the VM, the vCPUs, the region and the page source goes. */
void
teardown(struct vmm *v)
{
	for (int i = 0; v->uffd && i < v->ncpus; i++)
		memfault_uffd_remove_vcpu(v->uffd, v->cpu[i].vcpu);
	memfault_uffd_free(v->uffd);
	v->uffd = NULL;
	for (int i = 0; i < v->ncpus; i++) {
		memfault_vcpu_free(v->cpu[i].vcpu);
		v->cpu[i].vcpu = NULL;
		v->cpu[i].rc = 0;
	}
	memfault_region_free(v->region);
	v->region = NULL;
	memfault_vm_free(v->vm);
	v->vm = NULL;
	munmap(v->ram, v->mem_size);
	close(v->kvm_fd);
	source_stop(v);
	for (uint64_t p = 0; p < v->npages; p++)
		atomic_store_explicit(&v->fetched[p], 0, memory_order_relaxed);
	atomic_store_explicit(&v->fetches, 0, memory_order_relaxed);
	v->fetch_ns = 0;
	atomic_store_explicit(&v->stop, 0, memory_order_relaxed);
	atomic_store_explicit(&v->snapshot, 0, memory_order_relaxed);
	atomic_store_explicit(&v->reset, 0, memory_order_relaxed);
}
