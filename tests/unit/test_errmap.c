/*
 * Table-driven tests for errmap.c. The ErrorResponses carry the fields PostgreSQL 15 sends,
 * with texts taken from a real 15.18 server (psql \set VERBOSITY verbose) unless a row says
 * otherwise; the expected JSON is what adapter-pg 7's convertDriverError yields for them.
 */
#include "pgtide/errmap.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "unit.h"

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define MAX_FIELDS   16

/*
 * Builds an ErrorResponse from fields written as "<code><value>" ("C23505"), NULL-terminated,
 * in the order given (PostgreSQL's order: S V C M D H P W s t c d n F L R).
 */
static void build_error_msg(struct pbuf *b, const char *const *fields)
{
	size_t off = proto_msg_begin(b, 'E');

	for (size_t i = 0; i < MAX_FIELDS && fields[i]; i++) {
		pbuf_put_u8(b, (uint8_t)fields[i][0]);
		pbuf_put_str(b, fields[i] + 1);
	}
	pbuf_put_u8(b, 0);
	proto_msg_end(b, off);
}

/* Classifies e into a fresh NUL-terminated string in json; returns the kind. */
static enum errmap_kind classify_str(const struct proto_error *e, struct pbuf *json)
{
	pbuf_reset(json);
	enum errmap_kind k = errmap_classify(e, json);
	pbuf_put_u8(json, 0);
	return k;
}

/* ---- every row of the facts sheet's table, with real messages ---- */

