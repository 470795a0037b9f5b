// SPDX-License-Identifier: MIT
/* The simulator through raw KVM ioctls, for kvmsim's own tests; see
 * sim-raw.h. */
#include "sim-raw.h"

/* The kvm_run layout the library relies on. */
_Static_assert(offsetof(struct kvm_run, exit_reason) == 8, "exit_reason");
_Static_assert(offsetof(struct kvm_run, memory_fault.flags) == 32,
	       "memory_fault.flags");
_Static_assert(offsetof(struct kvm_run, memory_fault.gpa) == 40,
	       "memory_fault.gpa");
_Static_assert(offsetof(struct kvm_run, memory_fault.size) == 48,
	       "memory_fault.size");

const uint32_t sim_levels[4] = { KVMSIM_LEVEL_6_1, KVMSIM_LEVEL_6_8,
				    KVMSIM_LEVEL_7_2, KVMSIM_LEVEL_7_2_UF };

void
reset_q(uint32_t arch, uint32_t level, uint64_t quirks)
{
	struct kvmsim_config cfg = { arch, level, quirks };

	ck_assert_int_eq(kvmsim_reset(&cfg), 0);
}

void
reset(uint32_t arch, uint32_t level)
{
	reset_q(arch, level, kvmsim_default_quirks(arch, level));
}

int
open_kvm(void)
{
	int fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);

	ck_assert_int_ge(fd, 0);
	return fd;
}

/* Map s->vcpu's kvm_run. */
static void
map_run(struct sim *s)
{
	int sz = ioctl(s->kvm, KVM_GET_VCPU_MMAP_SIZE, 0);

	ck_assert_int_gt(sz, 0);
	s->run_size = (size_t)sz;
	s->run = mmap(NULL, s->run_size, PROT_READ | PROT_WRITE, MAP_SHARED,
		      s->vcpu, 0);
	ck_assert_ptr_ne(s->run, MAP_FAILED);
}

void
add_vcpu(struct sim *s, unsigned id)
{
	s->vcpu = ioctl(s->vm, KVM_CREATE_VCPU, (unsigned long)id);
	ck_assert_int_ge(s->vcpu, 0);
	map_run(s);
}

/*
 * Reset the simulator to @arch/@level/@quirks
 * and open a VM of @type with one vCPU.
 */
void
start_full(struct sim *s, uint32_t arch, uint32_t level, uint64_t quirks,
	   unsigned long type)
{
	memset(s, 0, sizeof(*s));
	reset_q(arch, level, quirks);
	s->arch = arch;
	s->level = level;
	s->page = (uint64_t)sysconf(_SC_PAGESIZE);
	s->test_gpa = arch == KVMSIM_X86_64 ? 0x20000 : 0x20000000;
	tc_kvm_open(&s->kvm, &s->vm, &s->vcpu, type);
	map_run(s);
}

void
start(struct sim *s, uint32_t arch, uint32_t level)
{
	start_full(s, arch, level, kvmsim_default_quirks(arch, level), 0);
}

/* One KVM_RUN; returns 0 or the errno. */
int
run(struct sim *s)
{
	errno = 0;
	s->ret = ioctl(s->vcpu, KVM_RUN, 0);
	s->err = s->ret < 0 ? errno : 0;
	return s->err;
}

/* What KVM_RUN gives after the last step: x86 triple fault, arm64 PSCI. */
uint32_t
done_reason(const struct sim *s)
{
	return s->arch == KVMSIM_X86_64 ? KVM_EXIT_SHUTDOWN
					: KVM_EXIT_SYSTEM_EVENT;
}

void
script(struct sim *s, const char *text)
{
	ck_assert_int_eq(kvmsim_vcpu_set_script_text(s->vcpu, text), 0);
}

uint64_t
acc_of(struct sim *s)
{
	uint64_t acc;

	ck_assert_int_eq(kvmsim_vcpu_get_state(s->vcpu, &acc, NULL), 0);
	return acc;
}

size_t
pc_of(struct sim *s)
{
	size_t pc;

	ck_assert_int_eq(kvmsim_vcpu_get_state(s->vcpu, NULL, &pc), 0);
	return pc;
}

/* KVM_SET_USER_MEMORY_REGION2 (with the proposed bitmap); 0 or errno. */
int
region2(int vm, uint32_t slot, uint32_t flags, uint64_t gpa, uint64_t size,
	const void *hva, int gmem, uint64_t gmem_off, const void *bitmap)
{
	return -tc_memslot2(vm, slot, flags, gpa, size, hva, gmem, gmem_off,
			     bitmap);
}

/* KVM_SET_USER_MEMORY_REGION (v1); 0 or errno. */
int
region1(int vm, uint32_t slot, uint32_t flags, uint64_t gpa, uint64_t size,
	const void *hva)
{
	return -tc_memslot1(vm, slot, flags, gpa, size, hva);
}

/* KVM_CREATE_GUEST_MEMFD: the fd, or -errno. */
int
create_gmem(int vm, uint64_t size, uint64_t flags)
{
	struct kvm_create_guest_memfd g = { .size = size, .flags = flags };
	int fd = ioctl(vm, KVM_CREATE_GUEST_MEMFD, &g);

	return fd < 0 ? -errno : fd;
}

/* KVM_SET_MEMORY_ATTRIBUTES; 0 or errno. */
int
set_attrs(int vm, uint64_t gpa, uint64_t size, uint64_t attrs)
{
	struct kvm_memory_attributes a = { .address = gpa,
					   .size = size,
					   .attributes = attrs };

	return ioctl(vm, KVM_SET_MEMORY_ATTRIBUTES, &a) < 0 ? errno : 0;
}

/* @n anonymous pages, every byte @fill. */
uint8_t *
pages(struct sim *s, size_t n, int fill)
{
	uint8_t *p = mmap(NULL, n * s->page, PROT_READ | PROT_WRITE,
			  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	ck_assert_ptr_ne(p, MAP_FAILED);
	memset(p, fill, n * s->page);
	return p;
}

char *
fmt(const char *f, ...)
{
	static char buf[4][512];
	static int i;
	char *b = buf[i++ % 4];
	va_list ap;

	va_start(ap, f);
	vsnprintf(b, sizeof(buf[0]), f, ap);
	va_end(ap);
	return b;
}

struct kvmsim_stats
stats(void)
{
	struct kvmsim_stats st;

	ck_assert_int_eq(kvmsim_get_stats(&st), 0);
	return st;
}
