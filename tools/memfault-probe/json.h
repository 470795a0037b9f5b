/* SPDX-License-Identifier: MIT */
/*
 * A small JSON writer: one object or array per json_open()/json_close()
 * pair, indented by two spaces a level, members separated as they are
 * added. Strings are always valid UTF-8 (json.c says how). It knows nothing
 * of the probe's report.
 */
#ifndef MEMFAULT_PROBE_JSON_H
#define MEMFAULT_PROBE_JSON_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

struct json {
	FILE *f;
	int depth;
	bool need_comma;
};

/* Open an object ('{') or an array ('['): the document itself at depth 0,
 * else a member named @key (NULL inside an array). */
void json_open(struct json *j, const char *key, char bracket);
void json_close(struct json *j, char bracket);
/* Members: a string (null for NULL), numbers and a boolean. */
void json_str(struct json *j, const char *key, const char *value);
void json_int(struct json *j, const char *key, long long value);
void json_uint(struct json *j, const char *key, uint64_t value);
void json_bool(struct json *j, const char *key, bool value);

#endif /* MEMFAULT_PROBE_JSON_H */
