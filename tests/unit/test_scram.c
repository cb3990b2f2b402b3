/* Unit tests for scram.c: base64, verifiers, RFC 7677's exchange and a scripted client. */
#include "pgtide/scram.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "unit.h"

/* The test hook in scram.c (not in scram.h on purpose: see there). */
enum scram_status scram_server_first_with_nonce(struct scram_state *st, const char *msg, size_t len,
                                                const char *server_nonce, char **out);

/* ---- RFC 7677 section 3 ---- */

#define RFC_SALT           "W22ZaJ0SNY7soEsUEjb6gQ=="
#define RFC_CLIENT_NONCE   "rOprNGfwEbeRWgbNEkqO"
#define RFC_SERVER_NONCE   "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
#define RFC_CLIENT_FIRST   "n,,n=user,r=" RFC_CLIENT_NONCE
#define RFC_SERVER_FIRST   "r=" RFC_CLIENT_NONCE RFC_SERVER_NONCE ",s=" RFC_SALT ",i=4096"
#define RFC_FINAL_NO_PROOF "c=biws,r=" RFC_CLIENT_NONCE RFC_SERVER_NONCE
#define RFC_CLIENT_FINAL   RFC_FINAL_NO_PROOF ",p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
#define RFC_SERVER_FINAL   "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
/* The same salt and password as a PostgreSQL verifier, computed with Python's hashlib. */
#define RFC_SECRET                                                                                 \
	"SCRAM-SHA-256$4096:" RFC_SALT "$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:"            \
	"wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU="

static void test_base64(void)
{
	static const struct {
		const char *raw;
		const char *b64;
	} good[] = {
	        {"", ""},
	        {"f", "Zg=="},
	        {"fo", "Zm8="},
	        {"foo", "Zm9v"},
	        {"foob", "Zm9vYg=="},
	        {"fooba", "Zm9vYmE="},
	        {"foobar", "Zm9vYmFy"},
	        {"n,,", "biws"},
	        {"y,,", "eSws"},
	        {"\xff\xfe\xfd", "//79"},
	};
	static const char *const bad[] = {
	        "Zg=",      /* not a multiple of 4 */
	        "Z===",     /* too much padding */
	        "Zg=a",     /* symbol after padding */
	        "Zg==Zg==", /* padding in the middle */
	        "Zm9v!A==", /* not in the alphabet */
	        "Zm 9",     /* PostgreSQL refuses whitespace too */
	        "Zm9-",     /* base64url is not base64 */
	        "=AAA",
	};

	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		char enc[64];
		uint8_t dec[64];
		size_t n = strlen(good[i].raw);
		long m;

		CHECK(scram_b64_encode((const uint8_t *)good[i].raw, n, enc) == strlen(good[i].b64),
		      "b64 encode length of \"%s\"", good[i].b64);
		CHECK_STR(enc, good[i].b64, "b64 encode of case %zu", i);
		m = scram_b64_decode(good[i].b64, strlen(good[i].b64), dec);
		CHECK(m == (long)n && memcmp(dec, good[i].raw, n) == 0, "b64 decode of \"%s\"",
		      good[i].b64);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		uint8_t dec[64];
		CHECK(scram_b64_decode(bad[i], strlen(bad[i]), dec) == -1, "b64 rejects \"%s\"",
		      bad[i]);
	}
}

