/* Client authentication: the user file and the password exchange as a pure state machine. */
#include "pgtide/auth.h"

#include <stdarg.h>
#include <stdio.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "pgtide/rnd.h"
#include "pgtide/scram.h"

/* Authentication request codes: the int32 in the Authentication ('R') messages. */
#define AUTH_REQ_PASSWORD  3
#define AUTH_REQ_MD5       5
#define AUTH_REQ_SASL      10
#define AUTH_REQ_SASL_CONT 11
#define AUTH_REQ_SASL_FIN  12

#define AUTH_MD5_LEN       35    /* "md5" + 32 hex digits */
#define AUTH_MAX_TOKEN_LEN 65535 /* PostgreSQL's PG_MAX_AUTH_TOKEN_LENGTH */

/* The mechanism list of AuthenticationSASL: one name, then an empty one ending the list. */
static const char auth_sasl_mechanisms[] = "SCRAM-SHA-256\0";

/* SQLSTATEs PostgreSQL uses for login failures. */
#define AUTH_SQLSTATE_INVALID_AUTHORIZATION "28000"
#define AUTH_SQLSTATE_INVALID_PASSWORD      "28P01"
#define AUTH_SQLSTATE_PROTOCOL_VIOLATION    "08P01"
#define AUTH_SQLSTATE_OUT_OF_MEMORY         "53200"
#define AUTH_SQLSTATE_INTERNAL              "XX000"

/* ---- the user file ---- */

/*
 * Classifies a secret the way PostgreSQL's get_password_type() does: md5 only with exactly 32
 * lowercase hex digits, SCRAM only if the verifier parses; anything else is a password.
 */
static enum auth_secret_kind auth_secret_kind_of(const char *secret)
{
	struct scram_secret scram;

	if (strlen(secret) == AUTH_MD5_LEN && strncmp(secret, "md5", 3) == 0 &&
	    strspn(secret + 3, "0123456789abcdef") == AUTH_MD5_LEN - 3)
		return AUTH_SECRET_MD5;
	if (scram_parse_secret(secret, &scram)) {
		OPENSSL_cleanse(&scram, sizeof(scram));
		return AUTH_SECRET_SCRAM;
	}
	return AUTH_SECRET_PLAIN;
}

/*
 * Reads a quoted field starting at *p (which must be '"') and no further than end, with ""
 * standing for one quote. Returns the malloc'd unquoted text, or NULL with *err set.
 */
static char *auth_read_quoted(const char **p, const char *end, const char **err)
{
	const char *s = *p + 1;
	size_t n = 0;
	char *out;

	/* First pass measures, second copies: the line is short and this keeps one allocation. */
	for (const char *q = s;; q++) {
		if (q >= end) {
			*err = "unterminated quoted string";
			return NULL;
		}
		if (*q == '\0') {
			*err = "NUL byte inside a quoted string";
			return NULL;
		}
		if (*q == '"') {
			if (q + 1 < end && q[1] == '"') {
				q++;
			} else {
				break;
			}
		}
		n++;
	}
	out = malloc(n + 1);
	if (!out) {
		*err = "out of memory";
		return NULL;
	}
	n = 0;
	for (;; s++) {
		if (*s == '"') {
			if (s + 1 < end && s[1] == '"') {
				s++;
			} else {
				break;
			}
		}
		out[n++] = *s;
	}
	out[n] = '\0';
	*p = s + 1;
	return out;
}

static bool auth_is_blank(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f';
}

/* Parses one line (without its '\n'); a blank or comment line leaves *name NULL. */
static bool auth_parse_line(const char *p, const char *end, char **name, char **secret,
                            const char **err)
{
	*name = NULL;
	*secret = NULL;
	while (p < end && auth_is_blank(*p))
		p++;
	if (p == end || *p == ';' || *p == '#')
		return true;
	if (*p != '"') {
		*err = "expected a quoted user name";
		return false;
	}
	*name = auth_read_quoted(&p, end, err);
	if (!*name)
		return false;
	if (**name == '\0') {
		*err = "empty user name";
		goto fail;
	}
	while (p < end && auth_is_blank(*p))
		p++;
	if (p == end || *p != '"') {
		*err = "expected a quoted secret after the user name";
		goto fail;
	}
	*secret = auth_read_quoted(&p, end, err);
	if (!*secret)
		goto fail;
	/* Whatever follows the secret is ignored, as PgBouncer does. */
	return true;
fail:
	free(*name);
	*name = NULL;
	return false;
}

