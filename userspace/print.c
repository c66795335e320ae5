// SPDX-License-Identifier: GPL-2.0
#include "print.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "util.h"

#define MAX_DEPTH 16

static bool json;
static int depth;
static bool first[MAX_DEPTH];	/* nothing printed yet at this level */

void print_set_json(bool on)
{
	json = on;
	depth = 0;
}

bool print_is_json(void)
{
	return json;
}

/* Names come from processes (comm) and may hold any byte. */
static void json_string(const char *str)
{
	const unsigned char *s = (const unsigned char *)str;

	putchar('"');
	while (*s) {
		size_t n = utf8_len(s);

		if (!n) {
			fputs("\\ufffd", stdout);
			s++;
		} else if (*s == '"' || *s == '\\') {
			printf("\\%c", *s++);
		} else if (*s < 0x20 || *s == 0x7f) {
			printf("\\u%04x", *s++);
		} else {
			fwrite(s, 1, n, stdout);
			s += n;
		}
	}
	putchar('"');
}

/* Text output keeps one record a line: no control characters. */
static void text_value(const char *fmt, const char *value)
{
	char clean[256];
	size_t i;

	for (i = 0; i < sizeof(clean) - 1 && value[i]; i++)
		clean[i] = (unsigned char)value[i] < 0x20 || value[i] == 0x7f ?
			   '?' : value[i];
	clean[i] = '\0';
	printf(fmt, clean);
}

static void json_key(const char *key)
{
	if (depth > 0) {
		if (!first[depth - 1])
			putchar(',');
		first[depth - 1] = false;
	}
	if (key) {
		json_string(key);
		putchar(':');
	}
}

static void json_open(const char *key, char c)
{
	if (!json || depth == MAX_DEPTH)
		return;
	json_key(key);
	putchar(c);
	first[depth++] = true;
}

static void json_close(char c)
{
	if (!json || depth == 0)
		return;
	putchar(c);
	depth--;
}

void print_open_object(const char *key)
{
	json_open(key, '{');
}

void print_close_object(void)
{
	json_close('}');
}

void print_open_array(const char *key)
{
	json_open(key, '[');
}

void print_close_array(void)
{
	json_close(']');
}

void print_enum(const char *key, const char *textfmt, const char *text,
		const char *jsonval)
{
	if (json) {
		if (!key)
			return;
		json_key(key);
		if (jsonval)
			json_string(jsonval);
		else
			fputs("null", stdout);
	} else if (textfmt && text) {
		text_value(textfmt, text);
	}
}

void print_string(const char *key, const char *textfmt, const char *value)
{
	print_enum(key, textfmt, value, value);
}

void print_uint(const char *key, const char *textfmt, uint64_t value)
{
	char buf[24];

	snprintf(buf, sizeof(buf), "%" PRIu64, value);
	if (json) {
		if (!key)
			return;
		json_key(key);
		fputs(buf, stdout);
	} else if (textfmt) {
		printf(textfmt, buf);
	}
}

void print_bool(const char *key, const char *textfmt, bool value)
{
	if (json) {
		if (!key)
			return;
		json_key(key);
		fputs(value ? "true" : "false", stdout);
	} else if (textfmt && value) {
		fputs(textfmt, stdout);
	}
}

void print_null(const char *key)
{
	if (!json || !key)
		return;
	json_key(key);
	fputs("null", stdout);
}

void print_text(const char *text)
{
	if (!json)
		fputs(text, stdout);
}

void print_end_record(void)
{
	if (!json || depth == 0)
		putchar('\n');
}
