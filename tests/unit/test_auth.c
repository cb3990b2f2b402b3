/* Unit tests for auth.c: userlist.txt parsing and every exchange, driven by a scripted client. */
#include "pgtide/auth.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "pgtide/scram.h"
#include "unit.h"

#define USER       "alice"
#define PASSWORD   "pencil"
#define WRONG      "pencil2"
#define SECRET_MD5 "md5ee69efad287c7423caf0b3229d71f567" /* md5("pencil" "alice") */
/* "pencil" with salt "pgtide-auth-salt", computed with Python's hashlib. */
#define SECRET_SCRAM                                                                               \
	"SCRAM-SHA-256$4096:cGd0aWRlLWF1dGgtc2FsdA==$cnT6yFAbkfr9n/"                               \
	"b1JR8E6xv5SbaTBOZDnwSpSwORb3o=:"                                                          \
	"dGsKMQ+bj0g6qZe1TWpZEcOhkiaDJ0biJzgOoZXMVB4="
#define FAILED "password authentication failed for user \"alice\""

/* ---- userlist.txt ---- */

static void test_userlist_parse(void)
{
	static const struct {
		const char *name;
		const char *text;
		size_t len; /* 0: strlen(text) */
		bool ok;
		size_t n;
		const char *user;   /* first user */
		const char *secret; /* its secret */
		enum auth_secret_kind kind;
		int err_line;
		const char *err;
	} cases[] = {
	        {"simple", "\"alice\" \"pencil\"\n", 0, true, 1, "alice", "pencil",
	         AUTH_SECRET_PLAIN, 0, NULL},
	        {"md5 secret", "\"bob\" \"" SECRET_MD5 "\"", 0, true, 1, "bob", SECRET_MD5,
	         AUTH_SECRET_MD5, 0, NULL},
	        {"scram secret", "\"bob\" \"" SECRET_SCRAM "\"", 0, true, 1, "bob", SECRET_SCRAM,
	         AUTH_SECRET_SCRAM, 0, NULL},
	        {"md5 in capitals is a password", "\"bob\" \"md5EE69EFAD287C7423CAF0B3229D71F567\"",
	         0, true, 1, "bob", "md5EE69EFAD287C7423CAF0B3229D71F567", AUTH_SECRET_PLAIN, 0,
	         NULL},
	        {"short md5 is a password", "\"bob\" \"md5abc\"", 0, true, 1, "bob", "md5abc",
	         AUTH_SECRET_PLAIN, 0, NULL},
	        {"broken scram is a password", "\"bob\" \"SCRAM-SHA-256$1234\"", 0, true, 1, "bob",
	         "SCRAM-SHA-256$1234", AUTH_SECRET_PLAIN, 0, NULL},
	        {"doubled quotes", "\"a\"\"b\" \"p\"\"w\"\"\"", 0, true, 1, "a\"b", "p\"w\"",
	         AUTH_SECRET_PLAIN, 0, NULL},
	        {"comments and blank lines", "; comment\n# another\n\n   \n\t\"alice\" \"x\"\r\n",
	         0, true, 1, "alice", "x", AUTH_SECRET_PLAIN, 0, NULL},
	        {"extra fields ignored", "\"alice\" \"x\" \"extra\" junk \"", 0, true, 1, "alice",
	         "x", AUTH_SECRET_PLAIN, 0, NULL},
	        {"tabs between fields", "\"alice\"\t\t\"x\"", 0, true, 1, "alice", "x",
	         AUTH_SECRET_PLAIN, 0, NULL},
	        {"spaces inside quotes", "\"a b\" \" p w \"", 0, true, 1, "a b", " p w ",
	         AUTH_SECRET_PLAIN, 0, NULL},
	        {"several users", "\"a\" \"1\"\n\"b\" \"2\"\n\"c\" \"3\"\n", 0, true, 3, "a", "1",
	         AUTH_SECRET_PLAIN, 0, NULL},
	        {"empty secret", "\"alice\" \"\"", 0, true, 1, "alice", "", AUTH_SECRET_PLAIN, 0,
	         NULL},
	        {"empty file", "", 0, true, 0, NULL, NULL, AUTH_SECRET_PLAIN, 0, NULL},
	        {"only comments", ";x\n#y\n", 0, true, 0, NULL, NULL, AUTH_SECRET_PLAIN, 0, NULL},
	        {"unterminated user", "\"alice\n\"x\" \"y\"", 0, false, 0, NULL, NULL, 0, 1,
	         "unterminated quoted string"},
	        {"unterminated secret on line 3", "\"a\" \"b\"\n\n\"c\" \"d", 0, false, 0, NULL,
	         NULL, 0, 3, "unterminated quoted string"},
	        {"missing secret", "\"alice\"", 0, false, 0, NULL, NULL, 0, 1,
	         "expected a quoted secret after the user name"},
	        {"missing secret, then a line", "\"alice\"\n\"x\"", 0, false, 0, NULL, NULL, 0, 1,
	         "expected a quoted secret after the user name"},
	        {"unquoted user", "alice \"x\"", 0, false, 0, NULL, NULL, 0, 1,
	         "expected a quoted user name"},
	        {"unquoted secret", "\"alice\" x", 0, false, 0, NULL, NULL, 0, 1,
	         "expected a quoted secret after the user name"},
	        {"empty user", "\"a\" \"b\"\n\"\" \"x\"", 0, false, 0, NULL, NULL, 0, 2,
	         "empty user name"},
	        /* "" inside quotes is a quote, so this is one field: a"x, with no secret. */
	        {"no space between fields", "\"alice\"\"x\"", 0, false, 0, NULL, NULL, 0, 1,
	         "expected a quoted secret after the user name"},
	        {"NUL in a name", "\"al\0ice\" \"x\"", 12, false, 0, NULL, NULL, 0, 1,
	         "NUL byte inside a quoted string"},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct auth_userlist ul;
		int line = -1;
		const char *err = NULL;
		size_t len = cases[i].len ? cases[i].len : strlen(cases[i].text);
		bool ok = auth_userlist_parse(cases[i].text, len, &ul, &line, &err);

		CHECK(ok == cases[i].ok, "userlist %s: ok=%d (%s at line %d)", cases[i].name, ok,
		      err ? err : "", line);
		if (cases[i].ok && ok) {
			CHECK(ul.n == cases[i].n, "userlist %s: %zu users", cases[i].name, ul.n);
			if (cases[i].n > 0 && ul.n > 0) {
				CHECK_STR(ul.users[0].name, cases[i].user, "userlist %s: user",
				          cases[i].name);
				CHECK_STR(ul.users[0].secret, cases[i].secret,
				          "userlist %s: secret", cases[i].name);
				CHECK(ul.users[0].kind == cases[i].kind, "userlist %s: kind %d",
				      cases[i].name, ul.users[0].kind);
			}
		} else if (!cases[i].ok && !ok) {
			CHECK(line == cases[i].err_line, "userlist %s: error line %d",
			      cases[i].name, line);
			CHECK_STR(err, cases[i].err, "userlist %s: error \"%s\"", cases[i].name,
			          err ? err : "(null)");
			CHECK(ul.n == 0 && ul.users == NULL, "userlist %s: nothing left allocated",
			      cases[i].name);
		}
		auth_userlist_free(&ul);
	}
}

