/* SPDX-License-Identifier: MIT */
/*
 * kvmsim: the object model (/dev/kvm, VM, vCPU, guest_memfd), the
 * configuration, the ioctls other than KVM_RUN's guest execution
 * (kvmsim-run.c), and the control API of kvmsim.h.
 *
 * Each ioctl handler names the kernel function it models; the errno and
 * the order of the checks follow that function, because the library under
 * test relies on exactly those (e.g. probing KVM Userfault by the EINVAL a
 * kernel without it gives).
 *
 * Locks: kvmsim__g.lock guards the fd registry and the configuration and is
 * held only briefly; a VM's lock guards its memslots, attributes and
 * injected faults; a vCPU's mutex is held for each vCPU ioctl, as
 * vcpu->mutex is. Order: vCPU mutex, then VM lock, then registry lock.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "kvmsim-private.h"

struct sim_global kvmsim__g = {
	.lock = PTHREAD_MUTEX_INITIALIZER,
};

/* Values of the modelled kernels (see each use). */
#define X86_USER_MEM_SLOTS   32764 /* arch/x86/include/asm/kvm_host.h */
#define ARM64_USER_MEM_SLOTS 32767 /* KVM_MEM_SLOTS_NUM = SHRT_MAX */
#define MEM_SLOTS_NUM        32767
#define MEM_MAX_NR_PAGES     ((1ull << 31) - 1) /* KVM_MEM_MAX_NR_PAGES */
#define X86_MAX_VCPU_IDS     4096
#define ARM64_MAX_VCPUS      512
#define X86_PHYS_BITS        48 /* kvm_mmu_max_gfn(): MAXPHYADDR, assumed */
#define ARM64_IPA_LIMIT      48 /* kvm_ipa_limit, assumed */
#define ARM64_IPA_DEFAULT    40 /* KVM_PHYS_SHIFT */
/*
 * KVM_CAP_USERFAULT as the shared 7.2.13 + KVM Userfault kernels number it:
 * the series says 245, which 7.2 already uses for KVM_CAP_ARM_SEA_TO_USER,
 * so the port took the next free number (measured: CHECK_EXTENSION(250) = 1
 * on x86_64 and arm64; (245) = 0 on x86_64, 1 on arm64).
 */
#define KVMSIM_CAP_USERFAULT 250
/* TASK_SIZE_MAX of the host for access_ok(): 47-bit x86-64, 48-bit arm64. */
#if defined(__aarch64__)
#define HOST_TASK_SIZE (1ull << 48)
#else
#define HOST_TASK_SIZE ((1ull << 47) - 4096)
#endif

/* ---- small helpers ---- */

size_t
kvmsim__page_size(void)
{
	size_t p = __atomic_load_n(&kvmsim__g.page_size, __ATOMIC_RELAXED);

	if (!p) {
		p = (size_t)sysconf(_SC_PAGESIZE);
		__atomic_store_n(&kvmsim__g.page_size, p, __ATOMIC_RELAXED);
	}
	return p;
}

static size_t
page_size(void)
{
	return kvmsim__page_size();
}

bool
kvmsim__x86(void)
{
	return kvmsim__g.cfg.arch == KVMSIM_X86_64;
}

unsigned
kvmsim__level(void)
{
	return kvmsim__g.cfg.level;
}

bool
kvmsim__quirk(uint64_t q)
{
	return (kvmsim__g.cfg.quirks & q) != 0;
}

int
kvmsim__real_close(int fd)
{
	return (int)syscall(SYS_close, fd);
}

/* copy_from_user()/copy_to_user(): a bad pointer gives EFAULT, no crash. */
static int
copy_from_user(void *dst, const void *src, size_t n)
{
	return kvmsim__user_read(dst, src, n);
}

static int
copy_to_user(void *dst, const void *src, size_t n)
{
	return kvmsim__user_write(dst, src, n);
}

/*
 * access_ok(): the range lies in the user address space (mapped or not).
 * It is about this process, so the host's limit applies whatever the model.
 */
static bool
access_ok(uint64_t addr, uint64_t size)
{
	return addr + size >= addr && addr + size <= HOST_TASK_SIZE;
}

/* Grow a dynamic array so that it holds at least @want elements. */
static int
grow(void **arr, size_t *cap, size_t want, size_t elem)
{
	size_t ncap;
	void *p;

	if (want <= *cap)
		return 0;
	ncap = *cap ? *cap * 2 : 8;
	while (ncap < want)
		ncap *= 2;
	p = realloc(*arr, ncap * elem);
	if (!p)
		return -ENOMEM;
	*arr = p;
	*cap = ncap;
	return 0;
}

/* The default errno of an ioctl a VM fd does not know: kvm_arch_vm_ioctl(). */
static int
vm_ioctl_unknown(void)
{
	return kvmsim__x86() ? -ENOTTY : -EINVAL;
}

/* ---- configuration ---- */

static bool
valid_arch(uint32_t arch)
{
	return arch == KVMSIM_X86_64 || arch == KVMSIM_ARM64;
}

static bool
valid_level(uint32_t level)
{
	return level == KVMSIM_LEVEL_6_1 || level == KVMSIM_LEVEL_6_8 ||
	       level == KVMSIM_LEVEL_7_2 || level == KVMSIM_LEVEL_7_2_UF;
}

uint64_t
kvmsim_default_quirks(uint32_t arch, uint32_t level)
{
	uint64_t q;

	if (!valid_arch(arch) || !valid_level(level))
		return 0;
	/*
	 * Both arches leave exit_reason alone on immediate_exit at every level.
	 */
	q = KVMSIM_Q_STALE_EXIT_ON_IE;
	/* kvm_gmem_get_pfn()'s error is returned as is since 6.8. */
	if (level >= KVMSIM_LEVEL_6_8)
		q |= KVMSIM_Q_GMEM_ERRNO;
	if (arch == KVMSIM_ARM64) {
		q |= KVMSIM_Q_MMIO_READBACK | KVMSIM_Q_NO_MFI_CAP;
		/* VNCR + guest_memfd arrived with arm64 gmem (6.18). */
		if (level >= KVMSIM_LEVEL_7_2)
			q |= KVMSIM_Q_ARM64_VNCR_RET0;
	}
	return q;
}

static uint32_t
host_arch(void)
{
#if defined(__aarch64__)
	return KVMSIM_ARM64;
#else
	return KVMSIM_X86_64;
#endif
}

static int
validate_config(const struct kvmsim_config *cfg)
{
	if (!valid_arch(cfg->arch) || !valid_level(cfg->level) ||
	    (cfg->quirks & ~(uint64_t)KVMSIM_Q_ALL))
		return -EINVAL;
	return 0;
}

/* KVMSIM_ARCH, KVMSIM_LEVEL, KVMSIM_QUIRKS, KVMSIM_SCRIPT. */
static int
config_from_env(struct kvmsim_config *cfg, struct kvmsim_step **steps,
		size_t *nsteps, bool *has_script)
{
	const char *a = getenv("KVMSIM_ARCH");
	const char *l = getenv("KVMSIM_LEVEL");
	const char *q = getenv("KVMSIM_QUIRKS");
	const char *s = getenv("KVMSIM_SCRIPT");
	int r;

	cfg->arch = host_arch();
	if (a && *a) {
		if (!strcmp(a, "x86_64") || !strcmp(a, "x86"))
			cfg->arch = KVMSIM_X86_64;
		else if (!strcmp(a, "arm64") || !strcmp(a, "aarch64"))
			cfg->arch = KVMSIM_ARM64;
		else {
			fprintf(stderr,
				"kvmsim: bad KVMSIM_ARCH=%s (x86_64 or "
				"arm64)\n",
				a);
			return -EINVAL;
		}
	}
	cfg->level = KVMSIM_LEVEL_7_2;
	if (l && *l) {
		if (!strcmp(l, "6.1"))
			cfg->level = KVMSIM_LEVEL_6_1;
		else if (!strcmp(l, "6.8"))
			cfg->level = KVMSIM_LEVEL_6_8;
		else if (!strcmp(l, "7.2"))
			cfg->level = KVMSIM_LEVEL_7_2;
		else if (!strcmp(l, "7.2-uf"))
			cfg->level = KVMSIM_LEVEL_7_2_UF;
		else {
			fprintf(stderr,
				"kvmsim: bad KVMSIM_LEVEL=%s (6.1, 6.8, 7.2 or "
				"7.2-uf)\n",
				l);
			return -EINVAL;
		}
	}
	cfg->quirks = kvmsim_default_quirks(cfg->arch, cfg->level);
	if (q && *q) {
		char *end;

		errno = 0;
		cfg->quirks = strtoull(q, &end, 16);
		if (errno || *end || (cfg->quirks & ~(uint64_t)KVMSIM_Q_ALL)) {
			fprintf(stderr,
				"kvmsim: bad KVMSIM_QUIRKS=%s (hex mask within "
				"0x%x)\n",
				q, KVMSIM_Q_ALL);
			return -EINVAL;
		}
	}
	*steps = NULL;
	*nsteps = 0;
	*has_script = false;
	if (s) {
		r = kvmsim_parse_script(s, steps, nsteps);
		if (r < 0) {
			fprintf(stderr, "kvmsim: bad KVMSIM_SCRIPT (syntax: "
					"see kvmsim.h)\n");
			return r;
		}
		/*
		 * Checked against the arch now, so
		 * that a bad script fails loudly.
		 */
		r = kvmsim__check_steps(*steps, *nsteps,
					cfg->arch == KVMSIM_X86_64);
		if (r < 0) {
			fprintf(stderr, "kvmsim: KVMSIM_SCRIPT has a step this "
					"arch cannot run\n");
			free(*steps);
			*steps = NULL;
			return r;
		}
		*has_script = true;
	}
	return 0;
}

