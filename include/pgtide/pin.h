/*
 * Session state that cannot move between server connections, for transaction and statement
 * pooling: session advisory locks, LISTEN, temporary tables (and other objects in pg_temp),
 * cursors WITH HOLD, SQL-level PREPARE, and SET ROLE / SET SESSION AUTHORIZATION. A client that
 * holds any of it keeps its server (is pinned) until the state is gone.
 *
 * What a session holds is asked of PostgreSQL itself (the probe, PIN_PROBE_SQL), run hidden at
 * the end of a transaction in which the client ran a statement that may have created or dropped
 * such state: one whose text calls a session advisory lock function or starts with CREATE, or
 * whose CommandComplete tag says so (LISTEN, DECLARE CURSOR, PREPARE, CREATE ..., UNLISTEN,
 * CLOSE CURSOR, DEALLOCATE, DISCARD, DROP ..., SET, RESET). The same probe reports the session's
 * non-reported settings (pg_settings.source = 'session'), so that a plain SET follows its
 * client to its next server instead of pinning it.
 *
 * pin_session_state = error refuses statements that would create such state before they run
 * (pin_refusal). Pure.
 */
#ifndef PGTIDE_PIN_H
#define PGTIDE_PIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Kinds of state a session can hold (bits). */
enum pin_kind {
	PIN_ADVISORY = 1u << 0, /* session advisory locks */
	PIN_LISTEN = 1u << 1,   /* LISTEN channels */
	PIN_TEMP = 1u << 2,     /* objects in the session's temporary schema */
	PIN_HOLD = 1u << 3,     /* cursors WITH HOLD */
	PIN_PREPARE = 1u << 4,  /* SQL-level PREPARE */
	PIN_ROLE = 1u << 5,     /* SET ROLE / SET SESSION AUTHORIZATION */
};
#define PIN_N_KINDS 6
/* The probe failed: what the session holds is not known. */
#define PIN_UNKNOWN ((1u << PIN_N_KINDS) - 1)

/* pin_session_state */
enum pin_mode {
	PIN_MODE_ON = 0, /* pin clients that hold session state (default) */
	PIN_MODE_OFF, /* never pin: the state is dropped (DISCARD ALL) when the server is let go */
	PIN_MODE_ERROR, /* refuse statements that would create such state (0A000) */
};

/* The mode a pin_session_state value names ("on", "off", "error"; checked at config load). */
static inline enum pin_mode pin_mode_of(const char *v)
{
	if (!v || !v[0] || !v[1])
		return PIN_MODE_ON;
	switch (v[1] | 0x20) {
	case 'f':
		return PIN_MODE_OFF;
	case 'r':
		return PIN_MODE_ERROR;
	default:
		return PIN_MODE_ON;
	}
}
/* True if v is a valid pin_session_state value. */
bool pin_mode_valid(const char *v);

/* A short name for one kind ("session advisory lock", "LISTEN", ...). */
const char *pin_kind_name(unsigned kind);
/* Writes the kinds in bits as "LISTEN, temporary table" into out; returns out. */
const char *pin_kinds_text(unsigned bits, char *out, size_t n);

/* What pin_text_wants_probe found (bits). */
enum pin_text {
	PIN_TEXT_PROBE = 1,      /* ask the server what the session holds at the next 'I' */
	PIN_TEXT_SET_CONFIG = 2, /* a set_config call that may set a session-level value */
};

/*
 * A first look at a statement text (a simple Query or a Parse) before it is sent: PIN_TEXT_PROBE
 * if running it may create or drop session state that its CommandComplete tag does not show: a
 * call of a session advisory lock function (pg_advisory_lock, pg_try_advisory_lock_shared,
 * pg_advisory_unlock_all, ...; the _xact ones end with their transaction), a statement that
 * starts with CREATE (CREATE TEMP TABLE ... AS answers SELECT n), or a set_config call whose
 * is_local argument is not the literal true (with PIN_TEXT_SET_CONFIG: its name may be a dotted
 * setting the probe only reads when told, pin_set_config_names). Cheap: a memchr for '_' and
 * a look at the first word.
 */
unsigned pin_text_wants_probe(const char *sql, size_t len);

/*
 * For each set_config call in sql that may set a session-level value (is_local not the literal
 * true), calls fn with the setting's name when it is a plain string literal ('app.user'), else
 * with NULL, 0 (a parameter or an expression: the name cannot be known).
 */
void pin_set_config_names(const char *sql, size_t len,
                          void (*fn)(void *arg, const char *name, size_t n), void *arg);

/* What a CommandComplete tag says about session state (bits of the answer). */
enum pin_tag {
	PIN_TAG_CREATES =
	        1,         /* may have created state: LISTEN, DECLARE CURSOR, PREPARE, CREATE .. */
	PIN_TAG_DROPS = 2, /* may have dropped state: UNLISTEN, CLOSE CURSOR, DEALLOCATE, DROP ..*/
};
/* tag is len bytes, the NUL excluded. SET and RESET answer both. */
unsigned pin_tag_effect_of(const char *tag, size_t len);
/* The same, with the common tags (SELECT n, INSERT, UPDATE, BEGIN, COMMIT ...) answered inline. */
static inline unsigned pin_tag_effect(const char *tag, size_t len)
{
	if (len < 3 || (tag[0] == 'S' && len != 3) || tag[0] == 'I' || tag[0] == 'B' ||
	    tag[0] == 'M' || tag[0] == 'F')
		return 0;
	return pin_tag_effect_of(tag, len);
}

/*
 * pin_session_state = error: the kind of state the first statement of sql that would create
 * one creates, or 0. Recognised: LISTEN; DECLARE ... WITH HOLD; PREPARE name ... AS (not PREPARE
 * TRANSACTION); CREATE [OR REPLACE] [GLOBAL | LOCAL] TEMP | TEMPORARY ...; SELECT ... INTO
 * TEMP; a call of pg_advisory_lock, pg_advisory_lock_shared, pg_try_advisory_lock or
 * pg_try_advisory_lock_shared; SET [SESSION] ROLE (not NONE) and SET SESSION AUTHORIZATION
 * (not DEFAULT).
 */
unsigned pin_refusal(const char *sql, size_t len);

/* What to use instead of a statement that creates kind, for pin_session_state = error. */
const char *pin_kind_alternative(unsigned kind);

struct pbuf;
/*
 * Appends the probe, a simple Query string (NUL-terminated): rows of (kind, name, value) text.
 * Kind 's': a setting the session changed (pg_settings.source 'session'; name,
 * current_setting(name)), and each of the n dotted settings in custom that has a value
 * (placeholders are not in pg_settings). Kind 'p', one row: name holds one digit per state kind,
 * in enum pin_kind order ("010000": LISTEN), value is empty.
 */
void pin_probe_sql(struct pbuf *b, char *const *custom, size_t n);

/* One probe row, read from a DataRow body (the bytes after the 5-byte header). */
struct pin_row {
	char kind;                /* 's' or 'p' */
	const char *name, *value; /* not NUL-terminated */
	uint32_t name_len, value_len;
	unsigned kinds; /* kind 'p': the state kinds the session holds */
};
/* False if the row is not a well-formed probe row. */
bool pin_read_row(const uint8_t *body, uint32_t len, struct pin_row *out);

#endif
