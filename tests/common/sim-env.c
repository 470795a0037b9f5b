// SPDX-License-Identifier: MIT
/* The simulator VM fixture of the libmemfault tests; see sim-env.h. */
#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "sim-env.h"

const struct sim_model sim_models[NR_SIM_MODELS] = {
	{ KVMSIM_X86_64, KVMSIM_LEVEL_6_1, "x86_64/6.1" },
	{ KVMSIM_X86_64, KVMSIM_LEVEL_6_8, "x86_64/6.8" },
	{ KVMSIM_X86_64, KVMSIM_LEVEL_7_2, "x86_64/7.2" },
	{ KVMSIM_X86_64, KVMSIM_LEVEL_7_2_UF, "x86_64/7.2+uf" },
	{ KVMSIM_ARM64, KVMSIM_LEVEL_6_1, "arm64/6.1" },
	{ KVMSIM_ARM64, KVMSIM_LEVEL_6_8, "arm64/6.8" },
	{ KVMSIM_ARM64, KVMSIM_LEVEL_7_2, "arm64/7.2" },
	{ KVMSIM_ARM64, KVMSIM_LEVEL_7_2_UF, "arm64/7.2+uf" },
};

void
sim_env_open_quirks(struct sim_env *e, uint32_t arch, uint32_t level,
		    uint64_t quirks, unsigned long vm_type)
{
	struct kvmsim_config cfg = { arch, level, quirks };
	MEMFAULT_OPTS(memfault_vm_opts, vopts, .arch = arch);

	memset(e, 0, sizeof(*e));
	e->arch = arch;
	e->level = level;
	e->gmem_fd = -1;
	e->page = (uint64_t)sysconf(_SC_PAGESIZE);
	ck_assert_int_eq(kvmsim_reset(&cfg), 0);
	tc_kvm_open(&e->kvm_fd, &e->vm_fd, &e->vcpu_fd, vm_type);
	ck_assert_int_eq(memfault_vm_new(e->vm_fd, &vopts, &e->vm), 0);
	ck_assert_int_eq(memfault_vcpu_new(e->vm, e->vcpu_fd, NULL, &e->vcpu),
			 0);
	ck_assert_int_eq(memfault_vcpu_get_run(e->vcpu, &e->run), 0);
}

void
sim_env_open(struct sim_env *e, uint32_t arch, uint32_t level)
{
	sim_env_open_quirks(e, arch, level, kvmsim_default_quirks(arch, level),
			    0);
}

void
sim_env_close(struct sim_env *e)
{
	memfault_vcpu_free(e->vcpu);
	memfault_vm_free(e->vm);
	if (e->gmem_map)
		munmap(e->gmem_map, e->gmem_size);
	if (e->gmem_fd >= 0)
		close(e->gmem_fd);
	if (e->ram)
		munmap(e->ram, e->ram_size);
	free(e->bitmap);
	tc_kvm_close(e->kvm_fd, e->vm_fd, e->vcpu_fd);
}

/* At 6.1 only KVM_SET_USER_MEMORY_REGION exists. 0 or -errno. */
static int
set_slot(struct sim_env *e, uint32_t slot, uint32_t flags, uint64_t gpa,
	 size_t size, void *hva, int gmem_fd, const unsigned long *bitmap)
{
	if (e->level == KVMSIM_LEVEL_6_1)
		return tc_memslot1(e->vm_fd, slot, flags, gpa, size, hva);
	return tc_memslot2(e->vm_fd, slot, flags, gpa, size, hva, gmem_fd, 0,
			   bitmap);
}

void
sim_env_add_ram(struct sim_env *e, uint32_t slot, size_t pages,
		uint32_t flags)
{
	e->ram_size = pages * e->page;
	e->ram = mmap(NULL, e->ram_size, PROT_READ | PROT_WRITE,
		      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ck_assert_ptr_ne(e->ram, MAP_FAILED);
	memset(e->ram, 0x5a, e->ram_size);
	if (flags & KVM_MEM_USERFAULT) {
		size_t words = (pages + 8 * sizeof(long) - 1) /
			       (8 * sizeof(long));

		e->bitmap = calloc(words, sizeof(long));
		ck_assert_ptr_nonnull(e->bitmap);
	}
	ck_assert_int_eq(set_slot(e, slot, flags, RAM_GPA, e->ram_size, e->ram,
				  0, e->bitmap),
			 0);
}

int
sim_env_add_gmem(struct sim_env *e, uint32_t slot, size_t pages,
		 uint64_t gmem_flags)
{
	struct kvm_create_guest_memfd g = { .size = pages * e->page,
					    .flags = gmem_flags };
	int r;

	e->gmem_fd = ioctl(e->vm_fd, KVM_CREATE_GUEST_MEMFD, &g);
	if (e->gmem_fd < 0) {
		r = -errno;
		e->gmem_fd = -1;
		return r;
	}
	e->gmem_size = g.size;
	e->gmem_map = mmap(NULL, e->gmem_size, PROT_READ | PROT_WRITE,
			   MAP_SHARED, e->gmem_fd, 0);
	ck_assert_ptr_ne(e->gmem_map, MAP_FAILED);
	memset(e->gmem_map, 0x6b, e->gmem_size);
	r = set_slot(e, slot, KVM_MEM_GUEST_MEMFD, GMEM_GPA, e->gmem_size,
		     e->gmem_map, e->gmem_fd, NULL);
	if (r) {
		/* 6.8: guest_memfd memslots only for private-memory VM types */
		munmap(e->gmem_map, e->gmem_size);
		close(e->gmem_fd);
		e->gmem_map = NULL;
		e->gmem_fd = -1;
	}
	return r;
}

uint64_t
sim_env_gmem_flags(const struct sim_env *e)
{
	int r = ioctl(e->vm_fd, KVM_CHECK_EXTENSION, KVM_CAP_GUEST_MEMFD_FLAGS);

	return r > 0 ? (uint64_t)r & GUEST_MEMFD_FLAG_MMAP : 0;
}

void
sim_env_script(struct sim_env *e, const char *text)
{
	ck_assert_int_eq(kvmsim_vcpu_set_script_text(e->vcpu_fd, text), 0);
}

struct outcome
sim_env_run(struct sim_env *e)
{
	struct outcome o;

	memset(&o, 0, sizeof(o));
	o.r = memfault_vcpu_run(e->vcpu);
	if (o.r == MEMFAULT_RUN_EXIT)
		o.exit_reason = e->run->exit_reason;
	if (o.r == MEMFAULT_RUN_MEMORY_FAULT)
		ck_assert_int_eq(memfault_vcpu_get_fault(e->vcpu, &o.f,
							 sizeof(o.f)), 0);
	else
		ck_assert_int_eq(memfault_vcpu_get_fault(e->vcpu, &o.f,
							 sizeof(o.f)), -ENODATA);
	return o;
}

uint64_t
sim_env_acc(struct sim_env *e)
{
	uint64_t acc = 0;

	ck_assert_int_eq(kvmsim_vcpu_get_state(e->vcpu_fd, &acc, NULL), 0);
	return acc;
}


void *
run_to_end(void *arg)
{
	struct vcpu_thread *vt = arg;

	vt->result = memfault_vcpu_run_dispatch(vt->vcpu);
	return NULL;
}