/* ---- the fd registry ---- */

static void obj_release(struct sim_obj *o, bool close_fd);

/*
 * The registry is a table indexed by fd, allocated once and never moved, so
 * that the common question "is this fd ours?" is a lock-free load: close()
 * and ioctl() on other fds never take a lock, and stay usable from signal
 * handlers. (It is heap memory, so that leak checkers see the objects.)
 */
static struct sim_obj **
reg_table(size_t *ret_cap)
{
	struct sim_obj **t = __atomic_load_n(&kvmsim__g.fds, __ATOMIC_ACQUIRE);

	*ret_cap = t ? kvmsim__g.nfds : 0;
	return t;
}

/* Is @fd possibly ours? (a hint; the lock decides) */
static bool
reg_maybe(int fd)
{
	size_t cap;
	struct sim_obj **t = reg_table(&cap);

	return fd >= 0 && (size_t)fd < cap &&
	       __atomic_load_n(&t[fd], __ATOMIC_RELAXED);
}

/* Called with the registry lock held. */
static int
reg_alloc(void)
{
	struct rlimit rl;
	size_t cap = 1u << 16;
	void *t;

	if (kvmsim__g.fds)
		return 0;
	/* fd numbers stay below the soft limit; the table can hold 2^20 */
	if (!getrlimit(RLIMIT_NOFILE, &rl) && rl.rlim_cur > cap)
		cap = rl.rlim_cur < (1u << 20) ? (size_t)rl.rlim_cur : 1u << 20;
	t = calloc(cap, sizeof(struct sim_obj *));
	if (!t)
		return -ENOMEM;
	kvmsim__g.nfds = cap;
	__atomic_store_n(&kvmsim__g.fds, (struct sim_obj **)t,
			 __ATOMIC_RELEASE);
	return 0;
}

/* Take a reference on the object behind @fd if it is of @kind (0: any). */
struct sim_obj *
kvmsim__get(int fd, int kind)
{
	struct sim_obj *o = NULL;

	if (!reg_maybe(fd))
		return NULL;
	pthread_mutex_lock(&kvmsim__g.lock);
	o = kvmsim__g.fds[fd];
	if (o && kind && o->kind != kind)
		o = NULL;
	if (o)
		__atomic_fetch_add(&o->refs, 1, __ATOMIC_RELAXED);
	pthread_mutex_unlock(&kvmsim__g.lock);
	return o;
}

/* Register @o under its fd; the registry owns the initial reference. */
static int
reg_add(struct sim_obj *o)
{
	struct sim_obj *stale;
	int r;

	pthread_mutex_lock(&kvmsim__g.lock);
	r = reg_alloc();
	if (!r && (size_t)o->fd >= kvmsim__g.nfds)
		r = -EMFILE;
	if (r) {
		pthread_mutex_unlock(&kvmsim__g.lock);
		return r;
	}
	/*
	 * A stale entry means the fd was closed behind our back (close_range,
	 * dup2, a raw syscall): forget that object, but the fd is not its.
	 */
	stale = kvmsim__g.fds[o->fd];
	__atomic_store_n(&kvmsim__g.fds[o->fd], o, __ATOMIC_RELEASE);
	if ((size_t)o->fd >= kvmsim__g.fds_hwm)
		kvmsim__g.fds_hwm = (size_t)o->fd + 1;
	pthread_mutex_unlock(&kvmsim__g.lock);
	if (stale)
		obj_release(stale, false);
	return 0;
}

static void
vm_free(struct sim_vm *vm)
{
	for (size_t i = 0; i < vm->nslots; i++)
		kvmsim__unmap_slot(&vm->slots[i]);
	pthread_mutex_destroy(&vm->lock);
	free(vm->slots);
	free(vm->priv);
	free(vm->poison);
	free(vm->errs);
	free(vm->vcpu_ids);
	free(vm);
}

void
kvmsim__put(struct sim_obj *o)
{
	if (!o || __atomic_sub_fetch(&o->refs, 1, __ATOMIC_ACQ_REL) != 0)
		return;
	switch (o->kind) {
	case SIM_VCPU: {
		struct sim_vcpu *v = (struct sim_vcpu *)o;

		munmap(v->run, v->run_size);
		free(v->steps);
		pthread_mutex_destroy(&v->mutex);
		kvmsim__put(&v->vm->obj);
		free(v);
		break;
	}
	case SIM_GMEM: {
		struct sim_gmem *g = (struct sim_gmem *)o;

		kvmsim__put(&g->vm->obj);
		free(g);
		break;
	}
	case SIM_VM:
		vm_free((struct sim_vm *)o);
		break;
	default:
		free(o);
		break;
	}
}

/*
 * The fd of @o was closed (it is out of the registry, whose reference we
 * now drop). Closing a guest_memfd unbinds it from every memslot, as
 * kvm_gmem_release() does: kvm_gmem_get_pfn() then fails with EFAULT
 * (observed as `gmem-close`).
 */
static void
obj_release(struct sim_obj *o, bool close_fd)
{
	int fd = o->fd;

	if (o->kind == SIM_GMEM) {
		struct sim_gmem *g = (struct sim_gmem *)o;
		struct sim_vm *vm = g->vm;

		pthread_mutex_lock(&vm->lock);
		for (size_t i = 0; i < vm->nslots; i++)
			if (vm->slots[i].gmem == g)
				vm->slots[i].gmem = NULL;
		/* its poisoned pages go with it (kvmsim.h: deviations) */
		for (size_t i = vm->npoison; i-- > 0;)
			if (vm->poison[i].gmem == g) {
				vm->poison[i] = vm->poison[--vm->npoison];
				vm->ngmem_poison--;
			}
		o->fd = -1;
		pthread_mutex_unlock(&vm->lock);
	} else {
		o->fd = -1;
	}
	if (close_fd && fd >= 0)
		kvmsim__real_close(fd);
	kvmsim__put(o);
}

int
kvmsim__close(int fd, bool *handled)
{
	struct sim_obj *o = NULL;

	*handled = false;
	if (!reg_maybe(fd))
		return 0;
	pthread_mutex_lock(&kvmsim__g.lock);
	o = kvmsim__g.fds[fd];
	__atomic_store_n(&kvmsim__g.fds[fd], NULL, __ATOMIC_RELAXED);
	pthread_mutex_unlock(&kvmsim__g.lock);
	*handled = o != NULL;
	if (o)
		obj_release(o, true);
	return 0;
}

static void *
obj_new(size_t size, int kind, int fd)
{
	struct sim_obj *o = calloc(1, size);

	if (!o)
		return NULL;
	o->kind = kind;
	o->fd = fd;
	o->refs = 1;
	o->pid = getpid();
	return o;
}

/* ---- configuration entry points ---- */

static int
ensure_configured(void)
{
	struct kvmsim_config cfg;
	struct kvmsim_step *steps;
	size_t n;
	bool has;
	int r = 0;

	pthread_mutex_lock(&kvmsim__g.lock);
	if (!kvmsim__g.configured) {
		r = config_from_env(&cfg, &steps, &n, &has);
		if (!r) {
			kvmsim__g.cfg = cfg;
			kvmsim__g.env_steps = steps;
			kvmsim__g.env_nsteps = n;
			kvmsim__g.env_script = has;
			kvmsim__g.configured = true;
		}
	}
	pthread_mutex_unlock(&kvmsim__g.lock);
	return r;
}