static void test_classify_real_errors(void)
{
	const struct {
		const char *name;
		const char *fields[MAX_FIELDS];
		enum errmap_kind kind;
		const char *json;
	} cases[] = {
	        /* 23505 UniqueConstraintViolation */
	        {"23505 with n and t: index and table",
	         {"SERROR", "VERROR", "C23505",
	          "Mduplicate key value violates unique constraint \"users_email_key\"",
	          "DKey (email)=(a@b) already exists.", "spublic", "tusers", "nusers_email_key",
	          "Fnbtinsert.c", "L664", "R_bt_check_unique", NULL},
	         ERRMAP_UNIQUE_CONSTRAINT,
	         "{\"kind\":\"UniqueConstraintViolation\",\"constraint\":{\"index\":\"users_email_"
	         "key\"},\"table\":\"users\"}"},
	        {"23505 composite key with n and t",
	         {"SERROR", "VERROR", "C23505",
	          "Mduplicate key value violates unique constraint \"pair_a_b_key\"",
	          "DKey (a, b)=(1, 2) already exists.", "spublic", "tpair", "npair_a_b_key", NULL},
	         ERRMAP_UNIQUE_CONSTRAINT,
	         "{\"kind\":\"UniqueConstraintViolation\",\"constraint\":{\"index\":\"pair_a_b_"
	         "key\"},"
	         "\"table\":\"pair\"}"},
	        {"23505 without n or t: fields from DETAIL",
	         {"SERROR", "VERROR", "C23505",
	          "Mduplicate key value violates unique constraint \"users_email_key\"",
	          "DKey (email)=(a@b.c) already exists.", NULL},
	         ERRMAP_UNIQUE_CONSTRAINT,
	         "{\"kind\":\"UniqueConstraintViolation\",\"constraint\":{\"fields\":[\"email\"]}"
	         "}"},
	        {"23505 without n or t: composite fields from DETAIL",
	         {"SERROR", "VERROR", "C23505",
	          "Mduplicate key value violates unique constraint \"pair_a_b_key\"",
	          "DKey (a, b)=(1, 2) already exists.", NULL},
	         ERRMAP_UNIQUE_CONSTRAINT,
	         "{\"kind\":\"UniqueConstraintViolation\",\"constraint\":{\"fields\":[\"a\",\"b\"]}"
	         "}"},
	        {"23505 n without t: table from the constraint name",
	         {"SERROR", "VERROR", "C23505",
	          "Mduplicate key value violates unique constraint \"users_email_key\"",
	          "DKey (email)=(a@b.c) already exists.", "nusers_email_key", NULL},
	         ERRMAP_UNIQUE_CONSTRAINT,
	         "{\"kind\":\"UniqueConstraintViolation\",\"constraint\":{\"index\":\"users_email_"
	         "key\"},\"table\":\"users\"}"},
	        {"23505 n without t: composite suffix removed",
	         {"SERROR", "VERROR", "C23505",
	          "Mduplicate key value violates unique constraint \"pair_a_b_key\"",
	          "DKey (a, b)=(1, 2) already exists.", "npair_a_b_key", NULL},
	         ERRMAP_UNIQUE_CONSTRAINT,
	         "{\"kind\":\"UniqueConstraintViolation\",\"constraint\":{\"index\":\"pair_a_b_"
	         "key\"},"
	         "\"table\":\"pair\"}"},
	        {"23505 n without t: a name without the default suffix stays whole",
	         {"SERROR", "VERROR", "C23505",
	          "Mduplicate key value violates unique constraint \"users_email_uniq\"",
	          "DKey (email)=(a@b.c) already exists.", "nusers_email_uniq", NULL},
	         ERRMAP_UNIQUE_CONSTRAINT,
	         "{\"kind\":\"UniqueConstraintViolation\",\"constraint\":{\"index\":\"users_email_"
	         "uniq\"},\"table\":\"users_email_uniq\"}"},
	        {"23505 n without t or DETAIL: no table",
	         {"SERROR", "VERROR", "C23505",
	          "Mduplicate key value violates unique constraint \"users_email_key\"",
	          "nusers_email_key", NULL},
	         ERRMAP_UNIQUE_CONSTRAINT,
	         "{\"kind\":\"UniqueConstraintViolation\",\"constraint\":{\"index\":\"users_email_"
	         "key\"}}"},
	        {"23505 bare: no constraint, no table",
	         {"SERROR", "VERROR", "C23505", "Mduplicate key value violates unique constraint",
	          NULL},
	         ERRMAP_UNIQUE_CONSTRAINT,
	         "{\"kind\":\"UniqueConstraintViolation\"}"},
	        {"23505 expression index: [^)]+ stops at the first )",
	         {"SERROR", "VERROR", "C23505",
	          "Mduplicate key value violates unique constraint \"users_lower_idx\"",
	          "DKey (lower(email::text))=(a@b.c) already exists.", NULL},
	         ERRMAP_UNIQUE_CONSTRAINT,
	         "{\"kind\":\"UniqueConstraintViolation\",\"constraint\":{\"fields\":[\"lower("
	         "email::"
	         "text\"]}}"},
	        {"23505 DETAIL with an empty Key () first",
	         {"SERROR", "VERROR", "C23505", "Mx", "DKey ()=() then Key (k)=(1)", NULL},
	         ERRMAP_UNIQUE_CONSTRAINT,
	         "{\"kind\":\"UniqueConstraintViolation\",\"constraint\":{\"fields\":[\"k\"]}}"},
	        /* 23502 NullConstraintViolation */
	        {"23502 real: Failing row DETAIL gives no constraint, c ignored",
	         {"SERROR", "VERROR", "C23502",
	          "Mnull value in column \"name\" of relation \"users\" violates not-null "
	          "constraint",
	          "DFailing row contains (6, w, null, 1).", "spublic", "tusers", "cname",
	          "FexecMain.c", "L2023", "RExecConstraints", NULL},
	         ERRMAP_NULL_CONSTRAINT,
	         "{\"kind\":\"NullConstraintViolation\"}"},
	        {"23502 with a Key DETAIL (not from PostgreSQL)",
	         {"SERROR", "VERROR", "C23502", "Mnull value", "DKey (a, b)=(1, null)", NULL},
	         ERRMAP_NULL_CONSTRAINT,
	         "{\"kind\":\"NullConstraintViolation\",\"constraint\":{\"fields\":[\"a\",\"b\"]}"
	         "}"},
	        /* 23503 ForeignKeyConstraintViolation */
	        {"23503 insert: index from n",
	         {"SERROR", "VERROR", "C23503",
	          "Minsert or update on table \"orders\" violates foreign key constraint "
	          "\"orders_user_id_fkey\"",
	          "DKey (user_id)=(42) is not present in table \"users\".", "spublic", "torders",
	          "norders_user_id_fkey", "Fri_triggers.c", "L2596", "Rri_ReportViolation", NULL},
	         ERRMAP_FOREIGN_KEY_CONSTRAINT,
	         "{\"kind\":\"ForeignKeyConstraintViolation\",\"constraint\":{\"index\":\"orders_"
	         "user_"
	         "id_fkey\"}}"},
	        {"23503 delete (ON DELETE RESTRICT is 23503 too): index from n",
	         {"SERROR", "VERROR", "C23503",
	          "Mupdate or delete on table \"users\" violates foreign key constraint "
	          "\"orders_user_id_fkey\" on table \"orders\"",
	          "DKey (id)=(1) is still referenced from table \"orders\".", "spublic", "torders",
	          "norders_user_id_fkey", NULL},
	         ERRMAP_FOREIGN_KEY_CONSTRAINT,
	         "{\"kind\":\"ForeignKeyConstraintViolation\",\"constraint\":{\"index\":\"orders_"
	         "user_"
	         "id_fkey\"}}"},
	        {"23503 with c (RAISE ... USING COLUMN): fields win over n",
	         {"SERROR", "VERROR", "C23503", "Mfk via column",
	          "WPL/pgSQL function inline_code_block line 1 at RAISE", "cuser_id",
	          "norders_user_id_fkey", NULL},
	         ERRMAP_FOREIGN_KEY_CONSTRAINT,
	         "{\"kind\":\"ForeignKeyConstraintViolation\",\"constraint\":{\"fields\":[\"user_"
	         "id\"]"
	         "}}"},
	        {"23503 without c or n: no constraint",
	         {"SERROR", "VERROR", "C23503", "Mfk", NULL},
	         ERRMAP_FOREIGN_KEY_CONSTRAINT,
	         "{\"kind\":\"ForeignKeyConstraintViolation\"}"},
	        /* 23001 RestrictViolation (core never raises it; this is RAISE USING ERRCODE) */
	        {"23001 index from n",
	         {"SERROR", "VERROR", "C23001",
	          "Mupdate or delete on table \"users\" violates RESTRICT setting of foreign key "
	          "constraint \"orders_user_id_fkey\" on table \"orders\"",
	          "DKey (id)=(1) is referenced from table \"orders\".",
	          "WPL/pgSQL function inline_code_block line 1 at RAISE", "spublic", "torders",
	          "norders_user_id_fkey", NULL},
	         ERRMAP_RESTRICT,
	         "{\"kind\":\"RestrictViolation\",\"constraint\":{\"index\":\"orders_user_id_"
	         "fkey\"}}"},
	        {"23001 fields from c",
	         {"SERROR", "VERROR", "C23001", "Mrestrict", "cuser_id", "norders_user_id_fkey",
	          NULL},
	         ERRMAP_RESTRICT,
	         "{\"kind\":\"RestrictViolation\",\"constraint\":{\"fields\":[\"user_id\"]}}"},
	        /* 22001 / 22003 / 22P02 */
	        {"22001 real: no c, no column",
	         {"SERROR", "VERROR", "C22001", "Mvalue too long for type character varying(5)",
	          "Fvarchar.c", "L632", "Rvarchar", NULL},
	         ERRMAP_LENGTH_MISMATCH,
	         "{\"kind\":\"LengthMismatch\"}"},
	        {"22001 with c (not from PostgreSQL)",
	         {"SERROR", "VERROR", "C22001", "Mvalue too long for type character varying(5)",
	          "cemail", NULL},
	         ERRMAP_LENGTH_MISMATCH,
	         "{\"kind\":\"LengthMismatch\",\"column\":\"email\"}"},
	        {"22003 integer out of range",
	         {"SERROR", "VERROR", "C22003", "Minteger out of range", "Fint8.c", "L1270",
	          "Rint84", NULL},
	         ERRMAP_VALUE_OUT_OF_RANGE,
	         "{\"kind\":\"ValueOutOfRange\",\"cause\":\"integer out of range\"}"},
	        {"22003 numeric field overflow: DETAIL not used",
	         {"SERROR", "VERROR", "C22003", "Mnumeric field overflow",
	          "DA field with precision 5, scale 2 must round to an absolute value less than "
	          "10^3.",
	          NULL},
	         ERRMAP_VALUE_OUT_OF_RANGE,
	         "{\"kind\":\"ValueOutOfRange\",\"cause\":\"numeric field overflow\"}"},
	        {"22P02 invalid input syntax",
	         {"SERROR", "VERROR", "C22P02", "Minvalid input syntax for type integer: \"abc\"",
	          "P8", "Fnumutils.c", "L232", "Rpg_strtoint32", NULL},
	         ERRMAP_INVALID_INPUT_VALUE,
	         "{\"kind\":\"InvalidInputValue\",\"message\":\"invalid input syntax for type "
	         "integer: "
	         "\\\"abc\\\"\"}"},
	        /* 3D000 / 42P04 */
	        {"3D000 database does not exist",
	         {"SFATAL", "VFATAL", "C3D000", "Mdatabase \"errmap_nope\" does not exist",
	          "Fpostinit.c", "L941", "RInitPostgres", NULL},
	         ERRMAP_DATABASE_DOES_NOT_EXIST,
	         "{\"kind\":\"DatabaseDoesNotExist\",\"db\":\"errmap_nope\"}"},
	        {"3D000 a name with a space: the 2nd word is cut at the space",
	         {"SFATAL", "VFATAL", "C3D000", "Mdatabase \"my db\" does not exist", NULL},
	         ERRMAP_DATABASE_DOES_NOT_EXIST,
	         "{\"kind\":\"DatabaseDoesNotExist\",\"db\":\"my\"}"},
	        {"3D000 unexpected shape: no db",
	         {"SFATAL", "VFATAL", "C3D000", "Mno such database", NULL},
	         ERRMAP_DATABASE_DOES_NOT_EXIST,
	         "{\"kind\":\"DatabaseDoesNotExist\"}"},
	        {"42P04 database already exists",
	         {"SERROR", "VERROR", "C42P04", "Mdatabase \"errmap_scratch\" already exists",
	          "Fdbcommands.c", "L1242", "Rcreatedb", NULL},
	         ERRMAP_DATABASE_ALREADY_EXISTS,
	         "{\"kind\":\"DatabaseAlreadyExists\",\"db\":\"errmap_scratch\"}"},
	        /* 28000 DatabaseAccessDenied */
	        {"28000 no pg_hba.conf entry",
	         {"SFATAL", "VFATAL", "C28000",
	          "Mno pg_hba.conf entry for host \"127.0.0.1\", user \"u\", database \"d\", no "
	          "encryption",
	          NULL},
	         ERRMAP_DATABASE_ACCESS_DENIED,
	         "{\"kind\":\"DatabaseAccessDenied\",\"db\":\"d\"}"},
	        {"28000 no pg_hba.conf entry over SSL",
	         {"SFATAL", "VFATAL", "C28000",
	          "Mno pg_hba.conf entry for host \"10.0.0.1\", user \"app\", database \"shop\", "
	          "SSL "
	          "encryption",
	          NULL},
	         ERRMAP_DATABASE_ACCESS_DENIED,
	         "{\"kind\":\"DatabaseAccessDenied\",\"db\":\"shop\"}"},
	        {"28000 pg_hba.conf rejects connection",
	         {"SFATAL", "VFATAL", "C28000",
	          "Mpg_hba.conf rejects connection for host \"[local]\", user \"u\", database "
	          "\"d\", no encryption",
	          NULL},
	         ERRMAP_DATABASE_ACCESS_DENIED,
	         "{\"kind\":\"DatabaseAccessDenied\",\"db\":\"d\"}"},
	        {"28000 role not permitted to log in: no db",
	         {"SFATAL", "VFATAL", "C28000", "Mrole \"errmap_nol\" is not permitted to log in",
	          NULL},
	         ERRMAP_DATABASE_ACCESS_DENIED,
	         "{\"kind\":\"DatabaseAccessDenied\"}"},
	        {"28000 role does not exist: no db",
	         {"SFATAL", "VFATAL", "C28000", "Mrole \"errmap_ghost\" does not exist", NULL},
	         ERRMAP_DATABASE_ACCESS_DENIED,
	         "{\"kind\":\"DatabaseAccessDenied\"}"},
	        /* 28P01 AuthenticationFailed */
	        {"28P01 password authentication failed",
	         {"SFATAL", "VFATAL", "C28P01", "Mpassword authentication failed for user \"u\"",
	          NULL},
	         ERRMAP_AUTHENTICATION_FAILED,
	         "{\"kind\":\"AuthenticationFailed\",\"user\":\"u\"}"},
	        {"28P01 a user name with a space: last word is user\" so the user is empty",
	         {"SFATAL", "VFATAL", "C28P01",
	          "Mpassword authentication failed for user \"app user\"", NULL},
	         ERRMAP_AUTHENTICATION_FAILED,
	         "{\"kind\":\"AuthenticationFailed\",\"user\":\"\"}"},
	        {"28P01 unexpected shape: no user",
	         {"SFATAL", "VFATAL", "C28P01", "Mauthentication failed", NULL},
	         ERRMAP_AUTHENTICATION_FAILED,
	         "{\"kind\":\"AuthenticationFailed\"}"},
	        /* 40001 / 40P01 TransactionWriteConflict */
	        {"40001 concurrent update",
	         {"SERROR", "VERROR", "C40001",
	          "Mcould not serialize access due to concurrent update", "FnodeModifyTable.c",
	          "L2399", "RExecUpdate", NULL},
	         ERRMAP_TRANSACTION_WRITE_CONFLICT,
	         "{\"kind\":\"TransactionWriteConflict\"}"},
	        {"40001 serializable pivot",
	         {"SERROR", "VERROR", "C40001",
	          "Mcould not serialize access due to read/write dependencies among transactions",
	          "DReason code: Canceled on identification as a pivot, during commit attempt.",
	          "HThe transaction might succeed if retried.", NULL},
	         ERRMAP_TRANSACTION_WRITE_CONFLICT,
	         "{\"kind\":\"TransactionWriteConflict\"}"},
	        {"40P01 deadlock detected",
	         {"SERROR", "VERROR", "C40P01", "Mdeadlock detected",
	          "DProcess 16682 waits for ShareLock on transaction 7831; blocked by process "
	          "16684.\nProcess 16684 waits for ShareLock on transaction 7830; blocked by "
	          "process 16682.",
	          "HSee server log for query details.",
	          "Wwhile updating tuple (0,2) in relation \"ser\"", "Fdeadlock.c", "L1147",
	          "RDeadLockReport", NULL},
	         ERRMAP_TRANSACTION_WRITE_CONFLICT,
	         "{\"kind\":\"TransactionWriteConflict\"}"},
	        /* 42P01 TableDoesNotExist */
	        {"42P01 schema-qualified",
	         {"SERROR", "VERROR", "C42P01", "Mrelation \"public.t\" does not exist", "P15",
	          "Fparse_relation.c", "L1371", "RparserOpenTable", NULL},
	         ERRMAP_TABLE_DOES_NOT_EXIST,
	         "{\"kind\":\"TableDoesNotExist\",\"table\":\"public.t\"}"},
	        {"42P01 bare name",
	         {"SERROR", "VERROR", "C42P01", "Mrelation \"t\" does not exist", "P15", NULL},
	         ERRMAP_TABLE_DOES_NOT_EXIST,
	         "{\"kind\":\"TableDoesNotExist\",\"table\":\"t\"}"},
	        /* 42703 ColumnNotFound */
	        {"42703 qualified reference: PostgreSQL does not quote it",
	         {"SERROR", "VERROR", "C42703", "Mcolumn drift_col.phantom does not exist", "P8",
	          "Fparse_relation.c", "L3665", "RerrorMissingColumn", NULL},
	         ERRMAP_COLUMN_NOT_FOUND,
	         "{\"kind\":\"ColumnNotFound\",\"column\":\"drift_col.phantom\"}"},
	        {"42703 bare reference: quotes removed",
	         {"SERROR", "VERROR", "C42703", "Mcolumn \"phantom\" does not exist", "P8", NULL},
	         ERRMAP_COLUMN_NOT_FOUND,
	         "{\"kind\":\"ColumnNotFound\",\"column\":\"phantom\"}"},
	        {"42703 real text for \"we\"\"ird\" (PostgreSQL does not double the quote)",
	         {"SERROR", "VERROR", "C42703", "Mcolumn \"we\"ird\" does not exist", NULL},
	         ERRMAP_COLUMN_NOT_FOUND,
	         "{\"kind\":\"ColumnNotFound\",\"column\":\"weird\"}"},
	        {"42703 doubled quote inside a quoted identifier",
	         {"SERROR", "VERROR", "C42703", "Mcolumn \"a\"\"b\".\"c\" does not exist", NULL},
	         ERRMAP_COLUMN_NOT_FOUND,
	         "{\"kind\":\"ColumnNotFound\",\"column\":\"a\\\"b.c\"}"},
	        {"42703 of relation: the regex takes it all",
	         {"SERROR", "VERROR", "C42703",
	          "Mcolumn \"nope\" of relation \"drift_col\" does not exist", "P24",
	          "Fparse_target.c", "L1075", "RcheckInsertTargets", NULL},
	         ERRMAP_COLUMN_NOT_FOUND,
	         "{\"kind\":\"ColumnNotFound\",\"column\":\"nope of relation drift_col\"}"},
	        {"42703 PL/pgSQL record field: no match, no column",
	         {"SERROR", "VERROR", "C42703", "Mrecord \"new\" has no field \"foo\"", NULL},
	         ERRMAP_COLUMN_NOT_FOUND,
	         "{\"kind\":\"ColumnNotFound\"}"},
	        {"42703 a newline defeats the regex's .",
	         {"SERROR", "VERROR", "C42703", "Mcolumn \"a\nb\" does not exist", NULL},
	         ERRMAP_COLUMN_NOT_FOUND,
	         "{\"kind\":\"ColumnNotFound\"}"},
	        {"42703 U+2028 defeats the regex's .",
	         {"SERROR", "VERROR", "C42703", "Mcolumn \"a\xE2\x80\xA8\" does not exist", NULL},
	         ERRMAP_COLUMN_NOT_FOUND,
	         "{\"kind\":\"ColumnNotFound\"}"},
	        {"42703 (.+) needs one character",
	         {"SERROR", "VERROR", "C42703", "Mcolumn  does not exist", NULL},
	         ERRMAP_COLUMN_NOT_FOUND,
	         "{\"kind\":\"ColumnNotFound\"}"},
	        {"42703 one space is enough for (.+)",
	         {"SERROR", "VERROR", "C42703", "Mcolumn   does not exist", NULL},
	         ERRMAP_COLUMN_NOT_FOUND,
	         "{\"kind\":\"ColumnNotFound\",\"column\":\" \"}"},
	        /* 53300 TooManyConnections */
	        {"53300 too many clients",
	         {"SFATAL", "VFATAL", "C53300", "Msorry, too many clients already", NULL},
	         ERRMAP_TOO_MANY_CONNECTIONS,
	         "{\"kind\":\"TooManyConnections\",\"cause\":\"sorry, too many clients already\"}"},
	        {"53300 role connection limit",
	         {"SFATAL", "VFATAL", "C53300", "Mtoo many connections for role \"errmap_lim\"",
	          NULL},
	         ERRMAP_TOO_MANY_CONNECTIONS,
	         "{\"kind\":\"TooManyConnections\",\"cause\":\"too many connections for role "
	         "\\\"errmap_lim\\\"\"}"},
	        /* any other SQLSTATE: postgres */
	        {"22012 division by zero: no optional fields",
	         {"SERROR", "VERROR", "C22012", "Mdivision by zero", "Fint.c", "L869", "Rint4div",
	          NULL},
	         ERRMAP_POSTGRES,
	         "{\"kind\":\"postgres\",\"code\":\"22012\",\"severity\":\"ERROR\",\"message\":"
	         "\"division by zero\"}"},
	        {"23514 check violation: detail, t and n not copied",
	         {"SERROR", "VERROR", "C23514",
	          "Mnew row for relation \"t\" violates check constraint \"t_n_check\"",
	          "DFailing row contains (-1).", "spublic", "tt", "nt_n_check", NULL},
	         ERRMAP_POSTGRES,
	         "{\"kind\":\"postgres\",\"code\":\"23514\",\"severity\":\"ERROR\",\"message\":"
	         "\"new "
	         "row for relation \\\"t\\\" violates check constraint \\\"t_n_check\\\"\","
	         "\"detail\":\"Failing row contains (-1).\"}"},
	        {"P0001 RAISE with every field",
	         {"SERROR", "VERROR", "CP0001", "Mboom", "Dsome detail", "Htry again",
	          "WPL/pgSQL function inline_code_block line 1 at RAISE", "spublic", "tt", "ccol",
	          "dint4", "nt_c", NULL},
	         ERRMAP_POSTGRES,
	         "{\"kind\":\"postgres\",\"code\":\"P0001\",\"severity\":\"ERROR\",\"message\":"
	         "\"boom\",\"detail\":\"some detail\",\"column\":\"col\",\"hint\":\"try again\"}"},
	        {"42601 localized S is preferred to V",
	         {"SFEHLER", "VERROR", "C42601", "MSyntaxfehler bei »x«", "P1", NULL},
	         ERRMAP_POSTGRES,
	         "{\"kind\":\"postgres\",\"code\":\"42601\",\"severity\":\"FEHLER\",\"message\":"
	         "\"Syntaxfehler bei »x«\"}"},
	        {"without S, severity falls back to V",
	         {"VERROR", "C42601", "Msyntax error at or near \"x\"", NULL},
	         ERRMAP_POSTGRES,
	         "{\"kind\":\"postgres\",\"code\":\"42601\",\"severity\":\"ERROR\",\"message\":"
	         "\"syntax error at or near \\\"x\\\"\"}"},
	        {"08P01 as PgBouncer sends it",
	         {"SFATAL", "VFATAL", "C08P01", "MSASL authentication failed", NULL},
	         ERRMAP_POSTGRES,
	         "{\"kind\":\"postgres\",\"code\":\"08P01\",\"severity\":\"FATAL\",\"message\":"
	         "\"SASL authentication failed\"}"},
	        {"no C at all: postgres without code",
	         {"SERROR", "Mmystery", NULL},
	         ERRMAP_POSTGRES,
	         "{\"kind\":\"postgres\",\"severity\":\"ERROR\",\"message\":\"mystery\"}"},
	        {"lowercase SQLSTATE is a different code",
	         {"SERROR", "VERROR", "C22p02", "Mx", NULL},
	         ERRMAP_POSTGRES,
	         "{\"kind\":\"postgres\",\"code\":\"22p02\",\"severity\":\"ERROR\",\"message\":"
	         "\"x\"}"},
	};
	struct pbuf msg = {0}, json = {0};

	for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
		struct proto_error e;

		pbuf_reset(&msg);
		build_error_msg(&msg, cases[i].fields);
		CHECK(!msg.oom, "%s: built", cases[i].name);
		bool ok = proto_parse_error(msg.data + PROTO_HEADER_LEN, msg.len - PROTO_HEADER_LEN,
		                            &e);
		CHECK(ok, "%s: parses", cases[i].name);
		if (!ok)
			continue;
		CHECK(errmap_kind_of(e.sqlstate) == cases[i].kind, "%s: kind_of", cases[i].name);
		enum errmap_kind k = classify_str(&e, &json);
		CHECK(k == cases[i].kind, "%s: returned kind %d", cases[i].name, (int)k);
		CHECK_STR((const char *)json.data, cases[i].json, "%s:\n  got  %s\n  want %s",
		          cases[i].name, (const char *)json.data, cases[i].json);
	}
	pbuf_free(&msg);
	pbuf_free(&json);
}

