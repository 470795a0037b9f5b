/* SPDX-License-Identifier: MIT */
/*
 * memfault-probe's findings: everything it learns from the system.
 *   - /dev/kvm: the API version and the capabilities that matter to
 *     libmemfault, on /dev/kvm and on a VM fd of every VM type the kernel
 *     offers (KVM_CHECK_EXTENSION);
 *   - per VM type, what memfault_vm_new() probed (memfault_vm_get_features()),
 *     KVM Userfault acceptance included, and, for the default type, whether
 *     a vCPU can be wrapped (memfault_vcpu_new());
 *   - userfaultfd: vm.unprivileged_userfaultfd, /dev/userfaultfd, the
 *     userfaultfd(2) system call, and the UFFDIO_API features and ioctls;
 *   - the host: kernel release, page size, euid, CAP_SYS_PTRACE, and the
 *     names of the device nodes' owners.
 * Only the public libmemfault API, raw KVM and userfaultfd ioctls and the
 * project's vendored Linux 7.2 uapi are used. Everything created is closed
 * again: the probe changes nothing on the host.
 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "memfault-probe.h"

/* The userfaultfd API group of libmemfault, where this header has it. */
#ifdef MEMFAULT_UFFD_LATENCY_BUCKETS
#define HAVE_UFFD_API 1
#else
#define HAVE_UFFD_API 0
#endif

#define CAP_SYS_PTRACE_BIT 19 /* linux/capability.h */

/*
 * x86 VM types (KVM_CAP_VM_TYPES bits), KVM_X86_*_VM of the x86 uapi
 * (asm/kvm.h), which an arm64 build does not have; arm64 has only the
 * default type.
 */
static const char *const x86_vm_type_names[] = {
	"default",      /* 0 KVM_X86_DEFAULT_VM */
	"sw_protected", /* 1 KVM_X86_SW_PROTECTED_VM */
	"sev",          /* 2 KVM_X86_SEV_VM */
	"sev_es",       /* 3 KVM_X86_SEV_ES_VM */
	"snp",          /* 4 KVM_X86_SNP_VM */
	"tdx",          /* 5 KVM_X86_TDX_VM */
};

static struct cap_value
check_extension(int fd, long cap)
{
	struct cap_value v = { 0, 0 };
	int r = ioctl(fd, KVM_CHECK_EXTENSION, cap);

	if (r < 0)
		v.err = errno;
	else
		v.value = r;
	return v;
}

static void
read_caps(int fd, struct cap_value *out)
{
	size_t i;

	for (i = 0; i < NR_CAPS; i++)
		out[i] = check_extension(fd, caps[i].cap);
}
/* The owner's and group's names, or their numbers. */
static void
owner_names(struct node *n)
{
	struct passwd *pw = getpwuid(n->uid);
	struct group *gr = getgrgid(n->gid);

	if (pw)
		snprintf(n->user, sizeof(n->user), "%s", pw->pw_name);
	else
		snprintf(n->user, sizeof(n->user), "%u", (unsigned)n->uid);
	if (gr)
		snprintf(n->group, sizeof(n->group), "%s", gr->gr_name);
	else
		snprintf(n->group, sizeof(n->group), "%u", (unsigned)n->gid);
}

static struct node
stat_node(const char *path, int fd)
{
	struct node n = { 0 };
	struct stat st;

	if ((path ? stat(path, &st) : fstat(fd, &st)) < 0) {
		n.err = errno;
		return n;
	}
	n.mode = st.st_mode;
	n.uid = st.st_uid;
	n.gid = st.st_gid;
	owner_names(&n);
	return n;
}

static bool
in_group(gid_t gid)
{
	gid_t groups[256];
	int i, n;

	if (getegid() == gid)
		return true;
	n = getgroups(sizeof(groups) / sizeof(groups[0]), groups);
	for (i = 0; i < n; i++)
		if (groups[i] == gid)
			return true;
	return false;
}

/* 1 if CAP_SYS_PTRACE is effective, 0 if not, -1 if unknown. */
static int
has_cap_sys_ptrace(void)
{
	char line[256];
	unsigned long long eff;
	int r = -1;
	FILE *f = fopen("/proc/self/status", "re");

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "CapEff: %llx", &eff) == 1) {
			r = !!(eff & (1ull << CAP_SYS_PTRACE_BIT));
			break;
		}
	fclose(f);
	return r;
}