int
kvmsim_reset(const struct kvmsim_config *cfg)
{
	struct kvmsim_config c;
	struct kvmsim_step *steps = NULL;
	struct sim_obj **objs = NULL;
	size_t nobjs = 0, objs_cap = 0, n = 0;
	bool has = false;
	int r;

	if (cfg) {
		r = validate_config(cfg);
		if (r)
			return r;
		c = *cfg;
	} else {
		r = config_from_env(&c, &steps, &n, &has);
		if (r)
			return r;
	}

	/*
	 * Take every object out of the registry, then close them unlocked.
	 * Up to the high-water mark only: the table has up to 2^20 entries,
	 * and a fuzzer resets the simulator for every input.
	 */
	pthread_mutex_lock(&kvmsim__g.lock);
	for (size_t i = 0; kvmsim__g.fds && i < kvmsim__g.fds_hwm; i++) {
		if (!kvmsim__g.fds[i])
			continue;
		if (nobjs == objs_cap &&
		    grow((void **)&objs, &objs_cap, nobjs + 1, sizeof(*objs))) {
			pthread_mutex_unlock(&kvmsim__g.lock);
			free(steps);
			free(objs);
			return -ENOMEM;
		}
		objs[nobjs++] = kvmsim__g.fds[i];
		__atomic_store_n(&kvmsim__g.fds[i], NULL, __ATOMIC_RELAXED);
	}
	kvmsim__g.fds_hwm = 0;
	free(kvmsim__g.env_steps);
	kvmsim__g.cfg = c;
	kvmsim__g.env_steps = steps;
	kvmsim__g.env_nsteps = n;
	kvmsim__g.env_script = has;
	kvmsim__g.configured = true;
	memset(&kvmsim__g.stats, 0, sizeof(kvmsim__g.stats));
	pthread_mutex_unlock(&kvmsim__g.lock);

	/* vCPUs and guest_memfds first: they hold references on their VM. */
	for (int pass = 0; pass < 2; pass++) {
		for (size_t i = 0; i < nobjs; i++) {
			struct sim_obj *o = objs[i];
			bool early = o && (o->kind == SIM_VCPU ||
					   o->kind == SIM_GMEM);

			if (o && early == (pass == 0)) {
				objs[i] = NULL;
				obj_release(o, true);
			}
		}
	}
	free(objs);
	return 0;
}

int
kvmsim_get_config(struct kvmsim_config *ret_cfg)
{
	int r;

	if (!ret_cfg)
		return -EINVAL;
	r = ensure_configured();
	if (r)
		return r;
	*ret_cfg = kvmsim__g.cfg;
	return 0;
}

/* ---- /dev/kvm ---- */

/* open("/dev/kvm"): kvm_dev_open() never fails. */
int
kvmsim__open_kvm(int flags)
{
	struct sim_obj *o;
	int fd, r;

	r = ensure_configured();
	if (r)
		return r;
	fd = memfd_create("kvm", (flags & O_CLOEXEC) ? MFD_CLOEXEC : 0);
	if (fd < 0)
		return -errno;
	o = obj_new(sizeof(*o), SIM_KVM, fd);
	if (!o) {
		kvmsim__real_close(fd);
		return -ENOMEM;
	}
	r = reg_add(o);
	if (r) {
		kvmsim__real_close(fd);
		free(o);
		return r;
	}
	return fd;
}

static bool
vm_has_private_mem(const struct sim_vm *vm)
{
	/* kvm_arch_has_private_mem(): only KVM_X86_SW_PROTECTED_VM here. */
	return vm && kvmsim__x86() && vm->type == KVM_X86_SW_PROTECTED_VM;
}

/* Supported KVM_MEMORY_ATTRIBUTE_*: kvm_supported_mem_attributes(). */
static uint64_t
supported_attributes(const struct sim_vm *vm)
{
	if (!kvmsim__x86() || kvmsim__level() < KVMSIM_LEVEL_6_8)
		return 0;
	return (!vm || vm_has_private_mem(vm)) ? KVM_MEMORY_ATTRIBUTE_PRIVATE
					       : 0;
}

/* kvm_gmem_get_supported_flags() (6.18+); 6.8 accepts no flags. */
static uint64_t
gmem_supported_flags(const struct sim_vm *vm)
{
	if (kvmsim__level() < KVMSIM_LEVEL_7_2)
		return 0;
	/* x86 refuses INIT_SHARED for VMs with private memory (x86.c). */
	if (vm_has_private_mem(vm))
		return GUEST_MEMFD_FLAG_MMAP;
	return GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED;
}

/* May a memslot of @vm have KVM_MEM_GUEST_MEMFD? (check_memory_region_flags) */
static bool
gmem_slots_supported(const struct sim_vm *vm)
{
	if (kvmsim__level() >= KVMSIM_LEVEL_7_2)
		return true; /* CONFIG_KVM_GUEST_MEMFD on x86-64 and arm64 */
	/* 6.8: kvm_arch_has_private_mem(), x86 private-memory VMs only. */
	return kvmsim__level() >= KVMSIM_LEVEL_6_8 && vm_has_private_mem(vm);
}

/*
 * KVM_CHECK_EXTENSION: kvm_vm_ioctl_check_extension_generic() plus the
 * arch's kvm_vm_ioctl_check_extension(); @vm is NULL on /dev/kvm. Values
 * per arch and level as the real kernels answered them
 * (doc/kernel-table.md, test-kernel-features.c).
 */
static long
check_extension(const struct sim_vm *vm, long cap)
{
	bool x86 = kvmsim__x86();
	unsigned lv = kvmsim__level();
	bool l68 = lv >= KVMSIM_LEVEL_6_8, l72 = lv >= KVMSIM_LEVEL_7_2;

	switch (cap) {
	case KVM_CAP_USER_MEMORY:
	case KVM_CAP_READONLY_MEM:
	case KVM_CAP_CHECK_EXTENSION_VM:
	case KVM_CAP_IMMEDIATE_EXIT:
		return 1;
	case KVM_CAP_NR_MEMSLOTS:
		return x86 ? X86_USER_MEM_SLOTS : ARM64_USER_MEM_SLOTS;
	case KVM_CAP_USER_MEMORY2:
		return l68;
	case KVM_CAP_MEMORY_FAULT_INFO:
		/* x86 only advertises it; arm64 emits exit 39 anyway. */
		return l68 && (x86 || !kvmsim__quirk(KVMSIM_Q_NO_MFI_CAP));
	case KVM_CAP_MEMORY_ATTRIBUTES:
		return (long)supported_attributes(vm);
	case KVM_CAP_GUEST_MEMFD:
		if (x86)
			return l72 ? 1 : l68 && (!vm || vm_has_private_mem(vm));
		return l72;
	case KVM_CAP_VM_TYPES:
		if (!x86 || !l68)
			return 0;
		return (1 << KVM_X86_DEFAULT_VM) |
		       (kvmsim__quirk(KVMSIM_Q_SW_PROTECTED_VM)
				? 1 << KVM_X86_SW_PROTECTED_VM
				: 0);
	case KVM_CAP_PRE_FAULT_MEMORY:
		/*
		 * Advertised as on the real kernel; the ioctl is not modelled.
		 */
		return x86 && l72;
	case KVM_CAP_GUEST_MEMFD_FLAGS:
		return (long)gmem_supported_flags(vm);
	case KVM_CAP_ARM_NISV_TO_USER:
		return !x86;
	case KVM_CAP_ARM_SEA_TO_USER:
		return !x86 && l72;
	case KVMSIM_CAP_USERFAULT:
		return lv == KVMSIM_LEVEL_7_2_UF;
	case KVM_CAP_ARM_VM_IPA_SIZE:
		return x86 ? 0 : ARM64_IPA_LIMIT;
	default:
		return 0;
	}
}

/* kvm_dev_ioctl_create_vm() -> kvm_arch_init_vm(). */
static int
create_vm(unsigned long type)
{
	struct sim_vm *vm;
	unsigned ipa = 0;
	int fd, r;

	if (kvmsim__x86()) {
		/* kvm_is_vm_type_supported() */
		if (type != KVM_X86_DEFAULT_VM &&
		    !(type == KVM_X86_SW_PROTECTED_VM &&
		      kvmsim__level() >= KVMSIM_LEVEL_6_8 &&
		      kvmsim__quirk(KVMSIM_Q_SW_PROTECTED_VM)))
			return -EINVAL;
	} else {
		/*
		 * kvm_init_ipa_range(); no pKVM, so no
		 * KVM_VM_TYPE_ARM_PROTECTED.
		 */
		if (type & ~(unsigned long)KVM_VM_TYPE_ARM_IPA_SIZE_MASK)
			return -EINVAL;
		ipa = (unsigned)(type & KVM_VM_TYPE_ARM_IPA_SIZE_MASK);
		if (!ipa)
			ipa = ARM64_IPA_DEFAULT;
		else if (ipa < 32 || ipa > ARM64_IPA_LIMIT)
			return -EINVAL;
	}
	fd = memfd_create("kvm-vm", MFD_CLOEXEC);
	if (fd < 0)
		return -errno;
	vm = obj_new(sizeof(*vm), SIM_VM, fd);
	if (!vm) {
		kvmsim__real_close(fd);
		return -ENOMEM;
	}
	pthread_mutex_init(&vm->lock, NULL);
	vm->type = type;
	vm->ipa_bits = ipa;
	r = reg_add(&vm->obj);
	if (r) {
		kvmsim__real_close(fd);
		vm_free(vm);
		return r;
	}
	return fd;
}

