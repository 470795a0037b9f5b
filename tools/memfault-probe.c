/* SPDX-License-Identifier: MIT */
/*
 * memfault-probe - say what this host's KVM and userfaultfd offer, and what
 * libmemfault will use of it and why.
 *
 * It reads:
 *   - /dev/kvm: the API version and the capabilities that matter to
 *     libmemfault, on /dev/kvm and on a VM fd of every VM type the kernel
 *     offers (KVM_CHECK_EXTENSION);
 *   - per VM type, what memfault_vm_new() probed (memfault_vm_get_features()),
 *     KVM Userfault acceptance included, and, for the default type, whether
 *     a vCPU can be wrapped (memfault_vcpu_new());
 *   - userfaultfd: vm.unprivileged_userfaultfd, /dev/userfaultfd, the
 *     userfaultfd(2) system call, and the UFFDIO_API features and ioctls;
 * and prints a report (text, or JSON with --json), then the decisions.
 *
 * Only the public libmemfault API, raw KVM and userfaultfd ioctls and the
 * project's vendored Linux 7.2 uapi are used. The exit status is documented
 * in usage() and in memfault-probe(1).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* strerrorname_np() */
#endif

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <grp.h>
#include <inttypes.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <linux/kvm.h> /* the project's copy of the Linux 7.2 uapi */
#include <linux/userfaultfd.h>
#include <memfault/memfault-version.h>
#include <memfault/memfault.h>

/* The layout of --json's object: 2 added "schema" and "tool_version"
 * (and strings are always valid UTF-8). A consumer checks it before
 * reading; it grows when a member changes meaning or goes away, not when
 * one is added. */
#define PROBE_JSON_SCHEMA 2
#define STR_(x)           #x
#define STR(x)            STR_(x)
/* the release this tool was built from (the library's may differ) */
#define PROBE_VERSION                                                          \
	STR(MEMFAULT_VERSION_MAJOR)                                            \
	"." STR(MEMFAULT_VERSION_MINOR) "." STR(MEMFAULT_VERSION_MICRO)

/* The userfaultfd API group of libmemfault, where this header has it. */
#ifdef MEMFAULT_UFFD_LATENCY_BUCKETS
#define HAVE_UFFD_API 1
#else
#define HAVE_UFFD_API 0
#endif

/* Exit statuses (memfault-probe(1), EXIT STATUS). */
enum {
	EXIT_USABLE = 0,   /* KVM works and libmemfault can wrap a VM */
	EXIT_NO_KVM = 1,   /* no /dev/kvm, no access, or a wrong API version */
	EXIT_USAGE = 2,    /* bad command line */
	EXIT_NO_VM = 3,    /* KVM answers, but no VM could be created/wrapped */
	EXIT_INTERNAL = 4, /* out of memory, or stdout could not be written */
};

#define CAP_SYS_PTRACE_BIT 19 /* linux/capability.h */

/* ---- What is probed --------------------------------------------------- */

static const struct cap_name {
	long cap;
	const char *name;
} caps[] = {
	{ KVM_CAP_USER_MEMORY2, "USER_MEMORY2" },
	{ KVM_CAP_MEMORY_FAULT_INFO, "MEMORY_FAULT_INFO" },
	{ KVM_CAP_MEMORY_ATTRIBUTES, "MEMORY_ATTRIBUTES" },
	{ KVM_CAP_GUEST_MEMFD, "GUEST_MEMFD" },
	{ KVM_CAP_GUEST_MEMFD_FLAGS, "GUEST_MEMFD_FLAGS" },
	{ KVM_CAP_VM_TYPES, "VM_TYPES" },
	{ KVM_CAP_NR_MEMSLOTS, "NR_MEMSLOTS" },
	{ KVM_CAP_IMMEDIATE_EXIT, "IMMEDIATE_EXIT" },
	{ KVM_CAP_CHECK_EXTENSION_VM, "CHECK_EXTENSION_VM" },
	{ KVM_CAP_ARM_VM_IPA_SIZE, "ARM_VM_IPA_SIZE" },
};
#define NR_CAPS (sizeof(caps) / sizeof(caps[0]))

enum cap_index {
	C_USER_MEMORY2,
	C_MEMORY_FAULT_INFO,
	C_MEMORY_ATTRIBUTES,
	C_GUEST_MEMFD,
	C_GUEST_MEMFD_FLAGS,
	C_VM_TYPES,
	C_NR_MEMSLOTS,
	C_IMMEDIATE_EXIT,
	C_CHECK_EXTENSION_VM,
	C_ARM_VM_IPA_SIZE,
};

struct name_bit {
	uint64_t bit;
	const char *name;
};

static const struct name_bit feature_names[] = {
	{ MEMFAULT_FEATURE_USER_MEMORY2, "USER_MEMORY2" },
	{ MEMFAULT_FEATURE_MEMORY_FAULT_INFO, "MEMORY_FAULT_INFO" },
	{ MEMFAULT_FEATURE_MEMORY_FAULT_EXITS, "MEMORY_FAULT_EXITS" },
	{ MEMFAULT_FEATURE_MEMORY_ATTRIBUTES, "MEMORY_ATTRIBUTES" },
	{ MEMFAULT_FEATURE_GUEST_MEMFD, "GUEST_MEMFD" },
	{ MEMFAULT_FEATURE_GUEST_MEMFD_FLAGS, "GUEST_MEMFD_FLAGS" },
	{ MEMFAULT_FEATURE_KVM_USERFAULT, "KVM_USERFAULT" },
	{ 0, NULL },
};