/* Verifiers computed independently with Python's hashlib.pbkdf2_hmac and hmac. */
static void test_secret_derivation(void)
{
	static const struct {
		const char *name;
		const char *password;
		const char *salt_b64;
		int iterations;
		const char *secret;
	} cases[] = {
	        {"rfc7677 pencil", "pencil", RFC_SALT, 4096, RFC_SECRET},
	        {"salt 01..10", "secret123", "AQIDBAUGBwgJCgsMDQ4PEA==", 4096,
	         "SCRAM-SHA-256$4096:AQIDBAUGBwgJCgsMDQ4PEA==$9Uvd5iyzBvsl/x4mM+hCmmCNvS9oEv91K/"
	         "6EoUgKw0s=:OUJymSqlP2oiyQqC4sBiKBaTzINDlk35j+QG+MBPeHE="},
	        {"1000 iterations", "hunter2", "cGd0aWRlLXRlc3Qtc2FsdA==", 1000,
	         "SCRAM-SHA-256$1000:cGd0aWRlLXRlc3Qtc2FsdA==$"
	         "4cep6xs9ypnq2iKiuAnuOS15Wc77GduNaamTyFYSLqQ="
	         ":SEx1HptBsBCm9Ows1n2v8aST+RtSvU+bVKO4KqM0q4o="},
	        /* NFC UTF-8: SASLprep leaves it unchanged, so raw bytes are what PostgreSQL hashes.
	         */
	        {"utf-8 password", "p\xc3\xa4ssw\xc3\xb6rd", "MDEyMzQ1Njc4OWFiY2RlZg==", 4096,
	         "SCRAM-SHA-256$4096:MDEyMzQ1Njc4OWFiY2RlZg==$3fAV27j/"
	         "YomKockTpuTuKl8RWKrwUX4tGo6Bmy3IHkQ="
	         ":LakBVUYurAovdTX6//mRi+yyjfF4zqUVQreGOY7pUPI="},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct scram_secret derived, parsed;
		uint8_t salt[64];
		long salt_len =
		        scram_b64_decode(cases[i].salt_b64, strlen(cases[i].salt_b64), salt);
		char *text;

		CHECK(salt_len > 0, "%s: salt decodes", cases[i].name);
		CHECK(scram_secret_from_password(cases[i].password, salt, (size_t)salt_len,
		                                 cases[i].iterations, &derived),
		      "%s: derive", cases[i].name);
		text = scram_format_secret(&derived);
		CHECK_STR(text, cases[i].secret, "%s: formatted verifier", cases[i].name);
		free(text);
		CHECK(scram_parse_secret(cases[i].secret, &parsed), "%s: parse", cases[i].name);
		CHECK(parsed.iterations == derived.iterations &&
		              parsed.salt_len == derived.salt_len &&
		              memcmp(parsed.salt, derived.salt, derived.salt_len) == 0 &&
		              memcmp(parsed.stored_key, derived.stored_key, SCRAM_KEY_LEN) == 0 &&
		              memcmp(parsed.server_key, derived.server_key, SCRAM_KEY_LEN) == 0,
		      "%s: parsed equals derived", cases[i].name);
	}
}

static void test_secret_parse(void)
{
	static const struct {
		const char *name;
		const char *secret;
		bool ok;
	} cases[] = {
	        {"valid", RFC_SECRET, true},
	        {"64-byte salt",
	         "SCRAM-SHA-256$1:"
	         "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
	         "AAAAA=="
	         "$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:"
	         "wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=",
	         true},
	        {"65-byte salt",
	         "SCRAM-SHA-256$1:"
	         "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
	         "AAAAAA="
	         "$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:"
	         "wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=",
	         false},
	        {"wrong scheme",
	         "SCRAM-SHA-1$4096:" RFC_SALT "$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:"
	         "wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=",
	         false},
	        {"zero iterations",
	         "SCRAM-SHA-256$0:" RFC_SALT "$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:"
	         "wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=",
	         false},
	        {"negative iterations",
	         "SCRAM-SHA-256$-1:" RFC_SALT "$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:"
	         "wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=",
	         false},
	        {"iterations overflow",
	         "SCRAM-SHA-256$99999999999:" RFC_SALT
	         "$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:"
	         "wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=",
	         false},
	        {"no salt",
	         "SCRAM-SHA-256$4096:$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:"
	         "wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=",
	         false},
	        {"bad salt base64",
	         "SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6g$"
	         "WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:"
	         "wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=",
	         false},
	        {"short stored key",
	         "SCRAM-SHA-256$4096:" RFC_SALT "$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4q=:"
	         "wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=",
	         false},
	        {"no server key",
	         "SCRAM-SHA-256$4096:" RFC_SALT "$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=",
	         false},
	        {"trailing junk", RFC_SECRET "x", false},
	        {"only a prefix", "SCRAM-SHA-256$1234", false},
	        {"empty", "", false},
	        {"md5", "md5ee69efad287c7423caf0b3229d71f567", false},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct scram_secret s;
		CHECK(scram_parse_secret(cases[i].secret, &s) == cases[i].ok, "parse: %s",
		      cases[i].name);
		if (cases[i].ok) {
			char *text = scram_format_secret(&s);
			CHECK_STR(text, cases[i].secret, "round trip: %s", cases[i].name);
			free(text);
		}
	}
	CHECK(!scram_parse_secret(NULL, &(struct scram_secret){0}), "parse: NULL");
}