/* ---- kind table ---- */

static void test_kind_names(void)
{
	const struct {
		const char *sqlstate;
		enum errmap_kind kind;
		const char *name;
	} cases[] = {
	        {"22001", ERRMAP_LENGTH_MISMATCH, "LengthMismatch"},
	        {"22003", ERRMAP_VALUE_OUT_OF_RANGE, "ValueOutOfRange"},
	        {"22P02", ERRMAP_INVALID_INPUT_VALUE, "InvalidInputValue"},
	        {"23505", ERRMAP_UNIQUE_CONSTRAINT, "UniqueConstraintViolation"},
	        {"23502", ERRMAP_NULL_CONSTRAINT, "NullConstraintViolation"},
	        {"23503", ERRMAP_FOREIGN_KEY_CONSTRAINT, "ForeignKeyConstraintViolation"},
	        {"23001", ERRMAP_RESTRICT, "RestrictViolation"},
	        {"3D000", ERRMAP_DATABASE_DOES_NOT_EXIST, "DatabaseDoesNotExist"},
	        {"28000", ERRMAP_DATABASE_ACCESS_DENIED, "DatabaseAccessDenied"},
	        {"28P01", ERRMAP_AUTHENTICATION_FAILED, "AuthenticationFailed"},
	        {"40001", ERRMAP_TRANSACTION_WRITE_CONFLICT, "TransactionWriteConflict"},
	        {"40P01", ERRMAP_TRANSACTION_WRITE_CONFLICT, "TransactionWriteConflict"},
	        {"42P01", ERRMAP_TABLE_DOES_NOT_EXIST, "TableDoesNotExist"},
	        {"42703", ERRMAP_COLUMN_NOT_FOUND, "ColumnNotFound"},
	        {"42P04", ERRMAP_DATABASE_ALREADY_EXISTS, "DatabaseAlreadyExists"},
	        {"53300", ERRMAP_TOO_MANY_CONNECTIONS, "TooManyConnections"},
	        {"42601", ERRMAP_POSTGRES, "postgres"},
	        {"23514", ERRMAP_POSTGRES, "postgres"},
	        {"2350", ERRMAP_POSTGRES, "postgres"},
	        {"235055", ERRMAP_POSTGRES, "postgres"},
	        {"", ERRMAP_POSTGRES, "postgres"},
	        {NULL, ERRMAP_POSTGRES, "postgres"},
	};

	for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
		const char *s = cases[i].sqlstate ? cases[i].sqlstate : "(null)";
		enum errmap_kind k = errmap_kind_of(cases[i].sqlstate);
		CHECK(k == cases[i].kind, "kind_of(%s) = %d", s, (int)k);
		CHECK_STR(errmap_kind_name(k), cases[i].name, "kind_name for %s", s);
	}
	CHECK_STR(errmap_kind_name(ERRMAP_N_KINDS), "postgres", "out-of-range kind");
	CHECK_STR(errmap_kind_name((enum errmap_kind) - 1), "postgres", "negative kind");
	for (int k = 0; k < ERRMAP_N_KINDS; k++)
		CHECK(errmap_kind_name((enum errmap_kind)k) != NULL, "kind %d has a name", k);
}

