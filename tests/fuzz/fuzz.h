/* Shared by the libFuzzer targets: the entry point's prototype and a check that aborts. */
#ifndef PGTIDE_FUZZ_H
#define PGTIDE_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A broken invariant is a finding: abort so libFuzzer saves the input. */
#define FUZZ_ASSERT(cond, what)                                                                    \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			fprintf(stderr, "%s:%d: invariant broken: %s (%s)\n", __FILE__, __LINE__,  \
			        what, #cond);                                                      \
			abort();                                                                   \
		}                                                                                  \
	} while (0)

/* An exact-size heap copy, so that ASan sees a read one byte past the input. */
static inline uint8_t *fuzz_dup(const uint8_t *data, size_t size)
{
	uint8_t *p = malloc(size ? size : 1);
	if (p && size)
		memcpy(p, data, size);
	return p;
}

/* A NUL-terminated heap copy (the NUL is the only byte past size). */
static inline char *fuzz_strdup(const uint8_t *data, size_t size)
{
	char *p = malloc(size + 1);
	if (p) {
		memcpy(p, data, size);
		p[size] = '\0';
	}
	return p;
}

#endif
