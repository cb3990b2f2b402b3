/* SCRAM-SHA-256 server side (RFC 5802, RFC 7677), message for message as PostgreSQL 15. Pure. */
#include "pgtide/scram.h"

#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include "pgtide/rnd.h"

#define SCRAM_SECRET_PREFIX    "SCRAM-SHA-256$"
#define SCRAM_RAW_NONCE_LEN    18   /* PostgreSQL's SCRAM_RAW_NONCE_LEN */
#define SCRAM_MAX_MESSAGE      4096 /* real client messages are well under 200 bytes */
#define SCRAM_KEY_B64_LEN      44   /* base64 of SCRAM_KEY_LEN bytes, with padding */
#define SCRAM_MAX_SALT_B64_LEN 88   /* base64 of SCRAM_MAX_SALT_LEN bytes */

/* Error texts are PostgreSQL's errmsg() wording so clients see familiar messages. */
static const char scram_err_malformed[] = "malformed SCRAM message";
static const char scram_err_authzid[] =
        "client uses authorization identity, but it is not supported";
static const char scram_err_extension[] = "client requires an unsupported SCRAM extension";
static const char scram_err_nonce_chars[] = "non-printable characters in SCRAM nonce";
static const char scram_err_cbind[] =
        "unexpected SCRAM channel-binding attribute in client-final-message";
static const char scram_err_invalid[] = "invalid SCRAM response";
static const char scram_err_auth[] = "password authentication failed";
static const char scram_err_internal[] = "out of memory or cryptographic failure";

/* ---- base64 ---- */

static const char scram_b64_alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

size_t scram_b64_encode(const uint8_t *in, size_t n, char *out)
{
	size_t o = 0;
	size_t i = 0;

	for (; i + 3 <= n; i += 3) {
		uint32_t v = ((uint32_t)in[i] << 16) | ((uint32_t)in[i + 1] << 8) | in[i + 2];
		out[o++] = scram_b64_alphabet[(v >> 18) & 63];
		out[o++] = scram_b64_alphabet[(v >> 12) & 63];
		out[o++] = scram_b64_alphabet[(v >> 6) & 63];
		out[o++] = scram_b64_alphabet[v & 63];
	}
	if (i < n) {
		uint32_t v = (uint32_t)in[i] << 16;
		if (i + 1 < n)
			v |= (uint32_t)in[i + 1] << 8;
		out[o++] = scram_b64_alphabet[(v >> 18) & 63];
		out[o++] = scram_b64_alphabet[(v >> 12) & 63];
		out[o++] = i + 1 < n ? scram_b64_alphabet[(v >> 6) & 63] : '=';
		out[o++] = '=';
	}
	out[o] = '\0';
	return o;
}