/* ---- JSON escaping and UTF-8 repair ---- */

static void test_json_escaping(void)
{
	const struct {
		const char *name;
		const char *sqlstate;
		const char *message;
		const char *json;
	} cases[] = {
	        {"quotes and backslash", "XX000", "a \"b\" \\c",
	         "{\"kind\":\"postgres\",\"code\":\"XX000\",\"message\":\"a \\\"b\\\" \\\\c\"}"},
	        {"newline, return, tab", "XX000", "l1\nl2\r\tx",
	         "{\"kind\":\"postgres\",\"code\":\"XX000\",\"message\":\"l1\\nl2\\r\\tx\"}"},
	        {"backspace and form feed", "XX000", "\b\f",
	         "{\"kind\":\"postgres\",\"code\":\"XX000\",\"message\":\"\\b\\f\"}"},
	        {"other control characters as \\u00XX; DEL and / left alone", "XX000",
	         "\x01\x1f\x0b\x7f/",
	         "{\"kind\":\"postgres\",\"code\":\"XX000\",\"message\":"
	         "\"\\u0001\\u001f\\u000b\x7f/"
	         "\"}"},
	        {"valid UTF-8 passes through", "XX000", "caf\xC3\xA9 \xE2\x9C\x93 \xF0\x9F\x98\x80",
	         "{\"kind\":\"postgres\",\"code\":\"XX000\",\"message\":\"caf\xC3\xA9 \xE2\x9C\x93 "
	         "\xF0\x9F\x98\x80\"}"},
	        {"boundary code points pass", "XX000", "\xC2\x80\xE0\xA0\x80\xF4\x8F\xBF\xBF",
	         "{\"kind\":\"postgres\",\"code\":\"XX000\",\"message\":"
	         "\"\xC2\x80\xE0\xA0\x80\xF4\x8F"
	         "\xBF\xBF\"}"},
	        {"lone 0xFF", "XX000", "a\xFFz",
	         "{\"kind\":\"postgres\",\"code\":\"XX000\",\"message\":\"a\xEF\xBF\xBDz\"}"},
	        {"lone continuation byte", "XX000", "\x80",
	         "{\"kind\":\"postgres\",\"code\":\"XX000\",\"message\":\"\xEF\xBF\xBD\"}"},
	        {"truncated sequence at the end: one U+FFFD per byte", "XX000", "x\xE2\x82",
	         "{\"kind\":\"postgres\",\"code\":\"XX000\",\"message\":\"x\xEF\xBF\xBD\xEF\xBF\xBD"
	         "\"}"},
	        {"truncated sequence before ASCII", "XX000", "\xE2\x82z",
	         "{\"kind\":\"postgres\",\"code\":\"XX000\",\"message\":\"\xEF\xBF\xBD\xEF\xBF\xBDz"
	         "\"}"},
	        {"overlong /", "XX000", "\xC0\xAF",
	         "{\"kind\":\"postgres\",\"code\":\"XX000\",\"message\":"
	         "\"\xEF\xBF\xBD\xEF\xBF\xBD\"}"},
	        {"overlong 3-byte", "XX000", "\xE0\x80\x80",
	         "{\"kind\":\"postgres\",\"code\":\"XX000\",\"message\":"
	         "\"\xEF\xBF\xBD\xEF\xBF\xBD\xEF"
	         "\xBF\xBD\"}"},
	        {"surrogate U+D800", "XX000", "\xED\xA0\x80",
	         "{\"kind\":\"postgres\",\"code\":\"XX000\",\"message\":"
	         "\"\xEF\xBF\xBD\xEF\xBF\xBD\xEF"
	         "\xBF\xBD\"}"},
	        {"above U+10FFFF", "XX000", "\xF4\x90\x80\x80",
	         "{\"kind\":\"postgres\",\"code\":\"XX000\",\"message\":"
	         "\"\xEF\xBF\xBD\xEF\xBF\xBD\xEF"
	         "\xBF\xBD\xEF\xBF\xBD\"}"},
	        {"0xF5 lead byte", "XX000", "\xF5\x80",
	         "{\"kind\":\"postgres\",\"code\":\"XX000\",\"message\":"
	         "\"\xEF\xBF\xBD\xEF\xBF\xBD\"}"},
	        {"escaped inside a derived field", "42P01",
	         "relation \"a\\b\x01\xFF\" does not exist",
	         "{\"kind\":\"TableDoesNotExist\",\"table\":\"a\\\\b\\u0001\xEF\xBF\xBD\"}"},
	        {"escaped inside cause", "53300", "x\ty",
	         "{\"kind\":\"TooManyConnections\",\"cause\":\"x\\ty\"}"},
	        {"empty message", "XX000", "",
	         "{\"kind\":\"postgres\",\"code\":\"XX000\",\"message\":\"\"}"},
	};
	struct pbuf json = {0};

	for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
		struct proto_error e = {.sqlstate = cases[i].sqlstate, .message = cases[i].message};
		classify_str(&e, &json);
		CHECK_STR((const char *)json.data, cases[i].json, "%s:\n  got  %s\n  want %s",
		          cases[i].name, (const char *)json.data, cases[i].json);
	}
	pbuf_free(&json);
}