/* Read a small non-negative integer from a /proc file; -errno on failure. */
static int
read_int_file(const char *path)
{
	char buf[32];
	ssize_t n;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return -errno;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return -EIO;
	buf[n] = '\0';
	return atoi(buf);
}

/* ---- KVM ---------------------------------------------------------------- */

static void
vm_type_name(uint32_t arch, unsigned long type, char *buf, size_t len)
{
	if (arch == MEMFAULT_ARCH_ARM64)
		snprintf(buf, len, "default");
	else if (type < sizeof(x86_vm_type_names) / sizeof(x86_vm_type_names[0]))
		snprintf(buf, len, "%s", x86_vm_type_names[type]);
	else
		snprintf(buf, len, "type%lu", type);
}

/* A vCPU wrapped by the library: KVM_CREATE_VCPU, memfault_vcpu_new(). */
static void
probe_vcpu(struct vm_report *v, struct memfault_vm *vm)
{
	MEMFAULT_OPTS(memfault_vcpu_opts, opts, .flags = MEMFAULT_VCPU_OWN_FD);
	struct memfault_vcpu *vcpu;
	int fd, r;

	v->vcpu_tried = true;
	fd = ioctl(memfault_vm_get_fd(vm), KVM_CREATE_VCPU, 0);
	if (fd < 0) {
		v->vcpu_err = errno;
		return;
	}
	r = memfault_vcpu_new(vm, fd, &opts, &vcpu);
	if (r) {
		close(fd); /* not taken over on failure */
		v->vcpu_err = r;
		return;
	}
	memfault_vcpu_free(vcpu);
}

/* The library's userfaultfd backend, as a VMM would create it. */
static void
probe_uffd_backend(struct vm_report *v, struct memfault_vm *vm)
{
#if HAVE_UFFD_API
	struct memfault_uffd *uffd;

	v->uffd_tried = true;
	v->uffd_err = memfault_uffd_new(vm, NULL, &uffd);
	if (!v->uffd_err)
		memfault_uffd_free(uffd);
#else
	(void)v;
	(void)vm;
#endif
}

static void
probe_vm(struct report *rep, int kvm_fd, unsigned long type)
{
	MEMFAULT_OPTS(memfault_vm_opts, opts,
		.flags = MEMFAULT_VM_OWN_FD,
		.kvm_fd = kvm_fd,
		.arch = rep->arch);
	struct vm_report *v = &rep->vms[rep->nr_vms++];
	struct memfault_vm *vm;
	int fd, r;

	memset(v, 0, sizeof(*v));
	v->type = type;
	vm_type_name(rep->arch, type, v->name, sizeof(v->name));
	fd = ioctl(kvm_fd, KVM_CREATE_VM, type);
	if (fd < 0) {
		v->create_err = errno;
		return;
	}
	read_caps(fd, v->caps);
	r = memfault_vm_new(fd, &opts, &vm);
	if (r) {
		close(fd); /* not taken over on failure */
		v->wrap_err = r;
		return;
	}
	r = memfault_vm_get_features(vm, &v->features, sizeof(v->features));
	if (r)
		v->wrap_err = r;
	else if (type == 0) {
		probe_vcpu(v, vm);
		probe_uffd_backend(v, vm);
	}
	memfault_vm_free(vm); /* closes the VM fd */
}

void
probe_kvm(struct report *rep, uint32_t arch_opt)
{
	struct cap_value types;
	unsigned long t;
	int fd;

	rep->kvm_path = stat_node("/dev/kvm", -1);
	if (!rep->kvm_path.err)
		rep->kvm_group_member = in_group(rep->kvm_path.gid);
	rep->api_version = -ENODEV;
	fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (fd < 0) {
		rep->kvm_open_err = errno;
		return;
	}
	rep->kvm_fd_node = stat_node(NULL, fd);
	rep->kvm_simulated = !rep->kvm_fd_node.err &&
			     !S_ISCHR(rep->kvm_fd_node.mode);
	rep->api_version = ioctl(fd, KVM_GET_API_VERSION, 0);
	if (rep->api_version < 0)
		rep->api_version = -errno;
	if (rep->api_version != KVM_API_VERSION) {
		close(fd);
		return;
	}
	read_caps(fd, rep->sys_caps);

	/* The architecture of the KVM in use: only arm64 answers
	 * KVM_CAP_ARM_VM_IPA_SIZE. It differs from the build's only on a
	 * simulator, whose model then needs telling to the library. */
	rep->arch = rep->sys_caps[C_ARM_VM_IPA_SIZE].value > 0 ?
			    MEMFAULT_ARCH_ARM64 :
			    MEMFAULT_ARCH_X86_64;
	if (arch_opt) {
		rep->arch = arch_opt;
		rep->arch_given = true;
	}

	/* KVM_CAP_VM_TYPES (x86, Linux 6.8+); before it, and on arm64,
	 * only type 0 is known to exist. */
	types = rep->sys_caps[C_VM_TYPES];
	if (rep->arch != MEMFAULT_ARCH_X86_64 || types.err || types.value <= 0)
		types.value = 1;
	for (t = 0; t < MAX_VM_TYPES; t++)
		if ((unsigned long)types.value & (1ul << t))
			probe_vm(rep, fd, t);
	close(fd);
}

