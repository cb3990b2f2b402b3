/*
 * Error classification, as a Prisma driver adapter does it: SQLSTATE (and the ErrorResponse's
 * fields) into the MappedError kinds of @prisma/adapter-pg 7, with the same extra facts derived
 * the same way (shared/prisma-adapter-facts.md, section a). Pure.
 */
#ifndef PGTIDE_ERRMAP_H
#define PGTIDE_ERRMAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pgtide/proto.h"

/* The kinds adapter-pg produces for database errors; ERRMAP_POSTGRES is "any other SQLSTATE". */
enum errmap_kind {
	ERRMAP_POSTGRES = 0,               /* kind "postgres" */
	ERRMAP_LENGTH_MISMATCH,            /* 22001 LengthMismatch */
	ERRMAP_VALUE_OUT_OF_RANGE,         /* 22003 ValueOutOfRange */
	ERRMAP_INVALID_INPUT_VALUE,        /* 22P02 InvalidInputValue */
	ERRMAP_UNIQUE_CONSTRAINT,          /* 23505 UniqueConstraintViolation */
	ERRMAP_NULL_CONSTRAINT,            /* 23502 NullConstraintViolation */
	ERRMAP_FOREIGN_KEY_CONSTRAINT,     /* 23503 ForeignKeyConstraintViolation */
	ERRMAP_RESTRICT,                   /* 23001 RestrictViolation */
	ERRMAP_DATABASE_DOES_NOT_EXIST,    /* 3D000 DatabaseDoesNotExist */
	ERRMAP_DATABASE_ACCESS_DENIED,     /* 28000 DatabaseAccessDenied */
	ERRMAP_AUTHENTICATION_FAILED,      /* 28P01 AuthenticationFailed */
	ERRMAP_TRANSACTION_WRITE_CONFLICT, /* 40001, 40P01 TransactionWriteConflict */
	ERRMAP_TABLE_DOES_NOT_EXIST,       /* 42P01 TableDoesNotExist */
	ERRMAP_COLUMN_NOT_FOUND,           /* 42703 ColumnNotFound */
	ERRMAP_DATABASE_ALREADY_EXISTS,    /* 42P04 DatabaseAlreadyExists */
	ERRMAP_TOO_MANY_CONNECTIONS,       /* 53300 TooManyConnections */
	ERRMAP_N_KINDS,
};

/* The MappedError kind name, as adapter-pg spells it ("UniqueConstraintViolation", "postgres"). */
const char *errmap_kind_name(enum errmap_kind k);

/* The kind for a SQLSTATE (NULL or unknown: ERRMAP_POSTGRES). */
enum errmap_kind errmap_kind_of(const char *sqlstate);

/*
 * Classifies an ErrorResponse and appends its MappedError as compact JSON to json, with the
 * extra fields derived exactly as adapter-pg's convertDriverError does, e.g.
 *   {"kind":"UniqueConstraintViolation","constraint":{"index":"user_email_key"},"table":"user"}
 *   {"kind":"TableDoesNotExist","table":"public.t"}
 *   {"kind":"postgres","code":"42601","severity":"ERROR","message":"...","detail":"..."}
 * Fields adapter-pg would leave undefined are left out. Strings are JSON-escaped (control
 * characters as \u00nn) and each byte that is not valid UTF-8 becomes U+FFFD, so the output is
 * always valid JSON. Returns the kind.
 */
enum errmap_kind errmap_classify(const struct proto_error *e, struct pbuf *json);

/*
 * Appends to out a copy of the ErrorResponse msg (type byte and length included, len bytes)
 * with one extra field `code` holding value, placed before the terminating NUL, and the length
 * fixed. Returns false (out unchanged) if msg is not a well-formed ErrorResponse or already
 * carries a field `code`.
 */
bool errmap_add_field(const uint8_t *msg, uint32_t len, char code, const char *value,
                      struct pbuf *out);

#endif