static void test_rfc7677(void)
{
	struct scram_secret secret;
	struct scram_state st;
	char *out = NULL;

	CHECK(scram_parse_secret(RFC_SECRET, &secret), "rfc7677: verifier parses");
	scram_server_init(&st, &secret, false, "user", SCRAM_DEFAULT_ITERATIONS);
	CHECK(scram_server_first_with_nonce(&st, RFC_CLIENT_FIRST, strlen(RFC_CLIENT_FIRST),
	                                    RFC_SERVER_NONCE, &out) == SCRAM_CONTINUE,
	      "rfc7677: client-first accepted");
	CHECK_STR(out, RFC_SERVER_FIRST, "rfc7677: server-first-message");
	free(out);
	out = NULL;
	CHECK(scram_server_final(&st, RFC_CLIENT_FINAL, strlen(RFC_CLIENT_FINAL), &out) == SCRAM_OK,
	      "rfc7677: proof verified (%s)", st.error ? st.error : "");
	CHECK_STR(out, RFC_SERVER_FINAL, "rfc7677: server-final-message");
	free(out);
	scram_state_free(&st);
}

/* ---- a client, written from RFC 5802 rather than from scram.c ---- */

struct test_client {
	const char *gs2;                /* "n,," or "y,," */
	char first_bare[128];           /* n=...,r=<nonce> */
	char final[512];                /* client-final-message */
	char expected_server_final[80]; /* "v=..." the server must answer */
};

static void test_client_first(struct test_client *c, const char *gs2, const char *nonce, char *out,
                              size_t size)
{
	c->gs2 = gs2;
	snprintf(c->first_bare, sizeof(c->first_bare), "n=,r=%s", nonce);
	snprintf(out, size, "%s%s", gs2, c->first_bare);
}

/* Answers server-first; returns false if it does not parse. */
static bool test_client_final(struct test_client *c, const char *password, const char *server_first)
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

/* Full exchanges with fresh random server nonces, as production runs them. */
static void test_client_exchanges(void)
{
	static const struct {
		const char *name;
		const char *stored_password; /* NULL: unknown user, mock exchange */
		const char *password;
		const char *gs2;
		enum scram_status want;
	} cases[] = {
	        {"right password", "pencil", "pencil", "n,,", SCRAM_OK},
	        {"right password, y flag", "pencil", "pencil", "y,,", SCRAM_OK},
	        {"wrong password", "pencil", "pencil2", "n,,", SCRAM_FAIL_AUTH},
	        {"empty password", "pencil", "", "n,,", SCRAM_FAIL_AUTH},
	        {"mock: unknown user", NULL, "pencil", "n,,", SCRAM_FAIL_AUTH},
	};
	static const uint8_t salt[SCRAM_SALT_LEN] = "0123456789abcdef";

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct scram_secret secret = {0};
		struct scram_state st;
		struct test_client c;
		char first[256];
		char *out = NULL;
		enum scram_status status;

		if (cases[i].stored_password)
			CHECK(scram_secret_from_password(cases[i].stored_password, salt,
			                                 sizeof(salt), SCRAM_DEFAULT_ITERATIONS,
			                                 &secret),
			      "%s: derive", cases[i].name);
		scram_server_init(&st, &secret, cases[i].stored_password == NULL, "alice",
		                  SCRAM_DEFAULT_ITERATIONS);
		test_client_first(&c, cases[i].gs2, "fyko+d2lbbFgONRv9qkxdawL", first,
		                  sizeof(first));
		CHECK(scram_server_first(&st, first, strlen(first), &out) == SCRAM_CONTINUE,
		      "%s: first", cases[i].name);
		CHECK(out && strncmp(out, "r=fyko+d2lbbFgONRv9qkxdawL", 26) == 0 &&
		              strlen(out) > 26 + 24,
		      "%s: server nonce extends the client's by 24 base64 characters",
		      cases[i].name);
		CHECK(out && test_client_final(&c, cases[i].password, out), "%s: client parses %s",
		      cases[i].name, out ? out : "(null)");
		free(out);
		out = NULL;
		status = scram_server_final(&st, c.final, strlen(c.final), &out);
		CHECK(status == cases[i].want, "%s: final status %d, want %d (%s)", cases[i].name,
		      status, cases[i].want, st.error ? st.error : "");
		if (cases[i].want == SCRAM_OK)
			CHECK_STR(out, c.expected_server_final, "%s: server signature",
			          cases[i].name);
		else
			CHECK(out == NULL && st.error != NULL, "%s: no output on failure",
			      cases[i].name);
		free(out);
		scram_state_free(&st);
	}
}