/* ---- userfaultfd -------------------------------------------------------- */

/* UFFDIO_API on a fresh fd, then UFFDIO_REGISTER of one anonymous page
 * for the range ioctls; consumes @uffd. */
static void
probe_uffd_api(struct report *rep, int uffd, const char *source)
{
	struct uffdio_register reg;
	long ps = rep->page_size;
	void *page;

	rep->uffd_api_source = source;
	memset(&rep->api, 0, sizeof(rep->api));
	rep->api.api = UFFD_API;
	/* features 0: the kernel answers with every feature it supports */
	if (ioctl(uffd, UFFDIO_API, &rep->api) < 0) {
		rep->uffd_api_err = errno;
		close(uffd);
		return;
	}
	page = mmap(NULL, (size_t)ps, PROT_READ | PROT_WRITE,
		    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (page == MAP_FAILED) {
		rep->uffd_register_err = errno;
		close(uffd);
		return;
	}
	memset(&reg, 0, sizeof(reg));
	reg.range.start = (uintptr_t)page;
	reg.range.len = (uint64_t)ps;
	reg.mode = UFFDIO_REGISTER_MODE_MISSING;
	if (ioctl(uffd, UFFDIO_REGISTER, &reg) < 0)
		rep->uffd_register_err = errno;
	else
		rep->uffd_range_ioctls = reg.ioctls;
	munmap(page, (size_t)ps);
	close(uffd);
}

void
probe_uffd(struct report *rep)
{
	int api_fd = -1, fd, uffd;
	const char *source = NULL;

	rep->uffd_sysctl = read_int_file("/proc/sys/vm/unprivileged_userfaultfd");
	if (rep->uffd_sysctl < 0) {
		rep->uffd_sysctl_err = -rep->uffd_sysctl;
		rep->uffd_sysctl = -1;
	}

	/* /dev/userfaultfd (Linux 6.1+): access is controlled by the node's
	 * permissions, not by the sysctl. */
	rep->uffd_path = stat_node("/dev/userfaultfd", -1);
	rep->uffd_dev_new_err = -1;
	fd = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
	if (fd < 0) {
		rep->uffd_dev_err = errno;
	} else {
		uffd = ioctl(fd, USERFAULTFD_IOC_NEW, O_CLOEXEC | O_NONBLOCK);
		rep->uffd_dev_new_err = uffd < 0 ? errno : 0;
		close(fd);
		if (uffd >= 0) {
			api_fd = uffd;
			source = "/dev/userfaultfd";
		}
	}

	/* The system call: without UFFD_USER_MODE_ONLY (what a VMM needs,
	 * since KVM's own accesses fault in kernel mode) it needs the sysctl
	 * set to 1 or CAP_SYS_PTRACE. */
	uffd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	rep->uffd_syscall_err = uffd < 0 ? errno : 0;
	if (uffd >= 0) {
		if (api_fd < 0) {
			api_fd = uffd;
			source = "userfaultfd(2)";
		} else {
			close(uffd);
		}
	}
	uffd = (int)syscall(SYS_userfaultfd,
			    O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY);
	rep->uffd_user_only_err = uffd < 0 ? errno : 0;
	if (uffd >= 0)
		close(uffd);

	if (api_fd >= 0)
		probe_uffd_api(rep, api_fd, source);
	else
		rep->uffd_api_err = ENODEV;
}

/* ---- Host --------------------------------------------------------------- */

void
probe_host(struct report *rep)
{
	rep->host_arch = arch_name(host_arch());
	uname(&rep->uts);
	rep->page_size = sysconf(_SC_PAGESIZE);
	rep->euid = geteuid();
	rep->cap_sys_ptrace = has_cap_sys_ptrace();
}