bool auth_userlist_parse(const char *text, size_t len, struct auth_userlist *out, int *err_line,
                         const char **errmsg)
{
	const char *p = text, *end = text + len;
	size_t cap = 0;
	int line = 0;

	memset(out, 0, sizeof(*out));
	*err_line = 0;
	*errmsg = NULL;
	while (p < end) {
		const char *eol = memchr(p, '\n', (size_t)(end - p));
		const char *line_end = eol ? eol : end;
		char *name, *secret;

		line++;
		if (!auth_parse_line(p, line_end, &name, &secret, errmsg))
			goto fail;
		p = eol ? eol + 1 : end;
		if (!name)
			continue;
		if (out->n == cap) {
			size_t ncap = cap ? cap * 2 : 16;
			struct auth_user *users = realloc(out->users, ncap * sizeof(*users));
			if (!users) {
				free(name);
				OPENSSL_cleanse(secret, strlen(secret));
				free(secret);
				*errmsg = "out of memory";
				goto fail;
			}
			out->users = users;
			cap = ncap;
		}
		struct auth_user *u = &out->users[out->n];
		u->name = name;
		u->secret = secret;
		u->kind = auth_secret_kind_of(secret);
		u->scram_of_plain = NULL;
		u->md5_of_plain[0] = '\0';
		out->n++;
		if (u->kind == AUTH_SECRET_PLAIN) {
			if (!(u->scram_of_plain = calloc(1, sizeof(*u->scram_of_plain)))) {
				*errmsg = "out of memory";
				goto fail;
			}
			auth_md5_hash(secret, name, u->md5_of_plain);
		}
	}
	return true;
fail:
	*err_line = line;
	auth_userlist_free(out);
	return false;
}

/* Searches from the end so that a later line for the same user wins, as in PgBouncer. */
const struct auth_user *auth_userlist_find(const struct auth_userlist *ul, const char *name)
{
	if (!ul || !name)
		return NULL;
	for (size_t i = ul->n; i > 0; i--) {
		if (strcmp(ul->users[i - 1].name, name) == 0)
			return &ul->users[i - 1];
	}
	return NULL;
}

void auth_userlist_free(struct auth_userlist *ul)
{
	for (size_t i = 0; i < ul->n; i++) {
		free(ul->users[i].name);
		OPENSSL_cleanse(ul->users[i].secret, strlen(ul->users[i].secret));
		free(ul->users[i].secret);
		OPENSSL_cleanse(ul->users[i].md5_of_plain, sizeof(ul->users[i].md5_of_plain));
		if (ul->users[i].scram_of_plain) {
			OPENSSL_cleanse(ul->users[i].scram_of_plain, sizeof(struct scram_secret));
			free(ul->users[i].scram_of_plain);
		}
	}
	free(ul->users);
	memset(ul, 0, sizeof(*ul));
}

/* ---- md5 ---- */

/*
 * OpenSSL 3 looks an algorithm up on every EVP_DigestInit_ex(EVP_md5()) (about half the cost of a
 * login's md5 hashing): fetch it once. A context made and freed per hash costs a quarter of the
 * rest (an allocation, a provider context, a cleanse): keep one, under a lock, since the module
 * does not know which threads call it. Like the SCRAM mock key, process-wide once set; what a
 * finished hash leaves in it is that hash's digest, no more than the caller already holds.
 */
static EVP_MD *md5_md;
static EVP_MD_CTX *md5_ctx;
static pthread_mutex_t md5_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t md5_once = PTHREAD_ONCE_INIT;

static void md5_fetch(void)
{
	md5_md = EVP_MD_fetch(NULL, "MD5", NULL);
	md5_ctx = EVP_MD_CTX_new();
}