/* The server-first a mock exchange sends for user, for comparing salts. */
static char *mock_server_first_iter(const char *user, int iterations)
{
	struct scram_state st;
	char *out = NULL;
	const char first[] = "n,,n=,r=abc";

	scram_server_init(&st, NULL, true, user, iterations);
	scram_server_first_with_nonce(&st, first, strlen(first), "XYZ", &out);
	scram_state_free(&st);
	return out;
}

static char *mock_server_first(const char *user)
{
	return mock_server_first_iter(user, SCRAM_DEFAULT_ITERATIONS);
}

static void test_mock(void)
{
	char *a1 = mock_server_first("nobody");
	char *a2 = mock_server_first("nobody");
	char *b = mock_server_first("somebody");
	uint8_t salt[64];
	char salt_b64[64] = "";

	CHECK(a1 && a2 && b, "mock: server-first produced");
	CHECK(a1 && a2 && strcmp(a1, a2) == 0, "mock: same salt for the same unknown user");
	CHECK(a1 && b && strcmp(a1, b) != 0, "mock: another unknown user gets another salt");
	CHECK(a1 && sscanf(a1, "r=abcXYZ,s=%63[^,],i=4096", salt_b64) == 1,
	      "mock: looks like a real server-first: %s", a1 ? a1 : "(null)");
	CHECK(scram_b64_decode(salt_b64, strlen(salt_b64), salt) == SCRAM_SALT_LEN,
	      "mock: salt is %d bytes as PostgreSQL's", SCRAM_SALT_LEN);
	free(a1);
	free(a2);
	free(b);

	/* scram_iterations reaches the mock too, or it would tell unknown users apart. */
	static const struct {
		int iterations;
		const char *want;
	} iters[] = {{10000, ",i=10000"}, {1, ",i=1"}, {0, ",i=4096"}};
	for (size_t i = 0; i < sizeof(iters) / sizeof(iters[0]); i++) {
		char *m = mock_server_first_iter("nobody", iters[i].iterations);
		size_t n = m ? strlen(m) : 0, w = strlen(iters[i].want);
		CHECK(m && n > w && strcmp(m + n - w, iters[i].want) == 0,
		      "mock with %d iterations ends in %s: %s", iters[i].iterations, iters[i].want,
		      m ? m : "(null)");
		free(m);
	}
}