static int scram_b64_value(char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

/*
 * Stricter than PostgreSQL's pg_b64_decode, which tolerates symbols after the padding: we
 * only ever decode what a SCRAM client or a verifier holds, and those are canonical.
 */
long scram_b64_decode(const char *in, size_t n, uint8_t *out)
{
	size_t o = 0;

	if (n % 4 != 0 || n / 4 > LONG_MAX / 3)
		return -1;
	for (size_t i = 0; i < n; i += 4) {
		uint32_t v = 0;
		int pad = 0;
		for (size_t j = 0; j < 4; j++) {
			char c = in[i + j];
			int d;
			if (c == '=') {
				/* Padding only fills the last one or two symbols of the last group.
				 */
				if (i + 4 != n || j < 2)
					return -1;
				pad++;
				d = 0;
			} else {
				if (pad)
					return -1;
				d = scram_b64_value(c);
				if (d < 0)
					return -1;
			}
			v = (v << 6) | (uint32_t)d;
		}
		out[o++] = (uint8_t)(v >> 16);
		if (pad < 2)
			out[o++] = (uint8_t)(v >> 8);
		if (pad < 1)
			out[o++] = (uint8_t)v;
	}
	return (long)o;
}

/* ---- primitives ---- */

static bool scram_hmac(const uint8_t *key, size_t key_len, const void *data, size_t n,
                       uint8_t out[SCRAM_KEY_LEN])
{
	unsigned int len = 0;

	if (key_len > INT_MAX)
		return false;
	if (!HMAC(EVP_sha256(), key, (int)key_len, data, n, out, &len))
		return false;
	return len == SCRAM_KEY_LEN;
}

static bool scram_sha256(const void *data, size_t n, uint8_t out[SCRAM_KEY_LEN])
{
	unsigned int len = 0;

	if (EVP_Digest(data, n, out, &len, EVP_sha256(), NULL) != 1)
		return false;
	return len == SCRAM_KEY_LEN;
}

/* Decodes a SCRAM key: exactly 44 base64 characters giving exactly 32 bytes. */
static bool scram_b64_decode_key(const char *in, size_t n, uint8_t out[SCRAM_KEY_LEN])
{
	uint8_t buf[SCRAM_KEY_B64_LEN / 4 * 3 + 3];
	bool ok = n == SCRAM_KEY_B64_LEN && scram_b64_decode(in, n, buf) == SCRAM_KEY_LEN;

	if (ok)
		memcpy(out, buf, SCRAM_KEY_LEN);
	OPENSSL_cleanse(buf, sizeof(buf));
	return ok;
}

/* ---- secrets ---- */

bool scram_parse_secret(const char *s, struct scram_secret *out)
{
	const size_t prefix_len = sizeof(SCRAM_SECRET_PREFIX) - 1;
	uint8_t salt[SCRAM_MAX_SALT_B64_LEN / 4 * 3 + 3];
	long salt_len;
	long iterations = 0;
	const char *p, *end;

	memset(out, 0, sizeof(*out));
	if (!s || strncmp(s, SCRAM_SECRET_PREFIX, prefix_len) != 0)
		return false;
	p = s + prefix_len;

	/* PostgreSQL uses strtol; plain digits are all it ever writes, so accept only those. */
	if (*p < '0' || *p > '9')
		return false;
	for (; *p >= '0' && *p <= '9'; p++) {
		iterations = iterations * 10 + (*p - '0');
		if (iterations > INT_MAX)
			return false;
	}
	if (*p != ':' || iterations < 1)
		return false;
	p++;

	end = strchr(p, '$');
	if (!end || end == p || (size_t)(end - p) > SCRAM_MAX_SALT_B64_LEN)
		return false;
	salt_len = scram_b64_decode(p, (size_t)(end - p), salt);
	if (salt_len < 1 || salt_len > SCRAM_MAX_SALT_LEN)
		return false;
	p = end + 1;

	end = strchr(p, ':');
	if (!end || !scram_b64_decode_key(p, (size_t)(end - p), out->stored_key))
		goto fail;
	p = end + 1;
	if (!scram_b64_decode_key(p, strlen(p), out->server_key))
		goto fail;

	out->iterations = (int)iterations;
	memcpy(out->salt, salt, (size_t)salt_len);
	out->salt_len = (size_t)salt_len;
	return true;
fail:
	OPENSSL_cleanse(out, sizeof(*out));
	return false;
}

/*
 * PostgreSQL runs the password through SASLprep (RFC 4013) first, and when that fails (invalid
 * UTF-8, prohibited characters) it uses the raw bytes. We always use the raw bytes: identical
 * for ASCII and for text already in NFKC form, which covers what clients actually send.
 */
bool scram_secret_from_password(const char *password, const uint8_t *salt, size_t salt_len,
                                int iterations, struct scram_secret *out)
{
	uint8_t salted[SCRAM_KEY_LEN];
	uint8_t client_key[SCRAM_KEY_LEN];
	size_t pw_len;
	bool ok;

	memset(out, 0, sizeof(*out));
	if (!password || !salt || salt_len == 0 || salt_len > SCRAM_MAX_SALT_LEN || iterations < 1)
		return false;
	pw_len = strlen(password);
	if (pw_len > INT_MAX)
		return false;

	ok = PKCS5_PBKDF2_HMAC(password, (int)pw_len, salt, (int)salt_len, iterations, EVP_sha256(),
	                       SCRAM_KEY_LEN, salted) == 1 &&
	     scram_hmac(salted, sizeof(salted), "Client Key", 10, client_key) &&
	     scram_sha256(client_key, sizeof(client_key), out->stored_key) &&
	     scram_hmac(salted, sizeof(salted), "Server Key", 10, out->server_key);
	OPENSSL_cleanse(salted, sizeof(salted));
	OPENSSL_cleanse(client_key, sizeof(client_key));
	if (!ok) {
		OPENSSL_cleanse(out, sizeof(*out));
		return false;
	}
	out->iterations = iterations;
	memcpy(out->salt, salt, salt_len);
	out->salt_len = salt_len;
	return true;
}

char *scram_format_secret(const struct scram_secret *s)
{
	char salt[SCRAM_MAX_SALT_B64_LEN + 1];
	char stored[SCRAM_KEY_B64_LEN + 1];
	char server[SCRAM_KEY_B64_LEN + 1];
	size_t size = sizeof(SCRAM_SECRET_PREFIX) + 11 + sizeof(salt) + sizeof(stored) +
	              sizeof(server) + 3;
	char *out;

	if (s->salt_len == 0 || s->salt_len > SCRAM_MAX_SALT_LEN || s->iterations < 1)
		return NULL;
	out = malloc(size);
	if (!out)
		return NULL;
	scram_b64_encode(s->salt, s->salt_len, salt);
	scram_b64_encode(s->stored_key, SCRAM_KEY_LEN, stored);
	scram_b64_encode(s->server_key, SCRAM_KEY_LEN, server);
	snprintf(out, size, SCRAM_SECRET_PREFIX "%d:%s$%s:%s", s->iterations, salt, stored, server);
	OPENSSL_cleanse(stored, sizeof(stored));
	OPENSSL_cleanse(server, sizeof(server));
	return out;
}

/* ---- mock secrets for unknown users ---- */

/*
 * The one mutable static in pgtide, deliberately: mock salts must be the same for every attempt
 * with the same unknown user name (a fresh random salt per attempt would tell an attacker the
 * user does not exist) yet unguessable (else one could compute the mock salt and compare). The
 * key is process-wide by nature, so it lives here rather than on a context object, and
 * pthread_once makes the one-time initialisation safe whatever thread logs in first.
 * PostgreSQL keeps its equivalent (mock_auth_nonce) in pg_control so it survives restarts;
 * ours changes when pgtide restarts, which only shows that pgtide restarted.
 */
static uint8_t scram_mock_key[SCRAM_KEY_LEN];
static pthread_once_t scram_mock_once = PTHREAD_ONCE_INIT;

static void scram_mock_key_init(void)
{
	/*
	 * Should RAND_bytes ever fail the key stays all zero: mock salts are then still stable
	 * per user, only predictable. Not worth refusing logins over.
	 */
	if (RAND_bytes(scram_mock_key, sizeof(scram_mock_key)) != 1)
		memset(scram_mock_key, 0, sizeof(scram_mock_key));
}

/* PostgreSQL's mock_scram_secret(): salt = SHA-256(user || nonce), keys left zero. */
static void scram_mock_secret(const char *user, int iterations, struct scram_secret *out)
{
	uint8_t digest[SCRAM_KEY_LEN];
	EVP_MD_CTX *ctx;
	bool ok = false;

	pthread_once(&scram_mock_once, scram_mock_key_init);
	memset(out, 0, sizeof(*out));
	if (!user)
		user = "";
	ctx = EVP_MD_CTX_new();
	if (ctx) {
		unsigned int len = 0;
		ok = EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) == 1 &&
		     EVP_DigestUpdate(ctx, user, strlen(user)) == 1 &&
		     EVP_DigestUpdate(ctx, scram_mock_key, sizeof(scram_mock_key)) == 1 &&
		     EVP_DigestFinal_ex(ctx, digest, &len) == 1 && len == SCRAM_KEY_LEN;
		EVP_MD_CTX_free(ctx);
	}
	if (!ok)
		memset(digest, 0, sizeof(digest));
	memcpy(out->salt, digest, SCRAM_SALT_LEN);
	out->salt_len = SCRAM_SALT_LEN;
	out->iterations = iterations > 0 ? iterations : SCRAM_DEFAULT_ITERATIONS;
}

