// SPDX-License-Identifier: GPL-2.0
#include "util.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *current_file;
static unsigned int current_line;

void error_set_place(const char *file, unsigned int line)
{
	current_file = file;
	current_line = line;
}

static void say(bool error, const char *fmt, va_list ap)
{
	char msg[1024];
	size_t len;

	vsnprintf(msg, sizeof(msg), fmt, ap);
	/* Kernel messages may end in a newline or already in a period. */
	len = strlen(msg);
	while (len && (msg[len - 1] == '\n' || msg[len - 1] == ' '))
		msg[--len] = '\0';

	/* About a line of a file: "FILE:LINE: message.", as compilers say it. */
	if (current_file && current_line) {
		fprintf(stderr, "%s:%u: ", current_file, current_line);
		if (!error)
			fputs("warning: ", stderr);
	} else {
		fputs(error ? "Error: " : "Warning: ", stderr);
	}
	fputs(msg, stderr);
	if (!len || !strchr(".!?", msg[len - 1]))
		fputc('.', stderr);
	fputc('\n', stderr);
}

void errorf(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	say(true, fmt, ap);
	va_end(ap);
}

void warnf(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	say(false, fmt, ap);
	va_end(ap);
}

void copy_printable(char *dst, size_t size, const char *src)
{
	size_t n;

	if (!size)
		return;
	for (n = 0; n < size - 1 && src[n]; n++)
		dst[n] = (unsigned char)src[n] < 0x20 || src[n] == 0x7f ?
			 '?' : src[n];
	dst[n] = '\0';
}

size_t utf8_len(const unsigned char *s)
{
	unsigned char lo = 0x80, hi = 0xbf;	/* the second byte's range */
	size_t n, i;

	if (s[0] < 0x80)
		return 1;
	if (s[0] >= 0xc2 && s[0] <= 0xdf)
		n = 2;
	else if (s[0] >= 0xe0 && s[0] <= 0xef)
		n = 3;
	else if (s[0] >= 0xf0 && s[0] <= 0xf4)
		n = 4;
	else
		return 0;
	/* No overlong form, no surrogate, nothing above U+10FFFF (RFC 3629). */
	if (s[0] == 0xe0)
		lo = 0xa0;
	else if (s[0] == 0xed)
		hi = 0x9f;
	else if (s[0] == 0xf0)
		lo = 0x90;
	else if (s[0] == 0xf4)
		hi = 0x8f;
	if (s[1] < lo || s[1] > hi)
		return 0;
	for (i = 2; i < n; i++)
		if ((s[i] & 0xc0) != 0x80)
			return 0;
	return n;
}

int parse_u32(const char *s, uint32_t *out)
{
	uint64_t v = 0;

	if (!*s) {
		errno = EINVAL;
		return -1;
	}
	for (; *s; s++) {
		if (*s < '0' || *s > '9') {
			errno = EINVAL;
			return -1;
		}
		v = v * 10 + (uint64_t)(*s - '0');
		if (v > UINT32_MAX) {
			/* Keep scanning: "99999999999x" is not a number at all. */
			while (*s >= '0' && *s <= '9')
				s++;
			errno = *s ? EINVAL : ERANGE;
			return -1;
		}
	}
	*out = (uint32_t)v;
	return 0;
}

static void *check(void *p)
{
	if (!p) {
		fputs("Error: out of memory.\n", stderr);
		exit(EXIT_ERROR);
	}
	return p;
}

void *xmalloc(size_t size)
{
	return check(malloc(size ? size : 1));
}

void *xcalloc(size_t n, size_t size)
{
	return check(calloc(n ? n : 1, size ? size : 1));
}

void *xreallocarray(void *p, size_t n, size_t size)
{
	return check(reallocarray(p, n ? n : 1, size ? size : 1));
}

char *xstrdup(const char *s)
{
	return check(strdup(s));
}
