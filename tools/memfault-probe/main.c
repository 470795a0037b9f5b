/* SPDX-License-Identifier: MIT */
/*
 * memfault-probe - say what this host's KVM and userfaultfd offer, and what
 * libmemfault will use of it and why.
 *
 * main() reads the command line, then runs the three parts in turn:
 * probe.c finds out (the only part that talks to /dev/kvm and the system),
 * report.c decides (what libmemfault will use, and the verdict), output.c
 * prints (text, or JSON with --json, through json.c). memfault-probe.h
 * holds the report they share. The exit status is documented in usage() and in
 * memfault-probe(1).
 */
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "memfault-probe.h"

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
	probe_host(rep);
	probe_kvm(rep, arch_opt);
	probe_uffd(rep);
	report_verdict(rep);
	report_decide(rep);

	if (json)
		output_json(stdout, rep);
	else
		output_text(stdout, rep);
	code = rep->exit_code;
	free(rep);
	if (fflush(stdout) || ferror(stdout)) {
		perror("memfault-probe: stdout");
		return EXIT_INTERNAL;
	}
	return code;
}