static void auth_md5_hex(const void *a, size_t a_len, const void *b, size_t b_len, char out[36])
{
	static const char hex[] = "0123456789abcdef";
	unsigned char digest[EVP_MAX_MD_SIZE];
	unsigned int len = 0;

	pthread_once(&md5_once, md5_fetch);
	pthread_mutex_lock(&md5_lock);
	bool ok = md5_md && md5_ctx && EVP_DigestInit_ex2(md5_ctx, md5_md, NULL) == 1 &&
	          EVP_DigestUpdate(md5_ctx, a, a_len) == 1 &&
	          EVP_DigestUpdate(md5_ctx, b, b_len) == 1 &&
	          EVP_DigestFinal_ex(md5_ctx, digest, &len) == 1 && len == 16;
	pthread_mutex_unlock(&md5_lock);
	/* An empty result matches nothing, so a crypto failure can only refuse a login. */
	out[0] = '\0';
	if (!ok)
		return;
	memcpy(out, "md5", 3);
	for (unsigned int i = 0; i < 16; i++) {
		out[3 + 2 * i] = hex[digest[i] >> 4];
		out[4 + 2 * i] = hex[digest[i] & 15];
	}
	out[AUTH_MD5_LEN] = '\0';
	OPENSSL_cleanse(digest, sizeof(digest));
}

void auth_md5_hash(const char *password, const char *user, char out[36])
{
	auth_md5_hex(password, strlen(password), user, strlen(user), out);
}

void auth_md5_salted(const char *md5_hash_hex, const unsigned char salt[4], char out[36])
{
	auth_md5_hex(md5_hash_hex, strlen(md5_hash_hex), salt, 4, out);
}

/* ---- the exchange ---- */

/* Where an exchange stands: which client message it waits for. */
enum auth_phase {
	AUTH_PHASE_DONE = 0,   /* finished (ok or failed): nothing more is expected */
	AUTH_PHASE_PASSWORD,   /* sent AuthenticationCleartextPassword */
	AUTH_PHASE_MD5,        /* sent AuthenticationMD5Password with md5_salt */
	AUTH_PHASE_SASL_INIT,  /* sent AuthenticationSASL; waiting for SASLInitialResponse */
	AUTH_PHASE_SASL_FIRST, /* SASLInitialResponse came without data: client-first follows */
	AUTH_PHASE_SASL_FINAL, /* sent SASLContinue (server-first); waiting for client-final */
};

struct auth_exchange {
	enum auth_phase phase;
	char *user;                  /* the startup packet's user name */
	bool usable;                 /* the user exists and has a non-empty, well-formed secret */
	enum auth_secret_kind kind;  /* of secret, when usable */
	char *secret;                /* copy of the stored secret (the userlist may be reloaded) */
	char md5_of_plain[36];       /* copy of the entry's, when kind is PLAIN */
	struct scram_secret scram;   /* parsed secret when kind is SCRAM */
	unsigned char md5_salt[4];   /* the salt sent with AuthenticationMD5Password */
	struct scram_state scram_st; /* SCRAM exchange (mock for unknown users) */
	bool scram_started;          /* scram_st needs freeing */
	char *plain;                 /* the cleartext password, once known */
	const char *sqlstate;        /* after AUTH_FAIL */
	char *message;               /* after AUTH_FAIL, malloc'd; NULL means out of memory */
};

__attribute__((format(printf, 3, 4))) static enum auth_status
auth_fail(struct auth_exchange *ex, const char *sqlstate, const char *fmt, ...)
{
	va_list ap;
	int n;

	ex->phase = AUTH_PHASE_DONE;
	ex->sqlstate = sqlstate;
	free(ex->message);
	ex->message = NULL;
	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n >= 0) {
		ex->message = malloc((size_t)n + 1);
		if (ex->message) {
			va_start(ap, fmt);
			vsnprintf(ex->message, (size_t)n + 1, fmt, ap);
			va_end(ap);
		}
	}
	if (!ex->message)
		ex->sqlstate = AUTH_SQLSTATE_OUT_OF_MEMORY; /* auth_fail_message says so */
	return AUTH_FAIL;
}

/* PostgreSQL's auth_failed() text for every password method: it never says which part failed. */
static enum auth_status auth_fail_password(struct auth_exchange *ex)
{
	return auth_fail(ex, AUTH_SQLSTATE_INVALID_PASSWORD,
	                 "password authentication failed for user \"%s\"", ex->user);
}

