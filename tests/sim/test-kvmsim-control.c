/* SPDX-License-Identifier: MIT */
/*
 * kvmsim's own tests, control:
 * The process boundary and the simulator's controls: every object is a
 * real fd, the interposition reaches shared libraries, guest scripts
 * (text and validation), configuration from the environment,
 * statistics.
 * Each test names its source with the tags of sim-raw.h.
 */
#include "sim-raw.h"
#include "kvmsim-probe.h"

/* ======================================================================
 * fds and the process boundary
 * ====================================================================== */

/*
 * Every object is a real fd: fstat works, close works, a closed fd gives EBADF.
 */
START_TEST(closed_fds)
{
	uint32_t arch = (uint32_t)_i + 1;
	struct stat stt;
	struct sim s;
	int vcpu1;
	pid_t pid;
	int status;

	start(&s, arch, KVMSIM_LEVEL_7_2);
	ck_assert_int_eq(kvmsim_fd_kind(s.kvm), KVMSIM_FD_KVM);
	ck_assert_int_eq(kvmsim_fd_kind(s.vm), KVMSIM_FD_VM);
	ck_assert_int_eq(kvmsim_fd_kind(s.vcpu), KVMSIM_FD_VCPU);
	ck_assert_int_eq(kvmsim_fd_kind(0), KVMSIM_FD_NONE);
	ck_assert_int_eq(fstat(s.vcpu, &stt), 0);
	ck_assert_int_eq((long)stt.st_size, (long)s.run_size);
	/* duplicate and out-of-range vCPU ids */
	ck_assert_int_eq(ioctl(s.vm, KVM_CREATE_VCPU, 0ul), -1);
	ck_assert_int_eq(errno, EEXIST);
	ck_assert_int_eq(ioctl(s.vm, KVM_CREATE_VCPU, 100000ul), -1);
	ck_assert_int_eq(errno, EINVAL);
	vcpu1 = ioctl(s.vm, KVM_CREATE_VCPU, 1ul);
	ck_assert_int_ge(vcpu1, 0);

	/* after fork(), the child's VM and vCPU ioctls give EIO (kvm->mm) */
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		int ok = ioctl(s.vm, KVM_CHECK_EXTENSION,
			       KVM_CAP_USER_MEMORY) == -1 &&
			 errno == EIO && ioctl(s.vcpu, KVM_RUN, 0) == -1 &&
			 errno == EIO &&
			 ioctl(s.kvm, KVM_GET_API_VERSION, 0) == 12;
		_exit(ok ? 0 : 1);
	}
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);

	/* the VM lives on while a vCPU holds it */
	ck_assert_int_eq(close(s.vm), 0);
	ck_assert_int_eq(ioctl(s.vm, KVM_CHECK_EXTENSION, KVM_CAP_USER_MEMORY),
			 -1);
	ck_assert_int_eq(errno, EBADF);
	script(&s, "mmio_write:0x1000:1:7");
	RUN_EXPECT(&s, 0, 0, KVM_EXIT_MMIO);
	ck_assert_int_eq(close(s.vcpu), 0);
	ck_assert_int_eq(ioctl(s.vcpu, KVM_RUN, 0), -1);
	ck_assert_int_eq(errno, EBADF);
	ck_assert_int_eq(kvmsim_vcpu_set_script_text(s.vcpu, "hlt"), -EBADF);
	ck_assert_int_eq(kvmsim_vcpu_get_state(s.vcpu, NULL, NULL), -EBADF);
	/* our mapping of the closed vCPU's kvm_run stays valid */
	ck_assert_uint_eq(s.run->exit_reason, KVM_EXIT_MMIO);
	ck_assert_int_eq(close(s.kvm), 0);
	ck_assert_int_eq(ioctl(s.kvm, KVM_GET_API_VERSION, 0), -1);
	ck_assert_int_eq(errno, EBADF);
	ck_assert_int_eq(close(s.kvm), -1);
	ck_assert_int_eq(errno, EBADF);
	ck_assert_int_eq(close(vcpu1), 0);
	/* reset closes what is left */
	s.kvm = open_kvm();
	reset(arch, KVMSIM_LEVEL_7_2);
	ck_assert_int_eq(fcntl(s.kvm, F_GETFD), -1);
}
END_TEST