static void test_userlist_find(void)
{
	const char text[] = "\"a\" \"1\"\n\"b\" \"2\"\n\"a\" \"3\"\n";
	struct auth_userlist ul;
	int line;
	const char *err;
	const struct auth_user *u;

	CHECK(auth_userlist_parse(text, strlen(text), &ul, &line, &err), "find: parse");
	u = auth_userlist_find(&ul, "a");
	CHECK(u && strcmp(u->secret, "3") == 0, "find: the last line for a user wins");
	u = auth_userlist_find(&ul, "b");
	CHECK(u && strcmp(u->secret, "2") == 0, "find: b");
	CHECK(auth_userlist_find(&ul, "c") == NULL, "find: unknown user");
	CHECK(auth_userlist_find(&ul, "A") == NULL, "find: names are case-sensitive");
	CHECK(auth_userlist_find(&ul, NULL) == NULL, "find: NULL name");
	auth_userlist_free(&ul);
}

/* A plain secret carries its md5 verifier from the load on; other kinds carry none. */
static void test_userlist_md5_of_plain(void)
{
	const char text[] = "\"alice\" \"pencil\"\n\"bob\" \"" SECRET_MD5 "\"\n";
	struct auth_userlist ul;
	int line;
	const char *err;
	const struct auth_user *u;

	CHECK(auth_userlist_parse(text, strlen(text), &ul, &line, &err), "md5_of_plain: parse");
	u = auth_userlist_find(&ul, "alice");
	CHECK(u && u->kind == AUTH_SECRET_PLAIN, "md5_of_plain: alice is plain");
	CHECK_STR(u ? u->md5_of_plain : "", SECRET_MD5, "md5_of_plain: md5(pencil alice)");
	u = auth_userlist_find(&ul, "bob");
	CHECK(u && u->kind == AUTH_SECRET_MD5, "md5_of_plain: bob is md5");
	CHECK_STR(u ? u->md5_of_plain : "?", "", "md5_of_plain: none for an md5 secret");
	auth_userlist_free(&ul);
}

/* ---- md5 ---- */

static void test_md5(void)
{
	static const struct {
		const char *password, *user, *want;
	} hashes[] = {
	        /* From PostgreSQL's own regression tests (password.sql, regress_passwd2). */
	        {"foo", "regress_passwd2", "md5dfa155cadd5f4ad57860162f3fab9cdb"},
	        {PASSWORD, USER, SECRET_MD5},
	};
	static const struct {
		const char *hash;
		unsigned char salt[4];
		const char *want;
	} salted[] = {
	        {"dfa155cadd5f4ad57860162f3fab9cdb",
	         {1, 2, 3, 4},
	         "md537e91fb3bc0c62720850dd0eef13c5f7"},
	        {"dfa155cadd5f4ad57860162f3fab9cdb",
	         {0xff, 0, 0x80, 0x7f},
	         "md567799a1a7e3137e43ba0f31bbe2ca5f3"},
	};

	for (size_t i = 0; i < sizeof(hashes) / sizeof(hashes[0]); i++) {
		char out[36];
		auth_md5_hash(hashes[i].password, hashes[i].user, out);
		CHECK_STR(out, hashes[i].want, "md5 hash of %s/%s", hashes[i].user,
		          hashes[i].password);
	}
	for (size_t i = 0; i < sizeof(salted) / sizeof(salted[0]); i++) {
		char out[36];
		auth_md5_salted(salted[i].hash, salted[i].salt, out);
		CHECK_STR(out, salted[i].want, "md5 salted case %zu", i);
	}
}

/* ---- a scripted client ---- */

