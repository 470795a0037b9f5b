/* SPDX-License-Identifier: MIT */
/*
 * memfault-probe's report: what was found (filled by probe.c, which alone
 * talks to /dev/kvm and the system), what libmemfault will use of it and
 * the verdict (report.c, from the findings only), and how it is printed
 * (output.c, as text or as JSON through json.c). main.c runs them in that
 * order.
 */
#ifndef MEMFAULT_PROBE_H
#define MEMFAULT_PROBE_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>
#include <sys/utsname.h>

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

/* Exit statuses (memfault-probe(1), EXIT STATUS). */
enum {
	EXIT_USABLE = 0,   /* KVM works and libmemfault can wrap a VM */
	EXIT_NO_KVM = 1,   /* no /dev/kvm, no access, or a wrong API version */
	EXIT_USAGE = 2,    /* bad command line */
	EXIT_NO_VM = 3,    /* KVM answers, but no VM could be created/wrapped */
	EXIT_INTERNAL = 4, /* out of memory, or stdout could not be written */
};

/* ---- What is probed (the tables are in report.c) ------------------------ */

/* The capabilities asked of /dev/kvm and of every VM fd, in this order. */
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
	NR_CAPS
};

struct cap_name {
	long cap;
	const char *name;
};
extern const struct cap_name caps[NR_CAPS];

/* A bit and its name; a table ends with { 0, NULL }. */
struct name_bit {
	uint64_t bit;
	const char *name;
};
extern const struct name_bit feature_names[];      /* MEMFAULT_FEATURE_* */
extern const struct name_bit gmem_flag_names[];    /* GUEST_MEMFD_FLAG_* */
extern const struct name_bit attribute_names[];    /* KVM_MEMORY_ATTRIBUTE_* */
extern const struct name_bit uffd_feature_names[]; /* UFFD_FEATURE_* */
extern const struct name_bit uffd_ioctl_names[];   /* 1 << _UFFDIO_* */

#define MAX_VM_TYPES 32

/* ---- What was found ----------------------------------------------------- */

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
	char user[64]; /* the owner's name, or its number */
	char group[64];
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

	/* what libmemfault will use, and the verdict (report.c) */
	struct decision decisions[MAX_DECISIONS];
	unsigned nr_decisions;
	int exit_code;
	const char *verdict;
};

/* ---- probe.c: the findings ---------------------------------------------- */

/* The host: architecture, kernel release, page size, euid, CAP_SYS_PTRACE. */
void probe_host(struct report *rep);
/* /dev/kvm, its capabilities and every VM type it offers; @arch_opt is an
 * enum memfault_arch from --arch, or 0 to read it from the capabilities. */
void probe_kvm(struct report *rep, uint32_t arch_opt);
/* The sysctl, /dev/userfaultfd, userfaultfd(2) and UFFDIO_API. */
void probe_uffd(struct report *rep);

/* ---- report.c: the names, the decisions and the verdict ----------------- */

const char *errno_name(int err);
const char *arch_name(uint32_t arch);
uint32_t host_arch(void); /* the build's enum memfault_arch, or 0 */
/* Sets exit_code and verdict. */
void report_verdict(struct report *rep);
/* Fills decisions (none without a wrapped default VM). */
void report_decide(struct report *rep);

/* ---- output.c ----------------------------------------------------------- */

void output_json(FILE *out, const struct report *rep);
void output_text(FILE *out, const struct report *rep);

#endif /* MEMFAULT_PROBE_H */