/* ---- the exchange ---- */

void scram_server_init(struct scram_state *st, const struct scram_secret *secret, bool mock,
                       const char *user, int mock_iterations)
{
	memset(st, 0, sizeof(*st));
	if (mock || !secret) {
		st->mock = true;
		scram_mock_secret(user, mock_iterations, &st->secret);
	} else {
		st->secret = *secret;
	}
}

static enum scram_status scram_fail(struct scram_state *st, enum scram_status status,
                                    const char *error)
{
	st->error = error;
	return status;
}

/* A NUL-terminated copy to parse in place; PostgreSQL refuses empty messages and inner NULs. */
static char *scram_message_copy(struct scram_state *st, const char *msg, size_t len)
{
	char *buf;

	if (!msg || len == 0 || len > SCRAM_MAX_MESSAGE || memchr(msg, '\0', len)) {
		st->error = scram_err_malformed;
		return NULL;
	}
	buf = malloc(len + 1);
	if (!buf) {
		st->error = scram_err_internal;
		return NULL;
	}
	memcpy(buf, msg, len);
	buf[len] = '\0';
	return buf;
}

/* Splits off the value at *input up to the next ',' (PostgreSQL's attribute cursor). */
static char *scram_take_value(char **input, char *begin)
{
	char *end = begin + strcspn(begin, ",");

	if (*end) {
		*end = '\0';
		*input = end + 1;
	} else {
		*input = end;
	}
	return begin;
}