/* What the scripted client does wrong, if anything. */
enum tamper {
	TAMPER_NONE = 0,
	TAMPER_PW_EMPTY,        /* password message with just the terminator */
	TAMPER_PW_NO_NUL,       /* password without its terminating NUL */
	TAMPER_PW_INNER_NUL,    /* a NUL inside the password */
	TAMPER_TOO_LONG,        /* first reply longer than PG_MAX_AUTH_TOKEN_LENGTH */
	TAMPER_SASL_MECH,       /* selects SCRAM-SHA-256-PLUS, which was not offered */
	TAMPER_SASL_NO_LEN,     /* SASLInitialResponse stops after the mechanism name */
	TAMPER_SASL_LEN_LONG,   /* its length says more than follows */
	TAMPER_SASL_LEN_SHORT,  /* bytes follow the data */
	TAMPER_SASL_NO_INITIAL, /* length -1: client-first comes in a SASLResponse (valid) */
	TAMPER_SCRAM_FLAG,      /* client-first with an unknown gs2 flag */
	TAMPER_SCRAM_CBIND,     /* client-first asks for channel binding */
	TAMPER_SCRAM_NONCE,     /* client-final with an altered nonce */
	TAMPER_EXTRA_STEP,      /* one more message after AUTH_OK */
};

struct scram_client {
	const char *gs2;
	char first_bare[128];
	char final[512];
	char expected_server_final[80];
};

static bool scram_client_final(struct scram_client *c, const char *password,
                               const char *server_first)
{
	char nonce[128], salt_b64[128], without_proof[256], auth_message[1024], gs2_b64[16];
	char proof_b64[64], sig_b64[64];
	uint8_t salt[128], salted[32], client_key[32], stored_key[32], server_key[32], sig[32];
	unsigned int len;
	int iterations;
	long salt_len;

	if (sscanf(server_first, "r=%127[^,],s=%127[^,],i=%d", nonce, salt_b64, &iterations) != 3)
		return false;
	salt_len = scram_b64_decode(salt_b64, strlen(salt_b64), salt);
	if (salt_len < 0)
		return false;
	PKCS5_PBKDF2_HMAC(password, (int)strlen(password), salt, (int)salt_len, iterations,
	                  EVP_sha256(), 32, salted);
	HMAC(EVP_sha256(), salted, 32, (const uint8_t *)"Client Key", 10, client_key, &len);
	EVP_Digest(client_key, 32, stored_key, &len, EVP_sha256(), NULL);
	HMAC(EVP_sha256(), salted, 32, (const uint8_t *)"Server Key", 10, server_key, &len);
	scram_b64_encode((const uint8_t *)c->gs2, strlen(c->gs2), gs2_b64);
	snprintf(without_proof, sizeof(without_proof), "c=%s,r=%s", gs2_b64, nonce);
	snprintf(auth_message, sizeof(auth_message), "%s,%s,%s", c->first_bare, server_first,
	         without_proof);
	HMAC(EVP_sha256(), stored_key, 32, (const uint8_t *)auth_message, strlen(auth_message), sig,
	     &len);
	for (int i = 0; i < 32; i++)
		sig[i] ^= client_key[i];
	scram_b64_encode(sig, 32, proof_b64);
	snprintf(c->final, sizeof(c->final), "%s,p=%s", without_proof, proof_b64);
	HMAC(EVP_sha256(), server_key, 32, (const uint8_t *)auth_message, strlen(auth_message), sig,
	     &len);
	scram_b64_encode(sig, 32, sig_b64);
	snprintf(c->expected_server_final, sizeof(c->expected_server_final), "v=%s", sig_b64);
	return true;
}

/* The md5 answer computed from scratch with EVP, not with auth_md5_*. */
static void md5_response(const char *password, const char *user, const uint8_t salt[4],
                         char out[36])
{
	uint8_t d[16];
	char hex[33];
	unsigned int len;
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();

	EVP_DigestInit_ex(ctx, EVP_md5(), NULL);
	EVP_DigestUpdate(ctx, password, strlen(password));
	EVP_DigestUpdate(ctx, user, strlen(user));
	EVP_DigestFinal_ex(ctx, d, &len);
	for (int i = 0; i < 16; i++)
		sprintf(hex + 2 * i, "%02x", d[i]);
	EVP_DigestInit_ex(ctx, EVP_md5(), NULL);
	EVP_DigestUpdate(ctx, hex, 32);
	EVP_DigestUpdate(ctx, salt, 4);
	EVP_DigestFinal_ex(ctx, d, &len);
	EVP_MD_CTX_free(ctx);
	strcpy(out, "md5");
	for (int i = 0; i < 16; i++)
		sprintf(out + 3 + 2 * i, "%02x", d[i]);
}

/* What one run of the exchange produced. */
struct run {
	enum auth_status status;
	char codes[64];         /* authentication request codes seen, "10,11,12" */
	bool saw_final;         /* a SASLFinal came */
	bool final_ok;          /* ... carrying the signature the client computed */
	char server_first[256]; /* the last server-first seen */
	uint8_t md5_salt[4];    /* the last md5 salt seen */
	bool framing_ok;        /* every message was a well-formed 'R' */
	struct auth_exchange *ex;
};

static void client_reply(enum tamper tamper, const char *password, uint32_t code,
                         const uint8_t *data, size_t data_len, struct scram_client *c,
                         struct run *r, struct pbuf *reply)
{
	char buf[600];
	size_t off;