static enum auth_status auth_ok(struct auth_exchange *ex)
{
	ex->phase = AUTH_PHASE_DONE;
	return AUTH_OK;
}

/* Keeps the stored password as the client's cleartext when the file holds it in clear. */
static bool auth_keep_stored_plain(struct auth_exchange *ex)
{
	if (!ex->usable || ex->kind != AUTH_SECRET_PLAIN)
		return true;
	ex->plain = strdup(ex->secret);
	return ex->plain != NULL;
}

static void auth_free_secret_string(char *s)
{
	if (s) {
		OPENSSL_cleanse(s, strlen(s));
		free(s);
	}
}

/*
 * Copies what is needed from the user file entry. A user whose secret is empty or does not
 * parse as its kind claims is treated like an unknown one: PgBouncer refuses empty passwords.
 */
static bool auth_copy_user(struct auth_exchange *ex, const struct auth_user *u)
{
	if (!u || !u->secret || u->secret[0] == '\0')
		return true;
	ex->kind = u->kind;
	switch (u->kind) {
	case AUTH_SECRET_PLAIN:
		memcpy(ex->md5_of_plain, u->md5_of_plain, sizeof(ex->md5_of_plain));
		break;
	case AUTH_SECRET_MD5:
		if (auth_secret_kind_of(u->secret) != AUTH_SECRET_MD5)
			return true;
		break;
	case AUTH_SECRET_SCRAM:
		if (!scram_parse_secret(u->secret, &ex->scram))
			return true;
		break;
	default:
		return true;
	}
	ex->secret = strdup(u->secret);
	if (!ex->secret)
		return false;
	ex->usable = true;
	return true;
}

/*
 * Sends AuthenticationSASL and prepares the SCRAM exchange. Without a SCRAM verifier to check
 * against (unknown user, md5 secret) the exchange is a mock one that always fails at the end,
 * as PostgreSQL's scram_init() does, so the client cannot tell why.
 */
static enum auth_status auth_start_scram(struct auth_exchange *ex, const struct auth_user *u,
                                         int iterations, struct pbuf *out)
{
	bool mock = !ex->usable || ex->kind == AUTH_SECRET_MD5;

	if (!mock && ex->kind == AUTH_SECRET_PLAIN) {
		/*
		 * A plain secret needs a verifier: PBKDF2 with scram_iterations rounds (4,096 by
		 * default), milliseconds of CPU on the event loop. PgBouncer makes a fresh one per
		 * login; pgtide makes one per user per user file load and keeps it, as PostgreSQL
		 * keeps its stored verifier (the server nonce stays fresh per login, so nothing can
		 * be replayed), and makes it again when scram_iterations changes.
		 */
		struct scram_secret *kept = u ? u->scram_of_plain : NULL;
		if (kept && kept->iterations == iterations) {
			ex->scram = *kept;
		} else {
			uint8_t salt[SCRAM_SALT_LEN];
			if (!rnd_bytes(salt, sizeof(salt)))
				return auth_fail(ex, AUTH_SQLSTATE_INTERNAL,
				                 "could not generate random salt");
			if (!scram_secret_from_password(ex->secret, salt, sizeof(salt), iterations,
			                                &ex->scram))
				return auth_fail(ex, AUTH_SQLSTATE_INTERNAL,
				                 "could not compute SCRAM secret");
			if (kept)
				*kept = ex->scram;
		}
	}
	scram_server_init(&ex->scram_st, mock ? NULL : &ex->scram, mock, ex->user, iterations);
	ex->scram_started = true;
	proto_build_auth(out, AUTH_REQ_SASL, auth_sasl_mechanisms, sizeof(auth_sasl_mechanisms));
	ex->phase = AUTH_PHASE_SASL_INIT;
	return AUTH_CONTINUE;
}