/* errmap_classify appends; it neither resets nor NUL-terminates the buffer. */
static void test_classify_appends(void)
{
	struct pbuf json = {0};
	struct proto_error e = {.sqlstate = "40P01", .message = "deadlock detected"};
	static const char want[] = "[{\"kind\":\"TransactionWriteConflict\"}";

	pbuf_put_u8(&json, '[');
	errmap_classify(&e, &json);
	CHECK(json.len == sizeof(want) - 1 && memcmp(json.data, want, json.len) == 0,
	      "classify appends after existing bytes (len %zu)", json.len);
	pbuf_free(&json);
}

/* An error pgtide builds itself (proto_build_error) classifies like a server's. */
static void test_classify_own_error(void)
{
	struct pbuf msg = {0}, json = {0};
	struct proto_error e;

	proto_build_error(&msg, "FATAL", "53300", "no more connections allowed (max_client_conn)",
	                  NULL, NULL);
	CHECK(proto_parse_error(msg.data + PROTO_HEADER_LEN, msg.len - PROTO_HEADER_LEN, &e),
	      "own error parses");
	CHECK(classify_str(&e, &json) == ERRMAP_TOO_MANY_CONNECTIONS, "own 53300 kind");
	CHECK_STR((const char *)json.data,
	          "{\"kind\":\"TooManyConnections\",\"cause\":\"no more connections allowed "
	          "(max_client_conn)\"}",
	          "own 53300 json: %s", (const char *)json.data);
	pbuf_free(&msg);
	pbuf_free(&json);
}