/*
 * The interposition reaches shared libraries: a DSO's open("/dev/kvm"),
 * ioctl() and close() (as libmemfault.so's) land in the simulator linked
 * into this executable; every other path and fd passes through.
 */
START_TEST(interposition)
{
	int fd, fds[2], n = -1;

	reset(KVMSIM_X86_64, KVMSIM_LEVEL_7_2);
	fd = kvmsim_probe_open("/dev/kvm");
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(kvmsim_fd_kind(fd), KVMSIM_FD_KVM);
	ck_assert_int_eq(kvmsim_probe_ioctl(fd, KVM_GET_API_VERSION, 0), 12);
	ck_assert_int_eq(kvmsim_probe_close(fd), 0);
	ck_assert_int_eq(kvmsim_probe_ioctl(fd, KVM_GET_API_VERSION, 0), -1);
	ck_assert_int_eq(errno, EBADF);
	/* other paths and fds go to the C library */
	fd = kvmsim_probe_open("/dev/null");
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(kvmsim_fd_kind(fd), KVMSIM_FD_NONE);
	ck_assert_int_eq(kvmsim_probe_ioctl(fd, KVM_GET_API_VERSION, 0), -1);
	/* qemu-user refuses an ioctl it does not know with ENOSYS itself */
	ck_assert(errno == ENOTTY ||
		  (getenv("MESON_EXE_WRAPPER") && errno == ENOSYS));
	ck_assert_int_eq(kvmsim_probe_close(fd), 0);
	ck_assert_int_eq(pipe(fds), 0);
	ck_assert_int_eq(write(fds[1], "abc", 3), 3);
	ck_assert_int_eq(ioctl(fds[0], FIONREAD, &n), 0);
	ck_assert_int_eq(n, 3);
	close(fds[0]);
	close(fds[1]);
	/* the other entry points */
	fd = openat(AT_FDCWD, "/dev/kvm", O_RDWR);
	ck_assert_int_eq(kvmsim_fd_kind(fd), KVMSIM_FD_KVM);
	ck_assert_int_eq(fcntl(fd, F_GETFD) & FD_CLOEXEC, 0);
	close(fd);
	fd = open64("/dev/kvm", O_RDWR | O_CLOEXEC);
	ck_assert_int_eq(kvmsim_fd_kind(fd), KVMSIM_FD_KVM);
	ck_assert_int_ne(fcntl(fd, F_GETFD) & FD_CLOEXEC, 0);
	close(fd);
	fd = open("/tmp", O_RDONLY | O_DIRECTORY);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(kvmsim_fd_kind(fd), KVMSIM_FD_NONE);
	close(fd);
}
END_TEST

/* ======================================================================
 * Scripts and configuration
 * ====================================================================== */