static const struct name_bit gmem_flag_names[] = {
	{ GUEST_MEMFD_FLAG_MMAP, "MMAP" },
	{ GUEST_MEMFD_FLAG_INIT_SHARED, "INIT_SHARED" },
	{ 0, NULL },
};

static const struct name_bit attribute_names[] = {
	{ KVM_MEMORY_ATTRIBUTE_PRIVATE, "PRIVATE" },
	{ 0, NULL },
};

#define UFFD_F(name) { UFFD_FEATURE_##name, #name }
static const struct name_bit uffd_feature_names[] = {
	UFFD_F(PAGEFAULT_FLAG_WP),
	UFFD_F(EVENT_FORK),
	UFFD_F(EVENT_REMAP),
	UFFD_F(EVENT_REMOVE),
	UFFD_F(MISSING_HUGETLBFS),
	UFFD_F(MISSING_SHMEM),
	UFFD_F(EVENT_UNMAP),
	UFFD_F(SIGBUS),
	UFFD_F(THREAD_ID),
	UFFD_F(MINOR_HUGETLBFS),
	UFFD_F(MINOR_SHMEM),
	UFFD_F(EXACT_ADDRESS),
	UFFD_F(WP_HUGETLBFS_SHMEM),
	UFFD_F(WP_UNPOPULATED),
	UFFD_F(POISON),
	UFFD_F(WP_ASYNC),
	UFFD_F(MOVE),
	{ 0, NULL },
};

#define UFFD_IOCTL(name) { 1ull << _UFFDIO_##name, #name }
static const struct name_bit uffd_ioctl_names[] = {
	UFFD_IOCTL(REGISTER),
	UFFD_IOCTL(UNREGISTER),
	UFFD_IOCTL(WAKE),
	UFFD_IOCTL(COPY),
	UFFD_IOCTL(ZEROPAGE),
	UFFD_IOCTL(MOVE),
	UFFD_IOCTL(WRITEPROTECT),
	UFFD_IOCTL(CONTINUE),
	UFFD_IOCTL(POISON),
	UFFD_IOCTL(API),
	{ 0, NULL },
};

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
#define MAX_VM_TYPES 32

/* A capability's answer: the value, or the errno KVM_CHECK_EXTENSION set. */
struct cap_value {
	long value;
	int err;
};

/* A device node, as stat() or fstat() saw it. */
struct node {
	int err; /* 0 or the errno of stat()/fstat() */
	mode_t mode;
	uid_t uid;
	gid_t gid;
};

struct vm_report {
	unsigned long type;
	char name[32];
	int create_err; /* errno of KVM_CREATE_VM, or 0 */
	struct cap_value caps[NR_CAPS];
	int wrap_err; /* memfault_vm_new(): a negative errno, or 0 */
	struct memfault_features features;
	bool vcpu_tried;
	int vcpu_err; /* KVM_CREATE_VCPU (positive) or memfault_vcpu_new()
		       * (negative) error, or 0 */
	bool uffd_tried; /* memfault_uffd_new() on this VM */
	int uffd_err;    /* its negative errno, or 0 */
};

struct decision {
	const char *key;
	const char *value; /* "yes", "no", or a backend name */
	bool is_bool;
	char why[320];
};
#define MAX_DECISIONS 8

struct report {
	/* host */
	const char *host_arch;
	struct utsname uts;
	long page_size;
	uid_t euid;
	int cap_sys_ptrace; /* 1, 0, or -1 if unknown */

	/* KVM */
	struct node kvm_path; /* stat("/dev/kvm") */
	int kvm_open_err;
	struct node kvm_fd_node; /* fstat() of the open fd */
	bool kvm_simulated;      /* the fd is not a character device */
	bool kvm_group_member;
	int api_version; /* or -errno */
	struct cap_value sys_caps[NR_CAPS];
	uint32_t arch; /* enum memfault_arch of the KVM in use */
	bool arch_given;
	struct vm_report vms[MAX_VM_TYPES];
	unsigned nr_vms;

	/* userfaultfd */
	int uffd_sysctl; /* -1: unreadable */
	int uffd_sysctl_err;
	struct node uffd_path;
	int uffd_dev_err;     /* open("/dev/userfaultfd") */
	int uffd_dev_new_err; /* USERFAULTFD_IOC_NEW */
	int uffd_syscall_err;
	int uffd_user_only_err; /* with UFFD_USER_MODE_ONLY */
	const char *uffd_api_source;
	int uffd_api_err;
	struct uffdio_api api;
	int uffd_register_err;
	uint64_t uffd_range_ioctls;

	struct decision decisions[MAX_DECISIONS];
	unsigned nr_decisions;
	int exit_code;
	const char *verdict;
};

/* ---- Small helpers ------------------------------------------------------ */

static const char *
errno_name(int err)
{
	const char *n = err ? strerrorname_np(err) : NULL;

	return n ? n : "unknown error";
}

static const char *
arch_name(uint32_t arch)
{
	switch (arch) {
	case MEMFAULT_ARCH_X86_64:
		return "x86_64";
	case MEMFAULT_ARCH_ARM64:
		return "arm64";
	default:
		return "unknown";
	}
}

static uint32_t
host_arch(void)
{
#if defined(__x86_64__)
	return MEMFAULT_ARCH_X86_64;
#elif defined(__aarch64__)
	return MEMFAULT_ARCH_ARM64;
#else
	return 0;
#endif
}

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
	return n;
}