/* ---- errmap_add_field ---- */

static void test_add_field_roundtrip(void)
{
	const struct {
		const char *name;
		char code;
		const char *value;
	} cases[] = {
	        {"constraint name", 'n', "users_email_key"},
	        {"table name", 't', "users"},
	        {"column name", 'c', "email"},
	        {"empty value", 'W', ""},
	        {"UTF-8 value", 's', "sch\xC3\xA9ma"},
	};
	struct pbuf msg = {0}, out = {0};
	struct proto_error e;

	proto_build_error(&msg, "ERROR", "23505",
	                  "duplicate key value violates unique constraint \"users_email_key\"",
	                  "Key (email)=(a@b.c) already exists.", NULL);
	for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
		pbuf_reset(&out);
		pbuf_put(&out, "xy", 2); /* appended after what is there */
		bool ok = errmap_add_field(msg.data, (uint32_t)msg.len, cases[i].code,
		                           cases[i].value, &out);
		CHECK(ok, "%s: added", cases[i].name);
		if (!ok)
			continue;
		const uint8_t *m = out.data + 2;
		size_t mlen = out.len - 2;
		CHECK(memcmp(out.data, "xy", 2) == 0, "%s: prefix kept", cases[i].name);
		CHECK(mlen == msg.len + 2 + strlen(cases[i].value), "%s: size %zu", cases[i].name,
		      mlen);
		CHECK(m[0] == 'E' && proto_get_u32(m + 1) == mlen - 1, "%s: header", cases[i].name);
		CHECK(m[mlen - 1] == 0 && m[mlen - 2] == 0, "%s: value NUL then terminator",
		      cases[i].name);
		CHECK(memcmp(m + PROTO_HEADER_LEN, msg.data + PROTO_HEADER_LEN,
		             msg.len - PROTO_HEADER_LEN - 1) == 0,
		      "%s: original fields first, unchanged", cases[i].name);
		bool parsed = proto_parse_error(m + PROTO_HEADER_LEN, mlen - PROTO_HEADER_LEN, &e);
		CHECK(parsed, "%s: result parses", cases[i].name);
		if (!parsed)
			continue;
		CHECK_STR(e.sqlstate, "23505", "%s: C kept", cases[i].name);
		CHECK_STR(e.detail, "Key (email)=(a@b.c) already exists.", "%s: D kept",
		          cases[i].name);
		const char *got = cases[i].code == 'n'   ? e.constraint
		                  : cases[i].code == 't' ? e.table
		                  : cases[i].code == 'c' ? e.column
		                  : cases[i].code == 's' ? e.schema
		                                         : (const char *)m + mlen - 2;
		CHECK_STR(got, cases[i].value, "%s: new field reads back", cases[i].name);
	}

	/* Chained: add 't' and then 'n', and the classification gains both. */
	struct pbuf twice = {0}, json = {0};
	pbuf_reset(&out);
	CHECK(errmap_add_field(msg.data, (uint32_t)msg.len, 't', "users", &out), "chain: add t");
	CHECK(errmap_add_field(out.data, (uint32_t)out.len, 'n', "users_email_key", &twice),
	      "chain: add n");
	CHECK(!errmap_add_field(twice.data, (uint32_t)twice.len, 't', "again", &json),
	      "chain: t again refused");
	CHECK(json.len == 0, "chain: refusal leaves out unchanged");
	CHECK(proto_parse_error(twice.data + PROTO_HEADER_LEN, twice.len - PROTO_HEADER_LEN, &e),
	      "chain: parses");
	classify_str(&e, &json);
	CHECK_STR((const char *)json.data,
	          "{\"kind\":\"UniqueConstraintViolation\",\"constraint\":{\"index\":\"users_email_"
	          "key\"},\"table\":\"users\"}",
	          "chain: classified %s", (const char *)json.data);

	pbuf_free(&msg);
	pbuf_free(&out);
	pbuf_free(&twice);
	pbuf_free(&json);
}