	switch (code) {
	case 3:
		if (tamper == TAMPER_PW_EMPTY) {
			pbuf_put_str(reply, "");
		} else if (tamper == TAMPER_PW_NO_NUL) {
			pbuf_put(reply, password, strlen(password));
		} else if (tamper == TAMPER_PW_INNER_NUL) {
			pbuf_put(reply, "pen\0cil", 8);
		} else if (tamper == TAMPER_TOO_LONG) {
			char *big = malloc(70000);
			memset(big, 'a', 70000);
			big[69999] = '\0';
			pbuf_put(reply, big, 70000);
			free(big);
		} else {
			pbuf_put_str(reply, password);
		}
		break;
	case 5:
		memcpy(r->md5_salt, data, 4);
		if (tamper == TAMPER_PW_EMPTY) {
			pbuf_put_str(reply, "");
		} else {
			md5_response(password, USER, data, buf);
			pbuf_put_str(reply, buf);
		}
		break;
	case 10: {
		const char *first_data;
		size_t first_len;

		CHECK(data_len == 15 && memcmp(data, "SCRAM-SHA-256\0\0", 15) == 0,
		      "AuthenticationSASL lists only SCRAM-SHA-256");
		c->gs2 = "n,,";
		snprintf(c->first_bare, sizeof(c->first_bare), "n=%s,r=rOprNGfwEbeRWgbNEkqO", USER);
		if (tamper == TAMPER_SCRAM_FLAG)
			snprintf(buf, sizeof(buf), "q,,%s", c->first_bare);
		else if (tamper == TAMPER_SCRAM_CBIND)
			snprintf(buf, sizeof(buf), "p=tls-server-end-point,,%s", c->first_bare);
		else
			snprintf(buf, sizeof(buf), "%s%s", c->gs2, c->first_bare);
		first_data = buf;
		first_len = strlen(buf);
		if (tamper == TAMPER_TOO_LONG) {
			char *big = calloc(1, 70000);
			pbuf_put(reply, big, 70000);
			free(big);
			break;
		}
		pbuf_put_str(reply,
		             tamper == TAMPER_SASL_MECH ? "SCRAM-SHA-256-PLUS" : "SCRAM-SHA-256");
		if (tamper == TAMPER_SASL_NO_LEN)
			break;
		if (tamper == TAMPER_SASL_NO_INITIAL) {
			pbuf_put_u32(reply, 0xffffffffu);
			break;
		}
		pbuf_put_u32(reply, (uint32_t)first_len + (tamper == TAMPER_SASL_LEN_LONG ? 1 : 0));
		pbuf_put(reply, first_data, first_len);
		if (tamper == TAMPER_SASL_LEN_SHORT)
			pbuf_put_u8(reply, 'x');
		break;
	}
	case 11:
		if (data_len == 0) {
			/* The empty challenge after a SASLInitialResponse without data. */
			snprintf(buf, sizeof(buf), "%s%s", c->gs2, c->first_bare);
			pbuf_put(reply, buf, strlen(buf));
			break;
		}
		snprintf(r->server_first, sizeof(r->server_first), "%.*s", (int)data_len,
		         (const char *)data);
		CHECK(scram_client_final(c, password, r->server_first),
		      "client parses server-first \"%s\"", r->server_first);
		if (tamper == TAMPER_SCRAM_NONCE) {
			char *nonce = strstr(c->final, ",r=");
			if (nonce)
				nonce[3] = nonce[3] == 'x' ? 'y' : 'x';
		}
		pbuf_put(reply, c->final, strlen(c->final));
		break;
	case 12:
		r->saw_final = true;
		off = strlen(c->expected_server_final);
		r->final_ok = data_len == off && memcmp(data, c->expected_server_final, off) == 0;
		break;
	default:
		r->framing_ok = false;
		break;
	}
}

/*
 * Runs a whole exchange for USER, answering every request the way tamper says, with iterations
 * as scram_iterations.
 */
static void run_exchange_iter(enum auth_type type, const struct auth_user *u, const char *password,
                              enum tamper tamper, int iterations, struct run *r)
{
	struct pbuf out = {0}, reply = {0};
	struct scram_client c = {0};

	memset(r, 0, sizeof(*r));
	r->framing_ok = true;
	r->status = auth_start(&r->ex, type, USER, u, iterations, &out);
	for (int round = 0; round < 8; round++) {
		size_t off = 0;

		while (off < out.len) {
			uint32_t len, code;
			size_t n = strlen(r->codes);

			if (out.len - off < 9 || out.data[off] != 'R') {
				r->framing_ok = false;
				break;
			}
			len = proto_get_u32(out.data + off + 1);
			if (len < 8 || len > out.len - off - 1) {
				r->framing_ok = false;
				break;
			}
			code = proto_get_u32(out.data + off + 5);
			snprintf(r->codes + n, sizeof(r->codes) - n, "%s%u", n ? "," : "", code);
			if (r->status == AUTH_CONTINUE || code == 12)
				client_reply(tamper, password, code, out.data + off + 9, len - 8,
				             &c, r, &reply);
			off += 1 + len;
		}
		pbuf_reset(&out);
		if (r->status != AUTH_CONTINUE) {
			if (r->status == AUTH_OK && tamper == TAMPER_EXTRA_STEP)
				r->status = auth_step(r->ex, "x", 2, &out);
			break;
		}
		r->status = auth_step(r->ex, reply.data, reply.len, &out);
		pbuf_reset(&reply);
	}
	pbuf_free(&out);
	pbuf_free(&reply);
}

static void run_exchange(enum auth_type type, const struct auth_user *u, const char *password,
                         enum tamper tamper, struct run *r)
{
	run_exchange_iter(type, u, password, tamper, SCRAM_DEFAULT_ITERATIONS, r);
}