START_TEST(script_text)
{
	struct kvmsim_step *st;
	size_t n;

	ck_assert_int_eq(
		kvmsim_parse_script(
			" mmio_write:0x1000:4:0x1234 ; mmio_read:0x1000:4;"
			"load:0x20000:1;out:0x3f8:1:acc;hlt;;"
			"store:8:8:acc:private+vncr;in:0x60:2;spin;"
			"load:0x3000:2:shared",
			&st, &n),
		0);
	ck_assert_uint_eq(n, 9);
	ck_assert_uint_eq(st[0].op, KVMSIM_OP_MMIO_WRITE);
	ck_assert_uint_eq(st[0].gpa, 0x1000);
	ck_assert_uint_eq(st[0].len, 4);
	ck_assert_uint_eq(st[0].value, 0x1234);
	ck_assert_uint_eq(st[0].flags, 0);
	ck_assert_uint_eq(st[1].op, KVMSIM_OP_MMIO_READ);
	ck_assert_uint_eq(st[2].op, KVMSIM_OP_LOAD);
	ck_assert_uint_eq(st[2].gpa, 0x20000);
	ck_assert_uint_eq(st[3].op, KVMSIM_OP_IO_OUT);
	ck_assert_uint_eq(st[3].flags, KVMSIM_F_ACC);
	ck_assert_uint_eq(st[4].op, KVMSIM_OP_HLT);
	ck_assert_uint_eq(st[5].op, KVMSIM_OP_STORE);
	ck_assert_uint_eq(st[5].flags,
			  KVMSIM_F_ACC | KVMSIM_F_PRIVATE | KVMSIM_F_VNCR);
	ck_assert_uint_eq(st[6].op, KVMSIM_OP_IO_IN);
	ck_assert_uint_eq(st[6].len, 2);
	ck_assert_uint_eq(st[7].op, KVMSIM_OP_SPIN);
	ck_assert_uint_eq(st[8].flags, KVMSIM_F_SHARED);
	free(st);
	ck_assert_int_eq(kvmsim_parse_script("", &st, &n), 0);
	ck_assert_uint_eq(n, 0);
	ck_assert_ptr_null(st);
	static const char *bad[] = { "jump:1",
				     "load:0x1000",
				     "load:0x1000:4:weird",
				     "load:x:4",
				     "mmio_write:1:4",
				     "hlt:1",
				     "load:1:4:private:1",
				     "store:1:9:1",
				     "load:-1:4",
				     "out:1:1:1:1:1:1:1" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		ck_assert_msg(kvmsim_parse_script(bad[i], &st, &n) == -EINVAL,
			      "%s", bad[i]);
}
END_TEST

/* Per-arch validation of scripts: IO/HLT are x86-only, sizes, page crossing. */
START_TEST(script_validation)
{
	uint32_t arch = (uint32_t)_i + 1;
	bool x86 = arch == KVMSIM_X86_64;
	struct kvmsim_step st = { .op = KVMSIM_OP_LOAD,
				  .gpa = 0x1000,
				  .len = 3 };
	struct sim s;

	start(&s, arch, KVMSIM_LEVEL_7_2);
	ck_assert_int_eq(kvmsim_vcpu_set_script_text(s.vcpu, "hlt"),
			 x86 ? 0 : -EINVAL);
	ck_assert_int_eq(kvmsim_vcpu_set_script_text(s.vcpu, "in:0x60:1"),
			 x86 ? 0 : -EINVAL);
	ck_assert_int_eq(kvmsim_vcpu_set_script_text(s.vcpu, "in:0x60:8"),
			 -EINVAL);
	ck_assert_int_eq(
		kvmsim_vcpu_set_script_text(s.vcpu, "mmio_read:0x60:0"),
		-EINVAL);
	ck_assert_int_eq(kvmsim_vcpu_set_script_text(
				 s.vcpu, fmt("load:%#llx:2",
					     (unsigned long long)s.page - 1)),
			 -EINVAL);
	ck_assert_int_eq(kvmsim_vcpu_set_script(s.vcpu, &st, 1), -EINVAL);
	st.len = 4;
	st.reserved = 1;
	ck_assert_int_eq(kvmsim_vcpu_set_script(s.vcpu, &st, 1), -EINVAL);
	st.reserved = 0;
	st.flags = 1u << 7;
	ck_assert_int_eq(kvmsim_vcpu_set_script(s.vcpu, &st, 1), -EINVAL);
	st.flags = KVMSIM_F_PRIVATE | KVMSIM_F_SHARED;
	ck_assert_int_eq(kvmsim_vcpu_set_script(s.vcpu, &st, 1), -EINVAL);
	st.flags = 0;
	st.op = 99;
	ck_assert_int_eq(kvmsim_vcpu_set_script(s.vcpu, &st, 1), -EINVAL);
	ck_assert_int_eq(kvmsim_vcpu_set_script(s.vm, &st, 0), -EBADF);
	ck_assert_int_eq(kvmsim_vcpu_set_script(s.vcpu, NULL, 0), 0);
	RUN_EXPECT(&s, 0, 0, x86 ? KVM_EXIT_SHUTDOWN : KVM_EXIT_SYSTEM_EVENT);
}
END_TEST

START_TEST(config_and_env)
{
	struct kvmsim_config cfg = { 3, KVMSIM_LEVEL_7_2, 0 };
	struct sim s;

	ck_assert_int_eq(kvmsim_reset(&cfg), -EINVAL);
	cfg.arch = KVMSIM_ARM64;
	cfg.level = 700;
	ck_assert_int_eq(kvmsim_reset(&cfg), -EINVAL);
	cfg.level = KVMSIM_LEVEL_6_8;
	cfg.quirks = 1u << 6;
	ck_assert_int_eq(kvmsim_reset(&cfg), -EINVAL);
	ck_assert_uint_eq(kvmsim_default_quirks(9, KVMSIM_LEVEL_7_2), 0);
	/* the defaults documented in kvmsim.h */
	ck_assert_uint_eq(
		kvmsim_default_quirks(KVMSIM_X86_64, KVMSIM_LEVEL_6_1),
		KVMSIM_Q_STALE_EXIT_ON_IE);
	ck_assert_uint_eq(
		kvmsim_default_quirks(KVMSIM_X86_64, KVMSIM_LEVEL_7_2),
		KVMSIM_Q_STALE_EXIT_ON_IE | KVMSIM_Q_GMEM_ERRNO);
	ck_assert_uint_eq(
		kvmsim_default_quirks(KVMSIM_ARM64, KVMSIM_LEVEL_7_2_UF),
		KVMSIM_Q_STALE_EXIT_ON_IE | KVMSIM_Q_GMEM_ERRNO |
			KVMSIM_Q_MMIO_READBACK | KVMSIM_Q_NO_MFI_CAP |
			KVMSIM_Q_ARM64_VNCR_RET0);

	/* the environment, as LD_PRELOAD users set it */
	setenv("KVMSIM_ARCH", "arm64", 1);
	setenv("KVMSIM_LEVEL", "7.2-uf", 1);
	setenv("KVMSIM_QUIRKS", "0x8", 1);
	setenv("KVMSIM_SCRIPT", "mmio_write:0x1000:4:0x1234;mmio_read:0x1000:4",
	       1);
	ck_assert_int_eq(kvmsim_reset(NULL), 0);
	ck_assert_int_eq(kvmsim_get_config(&cfg), 0);
	ck_assert_uint_eq(cfg.arch, KVMSIM_ARM64);
	ck_assert_uint_eq(cfg.level, KVMSIM_LEVEL_7_2_UF);
	ck_assert_uint_eq(cfg.quirks, KVMSIM_Q_MMIO_READBACK);
	memset(&s, 0, sizeof(s));
	s.kvm = open_kvm();
	s.vm = ioctl(s.kvm, KVM_CREATE_VM, 0ul);
	s.page = (uint64_t)sysconf(_SC_PAGESIZE);
	add_vcpu(&s, 0);
	ck_assert_uint_eq(s.run_size, 2 * s.page); /* arm64 */
	/* every vCPU gets the script */
	RUN_EXPECT(&s, 0, 0, KVM_EXIT_MMIO);
	ck_assert_uint_eq(s.run->mmio.data[0], 0x34);
	add_vcpu(&s, 1);
	RUN_EXPECT(&s, 0, 0, KVM_EXIT_MMIO);
	ck_assert_uint_eq(s.run->mmio.is_write, 1);
	unsetenv("KVMSIM_QUIRKS");
	unsetenv("KVMSIM_SCRIPT");
	ck_assert_int_eq(kvmsim_reset(NULL), 0);
	ck_assert_int_eq(kvmsim_get_config(&cfg), 0);
	ck_assert_uint_eq(
		cfg.quirks,
		kvmsim_default_quirks(KVMSIM_ARM64, KVMSIM_LEVEL_7_2_UF));
	setenv("KVMSIM_ARCH", "sparc", 1);
	ck_assert_int_eq(kvmsim_reset(NULL), -EINVAL);
	setenv("KVMSIM_ARCH", "x86", 1);
	setenv("KVMSIM_LEVEL", "5.4", 1);
	ck_assert_int_eq(kvmsim_reset(NULL), -EINVAL);
	setenv("KVMSIM_LEVEL", "6.1", 1);
	setenv("KVMSIM_QUIRKS", "zz", 1);
	ck_assert_int_eq(kvmsim_reset(NULL), -EINVAL);
	setenv("KVMSIM_QUIRKS", "40", 1);
	ck_assert_int_eq(kvmsim_reset(NULL), -EINVAL);
	unsetenv("KVMSIM_QUIRKS");
	setenv("KVMSIM_SCRIPT", "hlt;jump", 1);
	ck_assert_int_eq(kvmsim_reset(NULL), -EINVAL);
	setenv("KVMSIM_ARCH", "arm64", 1);
	setenv("KVMSIM_SCRIPT", "hlt", 1); /* x86-only step */
	ck_assert_int_eq(kvmsim_reset(NULL), -EINVAL);
	unsetenv("KVMSIM_SCRIPT");
	ck_assert_int_eq(kvmsim_reset(NULL), 0);
	ck_assert_int_eq(kvmsim_get_config(&cfg), 0);
	ck_assert_uint_eq(cfg.level, KVMSIM_LEVEL_6_1);
	unsetenv("KVMSIM_ARCH");
	unsetenv("KVMSIM_LEVEL");
}
END_TEST

START_TEST(stats_counts)
{
	struct kvmsim_stats st;
	struct sim s;

	start(&s, KVMSIM_X86_64, KVMSIM_LEVEL_7_2);
	script(&s, "out:0x80:1:1;hlt;load:0x900000:1:private");
	RUN_EXPECT(&s, 0, 0, KVM_EXIT_IO);
	RUN_EXPECT(&s, 0, 0, KVM_EXIT_HLT);
	RUN_EXPECT(&s, -1, EFAULT, KVM_EXIT_MEMORY_FAULT);
	st = stats();
	ck_assert_uint_eq(st.runs, 3);
	ck_assert_uint_eq(st.run_errors, 1);
	ck_assert_uint_eq(st.exits[KVM_EXIT_IO], 1);
	ck_assert_uint_eq(st.exits[KVM_EXIT_HLT], 1);
	ck_assert_uint_eq(st.exits[KVM_EXIT_MEMORY_FAULT], 1);
	ck_assert_uint_eq(st.memory_faults, 1);
	ck_assert_uint_eq(st.completions, 2);
	ck_assert_int_eq(kvmsim_get_stats(NULL), -EINVAL);
	reset(KVMSIM_X86_64, KVMSIM_LEVEL_7_2);
	ck_assert_uint_eq(stats().runs, 0);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("kvmsim-control");
	TCase *tc;

	tc = tcase_create("fds");
	tcase_add_loop_test(tc, closed_fds, 0, 2);
	tcase_add_test(tc, interposition);
	suite_add_tcase(s, tc);

	tc = tcase_create("control");
	tcase_add_test(tc, script_text);
	tcase_add_loop_test(tc, script_validation, 0, 2);
	tcase_add_test(tc, config_and_env);
	tcase_add_test(tc, stats_counts);
	suite_add_tcase(s, tc);
	return tc_run(s);
}