enum auth_status auth_start(struct auth_exchange **exp, enum auth_type type, const char *user,
                            const struct auth_user *u, int scram_iterations, struct pbuf *out)
{
	struct auth_exchange *ex = calloc(1, sizeof(*ex));

	*exp = ex;
	if (!ex)
		return AUTH_FAIL;
	ex->user = strdup(user ? user : "");
	if (!ex->user || !auth_copy_user(ex, u))
		return auth_fail(ex, AUTH_SQLSTATE_OUT_OF_MEMORY, "out of memory");

	switch (type) {
	case AUTH_TYPE_TRUST:
		/* PgBouncer semantics: trust still requires an auth_file entry. */
		if (!u)
			return auth_fail(ex, AUTH_SQLSTATE_INVALID_AUTHORIZATION,
			                 "role \"%s\" does not exist", ex->user);
		if (!auth_keep_stored_plain(ex))
			return auth_fail(ex, AUTH_SQLSTATE_OUT_OF_MEMORY, "out of memory");
		return auth_ok(ex);
	case AUTH_TYPE_ANY:
		if (!auth_keep_stored_plain(ex))
			return auth_fail(ex, AUTH_SQLSTATE_OUT_OF_MEMORY, "out of memory");
		return auth_ok(ex);
	case AUTH_TYPE_PLAIN:
		proto_build_auth(out, AUTH_REQ_PASSWORD, NULL, 0);
		ex->phase = AUTH_PHASE_PASSWORD;
		return AUTH_CONTINUE;
	case AUTH_TYPE_MD5:
		/* As PgBouncer: a SCRAM verifier cannot answer an md5 challenge, so use SCRAM. */
		if (ex->usable && ex->kind == AUTH_SECRET_SCRAM)
			return auth_start_scram(ex, u, scram_iterations, out);
		if (!rnd_bytes(ex->md5_salt, sizeof(ex->md5_salt)))
			return auth_fail(ex, AUTH_SQLSTATE_INTERNAL,
			                 "could not generate random MD5 salt");
		proto_build_auth(out, AUTH_REQ_MD5, ex->md5_salt, sizeof(ex->md5_salt));
		ex->phase = AUTH_PHASE_MD5;
		return AUTH_CONTINUE;
	case AUTH_TYPE_SCRAM:
		return auth_start_scram(ex, u, scram_iterations, out);
	}
	return auth_fail(ex, AUTH_SQLSTATE_INTERNAL, "unsupported authentication type %d",
	                 (int)type);
}

/*
 * PostgreSQL's recv_password_packet(): the body is one NUL-terminated string and nothing else;
 * an empty one is refused with 28P01 before any check against the secret.
 */
static enum auth_status auth_read_password(struct auth_exchange *ex, const char *body, size_t len,
                                           const char **password)
{
	if (len == 0 || memchr(body, '\0', len) != body + len - 1)
		return auth_fail(ex, AUTH_SQLSTATE_PROTOCOL_VIOLATION,
		                 "invalid password packet size");
	if (len == 1)
		return auth_fail(ex, AUTH_SQLSTATE_INVALID_PASSWORD,
		                 "empty password returned by client");
	*password = body;
	return AUTH_CONTINUE;
}

/* Compares digests rather than the strings so neither content nor length leaks in timing. */
static bool auth_equal_ct(const char *a, const char *b)
{
	uint8_t da[SCRAM_KEY_LEN], db[SCRAM_KEY_LEN];
	unsigned int la = 0, lb = 0;

	if (EVP_Digest(a, strlen(a), da, &la, EVP_sha256(), NULL) != 1 ||
	    EVP_Digest(b, strlen(b), db, &lb, EVP_sha256(), NULL) != 1)
		return false;
	return CRYPTO_memcmp(da, db, sizeof(da)) == 0;
}

/* PostgreSQL's plain_crypt_verify(): a cleartext password against any kind of secret. */
static bool auth_check_cleartext(struct auth_exchange *ex, const char *password)
{
	char md5[36];
	struct scram_secret derived;
	bool ok;

	if (!ex->usable)
		return false;
	switch (ex->kind) {
	case AUTH_SECRET_PLAIN:
		return auth_equal_ct(password, ex->secret);
	case AUTH_SECRET_MD5:
		auth_md5_hash(password, ex->user, md5);
		ok = strlen(md5) == AUTH_MD5_LEN &&
		     CRYPTO_memcmp(md5, ex->secret, AUTH_MD5_LEN) == 0;
		OPENSSL_cleanse(md5, sizeof(md5));
		return ok;
	case AUTH_SECRET_SCRAM:
		if (!scram_secret_from_password(password, ex->scram.salt, ex->scram.salt_len,
		                                ex->scram.iterations, &derived))
			return false;
		ok = CRYPTO_memcmp(derived.stored_key, ex->scram.stored_key, SCRAM_KEY_LEN) == 0 &&
		     CRYPTO_memcmp(derived.server_key, ex->scram.server_key, SCRAM_KEY_LEN) == 0;
		OPENSSL_cleanse(&derived, sizeof(derived));
		return ok;
	}
	return false;
}