/* Reads "<attr>=<value>" for a given attribute; NULL if the next attribute is another one. */
static char *scram_read_attr(char **input, char attr)
{
	char *begin = *input;

	if (begin[0] != attr || begin[1] != '=')
		return NULL;
	return scram_take_value(input, begin + 2);
}

/* Reads any "<ALPHA>=<value>" attribute (extensions we skip), returning its letter. */
static char *scram_read_any_attr(char **input, char *attr)
{
	char *begin = *input;
	char c = begin[0];

	if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z')) || begin[1] != '=')
		return NULL;
	*attr = c;
	return scram_take_value(input, begin + 2);
}

/* RFC 5802 printable: %x21-2B / %x2D-7E, i.e. visible ASCII except ','. */
static bool scram_is_printable(const char *s)
{
	for (; *s; s++) {
		if (*s < 0x21 || *s > 0x7e || *s == ',')
			return false;
	}
	return true;
}

static char *scram_strdup_cat(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	char *out = malloc(la + lb + 1);

	if (out) {
		memcpy(out, a, la);
		memcpy(out + la, b, lb + 1);
	}
	return out;
}

/*
 * Test hook, deliberately not in scram.h: scram_server_first with the server's part of the
 * nonce given instead of drawn from RAND_bytes, so tests can replay RFC 7677's published
 * exchange byte for byte. Never call it elsewhere: a predictable nonce lets an eavesdropper
 * replay a recorded proof. Declared here for -Wmissing-prototypes and in test_scram.c.
 */
enum scram_status scram_server_first_with_nonce(struct scram_state *st, const char *msg, size_t len,
                                                const char *server_nonce, char **out);