/* A user file entry for USER built through the parser, so kinds come from real detection. */
static bool make_user(const char *secret, struct auth_userlist *ul)
{
	char line[512];
	int err_line;
	const char *err;

	snprintf(line, sizeof(line), "\"%s\" \"%s\"\n", USER, secret);
	return auth_userlist_parse(line, strlen(line), ul, &err_line, &err) && ul->n == 1;
}

static void test_exchanges(void)
{
	static const struct {
		const char *name;
		enum auth_type type;
		const char *secret; /* USER's stored secret; NULL: USER is not in the file */
		const char *password;
		enum tamper tamper;
		enum auth_status want;
		const char *codes;
		const char *sqlstate; /* for AUTH_FAIL */
		const char *message;  /* for AUTH_FAIL */
		const char *plain;    /* auth_plain_password() after AUTH_OK */
	} cases[] = {
	        /* trust: no request; the user must be in the file */
	        {"trust/plain", AUTH_TYPE_TRUST, PASSWORD, "", 0, AUTH_OK, "", NULL, NULL,
	         PASSWORD},
	        {"trust/md5", AUTH_TYPE_TRUST, SECRET_MD5, "", 0, AUTH_OK, "", NULL, NULL, NULL},
	        {"trust/scram", AUTH_TYPE_TRUST, SECRET_SCRAM, "", 0, AUTH_OK, "", NULL, NULL,
	         NULL},
	        {"trust/empty secret", AUTH_TYPE_TRUST, "", "", 0, AUTH_OK, "", NULL, NULL, NULL},
	        {"trust/unknown", AUTH_TYPE_TRUST, NULL, "", 0, AUTH_FAIL, "", "28000",
	         "role \"alice\" does not exist", NULL},
	        /* any: whoever asks */
	        {"any/unknown", AUTH_TYPE_ANY, NULL, "", 0, AUTH_OK, "", NULL, NULL, NULL},
	        {"any/plain", AUTH_TYPE_ANY, PASSWORD, "", 0, AUTH_OK, "", NULL, NULL, PASSWORD},
	        /* cleartext against every kind of secret */
	        {"plain/plain right", AUTH_TYPE_PLAIN, PASSWORD, PASSWORD, 0, AUTH_OK, "3", NULL,
	         NULL, PASSWORD},
	        {"plain/plain wrong", AUTH_TYPE_PLAIN, PASSWORD, WRONG, 0, AUTH_FAIL, "3", "28P01",
	         FAILED, NULL},
	        {"plain/plain prefix", AUTH_TYPE_PLAIN, PASSWORD, "pen", 0, AUTH_FAIL, "3", "28P01",
	         FAILED, NULL},
	        {"plain/md5 right", AUTH_TYPE_PLAIN, SECRET_MD5, PASSWORD, 0, AUTH_OK, "3", NULL,
	         NULL, PASSWORD},
	        {"plain/md5 wrong", AUTH_TYPE_PLAIN, SECRET_MD5, WRONG, 0, AUTH_FAIL, "3", "28P01",
	         FAILED, NULL},
	        {"plain/md5 hash as password", AUTH_TYPE_PLAIN, SECRET_MD5, SECRET_MD5, 0,
	         AUTH_FAIL, "3", "28P01", FAILED, NULL},
	        {"plain/scram right", AUTH_TYPE_PLAIN, SECRET_SCRAM, PASSWORD, 0, AUTH_OK, "3",
	         NULL, NULL, PASSWORD},
	        {"plain/scram wrong", AUTH_TYPE_PLAIN, SECRET_SCRAM, WRONG, 0, AUTH_FAIL, "3",
	         "28P01", FAILED, NULL},
	        {"plain/unknown", AUTH_TYPE_PLAIN, NULL, PASSWORD, 0, AUTH_FAIL, "3", "28P01",
	         FAILED, NULL},
	        {"plain/empty secret", AUTH_TYPE_PLAIN, "", PASSWORD, 0, AUTH_FAIL, "3", "28P01",
	         FAILED, NULL},
	        {"plain/empty password", AUTH_TYPE_PLAIN, PASSWORD, "", TAMPER_PW_EMPTY, AUTH_FAIL,
	         "3", "28P01", "empty password returned by client", NULL},
	        {"plain/no terminator", AUTH_TYPE_PLAIN, PASSWORD, PASSWORD, TAMPER_PW_NO_NUL,
	         AUTH_FAIL, "3", "08P01", "invalid password packet size", NULL},
	        {"plain/inner NUL", AUTH_TYPE_PLAIN, PASSWORD, PASSWORD, TAMPER_PW_INNER_NUL,
	         AUTH_FAIL, "3", "08P01", "invalid password packet size", NULL},
	        {"plain/too long", AUTH_TYPE_PLAIN, PASSWORD, PASSWORD, TAMPER_TOO_LONG, AUTH_FAIL,
	         "3", "08P01", "invalid message length", NULL},
	        {"plain/message after ok", AUTH_TYPE_PLAIN, PASSWORD, PASSWORD, TAMPER_EXTRA_STEP,
	         AUTH_FAIL, "3", "08P01",
	         "unexpected password message: authentication already finished", NULL},
	        /* md5, or SCRAM for SCRAM secrets as PgBouncer does */
	        {"md5/plain right", AUTH_TYPE_MD5, PASSWORD, PASSWORD, 0, AUTH_OK, "5", NULL, NULL,
	         PASSWORD},
	        {"md5/plain wrong", AUTH_TYPE_MD5, PASSWORD, WRONG, 0, AUTH_FAIL, "5", "28P01",
	         FAILED, NULL},
	        {"md5/md5 right", AUTH_TYPE_MD5, SECRET_MD5, PASSWORD, 0, AUTH_OK, "5", NULL, NULL,
	         NULL},
	        {"md5/md5 wrong", AUTH_TYPE_MD5, SECRET_MD5, WRONG, 0, AUTH_FAIL, "5", "28P01",
	         FAILED, NULL},
	        {"md5/scram right", AUTH_TYPE_MD5, SECRET_SCRAM, PASSWORD, 0, AUTH_OK, "10,11,12",
	         NULL, NULL, NULL},
	        {"md5/scram wrong", AUTH_TYPE_MD5, SECRET_SCRAM, WRONG, 0, AUTH_FAIL, "10,11",
	         "28P01", FAILED, NULL},
	        {"md5/unknown", AUTH_TYPE_MD5, NULL, PASSWORD, 0, AUTH_FAIL, "5", "28P01", FAILED,
	         NULL},
	        {"md5/empty secret", AUTH_TYPE_MD5, "", "", 0, AUTH_FAIL, "5", "28P01", FAILED,
	         NULL},
	        {"md5/empty password", AUTH_TYPE_MD5, SECRET_MD5, "", TAMPER_PW_EMPTY, AUTH_FAIL,
	         "5", "28P01", "empty password returned by client", NULL},
	        /* SCRAM */
	        {"scram/plain right", AUTH_TYPE_SCRAM, PASSWORD, PASSWORD, 0, AUTH_OK, "10,11,12",
	         NULL, NULL, PASSWORD},
	        {"scram/plain wrong", AUTH_TYPE_SCRAM, PASSWORD, WRONG, 0, AUTH_FAIL, "10,11",
	         "28P01", FAILED, NULL},
	        {"scram/scram right", AUTH_TYPE_SCRAM, SECRET_SCRAM, PASSWORD, 0, AUTH_OK,
	         "10,11,12", NULL, NULL, NULL},
	        {"scram/scram wrong", AUTH_TYPE_SCRAM, SECRET_SCRAM, WRONG, 0, AUTH_FAIL, "10,11",
	         "28P01", FAILED, NULL},
	        {"scram/md5 secret, right password", AUTH_TYPE_SCRAM, SECRET_MD5, PASSWORD, 0,
	         AUTH_FAIL, "10,11", "28P01", FAILED, NULL},
	        {"scram/unknown", AUTH_TYPE_SCRAM, NULL, PASSWORD, 0, AUTH_FAIL, "10,11", "28P01",
	         FAILED, NULL},
	        {"scram/empty secret", AUTH_TYPE_SCRAM, "", PASSWORD, 0, AUTH_FAIL, "10,11",
	         "28P01", FAILED, NULL},
	        {"scram/no initial response", AUTH_TYPE_SCRAM, SECRET_SCRAM, PASSWORD,
	         TAMPER_SASL_NO_INITIAL, AUTH_OK, "10,11,11,12", NULL, NULL, NULL},
	        {"scram/unknown, no initial response", AUTH_TYPE_SCRAM, NULL, PASSWORD,
	         TAMPER_SASL_NO_INITIAL, AUTH_FAIL, "10,11,11", "28P01", FAILED, NULL},
	        {"scram/PLUS mechanism", AUTH_TYPE_SCRAM, SECRET_SCRAM, PASSWORD, TAMPER_SASL_MECH,
	         AUTH_FAIL, "10", "08P01",
	         "client selected an invalid SASL authentication mechanism", NULL},
	        {"scram/no length", AUTH_TYPE_SCRAM, SECRET_SCRAM, PASSWORD, TAMPER_SASL_NO_LEN,
	         AUTH_FAIL, "10", "08P01", "insufficient data left in message", NULL},
	        {"scram/length too long", AUTH_TYPE_SCRAM, SECRET_SCRAM, PASSWORD,
	         TAMPER_SASL_LEN_LONG, AUTH_FAIL, "10", "08P01",
	         "insufficient data left in message", NULL},
	        {"scram/bytes after data", AUTH_TYPE_SCRAM, SECRET_SCRAM, PASSWORD,
	         TAMPER_SASL_LEN_SHORT, AUTH_FAIL, "10", "08P01", "invalid message format", NULL},
	        {"scram/bad gs2 flag", AUTH_TYPE_SCRAM, SECRET_SCRAM, PASSWORD, TAMPER_SCRAM_FLAG,
	         AUTH_FAIL, "10", "08P01", "malformed SCRAM message", NULL},
	        {"scram/channel binding", AUTH_TYPE_SCRAM, SECRET_SCRAM, PASSWORD,
	         TAMPER_SCRAM_CBIND, AUTH_FAIL, "10", "08P01", "malformed SCRAM message", NULL},
	        {"scram/unknown, channel binding", AUTH_TYPE_SCRAM, NULL, PASSWORD,
	         TAMPER_SCRAM_CBIND, AUTH_FAIL, "10", "08P01", "malformed SCRAM message", NULL},
	        {"scram/altered nonce", AUTH_TYPE_SCRAM, SECRET_SCRAM, PASSWORD, TAMPER_SCRAM_NONCE,
	         AUTH_FAIL, "10,11", "08P01", "invalid SCRAM response", NULL},
	        {"scram/too long", AUTH_TYPE_SCRAM, SECRET_SCRAM, PASSWORD, TAMPER_TOO_LONG,
	         AUTH_FAIL, "10", "08P01", "invalid message length", NULL},
	        {"scram/message after ok", AUTH_TYPE_SCRAM, SECRET_SCRAM, PASSWORD,
	         TAMPER_EXTRA_STEP, AUTH_FAIL, "10,11,12", "08P01",
	         "unexpected password message: authentication already finished", NULL},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct auth_userlist ul = {0};
		const struct auth_user *u = NULL;
		struct run r;

		if (cases[i].secret) {
			CHECK(make_user(cases[i].secret, &ul), "%s: user file", cases[i].name);
			u = auth_userlist_find(&ul, USER);
		}
		run_exchange(cases[i].type, u, cases[i].password, cases[i].tamper, &r);
		CHECK(r.status == cases[i].want, "%s: status %d, want %d (%s %s)", cases[i].name,
		      r.status, cases[i].want, auth_fail_sqlstate(r.ex), auth_fail_message(r.ex));
		CHECK_STR(r.codes, cases[i].codes, "%s: requests \"%s\"", cases[i].name, r.codes);
		CHECK(r.framing_ok, "%s: well-formed AuthenticationRequest messages",
		      cases[i].name);
		if (cases[i].want == AUTH_FAIL) {
			CHECK_STR(auth_fail_sqlstate(r.ex), cases[i].sqlstate, "%s: sqlstate %s",
			          cases[i].name, auth_fail_sqlstate(r.ex));
			CHECK_STR(auth_fail_message(r.ex), cases[i].message, "%s: message \"%s\"",
			          cases[i].name, auth_fail_message(r.ex));
		} else {
			CHECK_STR(auth_plain_password(r.ex), cases[i].plain, "%s: plain password",
			          cases[i].name);
		}
		if (strstr(cases[i].codes, "12"))
			CHECK(r.saw_final && r.final_ok, "%s: SASLFinal proves the server",
			      cases[i].name);
		auth_free(r.ex);
		auth_userlist_free(&ul);
	}
}

