/* SPDX-License-Identifier: MIT */
/* The KRES result-line format; see kres.h. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <linux/kvm.h>

#include "kres.h"

#ifndef EHWPOISON
#define EHWPOISON 133
#endif

const char *
kres_arch_name(uint32_t arch)
{
	switch (arch) {
	case MEMFAULT_ARCH_X86_64:
		return "x86_64";
	case MEMFAULT_ARCH_ARM64:
		return "arm64";
	default:
		return "unknown-arch";
	}
}

const char *
kres_rc_name(int rc, char *buf, size_t len)
{
	static const struct {
		int err;
		const char *name;
	} errs[] = {
		{ EFAULT, "EFAULT" }, { EHWPOISON, "EHWPOISON" },
		{ EINTR, "EINTR" },   { EAGAIN, "EAGAIN" },
		{ ENODATA, "ENODATA" }, { EINVAL, "EINVAL" },
		{ ENOMEM, "ENOMEM" }, { EIO, "EIO" },
		{ EBADF, "EBADF" },   { ENOTTY, "ENOTTY" },
		{ ENOENT, "ENOENT" }, { EPERM, "EPERM" },
		{ ELOOP, "ELOOP" },   { EPROTO, "EPROTO" },
		{ EEXIST, "EEXIST" },
	};

	switch (rc) {
	case MEMFAULT_RUN_EXIT:
		return "EXIT";
	case MEMFAULT_RUN_MEMORY_FAULT:
		return "MEMORY_FAULT";
	case MEMFAULT_RUN_INTERRUPTED:
		return "INTERRUPTED";
	case MEMFAULT_RUN_RETRY:
		return "RETRY";
	case 0:
		return "0";
	}
	if (rc < 0)
		for (size_t i = 0; i < sizeof(errs) / sizeof(errs[0]); i++)
			if (errs[i].err == -rc) {
				snprintf(buf, len, "-%s", errs[i].name);
				return buf;
			}
	snprintf(buf, len, "%d", rc);
	return buf;
}

const char *
kres_exit_name(uint32_t exit_reason, char *buf, size_t len)
{
	switch (exit_reason) {
	case KVM_EXIT_UNKNOWN:
		return "UNKNOWN";
	case KVM_EXIT_IO:
		return "IO";
	case KVM_EXIT_HLT:
		return "HLT";
	case KVM_EXIT_MMIO:
		return "MMIO";
	case KVM_EXIT_SHUTDOWN:
		return "SHUTDOWN";
	case KVM_EXIT_FAIL_ENTRY:
		return "FAIL_ENTRY";
	case KVM_EXIT_INTR:
		return "INTR";
	case KVM_EXIT_INTERNAL_ERROR:
		return "INTERNAL_ERROR";
	case KVM_EXIT_SYSTEM_EVENT:
		return "SYSTEM_EVENT";
	case KVM_EXIT_MEMORY_FAULT:
		return "MEMORY_FAULT";
	}
	snprintf(buf, len, "%u", exit_reason);
	return buf;
}

static const char *
origin_name(uint32_t origin)
{
	switch (origin) {
	case MEMFAULT_ORIGIN_ERRNO:
		return "ERRNO";
	case MEMFAULT_ORIGIN_RET0:
		return "RET0";
	case MEMFAULT_ORIGIN_OTHER_ERRNO:
		return "OTHER_ERRNO";
	}
	return "?";
}

/* Little-endian value of the first @len (<= 8) bytes at @p. */
static unsigned long long
le_value(const uint8_t *p, unsigned int len)
{
	unsigned long long v = 0;

	if (len > 8)
		len = 8;
	for (unsigned int i = len; i-- > 0;)
		v = (v << 8) | p[i];
	return v;
}

struct line {
	char buf[512];
	size_t n;
};

static void __attribute__((format(printf, 2, 3)))
add(struct line *l, const char *fmt, ...)
{
	va_list ap;
	int r;

	if (l->n >= sizeof(l->buf))
		return;
	va_start(ap, fmt);
	r = vsnprintf(l->buf + l->n, sizeof(l->buf) - l->n, fmt, ap);
	va_end(ap);
	if (r > 0)
		l->n += (size_t)r;
}

static void
emit(uint32_t arch, const char *scen, int step, const struct line *l)
{
	/* One write per line, flushed: the console and the Check fork
	 * children must never split or duplicate a line. */
	printf("KRES %s %s %d%s\n", kres_arch_name(arch), scen, step, l->buf);
	fflush(stdout);
}