enum scram_status scram_server_first_with_nonce(struct scram_state *st, const char *msg, size_t len,
                                                const char *server_nonce, char **out)
{
	char salt_b64[SCRAM_MAX_SALT_B64_LEN + 1];
	enum scram_status status = SCRAM_FAIL_PROTOCOL;
	const char *error = scram_err_malformed;
	char *buf, *p, *nonce;
	char flag;
	size_t size;

	*out = NULL;
	st->error = NULL;
	if (st->client_first_bare)
		return scram_fail(st, SCRAM_FAIL_PROTOCOL, scram_err_malformed);
	buf = scram_message_copy(st, msg, len);
	if (!buf)
		return SCRAM_FAIL_PROTOCOL;
	p = buf;

	/*
	 * gs2-header. 'y' means the client could bind but believes we cannot, which is true: we
	 * offer only SCRAM-SHA-256. 'p' asks for channel binding we never advertised; PostgreSQL
	 * answers that without TLS with "malformed SCRAM message".
	 */
	flag = *p;
	if ((flag != 'n' && flag != 'y') || p[1] != ',')
		goto out;
	p += 2;
	/* An authzid ("a=...") is refused outright, as PostgreSQL does. */
	if (*p == 'a') {
		error = scram_err_authzid;
		goto out;
	}
	if (*p != ',')
		goto out;
	p++;

	st->client_first_bare = strdup(p);
	st->gs2_header = strdup(flag == 'n' ? "n,," : "y,,");
	if (!st->client_first_bare || !st->gs2_header) {
		error = scram_err_internal;
		goto out;
	}

	/* RFC 5802 lets servers fail at once on a mandatory extension; PostgreSQL does. */
	if (*p == 'm') {
		error = scram_err_extension;
		goto out;
	}
	/* "n=" is ignored: PostgreSQL authenticates the user named in the startup packet. */
	if (!scram_read_attr(&p, 'n'))
		goto out;
	nonce = scram_read_attr(&p, 'r');
	if (!nonce)
		goto out;
	if (!scram_is_printable(nonce)) {
		error = scram_err_nonce_chars;
		goto out;
	}
	/* Optional extensions may follow; we support none and skip them. */
	while (*p) {
		char attr;
		if (!scram_read_any_attr(&p, &attr))
			goto out;
	}

	st->client_nonce = strdup(nonce);
	st->server_nonce = scram_strdup_cat(nonce, server_nonce);
	if (!st->client_nonce || !st->server_nonce) {
		error = scram_err_internal;
		goto out;
	}
	scram_b64_encode(st->secret.salt, st->secret.salt_len, salt_b64);
	size = strlen(st->server_nonce) + strlen(salt_b64) + 32;
	st->server_first = malloc(size);
	*out = malloc(size);
	if (!st->server_first || !*out) {
		free(*out);
		*out = NULL;
		error = scram_err_internal;
		goto out;
	}
	snprintf(st->server_first, size, "r=%s,s=%s,i=%d", st->server_nonce, salt_b64,
	         st->secret.iterations);
	memcpy(*out, st->server_first, strlen(st->server_first) + 1);
	status = SCRAM_CONTINUE;
	error = NULL;
out:
	free(buf);
	st->error = error;
	return status;
}

enum scram_status scram_server_first(struct scram_state *st, const char *msg, size_t len,
                                     char **out)
{
	uint8_t raw[SCRAM_RAW_NONCE_LEN];
	char nonce[(SCRAM_RAW_NONCE_LEN + 2) / 3 * 4 + 1];

	*out = NULL;
	if (!rnd_bytes(raw, sizeof(raw)))
		return scram_fail(st, SCRAM_FAIL_PROTOCOL, scram_err_internal);
	scram_b64_encode(raw, sizeof(raw), nonce);
	return scram_server_first_with_nonce(st, msg, len, nonce, out);
}

/* AuthMessage = client-first-bare "," server-first "," client-final-without-proof. */
static char *scram_auth_message(const struct scram_state *st, const char *final, size_t final_len,
                                size_t *len)
{
	size_t a = strlen(st->client_first_bare), b = strlen(st->server_first);
	char *m = malloc(a + b + final_len + 3);

	if (!m)
		return NULL;
	memcpy(m, st->client_first_bare, a);
	m[a] = ',';
	memcpy(m + a + 1, st->server_first, b);
	m[a + 1 + b] = ',';
	memcpy(m + a + b + 2, final, final_len);
	m[a + b + 2 + final_len] = '\0';
	*len = a + b + 2 + final_len;
	return m;
}