/* Challenges must not repeat, and an unknown user's mock salt must not change between tries. */
static void test_challenges(void)
{
	struct auth_userlist ul;
	struct run a, b;
	char salt_a[64] = "", salt_b[64] = "";

	CHECK(make_user(SECRET_MD5, &ul), "challenges: user file");
	run_exchange(AUTH_TYPE_MD5, &ul.users[0], PASSWORD, TAMPER_NONE, &a);
	run_exchange(AUTH_TYPE_MD5, &ul.users[0], PASSWORD, TAMPER_NONE, &b);
	CHECK(memcmp(a.md5_salt, b.md5_salt, 4) != 0, "md5 salts are random");
	auth_free(a.ex);
	auth_free(b.ex);
	auth_userlist_free(&ul);

	/*
	 * A plain secret's SCRAM verifier is made at the first login and kept with the user file
	 * entry (PBKDF2 once, not per login): the same random salt for every login until the
	 * file is loaded again, which draws a new one. Server nonces are fresh every time.
	 */
	char salt_c[64] = "";
	struct run c;
	CHECK(make_user(PASSWORD, &ul), "challenges: user file");
	run_exchange(AUTH_TYPE_SCRAM, &ul.users[0], PASSWORD, TAMPER_NONE, &a);
	run_exchange(AUTH_TYPE_SCRAM, &ul.users[0], PASSWORD, TAMPER_NONE, &b);
	sscanf(a.server_first, "r=%*[^,],s=%63[^,]", salt_a);
	sscanf(b.server_first, "r=%*[^,],s=%63[^,]", salt_b);
	CHECK(salt_a[0] && strcmp(salt_a, salt_b) == 0, "one salt per user file load");
	CHECK(a.status == AUTH_OK && b.status == AUTH_OK && a.final_ok && b.final_ok,
	      "both logins succeed");
	CHECK(strcmp(a.server_first, b.server_first) != 0, "server nonces differ");
	auth_free(a.ex);
	auth_free(b.ex);
	run_exchange(AUTH_TYPE_SCRAM, &ul.users[0], "wrong", TAMPER_NONE, &a);
	CHECK(a.status == AUTH_FAIL, "a wrong password still fails with the kept verifier");
	auth_free(a.ex);
	auth_userlist_free(&ul);
	CHECK(make_user(PASSWORD, &ul), "challenges: user file again");
	run_exchange(AUTH_TYPE_SCRAM, &ul.users[0], PASSWORD, TAMPER_NONE, &c);
	sscanf(c.server_first, "r=%*[^,],s=%63[^,]", salt_c);
	CHECK(salt_c[0] && strcmp(salt_a, salt_c) != 0, "a new load draws a new salt");
	CHECK(c.status == AUTH_OK && c.final_ok, "login after the reload succeeds");
	auth_free(c.ex);
	auth_userlist_free(&ul);

	/* An unknown user looks like a real one: same salt each time, default iterations. */
	run_exchange(AUTH_TYPE_SCRAM, NULL, PASSWORD, TAMPER_NONE, &a);
	run_exchange(AUTH_TYPE_SCRAM, NULL, WRONG, TAMPER_NONE, &b);
	sscanf(a.server_first, "r=%*[^,],s=%63[^,]", salt_a);
	sscanf(b.server_first, "r=%*[^,],s=%63[^,]", salt_b);
	CHECK(salt_a[0] && strcmp(salt_a, salt_b) == 0, "mock salt is stable for a user");
	CHECK(strstr(a.server_first, ",i=4096") != NULL, "mock iterations are the default");
	auth_free(a.ex);
	auth_free(b.ex);
}