static enum auth_status auth_step_password(struct auth_exchange *ex, const char *body, size_t len)
{
	const char *password = NULL;

	if (auth_read_password(ex, body, len, &password) != AUTH_CONTINUE)
		return AUTH_FAIL;
	if (!auth_check_cleartext(ex, password))
		return auth_fail_password(ex);
	ex->plain = strdup(password);
	if (!ex->plain)
		return auth_fail(ex, AUTH_SQLSTATE_OUT_OF_MEMORY, "out of memory");
	return auth_ok(ex);
}

/* PostgreSQL's md5_crypt_verify(), plus PgBouncer's md5 over a plain stored password. */
static enum auth_status auth_step_md5(struct auth_exchange *ex, const char *body, size_t len)
{
	const char *password = NULL;
	const char *hash = NULL;
	char expected[36];
	bool ok = false;

	if (auth_read_password(ex, body, len, &password) != AUTH_CONTINUE)
		return AUTH_FAIL;
	if (ex->usable && ex->kind == AUTH_SECRET_PLAIN)
		hash = ex->md5_of_plain; /* "md5" + md5(secret + user name), made at load */
	else if (ex->usable && ex->kind == AUTH_SECRET_MD5)
		hash = ex->secret;
	if (hash && strlen(hash) == AUTH_MD5_LEN) {
		auth_md5_salted(hash + 3, ex->md5_salt, expected);
		ok = strlen(expected) == AUTH_MD5_LEN && strlen(password) == AUTH_MD5_LEN &&
		     CRYPTO_memcmp(password, expected, AUTH_MD5_LEN) == 0;
		OPENSSL_cleanse(expected, sizeof(expected));
	}
	if (!ok)
		return auth_fail_password(ex);
	if (!auth_keep_stored_plain(ex))
		return auth_fail(ex, AUTH_SQLSTATE_OUT_OF_MEMORY, "out of memory");
	return auth_ok(ex);
}

static enum auth_status auth_scram_failed(struct auth_exchange *ex, enum scram_status st)
{
	if (st == SCRAM_FAIL_AUTH)
		return auth_fail_password(ex);
	return auth_fail(ex, AUTH_SQLSTATE_PROTOCOL_VIOLATION, "%s",
	                 ex->scram_st.error ? ex->scram_st.error : "malformed SCRAM message");
}

/* Runs client-first-message through SCRAM and sends server-first in SASLContinue. */
static enum auth_status auth_scram_first(struct auth_exchange *ex, const char *data, size_t len,
                                         struct pbuf *out)
{
	char *reply = NULL;
	enum scram_status st = scram_server_first(&ex->scram_st, data, len, &reply);

	if (st != SCRAM_CONTINUE) {
		free(reply);
		return auth_scram_failed(ex, st);
	}
	proto_build_auth(out, AUTH_REQ_SASL_CONT, reply, strlen(reply));
	free(reply);
	ex->phase = AUTH_PHASE_SASL_FINAL;
	return AUTH_CONTINUE;
}

/*
 * SASLInitialResponse: mechanism name, then Int32 length (-1: no initial response) and data.
 * Checked in PostgreSQL's order (CheckSASLAuth, scram_init) so errors read the same.
 */
static enum auth_status auth_step_sasl_init(struct auth_exchange *ex, const char *body, size_t len,
                                            struct pbuf *out)
{
	const char *nul = memchr(body, '\0', len);
	size_t off;
	int32_t data_len;