static void test_malformed_first(void)
{
	static const struct {
		const char *name;
		const char *msg;
		size_t len; /* 0: strlen(msg) */
		const char *error;
	} cases[] = {
	        {"empty", "", 0, "malformed SCRAM message"},
	        {"bad flag", "x,,n=,r=abc", 0, "malformed SCRAM message"},
	        {"channel binding", "p=tls-server-end-point,,n=,r=abc", 0,
	         "malformed SCRAM message"},
	        {"flag without comma", "n", 0, "malformed SCRAM message"},
	        {"authzid", "n,a=bob,n=,r=abc", 0,
	         "client uses authorization identity, but it is not supported"},
	        {"empty authzid", "n,a=,n=,r=abc", 0,
	         "client uses authorization identity, but it is not supported"},
	        {"no second comma", "n,n=,r=abc", 0, "malformed SCRAM message"},
	        {"mandatory extension", "n,,m=foo,n=,r=abc", 0,
	         "client requires an unsupported SCRAM extension"},
	        {"no user attribute", "n,,r=abc", 0, "malformed SCRAM message"},
	        {"no nonce", "n,,n=user", 0, "malformed SCRAM message"},
	        {"nonce before user", "n,,r=abc,n=user", 0, "malformed SCRAM message"},
	        {"nonce control char", "n,,n=,r=ab\x01", 0,
	         "non-printable characters in SCRAM nonce"},
	        {"nonce space", "n,,n=,r=a b", 0, "non-printable characters in SCRAM nonce"},
	        {"bad extension", "n,,n=,r=abc,1=x", 0, "malformed SCRAM message"},
	        {"extension without =", "n,,n=,r=abc,x", 0, "malformed SCRAM message"},
	        {"inner NUL", "n,,n=,r=a\0bc", 11, "malformed SCRAM message"},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct scram_state st;
		char *out = NULL;
		size_t len = cases[i].len ? cases[i].len : strlen(cases[i].msg);
		enum scram_status status;

		scram_server_init(&st, NULL, true, "alice", SCRAM_DEFAULT_ITERATIONS);
		status = scram_server_first(&st, cases[i].msg, len, &out);
		CHECK(status == SCRAM_FAIL_PROTOCOL, "first %s: status %d", cases[i].name, status);
		CHECK_STR(st.error, cases[i].error, "first %s: error \"%s\"", cases[i].name,
		          st.error ? st.error : "(null)");
		CHECK(out == NULL, "first %s: no output", cases[i].name);
		free(out);
		scram_state_free(&st);
	}
}

static void test_accepted_first(void)
{
	static const struct {
		const char *name;
		const char *msg;
	} cases[] = {
	        {"user name ignored", "n,,n=someone else,r=abc"},
	        {"optional extension", "n,,n=,r=abc,x=whatever"},
	        {"y flag", "y,,n=,r=abc"},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct scram_state st;
		char *out = NULL;

		scram_server_init(&st, NULL, true, "alice", SCRAM_DEFAULT_ITERATIONS);
		CHECK(scram_server_first(&st, cases[i].msg, strlen(cases[i].msg), &out) ==
		              SCRAM_CONTINUE,
		      "first %s accepted (%s)", cases[i].name, st.error ? st.error : "");
		free(out);
		scram_state_free(&st);
	}
}

static void test_size_bound(void)
{
	size_t len = 4097;
	char *big = malloc(len);
	struct scram_state st;
	char *out = NULL;

	memset(big, 'a', len);
	memcpy(big, "n,,n=,r=", 8);
	scram_server_init(&st, NULL, true, "alice", SCRAM_DEFAULT_ITERATIONS);
	CHECK(scram_server_first(&st, big, len, &out) == SCRAM_FAIL_PROTOCOL && out == NULL,
	      "first over 4096 bytes refused");
	scram_state_free(&st);
	scram_server_init(&st, NULL, true, "alice", SCRAM_DEFAULT_ITERATIONS);
	CHECK(scram_server_first(&st, big, 4096, &out) == SCRAM_CONTINUE,
	      "first of exactly 4096 bytes accepted");
	free(out);
	out = NULL;
	CHECK(scram_server_final(&st, big, len, &out) == SCRAM_FAIL_PROTOCOL && out == NULL,
	      "final over 4096 bytes refused");
	scram_state_free(&st);
	free(big);
}

