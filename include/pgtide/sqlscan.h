/*
 * A small SQL lexer for the few decisions pgtide takes from statement text: splitting a simple
 * Query string into statements the way PostgreSQL's parser does, and reading keywords and
 * identifiers at the start of a statement. It never parses SQL beyond that. Pure.
 */
#ifndef PGTIDE_SQLSCAN_H
#define PGTIDE_SQLSCAN_H

#include <stdbool.h>
#include <stddef.h>

/* PostgreSQL truncates identifiers to NAMEDATALEN - 1 bytes. */
#define SQLSCAN_NAME_MAX 63

/* Called for each non-empty statement; return false to stop the scan. */
typedef bool (*sqlscan_fn)(void *arg, const char *stmt, size_t len);

/*
 * Splits sql (len bytes, need not be NUL-terminated) into statements at the semicolons
 * PostgreSQL's grammar treats as separators, and calls fn for each statement that holds more
 * than whitespace and comments. A statement is passed without its terminating ';' and starts
 * at its first byte after the previous ';' (leading whitespace and comments included).
 * Not separators: ';' inside '...' (standard strings: '' is a quote), E'...' (backslash escapes
 * too), U&'...', "quoted identifiers", $tag$ dollar quotes $tag$ (a tag is an identifier that
 * does not start with a digit; $1 is a parameter), -- and nested C-style comments, parentheses
 * (CREATE RULE ... DO (a; b)), and the body of a BEGIN ATOMIC ... END in CREATE FUNCTION /
 * CREATE PROCEDURE (counted like psql does: BEGIN and CASE open, END closes). Unterminated
 * quotes and comments run to the end of the string. Returns the number of statements passed
 * to fn (up to the one that stopped the scan).
 */
size_t sqlscan_split(const char *sql, size_t len, sqlscan_fn fn, void *arg);

/* True if sql holds no ';' that could separate statements, so it is one statement at most. */
bool sqlscan_single(const char *sql, size_t len);

/* Skips whitespace and comments (-- to end of line, and nested C-style comments). */
const char *sqlscan_skip_space(const char *p, const char *end);

/*
 * If the next word at *pp (after whitespace and comments) is keyword (lower case, ASCII),
 * matched case-insensitively and followed by a byte that cannot continue an identifier,
 * advances *pp past it and returns true; otherwise leaves *pp alone and returns false.
 */
bool sqlscan_word(const char **pp, const char *end, const char *keyword);

/*
 * Reads the identifier at *pp (after whitespace and comments): a plain identifier is folded to
 * lower case (ASCII letters only, as PostgreSQL's downcase_identifier does for them), a
 * "quoted" one keeps its case with "" turned into ". Truncated to SQLSCAN_NAME_MAX bytes (out
 * needs SQLSCAN_NAME_MAX + 1). Advances *pp and returns true; false (nothing moved) if no
 * identifier is there. U&"..." identifiers are not supported (false).
 */
bool sqlscan_ident(const char **pp, const char *end, char out[SQLSCAN_NAME_MAX + 1]);

#endif