/* The "i=" of a server-first-message, or -1. */
static int server_first_iterations(const struct run *r)
{
	const char *i = strstr(r->server_first, ",i=");
	return i ? atoi(i + 3) : -1;
}

/*
 * scram_iterations: the count of every verifier pgtide makes (a plain secret's, the mock one of
 * a user without a SCRAM secret); a stored SCRAM secret keeps its own count.
 */
static void test_scram_iterations(void)
{
	static const struct {
		const char *name;
		enum auth_type type;
		const char *secret; /* NULL: USER is not in the file */
		const char *password;
		int iterations;
		int want_i;
		enum auth_status want;
	} rows[] = {
	        {"plain secret", AUTH_TYPE_SCRAM, PASSWORD, PASSWORD, 5000, 5000, AUTH_OK},
	        {"plain secret, one round", AUTH_TYPE_SCRAM, PASSWORD, PASSWORD, 1, 1, AUTH_OK},
	        {"plain secret, wrong password", AUTH_TYPE_SCRAM, PASSWORD, WRONG, 5000, 5000,
	         AUTH_FAIL},
	        {"stored SCRAM secret keeps its count", AUTH_TYPE_SCRAM, SECRET_SCRAM, PASSWORD,
	         5000, 4096, AUTH_OK},
	        {"md5 auth, SCRAM secret keeps its count", AUTH_TYPE_MD5, SECRET_SCRAM, PASSWORD,
	         5000, 4096, AUTH_OK},
	        {"md5 secret: mock", AUTH_TYPE_SCRAM, SECRET_MD5, PASSWORD, 5000, 5000, AUTH_FAIL},
	        {"unknown user: mock", AUTH_TYPE_SCRAM, NULL, PASSWORD, 5000, 5000, AUTH_FAIL},
	        {"unknown user: mock, default", AUTH_TYPE_SCRAM, NULL, PASSWORD, 4096, 4096,
	         AUTH_FAIL},
	};
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		struct auth_userlist ul = {0};
		struct run r;
		if (rows[i].secret)
			CHECK(make_user(rows[i].secret, &ul), "%s: user file", rows[i].name);
		run_exchange_iter(rows[i].type, rows[i].secret ? &ul.users[0] : NULL,
		                  rows[i].password, TAMPER_NONE, rows[i].iterations, &r);
		CHECK(server_first_iterations(&r) == rows[i].want_i, "%s: i=%d, want %d (%s)",
		      rows[i].name, server_first_iterations(&r), rows[i].want_i, r.server_first);
		CHECK(r.status == rows[i].want, "%s: status %d, want %d", rows[i].name,
		      (int)r.status, (int)rows[i].want);
		if (rows[i].want == AUTH_OK)
			CHECK(r.final_ok, "%s: server signature checks out", rows[i].name);
		auth_free(r.ex);
		auth_userlist_free(&ul);
	}

	/* A kept verifier is made again when scram_iterations changes (SET, reload). */
	struct auth_userlist ul = {0};
	struct run a, b, c;
	char salt_a[64] = "", salt_b[64] = "", salt_c[64] = "";
	CHECK(make_user(PASSWORD, &ul), "iterations change: user file");
	run_exchange_iter(AUTH_TYPE_SCRAM, &ul.users[0], PASSWORD, TAMPER_NONE, 5000, &a);
	run_exchange_iter(AUTH_TYPE_SCRAM, &ul.users[0], PASSWORD, TAMPER_NONE, 6000, &b);
	run_exchange_iter(AUTH_TYPE_SCRAM, &ul.users[0], PASSWORD, TAMPER_NONE, 6000, &c);
	sscanf(a.server_first, "r=%*[^,],s=%63[^,]", salt_a);
	sscanf(b.server_first, "r=%*[^,],s=%63[^,]", salt_b);
	sscanf(c.server_first, "r=%*[^,],s=%63[^,]", salt_c);
	CHECK(server_first_iterations(&a) == 5000 && server_first_iterations(&b) == 6000 &&
	              server_first_iterations(&c) == 6000,
	      "iterations follow the setting: %d, %d, %d", server_first_iterations(&a),
	      server_first_iterations(&b), server_first_iterations(&c));
	CHECK(salt_a[0] && strcmp(salt_a, salt_b) != 0, "a new count makes a new verifier");
	CHECK(salt_b[0] && strcmp(salt_b, salt_c) == 0, "... which is kept while it stays");
	CHECK(a.status == AUTH_OK && b.status == AUTH_OK && c.status == AUTH_OK && a.final_ok &&
	              b.final_ok && c.final_ok,
	      "every login succeeds");
	auth_free(a.ex);
	auth_free(b.ex);
	auth_free(c.ex);
	auth_userlist_free(&ul);
}

static void test_misuse(void)
{
	struct pbuf out = {0};

	CHECK_STR(auth_fail_sqlstate(NULL), "53200", "NULL exchange: out of memory");
	CHECK(auth_plain_password(NULL) == NULL, "NULL exchange: no password");
	CHECK(auth_step(NULL, "x", 2, &out) == AUTH_FAIL, "NULL exchange: step fails");
	auth_free(NULL);
	pbuf_free(&out);
}

int main(void)
{
	test_userlist_parse();
	test_userlist_find();
	test_userlist_md5_of_plain();
	test_md5();
	test_exchanges();
	test_challenges();
	test_scram_iterations();
	test_misuse();
	UNIT_DONE();
}
