/* SPDX-License-Identifier: MIT */
/*
 * VM objects: what memfault_vm_new() learns of the kernel (capabilities,
 * the KVM Userfault probe), the library's one memslot writer, the VM's
 * logger and handler registration, and its reference count.
 */
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "memfault-private.h"
#include "kvm-userfault-proposed.h"

/* max_repeats of memfault_handlers when the caller leaves it 0 */
#define DEFAULT_MAX_REPEATS 16

static int
check_extension(int fd, long cap)
{
	int r = ioctl(fd, KVM_CHECK_EXTENSION, cap);

	/* A kernel that does not know a capability answers 0, not an error. */
	return r < 0 ? 0 : r;
}

static int64_t
read_mmap_size(int kvm_fd)
{
	int fd = kvm_fd, r, err = 0;

	if (fd <= 0) {
		fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
		if (fd < 0)
			return errno == ENOENT ? -ENODEV : -errno;
	}
	r = ioctl(fd, KVM_GET_VCPU_MMAP_SIZE, 0);
	if (r < 0)
		err = errno;
	if (fd != kvm_fd)
		close(fd);
	if (r < 0)
		return -err;
	return r < (int)sizeof(struct kvm_run) ? -EPROTO : r;
}

/*
 * The library's one memslot writer (the probe below and every region).
 * KVM_SET_USER_MEMORY_REGION2 when the kernel has it (6.8 and later) or
 * the flags need it; else the first memslot ioctl, which knows only
 * KVM_MEM_LOG_DIRTY_PAGES and KVM_MEM_READONLY. 0 or -errno.
 */
int
memfault_set_memslot(int vm_fd, bool have_region2,
		     const struct memfault_memslot *s)
{
	const uint32_t v1_flags = KVM_MEM_LOG_DIRTY_PAGES | KVM_MEM_READONLY;
	struct kvm_userspace_memory_region2_uf m;

	if (!have_region2 && !(s->flags & ~v1_flags)) {
		struct kvm_userspace_memory_region m1 = {
			.slot = s->slot,
			.flags = s->flags,
			.guest_phys_addr = s->gpa,
			.memory_size = s->size,
			.userspace_addr = (uintptr_t)s->hva,
		};

		return ioctl(vm_fd, KVM_SET_USER_MEMORY_REGION, &m1) ? -errno
								      : 0;
	}
	memset(&m, 0, sizeof(m));
	m.slot = s->slot;
	m.flags = s->flags;
	m.guest_phys_addr = s->gpa;
	m.memory_size = s->size;
	m.userspace_addr = (uintptr_t)s->hva;
	if (s->flags & KVM_MEM_GUEST_MEMFD) {
		m.guest_memfd_offset = s->gmem_offset;
		m.guest_memfd = (uint32_t)s->gmem_fd;
	}
	if (s->flags & KVM_MEM_USERFAULT)
		m.userfault_bitmap = (uintptr_t)s->bitmap;
	return ioctl(vm_fd, KVM_SET_USER_MEMORY_REGION2, &m) ? -errno : 0;
}

static int
set_region2(int vm_fd, uint32_t flags, uint64_t size, void *hva,
	    unsigned long *bitmap)
{
	struct memfault_memslot m = {
		.flags = flags,
		.size = size,
		.hva = hva,
		.bitmap = bitmap,
	};

	return memfault_set_memslot(vm_fd, true, &m);
}

/*
 * Whether the kernel accepts KVM_MEM_USERFAULT: no capability number can be
 * trusted (236, 239, 240, 243 and 245 were all proposed and all are merged
 * capabilities now; a kernel carrying the series on 7.2 answers 1 for 245
 * on arm64, where it is KVM_CAP_ARM_SEA_TO_USER), so ask the memslot code
 * itself. A control call without the flag tells "flag rejected" apart from
 * "slot unusable". @vm_fd is a throw-away VM of our own: a slot created in
 * the caller's VM could overlap its RAM and races with its memslot changes.
 */