/* Client-final messages against RFC 7677's exchange, each with one thing wrong. */
static void test_malformed_final(void)
{
	static const struct {
		const char *name;
		const char *msg;
		enum scram_status want;
		const char *error;
	} cases[] = {
	        {"valid (control row)", RFC_CLIENT_FINAL, SCRAM_OK, NULL},
	        {"empty", "", SCRAM_FAIL_PROTOCOL, "malformed SCRAM message"},
	        {"missing c", "r=" RFC_CLIENT_NONCE RFC_SERVER_NONCE ",p=x", SCRAM_FAIL_PROTOCOL,
	         "malformed SCRAM message"},
	        {"c of y flag",
	         "c=eSws,r=" RFC_CLIENT_NONCE RFC_SERVER_NONCE
	         ",p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
	         SCRAM_FAIL_PROTOCOL,
	         "unexpected SCRAM channel-binding attribute in client-final-message"},
	        {"c with binding data", "c=cD10bHMtc2VydmVyLWVuZC1wb2ludCws,r=x,p=y",
	         SCRAM_FAIL_PROTOCOL,
	         "unexpected SCRAM channel-binding attribute in client-final-message"},
	        {"missing r", "c=biws,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
	         SCRAM_FAIL_PROTOCOL, "malformed SCRAM message"},
	        {"missing proof", RFC_FINAL_NO_PROOF, SCRAM_FAIL_PROTOCOL,
	         "malformed SCRAM message"},
	        {"proof too short",
	         RFC_FINAL_NO_PROOF ",p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7A=",
	         SCRAM_FAIL_PROTOCOL, "malformed SCRAM message"},
	        {"proof not base64",
	         RFC_FINAL_NO_PROOF ",p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7And!Q=",
	         SCRAM_FAIL_PROTOCOL, "malformed SCRAM message"},
	        {"garbage after proof", RFC_CLIENT_FINAL ",x=1", SCRAM_FAIL_PROTOCOL,
	         "malformed SCRAM message"},
	        {"client nonce only",
	         "c=biws,r=" RFC_CLIENT_NONCE ",p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
	         SCRAM_FAIL_PROTOCOL, "invalid SCRAM response"},
	        {"nonce altered",
	         "c=biws,r=" RFC_CLIENT_NONCE RFC_SERVER_NONCE
	         "X,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
	         SCRAM_FAIL_PROTOCOL, "invalid SCRAM response"},
	        {"proof flipped",
	         RFC_FINAL_NO_PROOF ",p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVA=",
	         SCRAM_FAIL_AUTH, "password authentication failed"},
	        {"extension before proof",
	         RFC_FINAL_NO_PROOF ",x=1,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
	         SCRAM_FAIL_AUTH, "password authentication failed"},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct scram_secret secret;
		struct scram_state st;
		char *out = NULL;
		enum scram_status status;

		scram_parse_secret(RFC_SECRET, &secret);
		scram_server_init(&st, &secret, false, "user", SCRAM_DEFAULT_ITERATIONS);
		scram_server_first_with_nonce(&st, RFC_CLIENT_FIRST, strlen(RFC_CLIENT_FIRST),
		                              RFC_SERVER_NONCE, &out);
		free(out);
		out = NULL;
		status = scram_server_final(&st, cases[i].msg, strlen(cases[i].msg), &out);
		CHECK(status == cases[i].want, "final %s: status %d, want %d (%s)", cases[i].name,
		      status, cases[i].want, st.error ? st.error : "");
		CHECK_STR(st.error, cases[i].error, "final %s: error \"%s\"", cases[i].name,
		          st.error ? st.error : "(null)");
		CHECK((out != NULL) == (cases[i].want == SCRAM_OK), "final %s: output iff ok",
		      cases[i].name);
		free(out);
		scram_state_free(&st);
	}
}

/* Messages in the wrong order are protocol errors, not crashes or silent restarts. */
static void test_out_of_order(void)
{
	struct scram_secret secret;
	struct scram_state st;
	char *out = NULL;

	scram_parse_secret(RFC_SECRET, &secret);
	scram_server_init(&st, &secret, false, "user", SCRAM_DEFAULT_ITERATIONS);
	CHECK(scram_server_final(&st, RFC_CLIENT_FINAL, strlen(RFC_CLIENT_FINAL), &out) ==
	              SCRAM_FAIL_PROTOCOL,
	      "final before first refused");
	CHECK(scram_server_first_with_nonce(&st, RFC_CLIENT_FIRST, strlen(RFC_CLIENT_FIRST),
	                                    RFC_SERVER_NONCE, &out) == SCRAM_CONTINUE,
	      "first after a refused final");
	free(out);
	out = NULL;
	CHECK(scram_server_first(&st, RFC_CLIENT_FIRST, strlen(RFC_CLIENT_FIRST), &out) ==
	              SCRAM_FAIL_PROTOCOL,
	      "second first refused");
	CHECK(out == NULL, "second first: no output");
	scram_state_free(&st);
}

int main(void)
{
	test_base64();
	test_secret_derivation();
	test_secret_parse();
	test_rfc7677();
	test_client_exchanges();
	test_mock();
	test_malformed_first();
	test_accepted_first();
	test_size_bound();
	test_malformed_final();
	test_out_of_order();
	UNIT_DONE();
}
