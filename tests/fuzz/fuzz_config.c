/*
 * config_parse on arbitrary ini text. "%include" is turned into a comment first: an include
 * reads the named file (a fuzzer would find /dev/zero), and the include code is unit-tested.
 * The text is not NUL-terminated (config_parse takes a length), so a read past it is caught.
 */
#include "fuzz.h"

#include "pgtide/config.h"

static bool some_keywords(const char *kw)
{
	static const char *const known[] = {"host",     "port",    "dbname",           "user",
	                                    "password", "sslmode", "application_name", NULL};
	for (const char *const *k = known; *k; k++)
		if (strcmp(*k, kw) == 0)
			return true;
	return false;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > 64 * 1024)
		return 0;
	char *text = (char *)fuzz_dup(data, size);
	if (!text)
		return 0;
	for (char *p = text; (p = memchr(p, '%', size - (size_t)(p - text))) != NULL; p++)
		*p = '#';

	for (int pass = 0; pass < 2; pass++) {
		struct config cfg;
		struct config_diag *w = NULL, err = {0};
		size_t n_w = 0;
		enum config_result r = config_parse(&cfg, text, size, "/nonexistent/fuzz.ini",
		                                    pass ? some_keywords : NULL, &w, &n_w, &err);
		FUZZ_ASSERT(r == CONFIG_OK || r == CONFIG_ERROR, "no I/O without includes");
		if (r == CONFIG_OK) {
			FUZZ_ASSERT(n_w == 0 || w != NULL, "warnings are there when counted");
			for (size_t i = 0; i < n_w; i++)
				FUZZ_ASSERT(w[i].message != NULL, "every warning says why");
			config_free(&cfg);
		} else {
			FUZZ_ASSERT(err.message != NULL, "an error says why");
		}
		config_diags_free(w, n_w);
		config_diag_free(&err);
	}
	free(text);
	return 0;
}
