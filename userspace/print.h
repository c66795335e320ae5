/* SPDX-License-Identifier: GPL-2.0 */
/*
 * One print path for text and JSON, in the manner of iproute2's json_print:
 * every value is printed by one call that says both how it reads in text
 * and under which key it goes in JSON, so the two outputs cannot drift.
 *
 *   key == NULL     the value appears in text only
 *   textfmt == NULL the value appears in JSON only
 *
 * textfmt holds exactly one "%s", which receives the value as text (numbers
 * are formatted first), e.g. print_uint("fd", " fd %s", 5).
 */
#ifndef PORTCTL_PRINT_H
#define PORTCTL_PRINT_H

#include <stdbool.h>
#include <stdint.h>

void print_set_json(bool json);
bool print_is_json(void);

/* JSON structure; no-ops in text. key is NULL for array elements. */
void print_open_object(const char *key);
void print_close_object(void);
void print_open_array(const char *key);
void print_close_array(void);

void print_string(const char *key, const char *textfmt, const char *value);
/* One value named differently in each output ("not ready" / "not_ready"). */
void print_enum(const char *key, const char *textfmt, const char *text,
		const char *json);
void print_uint(const char *key, const char *textfmt, uint64_t value);
/* Text shows textfmt (without a %s) only when value is true. */
void print_bool(const char *key, const char *textfmt, bool value);
void print_null(const char *key);	/* JSON only */
void print_text(const char *text);	/* text only, verbatim */

/* Ends a record: a newline in text, and after a complete JSON value. */
void print_end_record(void);

#endif