/* "crw-rw----" */
static void
mode_string(mode_t m, char *buf)
{
	static const char rwx[] = "rwxrwxrwx";
	int i;

	buf[0] = S_ISCHR(m) ? 'c' : S_ISREG(m) ? '-' : S_ISDIR(m) ? 'd' : '?';
	for (i = 0; i < 9; i++)
		buf[i + 1] = (m & (0400u >> i)) ? rwx[i] : '-';
	buf[10] = '\0';
}

static void
owner_names(const struct node *n, char *user, size_t ulen, char *group,
	    size_t glen)
{
	struct passwd *pw = getpwuid(n->uid);
	struct group *gr = getgrgid(n->gid);

	if (pw)
		snprintf(user, ulen, "%s", pw->pw_name);
	else
		snprintf(user, ulen, "%u", (unsigned)n->uid);
	if (gr)
		snprintf(group, glen, "%s", gr->gr_name);
	else
		snprintf(group, glen, "%u", (unsigned)n->gid);
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

static void
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

static void
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

/* ---- Decisions ---------------------------------------------------------- */

__attribute__((format(printf, 4, 5))) static void
decide(struct report *rep, const char *key, const char *value,
       const char *fmt, ...)
{
	struct decision *d = &rep->decisions[rep->nr_decisions++];
	va_list ap;

	d->key = key;
	d->value = value;
	d->is_bool = !strcmp(value, "yes") || !strcmp(value, "no");
	va_start(ap, fmt);
	vsnprintf(d->why, sizeof(d->why), fmt, ap);
	va_end(ap);
}

static const struct vm_report *
default_vm(const struct report *rep)
{
	return rep->nr_vms && rep->vms[0].type == 0 && !rep->vms[0].create_err &&
			       !rep->vms[0].wrap_err ?
		       &rep->vms[0] :
		       NULL;
}

/* Can a userfaultfd be had? The library's own answer where it has the
 * backend, else the raw one. */
static bool
uffd_available(const struct report *rep)
{
	const struct vm_report *v = default_vm(rep);

	if (v && v->uffd_tried)
		return !v->uffd_err;
	return !rep->uffd_dev_new_err || !rep->uffd_syscall_err;
}

static void
decide_all(struct report *rep)
{
	const struct vm_report *v = default_vm(rep);
	const struct memfault_features *f = v ? &v->features : NULL;
	const char *arch = arch_name(rep->arch);
	char types[128] = "";
	unsigned i;
	int r;

	if (!f)
		return;

	if (f->flags & MEMFAULT_FEATURE_MEMORY_FAULT_INFO)
		decide(rep, "memory_fault_exits", "yes",
		       "KVM_CAP_MEMORY_FAULT_INFO is advertised");
	else if (f->flags & MEMFAULT_FEATURE_MEMORY_FAULT_EXITS)
		decide(rep, "memory_fault_exits", "yes",
		       "%s delivers them for guest_memfd without advertising MEMORY_FAULT_INFO",
		       arch);
	else
		decide(rep, "memory_fault_exits", "no",
		       "no MEMORY_FAULT_INFO and no guest_memfd on %s: a failed guest access is a bare EFAULT, which memfault_vcpu_run() returns as -EFAULT",
		       arch);

	r = memfault_arch_reads_back_exit(rep->arch, KVM_EXIT_MMIO);
	if (r > 0)
		decide(rep, "mmio_readback", "yes",
		       "%s completes an MMIO load only while exit_reason is still KVM_EXIT_MMIO: the library resets nothing but a leftover KVM_EXIT_MEMORY_FAULT",
		       arch);
	else
		decide(rep, "mmio_readback", "no",
		       "%s completes IO and MMIO without reading exit_reason back",
		       arch);

	if (rep->sys_caps[C_IMMEDIATE_EXIT].value > 0)
		decide(rep, "kicks", "yes",
		       "memfault_vcpu_kick() sets kvm_run.immediate_exit and signals the vCPU thread");
	else
		decide(rep, "kicks", "no",
		       "KVM_CAP_IMMEDIATE_EXIT is 0: a kick before entry can be lost");

	if ((f->flags & MEMFAULT_FEATURE_GUEST_MEMFD) &&
	    (f->guest_memfd_flags & GUEST_MEMFD_FLAG_MMAP))
		decide(rep, "guest_memfd", "yes",
		       "KVM_CAP_GUEST_MEMFD, and GUEST_MEMFD_FLAGS %#" PRIx64 " includes MMAP: guest_memfd can back ordinary memslots",
		       f->guest_memfd_flags);
	else if (f->flags & MEMFAULT_FEATURE_GUEST_MEMFD)
		decide(rep, "guest_memfd", "yes",
		       "KVM_CAP_GUEST_MEMFD, but no MMAP flag: guest_memfd holds private memory only");
	else if (rep->sys_caps[C_GUEST_MEMFD].value > 0)
		decide(rep, "guest_memfd", "no",
		       "only VM types with private memory offer guest_memfd on this kernel");
	else
		decide(rep, "guest_memfd", "no", "no KVM_CAP_GUEST_MEMFD");

	for (i = 0; i < rep->nr_vms; i++) {
		const struct vm_report *t = &rep->vms[i];
		size_t len = strlen(types);

		if (t->create_err || t->wrap_err ||
		    !(t->features.memory_attributes & KVM_MEMORY_ATTRIBUTE_PRIVATE))
			continue;
		snprintf(types + len, sizeof(types) - len, "%s%lu (%s)",
			 len ? ", " : "", t->type, t->name);
	}
	if (types[0])
		decide(rep, "private_conversions", "yes",
		       "VM type %s: KVM_MEMORY_ATTRIBUTE_PRIVATE; the default convert handler calls KVM_SET_MEMORY_ATTRIBUTES",
		       types);
	else
		decide(rep, "private_conversions", "no",
		       "no VM type offered has KVM_MEMORY_ATTRIBUTE_PRIVATE");

	if (f->flags & MEMFAULT_FEATURE_KVM_USERFAULT)
		decide(rep, "kvm_userfault", "yes",
		       "the kernel accepted the proposed KVM_MEM_USERFAULT flag on a scratch memslot (experimental: not merged upstream)");
	else if (f->userfault_probe_error)
		decide(rep, "kvm_userfault", "no",
		       "the probe gave no answer (%s)",
		       errno_name(-f->userfault_probe_error));
	else if (!(f->flags & MEMFAULT_FEATURE_USER_MEMORY2))
		decide(rep, "kvm_userfault", "no",
		       "no KVM_SET_USER_MEMORY_REGION2, so no userfault bitmap (Linux before 6.8)");
	else
		decide(rep, "kvm_userfault", "no",
		       "the kernel rejected KVM_MEM_USERFAULT with EINVAL (KVM Userfault is not merged as of Linux 7.2)");

	if (f->flags & MEMFAULT_FEATURE_KVM_USERFAULT)
		decide(rep, "userfault_backend", "kvm-userfault",
		       "vCPU faults on missing pages exit with MEMFAULT_FAULT_USERFAULT; userfaultfd for the VMM's and KVM's own accesses: %s",
		       uffd_available(rep) ? "available" : "not available");
	else if (uffd_available(rep))
		decide(rep, "userfault_backend", "userfaultfd",
		       "no KVM Userfault: missing pages are trapped with userfaultfd (%s)%s",
		       !rep->uffd_dev_new_err ? "/dev/userfaultfd" :
						"userfaultfd(2)",
		       v->uffd_tried ? "; memfault_uffd_new() works" :
				       ", but this libmemfault has no userfaultfd backend");
	else if (v->uffd_tried && rep->uffd_dev_new_err && rep->uffd_syscall_err)
		decide(rep, "userfault_backend", "none",
		       "no KVM Userfault, and userfaultfd is not available (%s): grant access to /dev/userfaultfd, set vm.unprivileged_userfaultfd=1 or run with CAP_SYS_PTRACE",
		       errno_name(rep->uffd_syscall_err));
	else
		decide(rep, "userfault_backend", "none",
		       "no KVM Userfault, and %s (%s)",
		       v->uffd_tried ? "memfault_uffd_new() failed" :
				       "no userfaultfd either",
		       errno_name(v->uffd_tried ? -v->uffd_err :
						  rep->uffd_syscall_err));
}

static void
verdict(struct report *rep)
{
	if (rep->kvm_open_err) {
		rep->exit_code = EXIT_NO_KVM;
		rep->verdict = rep->kvm_open_err == ENOENT ?
				       "no KVM: /dev/kvm does not exist" :
				       "no KVM: /dev/kvm cannot be opened";
	} else if (rep->api_version != KVM_API_VERSION) {
		rep->exit_code = EXIT_NO_KVM;
		rep->verdict = "no KVM: unexpected KVM_GET_API_VERSION";
	} else if (!default_vm(rep)) {
		rep->exit_code = EXIT_NO_VM;
		rep->verdict = "KVM answers, but libmemfault cannot wrap a VM";
	} else if (rep->vms[0].vcpu_err) {
		rep->exit_code = EXIT_NO_VM;
		rep->verdict = "KVM answers, but libmemfault cannot wrap a vCPU";
	} else {
		rep->exit_code = EXIT_USABLE;
		rep->verdict = "usable";
	}
}

/* ---- JSON output -------------------------------------------------------- */

struct json {
	FILE *f;
	int depth;
	bool need_comma;
};

static void
json_indent(struct json *j)
{
	int i;

	fputc('\n', j->f);
	for (i = 0; i < j->depth; i++)
		fputs("  ", j->f);
}

/* Length of the well-formed UTF-8 sequence at @s (RFC 3629: no overlong
 * forms, no surrogates, nothing above U+10FFFF), or 0 if there is none. */
static size_t
utf8_len(const unsigned char *s)
{
	size_t n, i;
	uint32_t cp;

	if (s[0] < 0x80)
		return 1;
	if (s[0] >= 0xc2 && s[0] <= 0xdf)
		n = 2, cp = s[0] & 0x1f;
	else if (s[0] >= 0xe0 && s[0] <= 0xef)
		n = 3, cp = s[0] & 0x0f;
	else if (s[0] >= 0xf0 && s[0] <= 0xf4)
		n = 4, cp = s[0] & 0x07;
	else
		return 0;
	for (i = 1; i < n; i++) {
		/* a NUL ends the string and is not a continuation byte */
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = cp << 6 | (s[i] & 0x3f);
	}
	if ((n == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
	    (n == 4 && (cp < 0x10000 || cp > 0x10ffff)))
		return 0;
	return n;
}

/* A JSON string. What the probe prints comes from the system (the kernel
 * release, user and group names), which may hold any bytes; JSON text must
 * be UTF-8 (RFC 8259), so a byte that is not part of a well-formed UTF-8
 * sequence is written as the code point of the same value (\u00XX, its
 * Latin-1 reading): the output always parses, and the byte is still known. */
static void
json_string(FILE *f, const char *str)
{
	const unsigned char *s = (const unsigned char *)str;
	size_t n;

	fputc('"', f);
	while (*s) {
		if (*s == '"' || *s == '\\') {
			fprintf(f, "\\%c", *s++);
		} else if (*s < 0x20 || *s == 0x7f) {
			fprintf(f, "\\u%04x", *s++);
		} else if ((n = utf8_len(s)) == 0) {
			fprintf(f, "\\u%04x", *s++);
		} else {
			fwrite(s, 1, n, f);
			s += n;
		}
	}
	fputc('"', f);
}

/* Start a member (with @key in an object, without in an array). */
static void
json_member(struct json *j, const char *key)
{
	if (j->need_comma)
		fputc(',', j->f);
	json_indent(j);
	if (key) {
		json_string(j->f, key);
		fputs(": ", j->f);
	}
	j->need_comma = true;
}

static void
json_open(struct json *j, const char *key, char bracket)
{
	if (j->depth)
		json_member(j, key);
	fputc(bracket, j->f);
	j->depth++;
	j->need_comma = false;
}

static void
json_close(struct json *j, char bracket)
{
	j->depth--;
	json_indent(j);
	fputc(bracket, j->f);
	j->need_comma = true;
}

static void
json_str(struct json *j, const char *key, const char *value)
{
	json_member(j, key);
	if (value)
		json_string(j->f, value);
	else
		fputs("null", j->f);
}

static void
json_int(struct json *j, const char *key, long long value)
{
	json_member(j, key);
	fprintf(j->f, "%lld", value);
}

static void
json_uint(struct json *j, const char *key, uint64_t value)
{
	json_member(j, key);
	fprintf(j->f, "%" PRIu64, value);
}

static void
json_bool(struct json *j, const char *key, bool value)
{
	json_member(j, key);
	fputs(value ? "true" : "false", j->f);
}

/* An errno as its name, or null for 0. */
static void
json_err(struct json *j, const char *key, int err)
{
	json_str(j, key, err ? errno_name(err < 0 ? -err : err) : NULL);
}

static void
json_names(struct json *j, const char *key, uint64_t bits,
	   const struct name_bit *names)
{
	json_open(j, key, '[');
	for (; names->name; names++)
		if (bits & names->bit)
			json_str(j, NULL, names->name);
	json_close(j, ']');
}

static void
json_caps(struct json *j, const char *key, const struct cap_value *v)
{
	size_t i;

	json_open(j, key, '{');
	for (i = 0; i < NR_CAPS; i++) {
		if (v[i].err)
			json_str(j, caps[i].name, NULL);
		else
			json_int(j, caps[i].name, v[i].value);
	}
	json_close(j, '}');
}

static void
json_node(struct json *j, const char *key, const struct node *n)
{
	char mode[11], user[64], group[64];

	json_open(j, key, '{');
	json_bool(j, "present", !n->err);
	json_err(j, "stat_error", n->err);
	if (!n->err) {
		mode_string(n->mode, mode);
		owner_names(n, user, sizeof(user), group, sizeof(group));
		json_str(j, "mode", mode);
		json_str(j, "owner", user);
		json_str(j, "group", group);
	}
	json_close(j, '}');
}

static void
print_json(FILE *out, const struct report *rep)
{
	struct json j = { out, 0, false };
	unsigned i;

	json_open(&j, NULL, '{');
	json_int(&j, "schema", PROBE_JSON_SCHEMA);
	json_str(&j, "tool", "memfault-probe");
	json_str(&j, "tool_version", PROBE_VERSION);
	json_open(&j, "library", '{');
	json_int(&j, "major", memfault_version_major());
	json_int(&j, "minor", memfault_version_minor());
	json_close(&j, '}');

	json_open(&j, "host", '{');
	json_str(&j, "arch", rep->host_arch);
	json_str(&j, "kernel", rep->uts.release);
	json_int(&j, "page_size", rep->page_size);
	json_int(&j, "euid", rep->euid);
	if (rep->cap_sys_ptrace < 0)
		json_str(&j, "cap_sys_ptrace", NULL);
	else
		json_bool(&j, "cap_sys_ptrace", rep->cap_sys_ptrace);
	json_close(&j, '}');

	json_open(&j, "kvm", '{');
	json_str(&j, "device", "/dev/kvm");
	json_node(&j, "node", &rep->kvm_path);
	json_bool(&j, "group_member", rep->kvm_group_member);
	json_bool(&j, "opened", !rep->kvm_open_err);
	json_err(&j, "open_error", rep->kvm_open_err);
	if (!rep->kvm_open_err) {
		json_bool(&j, "simulated", rep->kvm_simulated);
		if (rep->api_version < 0) {
			json_str(&j, "api_version", NULL);
			json_err(&j, "api_version_error", rep->api_version);
		} else {
			json_int(&j, "api_version", rep->api_version);
		}
	}
	if (rep->api_version == KVM_API_VERSION) {
		json_str(&j, "arch", arch_name(rep->arch));
		json_str(&j, "arch_from", rep->arch_given ? "option" :
							  "capabilities");
		json_caps(&j, "capabilities", rep->sys_caps);
		json_open(&j, "vm_types", '[');
		for (i = 0; i < rep->nr_vms; i++) {
			const struct vm_report *v = &rep->vms[i];
			const struct memfault_features *f = &v->features;

			json_open(&j, NULL, '{');
			json_uint(&j, "type", v->type);
			json_str(&j, "name", v->name);
			json_bool(&j, "created", !v->create_err);
			json_err(&j, "create_error", v->create_err);
			if (v->create_err) {
				json_close(&j, '}');
				continue;
			}
			json_caps(&j, "capabilities", v->caps);
			json_bool(&j, "wrapped", !v->wrap_err);
			json_err(&j, "wrap_error", v->wrap_err);
			if (!v->wrap_err) {
				json_open(&j, "features", '{');
				json_uint(&j, "flags", f->flags);
				json_names(&j, "names", f->flags, feature_names);
				json_uint(&j, "memory_attributes",
					  f->memory_attributes);
				json_names(&j, "memory_attribute_names",
					   f->memory_attributes,
					   attribute_names);
				json_uint(&j, "guest_memfd_flags",
					  f->guest_memfd_flags);
				json_names(&j, "guest_memfd_flag_names",
					   f->guest_memfd_flags,
					   gmem_flag_names);
				json_str(&j, "arch", arch_name(f->arch));
				json_uint(&j, "page_size", f->page_size);
				json_bool(&j, "kvm_userfault",
					  f->flags & MEMFAULT_FEATURE_KVM_USERFAULT);
				json_err(&j, "userfault_probe_error",
					 f->userfault_probe_error);
				json_close(&j, '}');
			}
			if (v->vcpu_tried) {
				json_bool(&j, "vcpu_wrapped", !v->vcpu_err);
				json_err(&j, "vcpu_error", v->vcpu_err);
			}
			if (v->uffd_tried) {
				json_bool(&j, "uffd_backend", !v->uffd_err);
				json_err(&j, "uffd_backend_error", v->uffd_err);
			}
			json_close(&j, '}');
		}
		json_close(&j, ']');
	}
	json_close(&j, '}');

	json_open(&j, "userfaultfd", '{');
	if (rep->uffd_sysctl < 0)
		json_str(&j, "unprivileged_userfaultfd", NULL);
	else
		json_int(&j, "unprivileged_userfaultfd", rep->uffd_sysctl);
	json_node(&j, "dev_node", &rep->uffd_path);
	json_bool(&j, "dev", !rep->uffd_dev_err && !rep->uffd_dev_new_err);
	json_err(&j, "dev_error", rep->uffd_dev_err ? rep->uffd_dev_err :
			rep->uffd_dev_new_err > 0 ? rep->uffd_dev_new_err : 0);
	json_bool(&j, "syscall", !rep->uffd_syscall_err);
	json_err(&j, "syscall_error", rep->uffd_syscall_err);
	json_bool(&j, "syscall_user_mode_only", !rep->uffd_user_only_err);
	json_err(&j, "syscall_user_mode_only_error", rep->uffd_user_only_err);
	json_bool(&j, "api", rep->uffd_api_source && !rep->uffd_api_err);
	if (rep->uffd_api_source && !rep->uffd_api_err) {
		json_str(&j, "api_from", rep->uffd_api_source);
		json_uint(&j, "api_version", rep->api.api);
		json_uint(&j, "features", rep->api.features);
		json_names(&j, "feature_names", rep->api.features,
			   uffd_feature_names);
		json_names(&j, "ioctls", rep->api.ioctls, uffd_ioctl_names);
		json_names(&j, "range_ioctls_anon_missing",
			   rep->uffd_range_ioctls, uffd_ioctl_names);
		json_err(&j, "register_error", rep->uffd_register_err);
	} else if (rep->uffd_api_source) {
		json_err(&j, "api_error", rep->uffd_api_err);
	}
	json_close(&j, '}');

	json_open(&j, "libmemfault", '{');
	for (i = 0; i < rep->nr_decisions; i++) {
		const struct decision *d = &rep->decisions[i];

		json_open(&j, d->key, '{');
		if (d->is_bool)
			json_bool(&j, "use", !strcmp(d->value, "yes"));
		else
			json_str(&j, "use", d->value);
		json_str(&j, "why", d->why);
		json_close(&j, '}');
	}
	json_close(&j, '}');

	json_str(&j, "verdict", rep->verdict);
	json_int(&j, "exit_code", rep->exit_code);
	json_close(&j, '}');
	fputc('\n', out);
}

/* ---- Text output -------------------------------------------------------- */

static void
print_names(FILE *out, uint64_t bits, const struct name_bit *names)
{
	bool any = false;

	for (; names->name; names++)
		if (bits & names->bit) {
			fprintf(out, "%s%s", any ? " " : "", names->name);
			any = true;
		}
	if (!any)
		fputs("none", out);
}

static void
print_node(FILE *out, const char *path, const struct node *n)
{
	char mode[11], user[64], group[64];

	if (n->err) {
		fprintf(out, "  %s: %s\n", path, strerror(n->err));
		return;
	}
	mode_string(n->mode, mode);
	owner_names(n, user, sizeof(user), group, sizeof(group));
	fprintf(out, "  %s: %s %s:%s\n", path, mode, user, group);
}

static void
print_caps(FILE *out, const char *indent, const struct cap_value *v)
{
	size_t i;

	for (i = 0; i < NR_CAPS; i++) {
		fprintf(out, "%sKVM_CAP_%-20s ", indent, caps[i].name);
		if (v[i].err)
			fprintf(out, "error (%s)\n", errno_name(v[i].err));
		else if (i == C_VM_TYPES || i == C_GUEST_MEMFD_FLAGS ||
			 i == C_MEMORY_ATTRIBUTES)
			fprintf(out, "%#lx\n", v[i].value);
		else
			fprintf(out, "%ld\n", v[i].value);
	}
}

static void
print_vm(FILE *out, const struct vm_report *v)
{
	const struct memfault_features *f = &v->features;

	fprintf(out, "  VM type %lu (%s): ", v->type, v->name);
	if (v->create_err) {
		fprintf(out, "KVM_CREATE_VM failed: %s\n", strerror(v->create_err));
		return;
	}
	fprintf(out, "created\n");
	print_caps(out, "    ", v->caps);
	if (v->wrap_err) {
		fprintf(out, "    memfault_vm_new: %s\n", strerror(-v->wrap_err));
		return;
	}
	fprintf(out, "    libmemfault features: ");
	print_names(out, f->flags, feature_names);
	fprintf(out, "\n    memory attributes %#" PRIx64 " (", f->memory_attributes);
	print_names(out, f->memory_attributes, attribute_names);
	fprintf(out, "), guest_memfd flags %#" PRIx64 " (", f->guest_memfd_flags);
	print_names(out, f->guest_memfd_flags, gmem_flag_names);
	fprintf(out, ")\n    KVM Userfault: %s",
		f->flags & MEMFAULT_FEATURE_KVM_USERFAULT ? "accepted" :
							    "not accepted");
	if (f->userfault_probe_error)
		fprintf(out, " (probe error: %s)",
			strerror(-f->userfault_probe_error));
	fputc('\n', out);
	if (v->vcpu_tried) {
		if (v->vcpu_err > 0)
			fprintf(out, "    vCPU: KVM_CREATE_VCPU failed: %s\n",
				strerror(v->vcpu_err));
		else if (v->vcpu_err < 0)
			fprintf(out, "    vCPU: memfault_vcpu_new: %s\n",
				strerror(-v->vcpu_err));
		else
			fprintf(out, "    vCPU: created and wrapped\n");
	}
	if (v->uffd_tried) {
		if (v->uffd_err)
			fprintf(out, "    memfault_uffd_new: %s\n",
				strerror(-v->uffd_err));
		else
			fprintf(out, "    memfault_uffd_new: works\n");
	}
}

static void
print_err_line(FILE *out, const char *what, int err)
{
	fprintf(out, "  %s: %s\n", what, err ? strerror(err) : "yes");
}

/* Why opening /dev/kvm failed with EACCES, and what would help. Joining
 * the owning group helps only when that group may read and write the node;
 * a 0600 root:root node (the kernel's default without a udev rule) opens
 * for root alone. */
static void
print_access_hint(FILE *out, const struct report *rep)
{
	const struct node *n = &rep->kvm_path;
	char user[64], group[64];
	bool group_rw = (n->mode & (S_IRGRP | S_IWGRP)) == (S_IRGRP | S_IWGRP);
	bool other_rw = (n->mode & (S_IROTH | S_IWOTH)) == (S_IROTH | S_IWOTH);

	owner_names(n, user, sizeof(user), group, sizeof(group));
	if (group_rw && !rep->kvm_group_member) {
		fprintf(out, "  (only its owner and group %s may open it: join the group, e.g. `usermod -aG %s $USER`, then log in again)\n",
			group, group);
	} else if (!group_rw && !other_rw) {
		fprintf(out, "  (mode %04o: only %s may open it; an administrator can give it to a group, e.g. a udev rule with GROUP=\"kvm\", MODE=\"0660\")\n",
			(unsigned)(n->mode & 07777), user);
	} else {
		fprintf(out, "  (the mode allows you: an ACL, a security module or a container policy refuses it)\n");
	}
}

static void
print_text(FILE *out, const struct report *rep)
{
	unsigned i;

	fprintf(out, "memfault-probe (libmemfault %d.%d)\n",
		memfault_version_major(), memfault_version_minor());
	fprintf(out, "host: %s, Linux %s, page size %ld, euid %u, CAP_SYS_PTRACE %s\n",
		rep->host_arch, rep->uts.release, rep->page_size,
		(unsigned)rep->euid,
		rep->cap_sys_ptrace < 0 ? "unknown" :
		rep->cap_sys_ptrace	? "yes" :
					  "no");

	fprintf(out, "\nKVM\n");
	print_node(out, "/dev/kvm node", &rep->kvm_path);
	if (rep->kvm_open_err) {
		fprintf(out, "  open: %s\n", strerror(rep->kvm_open_err));
		if (rep->kvm_open_err == EACCES && !rep->kvm_path.err)
			print_access_hint(out, rep);
	} else {
		fprintf(out, "  open: yes%s\n",
			rep->kvm_simulated ?
				" (not a character device: a simulator stands in for KVM)" :
				"");
		if (rep->api_version < 0)
			fprintf(out, "  API version: %s\n",
				strerror(-rep->api_version));
		else
			fprintf(out, "  API version: %d%s\n", rep->api_version,
				rep->api_version == KVM_API_VERSION ?
					"" :
					" (libmemfault needs 12)");
	}
	if (rep->api_version == KVM_API_VERSION) {
		/* only arm64 KVM answers KVM_CAP_ARM_VM_IPA_SIZE: name it
		 * only when it was the answer */
		const char *from = "KVM has no arm64 capabilities";

		if (rep->arch_given)
			from = "--arch";
		else if (rep->arch == MEMFAULT_ARCH_ARM64)
			from = "KVM answers KVM_CAP_ARM_VM_IPA_SIZE";
		fprintf(out, "  architecture: %s (%s)\n", arch_name(rep->arch), from);
		if (rep->arch != host_arch())
			fprintf(out, "  note: this build is for %s; only a simulator offers %s KVM here\n",
				rep->host_arch, arch_name(rep->arch));
		fprintf(out, "  capabilities on /dev/kvm:\n");
		print_caps(out, "    ", rep->sys_caps);
		for (i = 0; i < rep->nr_vms; i++)
			print_vm(out, &rep->vms[i]);
	}

	fprintf(out, "\nuserfaultfd\n");
	if (rep->uffd_sysctl < 0)
		fprintf(out, "  vm.unprivileged_userfaultfd: unreadable (%s)\n",
			strerror(rep->uffd_sysctl_err));
	else
		fprintf(out, "  vm.unprivileged_userfaultfd: %d\n",
			rep->uffd_sysctl);
	print_node(out, "/dev/userfaultfd node", &rep->uffd_path);
	if (rep->uffd_dev_err)
		print_err_line(out, "/dev/userfaultfd open", rep->uffd_dev_err);
	else
		print_err_line(out, "/dev/userfaultfd USERFAULTFD_IOC_NEW",
			       rep->uffd_dev_new_err);
	print_err_line(out, "userfaultfd(2)", rep->uffd_syscall_err);
	print_err_line(out, "userfaultfd(2) with UFFD_USER_MODE_ONLY",
		       rep->uffd_user_only_err);
	if (rep->uffd_api_source && !rep->uffd_api_err) {
		fprintf(out, "  UFFDIO_API (on %s): api %#" PRIx64 ", features %#" PRIx64 "\n    ",
			rep->uffd_api_source, (uint64_t)rep->api.api,
			(uint64_t)rep->api.features);
		print_names(out, rep->api.features, uffd_feature_names);
		fprintf(out, "\n  ioctls: ");
		print_names(out, rep->api.ioctls, uffd_ioctl_names);
		fprintf(out, "\n  range ioctls (anonymous memory, MISSING): ");
		if (rep->uffd_register_err)
			fprintf(out, "UFFDIO_REGISTER failed: %s",
				strerror(rep->uffd_register_err));
		else
			print_names(out, rep->uffd_range_ioctls,
				    uffd_ioctl_names);
		fputc('\n', out);
	} else if (rep->uffd_api_source) {
		fprintf(out, "  UFFDIO_API: %s\n", strerror(rep->uffd_api_err));
	}

	if (rep->nr_decisions) {
		fprintf(out, "\nWhat libmemfault will use\n");
		for (i = 0; i < rep->nr_decisions; i++)
			fprintf(out, "  %s: %s (%s)\n", rep->decisions[i].key,
				rep->decisions[i].value, rep->decisions[i].why);
	}
	fprintf(out, "\nverdict: %s (exit status %d)\n", rep->verdict,
		rep->exit_code);
}

/* ---- main --------------------------------------------------------------- */

static void
usage(FILE *out, const char *argv0)
{
	fprintf(out,
		"usage: %s [--json] [--arch x86_64|arm64]\n"
		"\n"
		"Say what this host's KVM and userfaultfd offer, and what libmemfault\n"
		"will use of it and why.\n"
		"\n"
		"  -j, --json          print one JSON object instead of text\n"
		"  -a, --arch ARCH     the architecture of the KVM in use (default: from\n"
		"                      its capabilities; only a simulator differs)\n"
		"  -h, --help          print this help\n"
		"  -V, --version       print the version and exit\n"
		"\n"
		"Exit status: 0 usable, 1 no KVM (no /dev/kvm, no access, wrong API\n"
		"version), 2 usage error, 3 KVM answers but libmemfault cannot wrap a VM\n"
		"or vCPU, 4 internal error.\n",
		argv0);
}

int
main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "arch", required_argument, NULL, 'a' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	struct report *rep;
	uint32_t arch_opt = 0;
	bool json = false;
	int c, code;

	while ((c = getopt_long(argc, argv, "ja:hV", longopts, NULL)) != -1) {
		switch (c) {
		case 'j':
			json = true;
			break;
		case 'a':
			if (!strcmp(optarg, "x86_64") || !strcmp(optarg, "x86"))
				arch_opt = MEMFAULT_ARCH_X86_64;
			else if (!strcmp(optarg, "arm64") ||
				 !strcmp(optarg, "aarch64"))
				arch_opt = MEMFAULT_ARCH_ARM64;
			else {
				fprintf(stderr, "%s: unknown architecture '%s'\n",
					argv[0], optarg);
				usage(stderr, argv[0]);
				return EXIT_USAGE;
			}
			break;
		case 'h':
			usage(stdout, argv[0]);
			return fflush(stdout) ? EXIT_INTERNAL : 0;
		case 'V':
			/* the tool's own version, and the library it runs with
			 * (they differ when only libmemfault0 was upgraded) */
			printf("memfault-probe %s (libmemfault %d.%d, JSON schema %d)\n",
			       PROBE_VERSION, memfault_version_major(),
			       memfault_version_minor(), PROBE_JSON_SCHEMA);
			return fflush(stdout) ? EXIT_INTERNAL : 0;
		default:
			usage(stderr, argv[0]);
			return EXIT_USAGE;
		}
	}
	if (optind != argc) {
		fprintf(stderr, "%s: unexpected argument '%s'\n", argv[0],
			argv[optind]);
		usage(stderr, argv[0]);
		return EXIT_USAGE;
	}

	rep = calloc(1, sizeof(*rep));
	if (!rep) {
		perror("memfault-probe");
		return EXIT_INTERNAL;
	}
	rep->host_arch = arch_name(host_arch());
	uname(&rep->uts);
	rep->page_size = sysconf(_SC_PAGESIZE);
	rep->euid = geteuid();
	rep->cap_sys_ptrace = has_cap_sys_ptrace();

	probe_kvm(rep, arch_opt);
	probe_uffd(rep);
	verdict(rep);
	decide_all(rep);

	if (json)
		print_json(stdout, rep);
	else
		print_text(stdout, rep);
	code = rep->exit_code;
	free(rep);
	if (fflush(stdout) || ferror(stdout)) {
		perror("memfault-probe: stdout");
		return EXIT_INTERNAL;
	}
	return code;
}
