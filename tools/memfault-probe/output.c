/* SPDX-License-Identifier: MIT */
/*
 * memfault-probe's report, printed: as text for a person (output_text()),
 * or as one JSON object for scripts (output_json(), members as described
 * in memfault-probe(1); PROBE_JSON_SCHEMA says which layout). Both print
 * struct report only: nothing here asks the system anything.
 */
#include <errno.h>
#include <inttypes.h>
#include <string.h>
#include <sys/stat.h>

#include "json.h"
#include "memfault-probe.h"

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

/* ---- JSON --------------------------------------------------------------- */

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
	char mode[11];

	json_open(j, key, '{');
	json_bool(j, "present", !n->err);
	json_err(j, "stat_error", n->err);
	if (!n->err) {
		mode_string(n->mode, mode);
		json_str(j, "mode", mode);
		json_str(j, "owner", n->user);
		json_str(j, "group", n->group);
	}
	json_close(j, '}');
}

/* One VM type: what KVM_CREATE_VM, KVM_CHECK_EXTENSION and the library
 * said of it. */
static void
json_vm(struct json *j, const struct vm_report *v)
{
	const struct memfault_features *f = &v->features;

	json_open(j, NULL, '{');
	json_uint(j, "type", v->type);
	json_str(j, "name", v->name);
	json_bool(j, "created", !v->create_err);
	json_err(j, "create_error", v->create_err);
	if (v->create_err) {
		json_close(j, '}');
		return;
	}
	json_caps(j, "capabilities", v->caps);
	json_bool(j, "wrapped", !v->wrap_err);
	json_err(j, "wrap_error", v->wrap_err);
	if (!v->wrap_err) {
		json_open(j, "features", '{');
		json_uint(j, "flags", f->flags);
		json_names(j, "names", f->flags, feature_names);
		json_uint(j, "memory_attributes", f->memory_attributes);
		json_names(j, "memory_attribute_names", f->memory_attributes,
			   attribute_names);
		json_uint(j, "guest_memfd_flags", f->guest_memfd_flags);
		json_names(j, "guest_memfd_flag_names", f->guest_memfd_flags,
			   gmem_flag_names);
		json_str(j, "arch", arch_name(f->arch));
		json_uint(j, "page_size", f->page_size);
		json_bool(j, "kvm_userfault",
			  f->flags & MEMFAULT_FEATURE_KVM_USERFAULT);
		json_err(j, "userfault_probe_error", f->userfault_probe_error);
		json_close(j, '}');
	}
	if (v->vcpu_tried) {
		json_bool(j, "vcpu_wrapped", !v->vcpu_err);
		json_err(j, "vcpu_error", v->vcpu_err);
	}
	if (v->uffd_tried) {
		json_bool(j, "uffd_backend", !v->uffd_err);
		json_err(j, "uffd_backend_error", v->uffd_err);
	}
	json_close(j, '}');
}

static void
json_uffd(struct json *j, const struct report *rep)
{
	json_open(j, "userfaultfd", '{');
	if (rep->uffd_sysctl < 0)
		json_str(j, "unprivileged_userfaultfd", NULL);
	else
		json_int(j, "unprivileged_userfaultfd", rep->uffd_sysctl);
	json_node(j, "dev_node", &rep->uffd_path);
	json_bool(j, "dev", !rep->uffd_dev_err && !rep->uffd_dev_new_err);
	json_err(j, "dev_error", rep->uffd_dev_err ? rep->uffd_dev_err :
			rep->uffd_dev_new_err > 0 ? rep->uffd_dev_new_err : 0);
	json_bool(j, "syscall", !rep->uffd_syscall_err);
	json_err(j, "syscall_error", rep->uffd_syscall_err);
	json_bool(j, "syscall_user_mode_only", !rep->uffd_user_only_err);
	json_err(j, "syscall_user_mode_only_error", rep->uffd_user_only_err);
	json_bool(j, "api", rep->uffd_api_source && !rep->uffd_api_err);
	if (rep->uffd_api_source && !rep->uffd_api_err) {
		json_str(j, "api_from", rep->uffd_api_source);
		json_uint(j, "api_version", rep->api.api);
		json_uint(j, "features", rep->api.features);
		json_names(j, "feature_names", rep->api.features,
			   uffd_feature_names);
		json_names(j, "ioctls", rep->api.ioctls, uffd_ioctl_names);
		json_names(j, "range_ioctls_anon_missing",
			   rep->uffd_range_ioctls, uffd_ioctl_names);
		json_err(j, "register_error", rep->uffd_register_err);
	} else if (rep->uffd_api_source) {
		json_err(j, "api_error", rep->uffd_api_err);
	}
	json_close(j, '}');
}

void
output_json(FILE *out, const struct report *rep)
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
		for (i = 0; i < rep->nr_vms; i++)
			json_vm(&j, &rep->vms[i]);
		json_close(&j, ']');
	}
	json_close(&j, '}');

	json_uffd(&j, rep);

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

/* ---- Text --------------------------------------------------------------- */

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
	char mode[11];

	if (n->err) {
		fprintf(out, "  %s: %s\n", path, strerror(n->err));
		return;
	}
	mode_string(n->mode, mode);
	fprintf(out, "  %s: %s %s:%s\n", path, mode, n->user, n->group);
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
	bool group_rw = (n->mode & (S_IRGRP | S_IWGRP)) == (S_IRGRP | S_IWGRP);
	bool other_rw = (n->mode & (S_IROTH | S_IWOTH)) == (S_IROTH | S_IWOTH);

	if (group_rw && !rep->kvm_group_member) {
		fprintf(out, "  (only its owner and group %s may open it: join the group, e.g. `usermod -aG %s $USER`, then log in again)\n",
			n->group, n->group);
	} else if (!group_rw && !other_rw) {
		fprintf(out, "  (mode %04o: only %s may open it; an administrator can give it to a group, e.g. a udev rule with GROUP=\"kvm\", MODE=\"0660\")\n",
			(unsigned)(n->mode & 07777), n->user);
	} else {
		fprintf(out, "  (the mode allows you: an ACL, a security module or a container policy refuses it)\n");
	}
}

/* /dev/kvm, its capabilities and every VM type. */
static void
text_kvm(FILE *out, const struct report *rep)
{
	unsigned i;

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
}

static void
text_uffd(FILE *out, const struct report *rep)
{
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
}

void
output_text(FILE *out, const struct report *rep)
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

	text_kvm(out, rep);
	text_uffd(out, rep);

	if (rep->nr_decisions) {
		fprintf(out, "\nWhat libmemfault will use\n");
		for (i = 0; i < rep->nr_decisions; i++)
			fprintf(out, "  %s: %s (%s)\n", rep->decisions[i].key,
				rep->decisions[i].value, rep->decisions[i].why);
	}
	fprintf(out, "\nverdict: %s (exit status %d)\n", rep->verdict,
		rep->exit_code);
}