void
kres_run(uint32_t arch, const char *scen, int step, int rc,
	 const struct kvm_run *run, const struct memfault_fault *fault,
	 int get_fault_rc)
{
	struct line l = { .n = 0 };
	char b1[32], b2[32];

	add(&l, " run=%s", kres_rc_name(rc, b1, sizeof(b1)));
	if (run)
		add(&l, " exit=%s",
		    kres_exit_name(run->exit_reason, b2, sizeof(b2)));
	if (rc == MEMFAULT_RUN_EXIT && run && run->exit_reason == KVM_EXIT_IO) {
		const uint8_t *d = (const uint8_t *)run + run->io.data_offset;

		add(&l, " io.dir=%s io.port=%#x io.size=%u io.count=%u",
		    run->io.direction == KVM_EXIT_IO_OUT ? "out" : "in",
		    run->io.port, run->io.size, run->io.count);
		if (run->io.direction == KVM_EXIT_IO_OUT)
			add(&l, " io.data=%#llx", le_value(d, run->io.size));
	}
	if (rc == MEMFAULT_RUN_EXIT && run &&
	    run->exit_reason == KVM_EXIT_MMIO) {
		add(&l, " mmio.write=%u mmio.addr=%#llx mmio.len=%u",
		    run->mmio.is_write,
		    (unsigned long long)run->mmio.phys_addr, run->mmio.len);
		if (run->mmio.is_write)
			add(&l, " mmio.data=%#llx",
			    le_value(run->mmio.data, run->mmio.len));
	}
	/* also after memfault_vcpu_run_dispatch() failed on a fault
	 * (-ELOOP, a handler's errno): the fault stays readable */
	if (fault)
		add(&l,
		    " fault.gpa=%#llx fault.size=%#llx fault.flags=%#llx"
		    " fault.kernel_flags=%#llx fault.error=%s fault.origin=%s",
		    (unsigned long long)fault->gpa,
		    (unsigned long long)fault->size,
		    (unsigned long long)fault->flags,
		    (unsigned long long)fault->kernel_flags,
		    kres_rc_name(fault->error, b1, sizeof(b1)),
		    origin_name(fault->origin));
	if (rc < 0)
		add(&l, " get_fault=%s",
		    kres_rc_name(get_fault_rc, b1, sizeof(b1)));
	emit(arch, scen, step, &l);
}

void
kres_features(uint32_t arch, const char *scen, int step,
	      const struct memfault_features *f)
{
	struct line l = { .n = 0 };
	char b[32];

	add(&l,
	    " features.flags=%#llx features.memory_attributes=%#llx"
	    " features.guest_memfd_flags=%#llx features.arch=%s"
	    " features.userfault_probe_error=%s features.page_size=%llu",
	    (unsigned long long)f->flags,
	    (unsigned long long)f->memory_attributes,
	    (unsigned long long)f->guest_memfd_flags,
	    kres_arch_name(f->arch),
	    kres_rc_name(f->userfault_probe_error, b, sizeof(b)),
	    (unsigned long long)f->page_size);
	emit(arch, scen, step, &l);
}

void
kres_printf(uint32_t arch, const char *scen, int step, const char *fmt, ...)
{
	struct line l = { .n = 0 };
	va_list ap;
	int r;

	l.buf[0] = ' ';
	l.n = 1;
	va_start(ap, fmt);
	r = vsnprintf(l.buf + l.n, sizeof(l.buf) - l.n, fmt, ap);
	va_end(ap);
	if (r < 0)
		l.buf[l.n] = '\0';
	emit(arch, scen, step, &l);
}

void
kres_stats(uint32_t arch, const char *scen, int step,
	   const struct memfault_vcpu_stats *st)
{
	struct line l = { .n = 0 };

	/* every counter but handler_ns (a duration) */
	add(&l,
	    " stats.runs=%llu stats.exits=%llu stats.memory_faults=%llu"
	    " stats.userfaults=%llu stats.page_ins=%llu stats.page_waits=%llu"
	    " stats.conversions=%llu stats.hwpoison=%llu"
	    " stats.other_faults=%llu stats.to_vmm=%llu stats.retries=%llu"
	    " stats.repeat_trips=%llu stats.interrupted=%llu",
	    (unsigned long long)st->runs, (unsigned long long)st->exits,
	    (unsigned long long)st->memory_faults,
	    (unsigned long long)st->userfaults,
	    (unsigned long long)st->page_ins,
	    (unsigned long long)st->page_waits,
	    (unsigned long long)st->conversions,
	    (unsigned long long)st->hwpoison,
	    (unsigned long long)st->other_faults,
	    (unsigned long long)st->to_vmm, (unsigned long long)st->retries,
	    (unsigned long long)st->repeat_trips,
	    (unsigned long long)st->interrupted);
	emit(arch, scen, step, &l);
}
