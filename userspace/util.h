/* SPDX-License-Identifier: GPL-2.0 */
/* Error sentences, strict number parsing and allocation that cannot fail. */
#ifndef PORTCTL_UTIL_H
#define PORTCTL_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Exit statuses: scripts rely on these. */
#define EXIT_OK		0
#define EXIT_ERROR	1	/* the kernel refused, a process or socket problem */
#define EXIT_USAGE	2	/* the command line or batch file is malformed */

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/*
 * Errors are sentences on stderr: "Error: message." The period is added
 * unless the message already ends a sentence, so kernel messages can be
 * passed through verbatim. A batch sets the file and line it is working
 * on, and every error said meanwhile reads "FILE:LINE: message.", as a
 * compiler's does, so that editors and scripts find the line.
 */
void errorf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void warnf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* file as the user named it ("-": standard input); line 0: no place. */
void error_set_place(const char *file, unsigned int line);

/*
 * Copies src into dst (size bytes, NUL included), each control character
 * (a newline among them) replaced with "?": what others named (a process,
 * a host) goes into a line of our output, and must not end it.
 */
void copy_printable(char *dst, size_t size, const char *src);

/*
 * Length of the valid UTF-8 sequence at s (1 for ASCII), or 0 if s does
 * not start one: for what must stay UTF-8 (JSON, metrics' labels).
 */
size_t utf8_len(const unsigned char *s);

/* Decimal digits only; -1 with errno EINVAL (not a number) or ERANGE. */
int parse_u32(const char *s, uint32_t *out);

void *xmalloc(size_t size);
void *xcalloc(size_t n, size_t size);
void *xreallocarray(void *p, size_t n, size_t size);
char *xstrdup(const char *s);

#endif