static int
probe_userfault(int vm_fd, bool *supported)
{
	uint64_t ps = memfault_page_size;
	unsigned long bitmap = 0;
	void *page;
	int r;

	*supported = false;
	page = mmap(NULL, ps, PROT_READ | PROT_WRITE,
		    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (page == MAP_FAILED)
		return -errno;
	r = set_region2(vm_fd, KVM_MEM_USERFAULT, ps, page, &bitmap);
	if (r == 0)
		*supported = true;
	else if (r == -EINVAL)
		r = set_region2(vm_fd, 0, ps, page, NULL);
	/* No need to delete the slot: closing the VM destroys it, and KVM
	 * holds no reference on the page (the guest never ran). */
	munmap(page, ps);
	return r;
}

/* x86 KVM_X86_SW_PROTECTED_VM; the arm64 build's uapi headers lack it. */
#define PROBE_X86_SW_PROTECTED_VM 1ul

/*
 * The VM type to probe with: the caller's if it can be told from its
 * capabilities. There is no ioctl that returns a VM's type. On x86 a VM
 * with private memory reports KVM_MEMORY_ATTRIBUTE_PRIVATE on its fd; of
 * those types only KVM_X86_SW_PROTECTED_VM can be created without
 * confidential-computing hardware, and memslot flags are checked by
 * generic code (check_memory_region_flags()) the same way for all of them.
 * arm64's type only encodes the IPA size, which memslot flags ignore.
 */
static unsigned long
probe_vm_type(int vm_fd, const struct memfault_features *f)
{
	/* x86 answers KVM_CAP_VM_TYPES on a VM fd as on /dev/kvm. */
	if (f->arch == MEMFAULT_ARCH_X86_64 &&
	    (f->memory_attributes & KVM_MEMORY_ATTRIBUTE_PRIVATE) &&
	    (check_extension(vm_fd, KVM_CAP_VM_TYPES) &
	     (1 << PROBE_X86_SW_PROTECTED_VM)))
		return PROBE_X86_SW_PROTECTED_VM;
	return 0;
}

/*
 * The last clear answer, so that a process creating many VMs probes once:
 * keyed by the inode of the caller's VM fd (every KVM VM fd of a kernel
 * shares the "kvm-vm" anonymous inode, so all of them hit; an fd that is
 * not a real KVM VM, such as a simulator's, has its own and always
 * misses) and the probe's VM type. Only answers are cached, never errors.
 */
static struct {
	pthread_mutex_t lock;
	bool valid, supported;
	dev_t dev;
	ino_t ino;
	unsigned long type;
} uf_cache = { .lock = PTHREAD_MUTEX_INITIALIZER };

/* Probe KVM Userfault in a VM of our own; 0 or a negative errno. */
static int
probe_userfault_scratch(int caller_vm_fd, int kvm_fd,
			const struct memfault_features *f, bool *supported)
{
	unsigned long type;
	struct stat st;
	int fd = kvm_fd, vm_fd, r;
	bool keyed;

	*supported = false;
	type = probe_vm_type(caller_vm_fd, f);
	keyed = fstat(caller_vm_fd, &st) == 0;
	if (keyed) {
		pthread_mutex_lock(&uf_cache.lock);
		if (uf_cache.valid && uf_cache.dev == st.st_dev &&
		    uf_cache.ino == st.st_ino && uf_cache.type == type) {
			*supported = uf_cache.supported;
			pthread_mutex_unlock(&uf_cache.lock);
			return 0;
		}
		pthread_mutex_unlock(&uf_cache.lock);
	}
	if (fd <= 0) {
		fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
		if (fd < 0)
			return errno == ENOENT ? -ENODEV : -errno;
	}
	vm_fd = ioctl(fd, KVM_CREATE_VM, type);
	if (vm_fd < 0 && type != 0)
		vm_fd = ioctl(fd, KVM_CREATE_VM, 0ul);
	if (vm_fd < 0) {
		r = -errno;
		goto out;
	}
	r = probe_userfault(vm_fd, supported);
	close(vm_fd);
	if (r == 0 && keyed) {
		pthread_mutex_lock(&uf_cache.lock);
		uf_cache.valid = true;
		uf_cache.supported = *supported;
		uf_cache.dev = st.st_dev;
		uf_cache.ino = st.st_ino;
		uf_cache.type = type;
		pthread_mutex_unlock(&uf_cache.lock);
	}
out:
	if (fd != kvm_fd)
		close(fd);
	return r;
}

static void
probe_features(struct memfault_vm *vm, const struct memfault_arch_info *ai,
	       uint64_t vm_flags, int kvm_fd)
{
	struct memfault_features *f = &vm->features;
	int fd = vm->fd;

	memset(f, 0, sizeof(*f));
	f->arch = vm->arch;
	f->page_size = memfault_page_size;
	if (check_extension(fd, KVM_CAP_USER_MEMORY2) > 0)
		f->flags |= MEMFAULT_FEATURE_USER_MEMORY2;
	if (check_extension(fd, KVM_CAP_MEMORY_FAULT_INFO) > 0)
		f->flags |= MEMFAULT_FEATURE_MEMORY_FAULT_INFO |
			    MEMFAULT_FEATURE_MEMORY_FAULT_EXITS;
	f->memory_attributes =
		(uint64_t)check_extension(fd, KVM_CAP_MEMORY_ATTRIBUTES);
	if (f->memory_attributes)
		f->flags |= MEMFAULT_FEATURE_MEMORY_ATTRIBUTES;
	if (check_extension(fd, KVM_CAP_GUEST_MEMFD) > 0) {
		f->flags |= MEMFAULT_FEATURE_GUEST_MEMFD;
		/* arm64 gmem_abort() reports faults with exit 39 although the
		 * capability is never advertised there. */
		if (ai->gmem_exits_without_cap)
			f->flags |= MEMFAULT_FEATURE_MEMORY_FAULT_EXITS;
	}
	f->guest_memfd_flags =
		(uint64_t)check_extension(fd, KVM_CAP_GUEST_MEMFD_FLAGS);
	if (f->guest_memfd_flags)
		f->flags |= MEMFAULT_FEATURE_GUEST_MEMFD_FLAGS;

	if (vm_flags & MEMFAULT_VM_NO_USERFAULT_PROBE) {
		f->userfault_probe_error = -ECANCELED;
	} else if (!(f->flags & MEMFAULT_FEATURE_USER_MEMORY2)) {
		/* no KVM_SET_USER_MEMORY_REGION2, so no userfault_bitmap */
		f->userfault_probe_error = 0;
	} else {
		bool ok;

		f->userfault_probe_error =
			probe_userfault_scratch(fd, kvm_fd, f, &ok);
		if (ok)
			f->flags |= MEMFAULT_FEATURE_KVM_USERFAULT;
	}
	/* KVM_EXIT_MEMORY_FAULT has exactly three sources: a guest_memfd
	 * access that fails (kvm_gmem_get_pfn()), a private/shared mismatch
	 * (needs memory attributes), a KVM Userfault page. A VM offering none
	 * of them never sees one, whatever MEMORY_FAULT_INFO says (x86
	 * advertises it on every VM, e.g. on PVM, which has neither
	 * guest_memfd nor attributes). */
	if (!(f->flags & (MEMFAULT_FEATURE_GUEST_MEMFD |
			  MEMFAULT_FEATURE_MEMORY_ATTRIBUTES |
			  MEMFAULT_FEATURE_KVM_USERFAULT)))
		f->flags &= ~MEMFAULT_FEATURE_MEMORY_FAULT_EXITS;
}

MEMFAULT_EXPORT int
memfault_vm_new(int vm_fd, const struct memfault_vm_opts *opts,
		struct memfault_vm **ret_vm)
{
	const struct memfault_arch_info *ai;
	struct memfault_vm *vm;
	uint64_t flags, probe_gpa;
	uint32_t arch;
	int kvm_fd;

	if (!ret_vm || !OPTS_VALID(opts, memfault_vm_opts))
		return -EINVAL;
	flags = OPTS_GET(opts, memfault_vm_opts, flags, 0);
	arch = OPTS_GET(opts, memfault_vm_opts, arch, MEMFAULT_ARCH_HOST);
	/* probe_gpa and probe_slot are unused since the probe moved to a VM
	 * of its own; probe_gpa is still checked as before, so that a call
	 * that failed keeps failing. */
	probe_gpa = OPTS_GET(opts, memfault_vm_opts, probe_gpa, 0);
	kvm_fd = OPTS_GET(opts, memfault_vm_opts, kvm_fd, -1);
	if (flags & ~(uint64_t)(MEMFAULT_VM_OWN_FD |
				MEMFAULT_VM_NO_USERFAULT_PROBE))
		return -EINVAL;
	if (OPTS_GET(opts, memfault_vm_opts, reserved, 0))
		return -EINVAL;
	if ((probe_gpa & (memfault_page_size - 1)) ||
	    probe_gpa + memfault_page_size < probe_gpa)
		return -EINVAL;
	ai = memfault_arch_get(arch);
	if (!ai)
		return -EINVAL;
	if (vm_fd < 0 || fcntl(vm_fd, F_GETFD) < 0)
		return -EBADF;
	/* /dev/kvm answers KVM_GET_API_VERSION, a VM fd does not: refuse
	 * the system fd passed by mistake, which would probe wrongly. */
	if (ioctl(vm_fd, KVM_GET_API_VERSION, 0) >= 0)
		return -EINVAL;
	/* KVM_CHECK_EXTENSION on a VM fd exists since Linux 4.0; anything
	 * else fails here with ENOTTY (or EINVAL) and is not a VM. */
	if (ioctl(vm_fd, KVM_CHECK_EXTENSION, KVM_CAP_USER_MEMORY) < 0)
		return -errno;

	vm = calloc(1, sizeof(*vm));
	if (!vm)
		return -ENOMEM;
	vm->fd = vm_fd;
	vm->own_fd = flags & MEMFAULT_VM_OWN_FD;
	vm->refs = 1;
	vm->handlers.sz = sizeof(vm->handlers);
	vm->handlers.max_repeats = 16;
	vm->arch = arch == MEMFAULT_ARCH_HOST ? memfault_arch_host() : arch;
	vm->mmap_size = read_mmap_size(kvm_fd);
	probe_features(vm, ai, flags, kvm_fd);
	*ret_vm = vm;
	return 0;
}

void
memfault_vm_unref(struct memfault_vm *vm)
{
	/* acq_rel: the last owner must see every write the others made to
	 * the VM before they dropped their references (release), and order
	 * its own teardown after that (acquire). */
	if (memfault_sub(&vm->refs, 1, MEMFAULT_ACQ_REL))
		return;
	if (vm->own_fd)
		close(vm->fd);
	free(vm->regions);
	free(vm);
}

MEMFAULT_EXPORT void
memfault_vm_free(struct memfault_vm *vm)
{
	if (vm)
		memfault_vm_unref(vm);
}

MEMFAULT_EXPORT int
memfault_vm_get_fd(const struct memfault_vm *vm)
{
	return vm ? vm->fd : -EINVAL;
}

MEMFAULT_EXPORT int
memfault_vm_get_features(const struct memfault_vm *vm,
			 struct memfault_features *ret_features, size_t size)
{
	if (!vm || !ret_features || !size)
		return -EINVAL;
	memfault_copy_out(ret_features, size, &vm->features,
			  sizeof(vm->features));
	return 0;
}

void
memfault_vm_log(const struct memfault_vm *vm, int level, const char *fmt, ...)
{
	char msg[256];
	va_list ap;

	if (!vm->handlers.log)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	vm->handlers.log(vm->handlers.user, level, msg);
}

MEMFAULT_EXPORT int
memfault_vm_set_handlers(struct memfault_vm *vm,
			 const struct memfault_handlers *h)
{
	struct memfault_handlers copy;

	if (!vm || !OPTS_VALID(h, memfault_handlers))
		return -EINVAL;
	if (OPTS_GET(h, memfault_handlers, reserved, 0))
		return -EINVAL;
	memset(&copy, 0, sizeof(copy));
	copy.sz = sizeof(copy);
	copy.user = OPTS_GET(h, memfault_handlers, user, NULL);
	copy.page_in = OPTS_GET(h, memfault_handlers, page_in, NULL);
	copy.convert = OPTS_GET(h, memfault_handlers, convert, NULL);
	copy.discard = OPTS_GET(h, memfault_handlers, discard, NULL);
	copy.hwpoison = OPTS_GET(h, memfault_handlers, hwpoison, NULL);
	copy.other = OPTS_GET(h, memfault_handlers, other, NULL);
	copy.log = OPTS_GET(h, memfault_handlers, log, NULL);
	copy.max_repeats = OPTS_GET(h, memfault_handlers, max_repeats, 0);
	if (!copy.max_repeats)
		copy.max_repeats = DEFAULT_MAX_REPEATS;
	vm->handlers = copy;
	return 0;
}
