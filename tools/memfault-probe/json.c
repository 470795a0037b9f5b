/* SPDX-License-Identifier: MIT */
/* The JSON writer of json.h. */
#include <inttypes.h>

#include "json.h"

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

void
json_open(struct json *j, const char *key, char bracket)
{
	if (j->depth)
		json_member(j, key);
	fputc(bracket, j->f);
	j->depth++;
	j->need_comma = false;
}

void
json_close(struct json *j, char bracket)
{
	j->depth--;
	json_indent(j);
	fputc(bracket, j->f);
	j->need_comma = true;
}

void
json_str(struct json *j, const char *key, const char *value)
{
	json_member(j, key);
	if (value)
		json_string(j->f, value);
	else
		fputs("null", j->f);
}

void
json_int(struct json *j, const char *key, long long value)
{
	json_member(j, key);
	fprintf(j->f, "%lld", value);
}

void
json_uint(struct json *j, const char *key, uint64_t value)
{
	json_member(j, key);
	fprintf(j->f, "%" PRIu64, value);
}

void
json_bool(struct json *j, const char *key, bool value)
{
	json_member(j, key);
	fputs(value ? "true" : "false", j->f);
}