/* KVM_GET_VCPU_MMAP_SIZE: kvm_run page + PIO page + coalesced MMIO (x86). */
static size_t
vcpu_mmap_size(void)
{
	return (kvmsim__x86() ? 3 : 2) * page_size();
}

static int
dev_ioctl(unsigned long req, void *arg)
{
	unsigned long a = (unsigned long)(uintptr_t)arg;

	/* kvm_dev_ioctl() */
	switch (req) {
	case KVM_GET_API_VERSION:
		return a ? -EINVAL : KVM_API_VERSION;
	case KVM_CREATE_VM:
		return create_vm(a);
	case KVM_CHECK_EXTENSION:
		return (int)check_extension(NULL, (long)a);
	case KVM_GET_VCPU_MMAP_SIZE:
		return a ? -EINVAL : (int)vcpu_mmap_size();
	default:
		return -EINVAL; /* kvm_arch_dev_ioctl() */
	}
}

/* ---- VM ioctls ---- */

/* kvm_vm_ioctl_create_vcpu() */
static int
create_vcpu(struct sim_vm *vm, unsigned long arg)
{
	uint32_t id = (uint32_t)arg;
	struct sim_vcpu *v;
	char name[32];
	void *map;
	int fd, r;

	if (id >= (kvmsim__x86() ? X86_MAX_VCPU_IDS : ARM64_MAX_VCPUS))
		return -EINVAL;
	pthread_mutex_lock(&vm->lock);
	for (size_t i = 0; i < vm->nvcpus; i++) {
		if (vm->vcpu_ids[i] == id) {
			pthread_mutex_unlock(&vm->lock);
			return -EEXIST;
		}
	}
	r = grow((void **)&vm->vcpu_ids, &vm->vcpus_cap, vm->nvcpus + 1,
		 sizeof(*vm->vcpu_ids));
	if (r) {
		pthread_mutex_unlock(&vm->lock);
		return r;
	}
	/* The id is taken for the VM's lifetime, as in the kernel. */
	vm->vcpu_ids[vm->nvcpus++] = id;
	pthread_mutex_unlock(&vm->lock);

	snprintf(name, sizeof(name), "kvm-vcpu:%u", id);
	fd = memfd_create(name, MFD_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (ftruncate(fd, (off_t)vcpu_mmap_size()) < 0) {
		r = -errno;
		kvmsim__real_close(fd);
		return r;
	}
	map = mmap(NULL, vcpu_mmap_size(), PROT_READ | PROT_WRITE, MAP_SHARED,
		   fd, 0);
	if (map == MAP_FAILED) {
		r = -errno;
		kvmsim__real_close(fd);
		return r;
	}
	v = obj_new(sizeof(*v), SIM_VCPU, fd);
	if (!v) {
		munmap(map, vcpu_mmap_size());
		kvmsim__real_close(fd);
		return -ENOMEM;
	}
	pthread_mutex_init(&v->mutex, NULL);
	v->id = id;
	v->run = map;
	v->run_size = vcpu_mmap_size();
	__atomic_fetch_add(&vm->obj.refs, 1, __ATOMIC_RELAXED);
	v->vm = vm;
	if (kvmsim__g.env_script && kvmsim__g.env_nsteps) {
		size_t sz = kvmsim__g.env_nsteps * sizeof(*v->steps);

		v->steps = malloc(sz);
		if (!v->steps) {
			kvmsim__real_close(fd);
			v->obj.fd = -1;
			kvmsim__put(&v->obj);
			return -ENOMEM;
		}
		memcpy(v->steps, kvmsim__g.env_steps, sz);
		v->nsteps = kvmsim__g.env_nsteps;
	}
	r = reg_add(&v->obj);
	if (r) {
		kvmsim__real_close(fd);
		v->obj.fd = -1;
		kvmsim__put(&v->obj);
		return r;
	}
	return fd;
}

static struct sim_slot *
find_slot_id(struct sim_vm *vm, uint32_t slot)
{
	for (size_t i = 0; i < vm->nslots; i++)
		if (vm->slots[i].slot == slot)
			return &vm->slots[i];
	return NULL;
}

/* Memslot lookup for a guest access: address space 0 only. */
struct sim_slot *
kvmsim__find_slot(struct sim_vm *vm, uint64_t gfn)
{
	uint64_t gpa = gfn * page_size();

	for (size_t i = 0; i < vm->nslots; i++) {
		struct sim_slot *s = &vm->slots[i];

		if ((s->slot >> 16) == 0 && gpa >= s->gpa &&
		    gpa - s->gpa < s->size)
			return s;
	}
	return NULL;
}

/* kvm_check_memslot_overlap() */
static bool
slot_overlaps(struct sim_vm *vm, uint32_t slot, uint64_t gpa, uint64_t size)
{
	for (size_t i = 0; i < vm->nslots; i++) {
		struct sim_slot *s = &vm->slots[i];

		if (s->slot == slot || (s->slot >> 16) != (slot >> 16))
			continue;
		if (gpa < s->gpa + s->size && s->gpa < gpa + size)
			return true;
	}
	return false;
}

/*
 * kvm_gmem_bind(): the fd must be a guest_memfd of this VM, the range must
 * be page-aligned and inside it, and must not overlap another binding.
 * Called with vm->lock held.
 */
static int
gmem_bind(struct sim_vm *vm, struct sim_slot *s, int fd, uint64_t offset)
{
	struct sim_obj *o = kvmsim__get(fd, 0);
	struct sim_gmem *g;
	int r = -EINVAL;

	if (!o)
		return fcntl(fd, F_GETFD) < 0 ? -EBADF : -EINVAL;
	if (o->kind != SIM_GMEM)
		goto out;
	g = (struct sim_gmem *)o;
	if (g->vm != vm)
		goto out;
	if ((int64_t)offset < 0 || offset % page_size() ||
	    offset + s->size > g->size || offset + s->size < offset)
		goto out;
	for (size_t i = 0; i < vm->nslots; i++) {
		struct sim_slot *b = &vm->slots[i];

		if (b->gmem == g && offset < b->gmem_offset + b->size &&
		    b->gmem_offset < offset + s->size)
			goto out;
	}
	s->gmem = g;
	s->gmem_offset = offset;
	/* KVM_MEMSLOT_GMEM_ONLY: every fault is served from guest_memfd. */
	s->gmem_only = kvmsim__level() >= KVMSIM_LEVEL_7_2 &&
		       (g->flags & GUEST_MEMFD_FLAG_MMAP);
	r = 0;
out:
	kvmsim__put(o);
	return r;
}

/*
 * KVM_SET_USER_MEMORY_REGION(2): kvm_vm_ioctl_set_memory_region() ->
 * check_memory_region_flags() -> __kvm_set_memory_region() ->
 * kvm_gmem_bind() -> kvm_arch_prepare_memory_region(), in that order.
 */
static int
set_memory_region(struct sim_vm *vm,
		  const struct kvm_userspace_memory_region2_uf *mem)
{
	const uint64_t P = page_size();
	unsigned lv = kvmsim__level();
	bool x86 = kvmsim__x86();
	uint32_t as_id = mem->slot >> 16, id = (uint16_t)mem->slot;
	uint32_t valid = KVM_MEM_LOG_DIRTY_PAGES;
	enum {
		CREATE,
		MOVE,
		FLAGS_ONLY
	} change;
	struct sim_slot *old, ns;
	uint64_t npages = mem->memory_size / P;
	int r;

	if (id >= (x86 ? X86_USER_MEM_SLOTS : ARM64_USER_MEM_SLOTS))
		return -EINVAL;

	/* check_memory_region_flags() */
	if (gmem_slots_supported(vm))
		valid |= KVM_MEM_GUEST_MEMFD;
	if (mem->flags & KVM_MEM_GUEST_MEMFD)
		valid &= ~KVM_MEM_LOG_DIRTY_PAGES;
	if (!(mem->flags & KVM_MEM_GUEST_MEMFD))
		valid |= KVM_MEM_READONLY;
	/* KVM Userfault v3 01/15: accepted where the arch supports it. */
	if (lv == KVMSIM_LEVEL_7_2_UF)
		valid |= KVMSIM_MEM_USERFAULT;
	if (mem->flags & ~valid)
		return -EINVAL;

	/* __kvm_set_memory_region(): general sanity checks */
	if (mem->memory_size % P)
		return -EINVAL;
	if (mem->guest_phys_addr % P)
		return -EINVAL;
	if (mem->userspace_addr % P ||
	    !access_ok(mem->userspace_addr, mem->memory_size))
		return -EINVAL;
	if ((mem->flags & KVM_MEM_GUEST_MEMFD) &&
	    (mem->guest_memfd_offset % P ||
	     mem->guest_memfd_offset + mem->memory_size <
		     mem->guest_memfd_offset))
		return -EINVAL;
	/*
	 * kvm_arch_nr_memslot_as_ids(): x86 has
	 * an SMM address space unless private
	 */
	if (as_id >= (x86 && !vm_has_private_mem(vm) ? 2u : 1u) ||
	    id >= MEM_SLOTS_NUM)
		return -EINVAL;
	if (mem->guest_phys_addr + mem->memory_size < mem->guest_phys_addr)
		return -EINVAL;
	if (npages > MEM_MAX_NR_PAGES)
		return -EINVAL;
	/* KVM Userfault v3: the bitmap pointer is only range-checked here. */
	if ((mem->flags & KVMSIM_MEM_USERFAULT) &&
	    !access_ok(mem->userfault_bitmap, (npages + 63) / 64 * 8))
		return -EINVAL;

	pthread_mutex_lock(&vm->lock);
	old = find_slot_id(vm, mem->slot);
	if (!mem->memory_size) {
		/* KVM_MR_DELETE: the guest_memfd binding goes with the slot. */
		if (!old) {
			r = -EINVAL;
		} else {
			kvmsim__unmap_slot(old);
			*old = vm->slots[--vm->nslots];
			r = 0;
		}
		goto out;
	}
	if (!old) {
		change = CREATE;
	} else {
		/*
		 * "Private memslots are immutable, they can only be deleted";
		 * KVM Userfault v3 relaxes that to "can't be MOVED", so that
		 * KVM_MEM_USERFAULT can be toggled on guest_memfd slots.
		 */
		if ((mem->flags ^ old->flags) & KVM_MEM_GUEST_MEMFD) {
			/* kvmsim: the kernel has no sane meaning here */
			r = -EINVAL;
			goto out;
		}
		if ((mem->flags & KVM_MEM_GUEST_MEMFD) &&
		    (lv != KVMSIM_LEVEL_7_2_UF ||
		     mem->guest_phys_addr != old->gpa)) {
			r = -EINVAL;
			goto out;
		}
		if (mem->userspace_addr != old->hva ||
		    mem->memory_size != old->size ||
		    ((mem->flags ^ old->flags) & KVM_MEM_READONLY)) {
			r = -EINVAL;
			goto out;
		}
		if (mem->guest_phys_addr != old->gpa)
			change = MOVE;
		else if (mem->flags != old->flags)
			change = FLAGS_ONLY;
		else {
			/*
			 * "nothing to change": a new userfault_bitmap alone is
			 * ignored, the old pointer stays in use (measured on
			 * the 7.2.13 + KVM Userfault kernels, both arches).
			 */
			r = 0;
			goto out;
		}
	}
	if (change != FLAGS_ONLY &&
	    slot_overlaps(vm, mem->slot, mem->guest_phys_addr,
			  mem->memory_size)) {
		r = -EEXIST;
		goto out;
	}

	memset(&ns, 0, sizeof(ns));
	ns.slot = mem->slot;
	ns.flags = mem->flags;
	ns.gpa = mem->guest_phys_addr;
	ns.size = mem->memory_size;
	ns.hva = mem->userspace_addr;
	if (mem->flags & KVMSIM_MEM_USERFAULT)
		ns.userfault_bitmap = mem->userfault_bitmap;
	if (change == CREATE && (mem->flags & KVM_MEM_GUEST_MEMFD)) {
		r = gmem_bind(vm, &ns, (int)mem->guest_memfd,
			      mem->guest_memfd_offset);
		if (r)
			goto out;
	} else if (old) {
		ns.gmem = old->gmem;
		ns.gmem_offset = old->gmem_offset;
		ns.gmem_only = old->gmem_only;
		/*
		 * KVM Userfault's FLAGS_ONLY change of a guest_memfd slot
		 * (patch 0049) binds nothing for the new slot, and 7.2's
		 * kvm_commit_memory_region() unbinds the old one (with a
		 * WARN): every access then fails in kvm_gmem_get_pfn() with
		 * exit 39, flags 0 (measured on 7.2.13 + KVM Userfault,
		 * both arches, turning the flag on or off).
		 */
		if (change == FLAGS_ONLY && (ns.flags & KVM_MEM_GUEST_MEMFD))
			ns.gmem = NULL;
	}

	/* kvm_arch_prepare_memory_region() */
	if (x86) {
		if (change != FLAGS_ONLY &&
		    (ns.gpa + ns.size - 1) >> X86_PHYS_BITS) {
			r = -EINVAL; /* beyond kvm_mmu_max_gfn() */
			goto out;
		}
	} else {
		if ((ns.gpa + ns.size) > (1ull << vm->ipa_bits)) {
			r = -EFAULT; /* beyond kvm_phys_size() */
			goto out;
		}
		/*
		 * "Only support guest_memfd backed
		 * memslots with mappable memory"
		 */
		if ((ns.flags & KVM_MEM_GUEST_MEMFD) && !ns.gmem_only) {
			r = -EINVAL;
			goto out;
		}
	}

	if (old) {
		/*
		 * The secondary MMU: turning KVM_MEM_USERFAULT on zaps the
		 * slot (x86 kvm_mmu_slot_apply_flags() ->
		 * kvm_arch_flush_shadow_memslot(), arm64
		 * kvm_arch_commit_memory_region()): measured, a set bit of a
		 * mapped page takes effect after the flag goes off and on;
		 * off, nothing is tracked. A moved slot starts empty
		 * (kvm_invalidate_memslot() zaps the old one).
		 */
		if (change == FLAGS_ONLY &&
		    !((ns.flags ^ old->flags) & KVMSIM_MEM_USERFAULT)) {
			ns.mapped = old->mapped;
			ns.mapped_bytes = old->mapped_bytes;
			ns.mmu_counted = old->mmu_counted;
		} else {
			kvmsim__unmap_slot(old);
		}
		*old = ns;
	} else {
		r = grow((void **)&vm->slots, &vm->slots_cap, vm->nslots + 1,
			 sizeof(*vm->slots));
		if (r)
			goto out;
		vm->slots[vm->nslots++] = ns;
	}
	r = 0;
out:
	pthread_mutex_unlock(&vm->lock);
	return r;
}

/* ---- the secondary MMU of KVM_MEM_USERFAULT slots ---- */

#define MAPPED_BITS (8 * sizeof(unsigned long))

/*
 * The table lives outside the C library's view (raw system calls): it is
 * the simulator's, and must neither show in the fuzz targets' mapping count
 * nor come back through our own munmap() below.
 */
static void *
raw_mmap(size_t n)
{
	return (void *)syscall(SYS_mmap, NULL, n, PROT_READ | PROT_WRITE,
			       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1,
			       0);
}

bool
kvmsim__slot_mapped(const struct sim_slot *s, uint64_t off, unsigned kind)
{
	uint64_t b = 2 * off;

	return s->mapped &&
	       ((s->mapped[b / MAPPED_BITS] >> (b % MAPPED_BITS)) & kind);
}

/*
 * Count @s among the slots that may have a page mapped, before a fault
 * reads a page's userfault bit (userfault_check()), not when the access
 * completes: the invalidation (kvmsim__invalidate_hva()) skips the VMs
 * while the count is 0, and a fault that had read the bit clear could
 * otherwise map the slot's first page after an invalidation that skipped
 * it (the aarch64 window test saw 7 loads of a page marked missing, once).
 * The seq_cst increment comes before the seq_cst read of the bit; the
 * re-marker's full fence between its bit set and its invalidation's read
 * of the count pairs with it: either that read sees the count, or the
 * fault sees the bit. vm->lock held.
 */
void
kvmsim__slot_count(struct sim_slot *s)
{
	if (s->mmu_counted)
		return;
	s->mmu_counted = true;
	__atomic_add_fetch(&kvmsim__g.nr_mapped_slots, 1, __ATOMIC_SEQ_CST);
}

void
kvmsim__slot_map(struct sim_slot *s, uint64_t off, unsigned kind)
{
	uint64_t b = 2 * off;

	kvmsim__slot_count(s);
	if (!s->mapped) {
		uint64_t words = (2 * (s->size / page_size()) + MAPPED_BITS - 1) /
				 MAPPED_BITS;
		size_t n = (size_t)((words * sizeof(unsigned long) +
				     page_size() - 1) &
				    ~(uint64_t)(page_size() - 1));
		void *p = raw_mmap(n);

		/* no table, no mapping: the next access faults again */
		if (p == MAP_FAILED)
			return;
		s->mapped = p;
		s->mapped_bytes = n;
	}
	s->mapped[b / MAPPED_BITS] |= (unsigned long)kind << (b % MAPPED_BITS);
}

void
kvmsim__unmap_slot(struct sim_slot *s)
{
	if (s->mapped) {
		syscall(SYS_munmap, s->mapped, s->mapped_bytes);
		s->mapped = NULL;
		s->mapped_bytes = 0;
	}
	if (s->mmu_counted) {
		s->mmu_counted = false;
		__atomic_sub_fetch(&kvmsim__g.nr_mapped_slots, 1,
				   __ATOMIC_RELAXED);
	}
}

void
kvmsim__slot_zap(struct sim_slot *s, uint64_t first, uint64_t count,
		 unsigned kind)
{
	uint64_t end = first + count;

	if (!s->mapped)
		return;
	if (kind == SIM_MAPPED_ANY && !first && count >= s->size / page_size()) {
		kvmsim__unmap_slot(s);
		return;
	}
	/* words never written read as zero without being committed */
	for (uint64_t p = first; p < end;) {
		uint64_t b = 2 * p;
		unsigned long *w = &s->mapped[b / MAPPED_BITS];

		if (!*w) {
			p = (b / MAPPED_BITS + 1) * MAPPED_BITS / 2;
			continue;
		}
		*w &= ~((unsigned long)kind << (b % MAPPED_BITS));
		p++;
	}
}

/* kvm_unmap_gfn_range() over [gpa, gpa + size) of every slot; locked. */
static void
zap_gpa_range(struct sim_vm *vm, uint64_t gpa, uint64_t size)
{
	const uint64_t P = page_size();

	for (size_t i = 0; i < vm->nslots; i++) {
		struct sim_slot *s = &vm->slots[i];
		uint64_t lo, hi;

		if (!s->mapped || gpa >= s->gpa + s->size ||
		    s->gpa >= gpa + size)
			continue;
		lo = gpa > s->gpa ? gpa : s->gpa;
		hi = gpa + size < s->gpa + s->size ? gpa + size
						   : s->gpa + s->size;
		kvmsim__slot_zap(s, (lo - s->gpa) / P,
				 (hi - s->gpa + P - 1) / P - (lo - s->gpa) / P,
				 SIM_MAPPED_ANY);
	}
}

/*
 * Each VM in the registry, with a reference, outside the registry lock
 * (whose order comes after vm->lock). In batches: no allocation, as we may
 * be inside munmap().
 */
static void
for_each_vm(void (*fn)(struct sim_vm *, uint64_t, uint64_t), uint64_t a,
	    uint64_t b)
{
	size_t next = 0;
	bool more = true;

	while (more) {
		struct sim_vm *vms[16];
		size_t n = 0;

		pthread_mutex_lock(&kvmsim__g.lock);
		for (; next < kvmsim__g.fds_hwm && n < 16; next++) {
			struct sim_obj *o = kvmsim__g.fds[next];

			if (o && o->kind == SIM_VM) {
				__atomic_fetch_add(&o->refs, 1,
						   __ATOMIC_RELAXED);
				vms[n++] = (struct sim_vm *)o;
			}
		}
		more = next < kvmsim__g.fds_hwm;
		pthread_mutex_unlock(&kvmsim__g.lock);
		for (size_t i = 0; i < n; i++) {
			fn(vms[i], a, b);
			kvmsim__put(&vms[i]->obj);
		}
	}
}

/*
 * kvm_mmu_notifier_invalidate_range_start(): the slots whose hva range
 * meets [hva, hva + len) lose those pages, with KVM_FILTER_SHARED (x86
 * private mappings come from guest_memfd, not from the hva).
 */
static void
zap_hva_in_vm(struct sim_vm *vm, uint64_t hva, uint64_t len)
{
	const uint64_t P = page_size();

	pthread_mutex_lock(&vm->lock);
	for (size_t i = 0; i < vm->nslots; i++) {
		struct sim_slot *s = &vm->slots[i];
		uint64_t lo, hi;

		if (!s->mapped || hva >= s->hva + s->size ||
		    s->hva >= hva + len)
			continue;
		lo = hva > s->hva ? hva : s->hva;
		hi = hva + len < s->hva + s->size ? hva + len
						  : s->hva + s->size;
		kvmsim__slot_zap(s, (lo - s->hva) / P,
				 (hi - s->hva + P - 1) / P - (lo - s->hva) / P,
				 SIM_MAPPED_SHARED);
	}
	pthread_mutex_unlock(&vm->lock);
}

/* With no slot counted, no page can be mapped, nor be mapped by a fault
 * that read its bit before the caller set it (kvmsim__slot_count()). */
void
kvmsim__invalidate_hva(uint64_t hva, uint64_t len)
{
	if (!len || !__atomic_load_n(&kvmsim__g.nr_mapped_slots,
				     __ATOMIC_SEQ_CST))
		return;
	for_each_vm(zap_hva_in_vm, hva, len);
}

/*
 * kvm_gmem_punch_hole() -> kvm_gmem_invalidate_begin(): every slot bound
 * to [off, off + len) of the guest_memfd loses those pages. Both kinds: on
 * the KVM Userfault kernels the punch made the next access fault for a
 * shared page of an MMAP|INIT_SHARED guest_memfd and for a private page of
 * a SW_PROTECTED VM (measured on 7.2.13 + KVM Userfault, 20 of 20 each).
 */
void
kvmsim__invalidate_gmem(int fd, uint64_t off, uint64_t len)
{
	struct sim_obj *o;
	struct sim_gmem *g;
	struct sim_vm *vm;

	/* see kvmsim__invalidate_hva() */
	if (!len || !__atomic_load_n(&kvmsim__g.nr_mapped_slots,
				     __ATOMIC_SEQ_CST))
		return;
	o = kvmsim__get(fd, SIM_GMEM);
	if (!o)
		return;
	g = (struct sim_gmem *)o;
	vm = g->vm;
	pthread_mutex_lock(&vm->lock);
	for (size_t i = 0; i < vm->nslots; i++) {
		struct sim_slot *s = &vm->slots[i];
		uint64_t lo, hi;

		if (!s->mapped || s->gmem != g ||
		    off >= s->gmem_offset + s->size ||
		    s->gmem_offset >= off + len)
			continue;
		lo = off > s->gmem_offset ? off : s->gmem_offset;
		hi = off + len < s->gmem_offset + s->size
			     ? off + len
			     : s->gmem_offset + s->size;
		kvmsim__slot_zap(s, (lo - s->gmem_offset) / page_size(),
				 (hi - s->gmem_offset + page_size() - 1) /
						 page_size() -
					 (lo - s->gmem_offset) / page_size(),
				 SIM_MAPPED_ANY);
	}
	pthread_mutex_unlock(&vm->lock);
	kvmsim__put(o);
}

bool
kvmsim__gfn_private(struct sim_vm *vm, uint64_t gfn)
{
	for (size_t i = 0; i < vm->npriv; i++)
		if (gfn >= vm->priv[i].start && gfn < vm->priv[i].end)
			return true;
	return false;
}

/* kvm_vm_set_mem_attributes() for [start, end): called with vm->lock held. */
static int
set_private(struct sim_vm *vm, uint64_t start, uint64_t end, bool priv)
{
	/* Each range may split in two, and one may be added. */
	struct sim_range *n = malloc((vm->npriv * 2 + 1) * sizeof(*n));
	size_t cnt = 0;

	if (!n)
		return -ENOMEM;
	for (size_t i = 0; i < vm->npriv; i++) {
		struct sim_range c = vm->priv[i];

		if (c.end <= start || c.start >= end) {
			n[cnt++] = c;
			continue;
		}
		if (c.start < start)
			n[cnt++] = (struct sim_range){ c.start, start };
		if (c.end > end)
			n[cnt++] = (struct sim_range){ end, c.end };
	}
	if (priv)
		n[cnt++] = (struct sim_range){ start, end };
	free(vm->priv);
	vm->priv = n;
	vm->npriv = cnt;
	vm->priv_cap = cnt;
	return 0;
}

/* KVM_SET_MEMORY_ATTRIBUTES: kvm_vm_ioctl_set_mem_attributes() */
static int
set_memory_attributes(struct sim_vm *vm, void *arg)
{
	struct kvm_memory_attributes a;
	const uint64_t P = page_size();
	int r;

	r = copy_from_user(&a, arg, sizeof(a));
	if (r)
		return r;
	if (a.flags)
		return -EINVAL;
	if (a.attributes & ~supported_attributes(vm))
		return -EINVAL;
	if (a.size == 0 || a.address + a.size < a.address)
		return -EINVAL;
	if (a.address % P || a.size % P)
		return -EINVAL;
	pthread_mutex_lock(&vm->lock);
	r = set_private(vm, a.address / P, (a.address + a.size) / P,
			(a.attributes & KVM_MEMORY_ATTRIBUTE_PRIVATE) != 0);
	/* kvm_vm_set_mem_attributes(): kvm_pre_set_memory_attributes()
	 * unmaps the range, private and shared */
	if (!r)
		zap_gpa_range(vm, a.address, a.size);
	pthread_mutex_unlock(&vm->lock);
	return r;
}

/* KVM_CREATE_GUEST_MEMFD: kvm_gmem_create() -> __kvm_gmem_create() */
static int
create_guest_memfd(struct sim_vm *vm, void *arg)
{
	struct kvm_create_guest_memfd c;
	struct sim_gmem *g;
	struct stat st;
	int fd, r;

	r = copy_from_user(&c, arg, sizeof(c));
	if (r)
		return r;
	if (c.flags & ~gmem_supported_flags(vm))
		return -EINVAL;
	if ((int64_t)c.size <= 0 || c.size % page_size())
		return -EINVAL;
	/* get_unused_fd_flags(0): a guest_memfd is not close-on-exec. */
	fd = memfd_create("kvm-gmem", 0);
	if (fd < 0)
		return -errno;
	if (ftruncate(fd, (off_t)c.size) < 0) {
		r = -errno;
		kvmsim__real_close(fd);
		return r;
	}
	if (fstat(fd, &st) < 0) {
		r = -errno;
		kvmsim__real_close(fd);
		return r;
	}
	g = obj_new(sizeof(*g), SIM_GMEM, fd);
	if (!g) {
		kvmsim__real_close(fd);
		return -ENOMEM;
	}
	__atomic_fetch_add(&vm->obj.refs, 1, __ATOMIC_RELAXED);
	g->vm = vm;
	g->size = c.size;
	g->flags = c.flags;
	g->dev = st.st_dev;
	g->ino = st.st_ino;
	r = reg_add(&g->obj);
	if (r) {
		kvmsim__real_close(fd);
		g->obj.fd = -1;
		kvmsim__put(&g->obj);
		return r;
	}
	return fd;
}

/* kvm_vm_ioctl() */
static int
vm_ioctl(struct sim_vm *vm, unsigned long req, void *arg)
{
	unsigned lv = kvmsim__level();
	bool x86 = kvmsim__x86();

	switch (req) {
	case KVM_CREATE_VCPU:
		return create_vcpu(vm, (unsigned long)(uintptr_t)arg);
	case KVM_CHECK_EXTENSION:
		return (int)check_extension(vm, (long)(uintptr_t)arg);
	case KVM_SET_USER_MEMORY_REGION: {
		struct kvm_userspace_memory_region2_uf m;
		int r;

		memset(&m, 0, sizeof(m));
		r = copy_from_user(&m, arg,
				   sizeof(struct kvm_userspace_memory_region));
		if (r)
			return r;
		/* KVM_SET_USER_MEMORY_REGION_V1_FLAGS */
		if (lv >= KVMSIM_LEVEL_6_8 &&
		    (m.flags &
		     ~(uint32_t)(KVM_MEM_LOG_DIRTY_PAGES | KVM_MEM_READONLY)))
			return -EINVAL;
		return set_memory_region(vm, &m);
	}
	case KVM_SET_USER_MEMORY_REGION2: {
		struct kvm_userspace_memory_region2_uf m;
		int r;

		if (lv < KVMSIM_LEVEL_6_8)
			break;
		r = copy_from_user(&m, arg, sizeof(m));
		if (r)
			return r;
		return set_memory_region(vm, &m);
	}
	case KVM_SET_MEMORY_ATTRIBUTES:
		/* CONFIG_KVM_GENERIC_MEMORY_ATTRIBUTES: x86 only */
		if (!x86 || lv < KVMSIM_LEVEL_6_8)
			break;
		return set_memory_attributes(vm, arg);
	case KVM_CREATE_GUEST_MEMFD:
		if (lv < KVMSIM_LEVEL_6_8 || (!x86 && lv < KVMSIM_LEVEL_7_2))
			break;
		return create_guest_memfd(vm, arg);
	case KVMSIM_ARM_PREFERRED_TARGET: {
		/* arm64 kvm_arch_vm_ioctl(): struct kvm_vcpu_init, 32 bytes */
		uint32_t init[8] = { KVMSIM_ARM_TARGET_GENERIC_V8 };

		if (x86)
			break;
		return copy_to_user(arg, init, sizeof(init));
	}
	default:
		break;
	}
	return vm_ioctl_unknown();
}

/* ---- vCPU ioctls ---- */

/* KVM_SET_SIGNAL_MASK: kvm_vcpu_ioctl_set_sigmask() */
static int
set_signal_mask(struct sim_vcpu *v, void *arg)
{
	struct kvm_signal_mask km;
	uint64_t bits;
	int r;

	if (!arg) {
		v->has_sigmask = false;
		return 0;
	}
	r = copy_from_user(&km, arg, sizeof(km));
	if (r)
		return r;
	if (km.len != sizeof(bits)) /* the kernel's sigset_t */
		return -EINVAL;
	r = copy_from_user(
		&bits, (char *)arg + offsetof(struct kvm_signal_mask, sigset),
		sizeof(bits));
	if (r)
		return r;
	sigemptyset(&v->sigmask);
	for (int s = 1; s <= 64; s++)
		if ((bits >> (s - 1)) & 1 && s != SIGKILL && s != SIGSTOP)
			sigaddset(&v->sigmask, s);
	v->has_sigmask = true;
	return 0;
}

/* kvm_vcpu_ioctl() */
static int
vcpu_ioctl(struct sim_vcpu *v, unsigned long req, void *arg)
{
	int r;

	if (_IOC_TYPE(req) != KVMIO)
		return -EINVAL;
	pthread_mutex_lock(&v->mutex);
	switch (req) {
	case KVM_RUN:
		r = arg ? -EINVAL : kvmsim__vcpu_run(v);
		break;
	case KVM_SET_SIGNAL_MASK:
		r = set_signal_mask(v, arg);
		break;
	case KVMSIM_ARM_VCPU_INIT:
		/* Accepted, not required: the model has no vCPU features. */
		r = kvmsim__x86() ? -EINVAL : 0;
		break;
	default:
		r = -EINVAL; /* kvm_arch_vcpu_ioctl() */
		break;
	}
	pthread_mutex_unlock(&v->mutex);
	return r;
}

int
kvmsim__ioctl(int fd, unsigned long req, void *arg, bool *handled)
{
	struct sim_obj *o = kvmsim__get(fd, 0);
	int r;

	*handled = o != NULL;
	if (!o)
		return 0;
	switch (o->kind) {
	case SIM_KVM:
		r = dev_ioctl(req, arg);
		break;
	case SIM_VM:
		/* kvm->mm != current->mm: a VM used after fork() */
		r = o->pid != getpid() ? -EIO
				       : vm_ioctl((struct sim_vm *)o, req, arg);
		break;
	case SIM_VCPU:
		r = o->pid != getpid()
			    ? -EIO
			    : vcpu_ioctl((struct sim_vcpu *)o, req, arg);
		break;
	default:
		r = -ENOTTY; /* kvm_gmem_fops has no unlocked_ioctl */
		break;
	}
	kvmsim__put(o);
	if (r < 0) {
		errno = -r;
		return -1;
	}
	return r;
}

/* ---- control API ---- */

/*
 * Poison belongs to memory, as memory_failure() marks a folio: a
 * guest_memfd page (file + offset) or a host virtual page. Whatever gpa
 * maps it now sees it; a gpa re-bound to other memory does not.
 */

bool
kvmsim__gmem_poisoned(struct sim_vm *vm, const struct sim_gmem *g,
		      uint64_t offset)
{
	uint64_t page = offset & ~(uint64_t)(page_size() - 1);

	for (size_t i = 0; i < vm->npoison; i++)
		if (vm->poison[i].gmem == g && vm->poison[i].addr == page)
			return true;
	return false;
}

/* The guest_memfd of @vm that @hva maps, and the offset there. Locked. */
static struct sim_gmem *
gmem_at_hva(struct sim_vm *vm, uint64_t hva, uint64_t *ret_off)
{
	struct sim_gmem *found = NULL;
	struct sim_obj **t;
	size_t cap;
	dev_t dev;
	ino_t ino;

	if (kvmsim__hva_file(hva, &dev, &ino, ret_off))
		return NULL;
	pthread_mutex_lock(&kvmsim__g.lock);
	t = reg_table(&cap);
	for (size_t fd = 0; fd < cap && !found; fd++) {
		struct sim_gmem *g = (struct sim_gmem *)t[fd];

		if (g && g->obj.kind == SIM_GMEM && g->vm == vm &&
		    g->dev == dev && g->ino == ino)
			found = g;
	}
	pthread_mutex_unlock(&kvmsim__g.lock);
	return found;
}

/*
 * Is the host page at @hva poisoned: that page itself, or, when it is an
 * mmap() of one of the VM's guest_memfds, a poisoned page of that file
 * (the folio is the same)? vm->lock held.
 */
bool
kvmsim__hva_poisoned(struct sim_vm *vm, uint64_t hva)
{
	uint64_t page = hva & ~(uint64_t)(page_size() - 1), off;
	dev_t dev;
	ino_t ino;

	for (size_t i = 0; i < vm->npoison; i++)
		if (!vm->poison[i].gmem && vm->poison[i].addr == page)
			return true;
	/* /proc/self/maps only when some guest_memfd page is poisoned */
	if (!vm->ngmem_poison || kvmsim__hva_file(hva, &dev, &ino, &off))
		return false;
	off &= ~(uint64_t)(page_size() - 1);
	for (size_t i = 0; i < vm->npoison; i++) {
		const struct sim_poison *p = &vm->poison[i];

		if (p->gmem && p->gmem->dev == dev && p->gmem->ino == ino &&
		    p->addr == off)
			return true;
	}
	return false;
}

/* The next injected error at @gfn, consumed; 0 if none. vm->lock held. */
int
kvmsim__take_gmem_error(struct sim_vm *vm, uint64_t gfn)
{
	for (size_t i = 0; i < vm->nerrs; i++) {
		struct sim_gmem_err *e = &vm->errs[i];

		if (e->gfn == gfn && e->count) {
			int err = e->err;

			if (!--e->count)
				*e = vm->errs[--vm->nerrs];
			return err;
		}
	}
	return 0;
}

int
kvmsim__check_steps(const struct kvmsim_step *steps, size_t n, bool x86)
{
	const uint64_t P = page_size();

	if (n && !steps)
		return -EINVAL;
	for (size_t i = 0; i < n; i++) {
		const struct kvmsim_step *s = &steps[i];
		uint32_t len = s->len;

		if (s->reserved ||
		    (s->flags & ~(uint32_t)(KVMSIM_F_PRIVATE | KVMSIM_F_SHARED |
					    KVMSIM_F_VNCR | KVMSIM_F_ACC)))
			return -EINVAL;
		if ((s->flags & KVMSIM_F_PRIVATE) &&
		    (s->flags & KVMSIM_F_SHARED))
			return -EINVAL;
		switch (s->op) {
		case KVMSIM_OP_MMIO_READ:
		case KVMSIM_OP_MMIO_WRITE:
			if (len < 1 || len > 8)
				return -EINVAL;
			break;
		case KVMSIM_OP_IO_IN:
		case KVMSIM_OP_IO_OUT:
			if (!x86 || (len != 1 && len != 2 && len != 4) ||
			    s->gpa > 0xffff)
				return -EINVAL;
			break;
		case KVMSIM_OP_HLT:
			if (!x86)
				return -EINVAL;
			break;
		case KVMSIM_OP_LOAD:
		case KVMSIM_OP_STORE:
			if (len != 1 && len != 2 && len != 4 && len != 8)
				return -EINVAL;
			if (s->gpa % P + len > P)
				return -EINVAL;
			break;
		case KVMSIM_OP_SPIN:
			break;
		default:
			return -EINVAL;
		}
	}
	return 0;
}

int
kvmsim_vcpu_set_script(int vcpu_fd, const struct kvmsim_step *steps, size_t n)
{
	struct sim_obj *o = kvmsim__get(vcpu_fd, SIM_VCPU);
	struct sim_vcpu *v = (struct sim_vcpu *)o;
	struct kvmsim_step *copy = NULL;
	int r;

	if (!o)
		return -EBADF;
	r = kvmsim__check_steps(steps, n, kvmsim__x86());
	if (r)
		goto out;
	if (n) {
		copy = malloc(n * sizeof(*copy));
		if (!copy) {
			r = -ENOMEM;
			goto out;
		}
		memcpy(copy, steps, n * sizeof(*copy));
	}
	if (pthread_mutex_trylock(&v->mutex)) {
		free(copy);
		r = -EBUSY;
		goto out;
	}
	free(v->steps);
	v->steps = copy;
	v->nsteps = n;
	v->pc = 0;
	v->acc = 0;
	v->pending = PEND_NONE;
	pthread_mutex_unlock(&v->mutex);
out:
	kvmsim__put(o);
	return r;
}

int
kvmsim_vcpu_set_script_text(int vcpu_fd, const char *text)
{
	struct kvmsim_step *steps;
	size_t n;
	int r;

	r = kvmsim_parse_script(text, &steps, &n);
	if (r)
		return r;
	r = kvmsim_vcpu_set_script(vcpu_fd, steps, n);
	free(steps);
	return r;
}

int
kvmsim_vcpu_get_state(int vcpu_fd, uint64_t *ret_acc, size_t *ret_pc)
{
	struct sim_obj *o = kvmsim__get(vcpu_fd, SIM_VCPU);
	struct sim_vcpu *v = (struct sim_vcpu *)o;
	int r = 0;

	if (!o)
		return -EBADF;
	if (pthread_mutex_trylock(&v->mutex)) {
		r = -EBUSY;
	} else {
		if (ret_acc)
			*ret_acc = v->acc;
		if (ret_pc)
			*ret_pc = v->pc;
		pthread_mutex_unlock(&v->mutex);
	}
	kvmsim__put(o);
	return r;
}

/*
 * Does a guest access at @gfn of slot @s go to guest_memfd? As
 * x86_access() and arm64_access() decide: arm64 for any guest_memfd slot;
 * x86 for a gmem-only slot or a page with the PRIVATE attribute.
 */
static bool
gfn_uses_gmem(struct sim_vm *vm, const struct sim_slot *s, uint64_t gfn)
{
	if (!(s->flags & KVM_MEM_GUEST_MEMFD))
		return false;
	return !kvmsim__x86() || s->gmem_only || kvmsim__gfn_private(vm, gfn);
}

int
kvmsim_poison(int vm_fd, uint64_t gpa)
{
	struct sim_obj *o = kvmsim__get(vm_fd, SIM_VM);
	struct sim_vm *vm = (struct sim_vm *)o;
	uint64_t gfn = gpa / page_size();
	struct sim_poison p = { NULL, 0 };
	struct sim_slot *s;
	int r = 0;

	if (!o)
		return -EBADF;
	pthread_mutex_lock(&vm->lock);
	s = kvmsim__find_slot(vm, gfn);
	if (!s) {
		r = -ENOENT;
	} else if (gfn_uses_gmem(vm, s, gfn)) {
		/* the guest_memfd page; none once its fd was closed */
		p.gmem = s->gmem;
		p.addr = s->gmem_offset + (gfn * page_size() - s->gpa);
		if (!p.gmem)
			r = -ENOENT;
	} else {
		/* the host page at the hva, unless it is a guest_memfd's */
		uint64_t off;

		p.addr = s->hva + (gfn * page_size() - s->gpa);
		p.gmem = gmem_at_hva(vm, p.addr, &off);
		if (p.gmem)
			p.addr = off & ~(uint64_t)(page_size() - 1);
	}
	if (!r && !(p.gmem ? kvmsim__gmem_poisoned(vm, p.gmem, p.addr)
			   : kvmsim__hva_poisoned(vm, p.addr))) {
		r = grow((void **)&vm->poison, &vm->poison_cap, vm->npoison + 1,
			 sizeof(*vm->poison));
		if (!r) {
			vm->poison[vm->npoison++] = p;
			if (p.gmem)
				vm->ngmem_poison++;
		}
	}
	pthread_mutex_unlock(&vm->lock);
	kvmsim__put(o);
	return r;
}

int
kvmsim_inject_gmem_error(int vm_fd, uint64_t gpa, int err, unsigned count)
{
	struct sim_obj *o;
	struct sim_vm *vm;
	uint64_t gfn = gpa / page_size();
	int r = 0;
	size_t i;

	if (err < 1 || err > 4095 || !count)
		return -EINVAL;
	o = kvmsim__get(vm_fd, SIM_VM);
	if (!o)
		return -EBADF;
	vm = (struct sim_vm *)o;
	pthread_mutex_lock(&vm->lock);
	for (i = 0; i < vm->nerrs; i++)
		if (vm->errs[i].gfn == gfn)
			break;
	if (i == vm->nerrs) {
		r = grow((void **)&vm->errs, &vm->errs_cap, vm->nerrs + 1,
			 sizeof(*vm->errs));
		if (!r)
			vm->nerrs++;
	}
	if (!r)
		vm->errs[i] = (struct sim_gmem_err){ gfn, err, count };
	pthread_mutex_unlock(&vm->lock);
	kvmsim__put(o);
	return r;
}

int
kvmsim_fd_kind(int fd)
{
	struct sim_obj *o = kvmsim__get(fd, 0);
	int kind;

	if (!o)
		return KVMSIM_FD_NONE;
	kind = o->kind;
	kvmsim__put(o);
	return kind;
}

int
kvmsim_get_stats(struct kvmsim_stats *ret)
{
	const uint64_t *src = (const uint64_t *)&kvmsim__g.stats;
	uint64_t *dst = (uint64_t *)ret;

	if (!ret)
		return -EINVAL;
	for (size_t i = 0; i < sizeof(*ret) / sizeof(uint64_t); i++)
		dst[i] = __atomic_load_n(&src[i], __ATOMIC_RELAXED);
	return 0;
}