	if (!nul)
		return auth_fail(ex, AUTH_SQLSTATE_PROTOCOL_VIOLATION, "invalid string in message");
	if (strcmp(body, "SCRAM-SHA-256") != 0)
		return auth_fail(ex, AUTH_SQLSTATE_PROTOCOL_VIOLATION,
		                 "client selected an invalid SASL authentication mechanism");
	off = (size_t)(nul - body) + 1;
	if (len - off < 4)
		return auth_fail(ex, AUTH_SQLSTATE_PROTOCOL_VIOLATION,
		                 "insufficient data left in message");
	data_len = (int32_t)proto_get_u32((const uint8_t *)body + off);
	off += 4;
	if (data_len == -1) {
		if (off != len)
			return auth_fail(ex, AUTH_SQLSTATE_PROTOCOL_VIOLATION,
			                 "invalid message format");
		/* No initial response: send an empty challenge, the client-first comes next. */
		proto_build_auth(out, AUTH_REQ_SASL_CONT, "", 0);
		ex->phase = AUTH_PHASE_SASL_FIRST;
		return AUTH_CONTINUE;
	}
	if (data_len < 0 || (size_t)data_len > len - off)
		return auth_fail(ex, AUTH_SQLSTATE_PROTOCOL_VIOLATION,
		                 "insufficient data left in message");
	if ((size_t)data_len != len - off)
		return auth_fail(ex, AUTH_SQLSTATE_PROTOCOL_VIOLATION, "invalid message format");
	return auth_scram_first(ex, body + off, (size_t)data_len, out);
}

/* client-final-message: on success the server-final goes out in SASLFinal before AuthOk. */
static enum auth_status auth_step_sasl_final(struct auth_exchange *ex, const char *body, size_t len,
                                             struct pbuf *out)
{
	char *reply = NULL;
	enum scram_status st = scram_server_final(&ex->scram_st, body, len, &reply);

	if (st != SCRAM_OK) {
		free(reply);
		return auth_scram_failed(ex, st);
	}
	proto_build_auth(out, AUTH_REQ_SASL_FIN, reply, strlen(reply));
	free(reply);
	if (!auth_keep_stored_plain(ex))
		return auth_fail(ex, AUTH_SQLSTATE_OUT_OF_MEMORY, "out of memory");
	return auth_ok(ex);
}

enum auth_status auth_step(struct auth_exchange *ex, const void *body, size_t len, struct pbuf *out)
{
	const char *b = body;

	if (!ex)
		return AUTH_FAIL;
	if (ex->phase == AUTH_PHASE_DONE)
		return auth_fail(ex, AUTH_SQLSTATE_PROTOCOL_VIOLATION,
		                 "unexpected password message: authentication already finished");
	if (len > AUTH_MAX_TOKEN_LEN || (len > 0 && !body))
		return auth_fail(ex, AUTH_SQLSTATE_PROTOCOL_VIOLATION, "invalid message length");
	if (len == 0)
		b = "";

	switch (ex->phase) {
	case AUTH_PHASE_PASSWORD:
		return auth_step_password(ex, b, len);
	case AUTH_PHASE_MD5:
		return auth_step_md5(ex, b, len);
	case AUTH_PHASE_SASL_INIT:
		return auth_step_sasl_init(ex, b, len, out);
	case AUTH_PHASE_SASL_FIRST:
		return auth_scram_first(ex, b, len, out);
	case AUTH_PHASE_SASL_FINAL:
		return auth_step_sasl_final(ex, b, len, out);
	case AUTH_PHASE_DONE:
		break;
	}
	return auth_fail(ex, AUTH_SQLSTATE_INTERNAL,
	                 "authentication exchange in an impossible state");
}

const char *auth_fail_sqlstate(const struct auth_exchange *ex)
{
	if (!ex || !ex->sqlstate)
		return AUTH_SQLSTATE_OUT_OF_MEMORY;
	return ex->sqlstate;
}

const char *auth_fail_message(const struct auth_exchange *ex)
{
	if (!ex || !ex->message)
		return "out of memory";
	return ex->message;
}

const char *auth_plain_password(const struct auth_exchange *ex)
{
	return ex ? ex->plain : NULL;
}

void auth_free(struct auth_exchange *ex)
{
	if (!ex)
		return;
	if (ex->scram_started)
		scram_state_free(&ex->scram_st);
	free(ex->user);
	auth_free_secret_string(ex->secret);
	auth_free_secret_string(ex->plain);
	free(ex->message);
	OPENSSL_cleanse(ex, sizeof(*ex));
	free(ex);
}
