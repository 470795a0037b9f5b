/* SPDX-License-Identifier: MIT */
/*
 * kvmsim: the text form of guest scripts (KVMSIM_SCRIPT), so that programs
 * run under LD_PRELOAD, and the bindings' tests, can script a guest
 * without building struct kvmsim_step arrays. The syntax is in kvmsim.h.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "kvmsim.h"

#define MAX_FIELDS 6

static char *
trim(char *s)
{
	char *e;

	while (isspace((unsigned char)*s))
		s++;
	e = s + strlen(s);
	while (e > s && isspace((unsigned char)e[-1]))
		*--e = '\0';
	return s;
}

static int
parse_u64(const char *s, uint64_t *ret)
{
	char *end;

	if (!*s || *s == '-')
		return -EINVAL;
	errno = 0;
	*ret = strtoull(s, &end, 0);
	if (errno || *end)
		return -EINVAL;
	return 0;
}

/* A VALUE: a number, or "acc" for the accumulator. */
static int
parse_value(const char *s, struct kvmsim_step *st)
{
	if (!strcmp(s, "acc")) {
		st->flags |= KVMSIM_F_ACC;
		st->value = 0;
		return 0;
	}
	return parse_u64(s, &st->value);
}

/* FLAGS: private, shared, vncr joined with '+'. */
static int
parse_flags(char *s, struct kvmsim_step *st)
{
	char *save = NULL;

	for (char *t = strtok_r(s, "+", &save); t;
	     t = strtok_r(NULL, "+", &save)) {
		t = trim(t);
		if (!strcmp(t, "private"))
			st->flags |= KVMSIM_F_PRIVATE;
		else if (!strcmp(t, "shared"))
			st->flags |= KVMSIM_F_SHARED;
		else if (!strcmp(t, "vncr"))
			st->flags |= KVMSIM_F_VNCR;
		else
			return -EINVAL;
	}
	return 0;
}

static int
parse_len(const char *s, uint32_t *ret)
{
	uint64_t v;

	if (parse_u64(s, &v) || v > 8)
		return -EINVAL;
	*ret = (uint32_t)v;
	return 0;
}

/* One step: fields f[0..nf) with f[0] the operation name. */
static int
parse_step(char **f, int nf, struct kvmsim_step *st)
{
	static const struct {
		const char *name;
		uint32_t op;
		int min, max; /* number of fields after the name */
	} ops[] = {
		{ "mmio_read", KVMSIM_OP_MMIO_READ, 2, 2 },
		{ "mmio_write", KVMSIM_OP_MMIO_WRITE, 3, 3 },
		{ "in", KVMSIM_OP_IO_IN, 2, 2 },
		{ "io_in", KVMSIM_OP_IO_IN, 2, 2 },
		{ "out", KVMSIM_OP_IO_OUT, 3, 3 },
		{ "io_out", KVMSIM_OP_IO_OUT, 3, 3 },
		{ "hlt", KVMSIM_OP_HLT, 0, 0 },
		{ "load", KVMSIM_OP_LOAD, 2, 3 },
		{ "store", KVMSIM_OP_STORE, 3, 4 },
		{ "spin", KVMSIM_OP_SPIN, 0, 0 },
	};
	size_t i;

	memset(st, 0, sizeof(*st));
	for (i = 0; i < sizeof(ops) / sizeof(ops[0]); i++)
		if (!strcmp(f[0], ops[i].name))
			break;
	if (i == sizeof(ops) / sizeof(ops[0]) || nf - 1 < ops[i].min ||
	    nf - 1 > ops[i].max)
		return -EINVAL;
	st->op = ops[i].op;
	if (ops[i].max == 0)
		return 0;
	if (parse_u64(f[1], &st->gpa) || parse_len(f[2], &st->len))
		return -EINVAL;
	switch (st->op) {
	case KVMSIM_OP_MMIO_WRITE:
	case KVMSIM_OP_IO_OUT:
		return parse_value(f[3], st);
	case KVMSIM_OP_STORE:
		if (parse_value(f[3], st))
			return -EINVAL;
		return nf == 5 ? parse_flags(f[4], st) : 0;
	case KVMSIM_OP_LOAD:
		return nf == 4 ? parse_flags(f[3], st) : 0;
	default:
		return 0;
	}
}

int
kvmsim_parse_script(const char *text, struct kvmsim_step **ret_steps,
		    size_t *ret_n)
{
	struct kvmsim_step *steps = NULL;
	size_t n = 0, cap = 0;
	char *copy, *save = NULL;
	int r = 0;

	if (!text || !ret_steps || !ret_n)
		return -EINVAL;
	copy = strdup(text);
	if (!copy)
		return -ENOMEM;
	for (char *tok = strtok_r(copy, ";", &save); tok;
	     tok = strtok_r(NULL, ";", &save)) {
		char *f[MAX_FIELDS + 1];
		int nf = 0;
		char *p;

		tok = trim(tok);
		if (!*tok)
			continue;
		/* split on ':' by hand: strtok_r would merge empty fields */
		for (p = tok; nf <= MAX_FIELDS;) {
			char *c = strchr(p, ':');

			f[nf++] = p;
			if (!c)
				break;
			*c = '\0';
			p = c + 1;
		}
		if (nf > MAX_FIELDS) {
			r = -EINVAL;
			break;
		}
		for (int i = 0; i < nf; i++)
			f[i] = trim(f[i]);
		if (n == cap) {
			size_t ncap = cap ? cap * 2 : 8;
			struct kvmsim_step *ns =
				realloc(steps, ncap * sizeof(*ns));

			if (!ns) {
				r = -ENOMEM;
				break;
			}
			steps = ns;
			cap = ncap;
		}
		r = parse_step(f, nf, &steps[n]);
		if (r)
			break;
		n++;
	}
	free(copy);
	if (r) {
		free(steps);
		return r;
	}
	if (!n) {
		free(steps);
		steps = NULL;
	}
	*ret_steps = steps;
	*ret_n = n;
	return 0;
}
