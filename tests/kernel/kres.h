/* SPDX-License-Identifier: MIT */
/*
 * kres: the one text format in which the kernel suite records what a VMM
 * sees, so that a run on a real kernel (under nested KVM) and a run of the
 * same scenarios on the KVM simulator can be compared line by line.
 *
 *   KRES <arch> <scenario> <step> key=value key=value ...
 *
 * <arch> is x86_64 or arm64, <scenario> a name from the scenario list in
 * tests/kernel/README.md, <step> counts from 1 within the scenario. Keys are
 * flat and stable: run, exit, io.*, mmio.*, fault.*, get_fault, features.*,
 * kicks, lost, stats.*, the handler.* / find.* / region.* keys of the
 * dispatch scenarios, and the uffd.* / vcpu.* / poll.* / log.* keys of the
 * userfaultfd ones. tests/kernel/run-nested.sh compares the real and the
 * simulated lines key by key and names the key that differs. Step 0 with a
 * sim.skip=REASON key is the simulator's word that it could not run the
 * scenario: the kernel's lines of it are then not compared.
 *
 * Only values a VMM can observe through the public API and the kvm_run
 * fields the exit asks it to read are recorded; nothing timing-dependent.
 */
#ifndef MEMFAULT_TESTS_KRES_H
#define MEMFAULT_TESTS_KRES_H

#include <stddef.h>
#include <stdint.h>

#include <memfault/memfault.h>

struct kvm_run;

/* "x86_64" or "arm64" for an enum memfault_arch value. */
const char *kres_arch_name(uint32_t arch);

/* Name of a memfault_vcpu_run() result: EXIT, MEMORY_FAULT, INTERRUPTED,
 * RETRY, or -EFAULT style for a negative errno. */
const char *kres_rc_name(int rc, char *buf, size_t len);

/* Name of a KVM_EXIT_* value (IO, MMIO, HLT, ...) or its number. */
const char *kres_exit_name(uint32_t exit_reason, char *buf, size_t len);

/*
 * Print the line of one memfault_vcpu_run() or memfault_vcpu_run_dispatch():
 * its result @rc, the exit reason, the IO or MMIO details of an ordinary
 * exit (the data only for writes: the data of a read is what the VMM
 * supplies), the decoded fault when memfault_vcpu_get_fault() gave one
 * (@fault, else NULL), and the result of memfault_vcpu_get_fault()
 * (@get_fault_rc) for a failed run.
 */
void kres_run(uint32_t arch, const char *scen, int step, int rc,
	      const struct kvm_run *run, const struct memfault_fault *fault,
	      int get_fault_rc);

/* Print the line of memfault_vm_get_features(). */
void kres_features(uint32_t arch, const char *scen, int step,
		   const struct memfault_features *f);

/* Print the counters of memfault_vcpu_get_stats() (all but handler_ns). */
void kres_stats(uint32_t arch, const char *scen, int step,
		const struct memfault_vcpu_stats *st);

/* Print a free-form line: "KRES <arch> <scen> <step> " + fmt. */
void kres_printf(uint32_t arch, const char *scen, int step, const char *fmt,
		 ...) __attribute__((format(printf, 4, 5)));

#endif /* MEMFAULT_TESTS_KRES_H */