/* A minimal ErrorResponse (no fields at all) is well formed. */
static void test_add_field_empty_message(void)
{
	static const uint8_t empty[] = {'E', 0, 0, 0, 5, 0};
	static const uint8_t want[] = {'E', 0, 0, 0, 8, 'M', 'x', 0, 0};
	struct pbuf out = {0};

	CHECK(errmap_add_field(empty, sizeof(empty), 'M', "x", &out), "empty: added");
	CHECK(out.len == sizeof(want) && memcmp(out.data, want, sizeof(want)) == 0,
	      "empty: bytes (len %zu)", out.len);
	pbuf_free(&out);
}

static void test_add_field_refused(void)
{
#define MSG(...) (const uint8_t[]){__VA_ARGS__}, sizeof((const uint8_t[]){__VA_ARGS__})
	const struct {
		const char *name;
		const uint8_t *msg;
		size_t len;
		char code;
		const char *value;
	} cases[] = {
	        {"code C exists",
	         MSG('E', 0, 0, 0, 15, 'S', 'E', 0, 'C', '2', '3', '5', '0', '5', 0, 0), 'C', "x"},
	        {"code S exists (first field)",
	         MSG('E', 0, 0, 0, 15, 'S', 'E', 0, 'C', '2', '3', '5', '0', '5', 0, 0), 'S', "x"},
	        {"type N", MSG('N', 0, 0, 0, 8, 'S', 'E', 0, 0), 'n', "x"},
	        {"type Z", MSG('Z', 0, 0, 0, 5, 'I'), 'n', "x"},
	        {"length field too big", MSG('E', 0, 0, 0, 9, 'S', 'E', 0, 0), 'n', "x"},
	        {"length field too small", MSG('E', 0, 0, 0, 7, 'S', 'E', 0, 0), 'n', "x"},
	        {"length field huge", MSG('E', 0xFF, 0xFF, 0xFF, 0xFF, 'S', 'E', 0, 0), 'n', "x"},
	        {"missing final NUL", MSG('E', 0, 0, 0, 7, 'S', 'E', 0), 'n', "x"},
	        {"field string not terminated", MSG('E', 0, 0, 0, 7, 'S', 'E', 'R'), 'n', "x"},
	        {"bytes after the final NUL", MSG('E', 0, 0, 0, 9, 'S', 'E', 0, 0, 'x'), 'n', "x"},
	        {"field code with nothing after it", MSG('E', 0, 0, 0, 5, 'S'), 'n', "x"},
	        {"header only", MSG('E', 0, 0, 0, 4), 'n', "x"},
	        {"shorter than a header", MSG('E', 0, 0), 'n', "x"},
	        {"code 0 would end the fields", MSG('E', 0, 0, 0, 8, 'S', 'E', 0, 0), 0, "x"},
	        {"NULL value", MSG('E', 0, 0, 0, 8, 'S', 'E', 0, 0), 'n', NULL},
	};
#undef MSG
	struct pbuf out = {0};

	for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
		pbuf_reset(&out);
		pbuf_put(&out, "keep", 4);
		bool ok = errmap_add_field(cases[i].msg, (uint32_t)cases[i].len, cases[i].code,
		                           cases[i].value, &out);
		CHECK(!ok, "%s: refused", cases[i].name);
		CHECK(out.len == 4 && memcmp(out.data, "keep", 4) == 0, "%s: out unchanged",
		      cases[i].name);
	}
	CHECK(!errmap_add_field(NULL, 0, 'n', "x", &out), "NULL message refused");

	/* The message the duplicate-code rows use is otherwise fine. */
	static const uint8_t ok_msg[] = {'E', 0,   0,   0,   15,  'S', 'E', 0,
	                                 'C', '2', '3', '5', '0', '5', 0,   0};
	pbuf_reset(&out);
	CHECK(errmap_add_field(ok_msg, sizeof(ok_msg), 'n', "x", &out), "new code n accepted");
	CHECK(out.len == sizeof(ok_msg) + 3, "new code n: size %zu", out.len);
	pbuf_free(&out);
}

int main(void)
{
	test_classify_real_errors();
	test_kind_names();
	test_json_escaping();
	test_classify_appends();
	test_classify_own_error();
	test_add_field_roundtrip();
	test_add_field_empty_message();
	test_add_field_refused();
	UNIT_DONE();
}