enum scram_status scram_server_final(struct scram_state *st, const char *msg, size_t len,
                                     char **out)
{
	uint8_t proof[SCRAM_KEY_LEN], signature[SCRAM_KEY_LEN], client_key[SCRAM_KEY_LEN];
	uint8_t computed[SCRAM_KEY_LEN];
	char cbind_expected[8], sig_b64[SCRAM_KEY_B64_LEN + 1];
	enum scram_status status = SCRAM_FAIL_PROTOCOL;
	const char *error = scram_err_malformed;
	char *buf, *p, *value, *nonce, *auth_message = NULL;
	size_t without_proof_len = 0, auth_len = 0;
	char attr;
	bool proof_ok;

	*out = NULL;
	st->error = NULL;
	if (!st->server_first)
		return scram_fail(st, SCRAM_FAIL_PROTOCOL, scram_err_malformed);
	buf = scram_message_copy(st, msg, len);
	if (!buf)
		return SCRAM_FAIL_PROTOCOL;
	p = buf;

	/* Without channel binding "c=" must repeat the gs2 header: "biws" or "eSws". */
	value = scram_read_attr(&p, 'c');
	if (!value)
		goto out;
	scram_b64_encode((const uint8_t *)st->gs2_header, strlen(st->gs2_header), cbind_expected);
	if (strcmp(value, cbind_expected) != 0) {
		error = scram_err_cbind;
		goto out;
	}
	nonce = scram_read_attr(&p, 'r');
	if (!nonce)
		goto out;
	/* Extensions may sit before the proof; the proof is the last attribute. */
	do {
		without_proof_len = (size_t)(p - buf) - 1;
		value = scram_read_any_attr(&p, &attr);
		if (!value)
			goto out;
	} while (attr != 'p');
	if (!scram_b64_decode_key(value, strlen(value), proof) || *p != '\0')
		goto out;

	if (strcmp(nonce, st->server_nonce) != 0) {
		error = scram_err_invalid;
		goto out;
	}

	/*
	 * The proof is checked even in a mock exchange, so that an unknown user costs the same
	 * time as a known one with a wrong password.
	 */
	auth_message = scram_auth_message(st, msg, without_proof_len, &auth_len);
	if (!auth_message ||
	    !scram_hmac(st->secret.stored_key, SCRAM_KEY_LEN, auth_message, auth_len, signature)) {
		error = scram_err_internal;
		goto out;
	}
	for (size_t i = 0; i < SCRAM_KEY_LEN; i++)
		client_key[i] = proof[i] ^ signature[i];
	if (!scram_sha256(client_key, sizeof(client_key), computed)) {
		error = scram_err_internal;
		goto out;
	}
	proof_ok = CRYPTO_memcmp(computed, st->secret.stored_key, SCRAM_KEY_LEN) == 0;
	if (!proof_ok || st->mock) {
		status = SCRAM_FAIL_AUTH;
		error = scram_err_auth;
		goto out;
	}

	if (!scram_hmac(st->secret.server_key, SCRAM_KEY_LEN, auth_message, auth_len, signature)) {
		error = scram_err_internal;
		goto out;
	}
	scram_b64_encode(signature, sizeof(signature), sig_b64);
	*out = scram_strdup_cat("v=", sig_b64);
	if (!*out) {
		error = scram_err_internal;
		goto out;
	}
	status = SCRAM_OK;
	error = NULL;
out:
	OPENSSL_cleanse(proof, sizeof(proof));
	OPENSSL_cleanse(client_key, sizeof(client_key));
	free(auth_message);
	free(buf);
	st->error = error;
	return status;
}

void scram_state_free(struct scram_state *st)
{
	free(st->client_first_bare);
	free(st->server_first);
	free(st->client_nonce);
	free(st->server_nonce);
	free(st->gs2_header);
	OPENSSL_cleanse(st, sizeof(*st));
}
